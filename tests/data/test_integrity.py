"""Shard integrity: shard lists checked before any work, damaged tars and poisoned samples counted, a stream of
nothing but bad data stopped."""

from __future__ import annotations

import random
import tarfile

import numpy as np
import pytest
import webdataset as wds

from moda_train.core.config_loader import ConfigError
from moda_train.core.sample import encode_sample
from moda_train.core.stats import MotionStats
from moda_train.data.datamodule import SharedEpoch
from moda_train.data.shard_check import check_shard_spec, tar_samples
from moda_train.data.synthetic import synthetic_clip, write_synthetic_shards
from moda_train.data.wds import SkipCounter, WindowDataset, decode_clips, expand_urls

CLIPS = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_clips=CLIPS, clips_per_shard=CLIPS)


def _header_corrupt_copy(shard, out, sample: str):
    """A copy of `shard` with the first tar header of `sample` overwritten by garbage."""
    with tarfile.open(shard) as tar:
        offset = next(m.offset for m in tar.getmembers() if m.name.startswith(sample))
    data = bytearray(shard.read_bytes())
    data[offset : offset + tarfile.BLOCKSIZE] = b"\x07" * tarfile.BLOCKSIZE
    out.write_bytes(bytes(data))
    return out


def _poisoned_shard(path, good: int):
    """`good` valid clips plus one whose float16 audio holds inf and NaN (what a few random bytes decode to)."""
    rng = np.random.default_rng(1)
    with wds.TarWriter(str(path)) as sink:
        for index in range(good + 1):
            clip = synthetic_clip(rng, 100)
            if index == good:
                clip["audio"][3, 0, :2] = [np.inf, np.nan]
            meta = {"audio_backend": {"name": "logmel"}}
            sink.write(encode_sample(f"p{index}", clip["motion"], clip["audio"], clip["identity"], b"", 5, meta))
    return path


def _read(urls, stats) -> tuple[list[str], SkipCounter]:
    skipped = SkipCounter()
    clips = decode_clips(tar_samples(({"url": str(u)} for u in urls), skipped), stats, skipped)
    return [clip["key"] for clip in clips], skipped


def test_shard_list_errors_name_the_path_and_the_problem(shards, tmp_path):
    (tmp_path / "not_a_tar.tar").write_text("hello")
    (tmp_path / "empty.tar").write_bytes(b"")
    cases = {
        str(shards): "is a folder, not a tar file",
        str(shards / "train-00000.tar"): "no such file",  # one zero short
        str(tmp_path / "not_a_tar.tar"): "not a tar file",
        str(tmp_path / "empty.tar"): "empty file",
    }
    for spec, problem in cases.items():
        with pytest.raises(ConfigError, match=f"data.train_shards: 1 of 1 shards unusable: {spec} \\({problem}"):
            check_shard_spec(spec, "data.train_shards")
    with pytest.raises(ConfigError, match="data.val_shards: shard source .* matches no files"):
        check_shard_spec(str(tmp_path / "nothing-*.tar"), "data.val_shards")
    check_shard_spec(str(shards / "train-000000.tar"), "data.train_shards")  # a good one passes


def test_header_corrupt_tar_and_poisoned_sample_are_counted(shards, tmp_path):
    stats = MotionStats.load(shards / "stats.json")
    good = shards / "train-000000.tar"
    corrupt = _header_corrupt_copy(good, tmp_path / "corrupt.tar", "train_00004")
    poisoned = _poisoned_shard(tmp_path / "poisoned.tar", good=2)

    keys, skipped = _read([good], stats)
    assert len(keys) == CLIPS and skipped.count == 0
    # tarfile stops silently at the damaged header: samples 4..7 are gone, and now counted as lost.
    keys, skipped = _read([corrupt, poisoned, good], stats)
    assert keys[:4] == [f"train_{i:05d}" for i in range(4)]
    assert keys[4:6] == ["p0", "p1"]  # the poisoned sample p2 is skipped, the rest of its shard is read
    assert len(keys) == 4 + 2 + CLIPS
    assert skipped.count == 4 + 1
    assert skipped.take_new() == 5 and skipped.take_new() == 0  # batches report new skips, summed downstream


def test_a_stream_of_only_bad_data_stops_with_a_clear_error(shards, tmp_path):
    # Shards whose first header is valid (they pass the up-front check) but that are cut off inside a member.
    data = (shards / "train-000000.tar").read_bytes()
    for index in range(3):
        (tmp_path / f"cut-{index}.tar").write_bytes(data[:3000])
    spec = str(tmp_path / "cut-{0..2}.tar")
    check_shard_spec(spec, "data.train_shards")
    stats = MotionStats.load(shards / "stats.json")
    dataset = WindowDataset(expand_urls(spec), stats, 80, 1, 2, 4, 0, SharedEpoch(), max_skips=20)
    random.seed(0)
    with pytest.raises(RuntimeError, match="20 unreadable shards or samples in a row"):
        next(iter(dataset))
