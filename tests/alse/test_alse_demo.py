"""The tiny ALSE on the demo corpus (real face, real speech, FaceMesh lips, log-mel audio), when it is built.

The corpus comes from the session fixture `demo_shards` (the quickstart's demo corpus, made by the real
commands). The validation clips are speakers training never saw.
"""

import io
import tarfile

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moda_train.alse_score import ALSEScorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, alse_cli, demo_shards):
    out_dir = tmp_path_factory.mktemp("alse_demo")
    result = alse_cli(
        demo_shards,
        out_dir,
        "train.run_name=demo",
        "train.max_steps=200",
        "train.val_every_n_steps=200",
        "train.checkpoint_every_n_steps=200",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / "demo"


def _val_clips(shards) -> list[tuple[np.ndarray, np.ndarray]]:
    members: dict[str, dict[str, bytes]] = {}
    for path in sorted(shards.glob("val-*.tar")):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                key, ext = member.name.split(".", 1)
                members.setdefault(key, {})[ext] = archive.extractfile(member).read()
    return [
        (np.load(io.BytesIO(m["motion.npy"])), np.load(io.BytesIO(m["audio.npy"])).astype(np.float32))
        for m in members.values()
    ]


def test_demo_expert_beats_chance_on_unseen_speakers(demo_run):
    events = EventAccumulator(str(demo_run / "tensorboard"))
    events.Reload()
    accuracy = events.Scalars("val/sync_acc")[-1].value
    assert accuracy > 5 / 29, f"validation sync accuracy {accuracy:.3f}, chance 1/29"
    assert events.Scalars("val/offset_zero")[-1].value == 1.0


@pytest.mark.parametrize("delay", [0, 3, -5])
def test_demo_expert_finds_known_shifts(demo_run, demo_shards, delay):
    scorer = ALSEScorer.from_checkpoint(demo_run / "checkpoints" / "last.ckpt")
    for motion, audio in _val_clips(demo_shards):
        if delay > 0:
            motion, audio = motion[delay:], audio[:-delay]
        elif delay < 0:
            motion, audio = motion[:delay], audio[-delay:]
        assert scorer.score_sync(motion, audio)["offset"] == -delay
