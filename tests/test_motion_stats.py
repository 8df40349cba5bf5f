"""stats.json records how its std normalises (convention and epsilon); MotionStats follows the record."""

import json

import numpy as np
import pytest

from moda_train.core.stats import MIN_STD, MotionStats


def _write(path, **record):
    path.write_text(json.dumps({"mean": [0.0, 1.0, 2.0], "std": [0.0, 5e-5, 2.0], **record}))
    return path


def test_the_default_record_floors_std(tmp_path):
    stats = MotionStats.load(_write(tmp_path / "stats.json"))
    np.testing.assert_allclose(stats.std, [MIN_STD, MIN_STD, 2.0])


def test_the_released_convention_adds_its_epsilon(tmp_path):
    stats = MotionStats.load(_write(tmp_path / "stats.json", std_convention="add", std_epsilon=1e-5))
    np.testing.assert_allclose(stats.std, [1e-5, 6e-5, 2.00001], rtol=1e-6)
    np.testing.assert_allclose(stats.normalize(np.array([1.0, 1.0, 4.0])), [1e5, 0.0, 2.0 / 2.00001], rtol=1e-5)


def test_to_dict_loads_back_exactly(tmp_path):
    stats = MotionStats.load(_write(tmp_path / "a.json", std_convention="add", std_epsilon=1e-5))
    (tmp_path / "b.json").write_text(json.dumps(stats.to_dict()))
    np.testing.assert_array_equal(MotionStats.load(tmp_path / "b.json").std, stats.std)


def test_a_bad_record_is_named(tmp_path):
    with pytest.raises(ValueError, match="std_convention='sqrt'"):
        MotionStats.load(_write(tmp_path / "stats.json", std_convention="sqrt"))
    with pytest.raises(ValueError, match="std divisor is not > 0"):
        MotionStats.load(_write(tmp_path / "stats.json", std_convention="add", std_epsilon=0.0))
