"""Evaluation of talking-head videos against a benchmark split (`python -m evaluation.run CONFIG.yaml`).

One module per job: `config` (EvalConfig schema), `split` (benchmark split files), `video` (decoding),
`frechet` (the one Fréchet distance), `fid`, `fvd` + `i3d`, `sync` + `syncnet`, `fsim`, `diversity`,
`smoothness`, `per_video` (everything measured on one clip), `cache` (resumable per-clip results), `aggregate`
(set metrics and means), `report` (metrics.json, report.md, per_video.png), `weights` (local weights files,
never downloaded), `degrade` (degraded copies of ground truth for sanity checks), `run` (the CLI).
"""
