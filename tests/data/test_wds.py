"""The WebDataset pipeline: URL expansion, weighted resampling, equal batches per rank, exact resume, bad data."""

import collections
import io
import random

import numpy as np
import pytest
import torch
import webdataset as wds

from moda_train.core.stats import MotionStats
from moda_train.data.config import DataConfig
from moda_train.data.datamodule import MotionDataModule
from moda_train.data.synthetic import write_synthetic_shards
from moda_train.data.wds import ShardSource, draw_shards, expand_urls


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=12, frames=100, clips_per_shard=3)


def _datamodule(shards, **overrides) -> MotionDataModule:
    fields = dict(
        train_shards=str(shards / "train-*.tar"),
        val_shards=str(shards / "val-*.tar"),
        stats_path=str(shards / "stats.json"),
        samples_per_epoch=48,
        num_workers=0,
        shuffle_buffer=8,
    )
    fields.update(overrides)
    datamodule = MotionDataModule(DataConfig(**fields), micro_batch_size=4, seed=3)
    datamodule.setup()
    return datamodule


def _keys(loader) -> list[tuple]:
    return [tuple(zip(batch["key"], batch["start"].tolist())) for batch in loader]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("x-{000..002}.tar", [(["x-000.tar", "x-001.tar", "x-002.tar"], 1.0)]),
        ("a-{0..1}.tar@3::b.tar", [(["a-0.tar", "a-1.tar"], 3.0), (["b.tar"], 1.0)]),
        ("pipe:cat c-{0..1}.tar@0.5", [(["pipe:cat c-0.tar", "pipe:cat c-1.tar"], 0.5)]),
    ],
)
def test_expand_urls(spec, expected):
    got = [(source.urls, source.weight) for source in expand_urls(spec)]
    assert got == expected


def test_expand_urls_globs_local_files_and_names_an_empty_source(shards):
    (source,) = expand_urls(str(shards / "train-*.tar"))
    assert [p.rsplit("/", 1)[-1] for p in source.urls] == [f"train-{i:06d}.tar" for i in range(4)]
    with pytest.raises(ValueError, match="nothing-\\*.tar.*matches no files"):
        expand_urls(str(shards / "nothing-*.tar"))


def test_weighted_resampling_frequencies():
    sources = [ShardSource(["a0", "a1"], 3.0), ShardSource(["b0"], 1.0)]
    draws = collections.Counter(
        item["url"] for _, item in zip(range(20000), draw_shards(sources, random.Random(0)))
    )
    share_a = (draws["a0"] + draws["a1"]) / 20000
    assert abs(share_a - 0.75) < 0.02
    assert abs(draws["a0"] / (draws["a0"] + draws["a1"]) - 0.5) < 0.03


def test_batches_have_the_contract_shapes_and_are_normalised(shards):
    loader = _datamodule(shards).train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 48 // 4
    batch = batches[0]
    assert batch["motion"].shape == (4, 80, 70) and batch["motion"].dtype == torch.float32
    assert batch["prev_motion"].shape == (4, 1, 70)
    assert batch["audio"].shape == (4, 80, 320)
    assert batch["identity"].shape == (4, 63) and batch["emotion"].dtype == torch.long
    motion = torch.cat([b["motion"] for b in batches]).reshape(-1, 70)
    assert motion.mean(0).abs().mean() < 0.3 and (motion.std(0).mean() - 1).abs() < 0.3


def test_prev_motion_is_the_frame_before_the_window(shards):
    stats = MotionStats.load(shards / "stats.json")
    batch = next(iter(_datamodule(shards).train_dataloader()))
    urls = str(shards / "train-{000000..000003}.tar")
    samples = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    sample = next(s for s in samples if s["__key__"] == batch["key"][0])
    clip = stats.normalize(np.load(io.BytesIO(sample["motion.npy"])))
    start = int(batch["start"][0])
    np.testing.assert_allclose(batch["prev_motion"][0, 0].numpy(), clip[start - 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch["motion"][0].numpy(), clip[start : start + 80], rtol=1e-5, atol=1e-6)


def test_every_rank_gets_the_same_number_of_different_batches(shards):
    datamodule = _datamodule(shards, samples_per_epoch=40)  # 40 / (4 x 2) = 5 batches, uneven shard split
    per_rank = {rank: _keys(datamodule.train_loader(rank, world_size=2)) for rank in (0, 1)}
    assert len(per_rank[0]) == len(per_rank[1]) == 5
    # Step by step, the two ranks train on different windows (equal seeds would make N ranks train on N copies).
    assert all(a != b for a, b in zip(per_rank[0], per_rank[1], strict=True))


def test_loader_workers_draw_different_streams(shards):
    # With 2 workers the loader alternates between them: batch 2i is worker 0's i-th, batch 2i+1 worker 1's.
    batches = _keys(_datamodule(shards, num_workers=2).train_dataloader())
    assert all(batches[i] != batches[i + 1] for i in range(0, len(batches) - 1, 2))
    single = _keys(_datamodule(shards, num_workers=1).train_dataloader())
    assert batches[0::2] == single[: len(batches[0::2])]  # worker 0's stream does not depend on the others


def test_data_order_depends_only_on_seed_and_epoch(shards):
    first, second = _datamodule(shards).train_dataloader(), _datamodule(shards).train_dataloader()
    epoch0 = _keys(first)
    assert epoch0 == _keys(second)
    assert _keys(first) != epoch0  # each iteration of the loader is the next epoch, with a new order


def test_resume_fast_forwards_to_the_exact_batch(shards):
    reference = _keys(_datamodule(shards, num_workers=2).train_dataloader())
    resumed_module = _datamodule(shards, num_workers=2)
    resumed_module.load_state_dict({"position": 5})
    resumed = _keys(resumed_module.train_dataloader())
    assert resumed == reference[5:]
    later = _datamodule(shards, num_workers=2).train_dataloader()
    second_epoch = (_keys(later), _keys(later))[1]
    resumed_module.load_state_dict({"position": len(later) + 2})
    assert _keys(resumed_module.train_dataloader()) == second_epoch[2:]


def test_validation_windows_are_fixed(shards):
    datamodule = _datamodule(shards, val_windows=3)
    first, second = _keys(datamodule.val_dataloader()), _keys(datamodule.val_dataloader())
    assert first == second and sum(len(batch) for batch in first) == 3


def test_corrupt_samples_are_skipped_and_counted(shards, tmp_path):
    good = (shards / "train-000000.tar").read_bytes()
    (tmp_path / "train-000000.tar").write_bytes(good)
    (tmp_path / "train-000001.tar").write_bytes(good[: len(good) // 2])  # truncated mid-member
    with wds.TarWriter(str(tmp_path / "train-000002.tar")) as sink:
        sink.write(
            {
                "__key__": "broken",
                "motion.npy": b"not numpy",
                "audio.npy": b"",
                "identity.npy": b"",
                "emotion.cls": b"1",
            }
        )
    (tmp_path / "stats.json").write_text((shards / "stats.json").read_text())
    loader = _datamodule(tmp_path, val_shards="").train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader)
    assert max(int(b["num_skipped"]) for b in batches) >= 1


def test_audio_backend_mismatch_is_a_clear_error(shards):
    with pytest.raises(ValueError, match="data.audio_backend='hubert'.*'logmel'"):
        _datamodule(shards, audio_backend="hubert")


def test_missing_stats_file_names_the_path(tmp_path, shards):
    with pytest.raises(FileNotFoundError, match="motion statistics not found at .*nope.json"):
        _datamodule(shards, stats_path=str(tmp_path / "nope.json"))
