"""Shard integrity: the shard lists checked before any work, and the samples a damaged tar loses counted.

`check_shard_spec` runs before the Trainer is built: every local path of a shard spec must be a non-empty file
that starts with a valid tar header, so a folder, a typo or a non-tar file is a config error within seconds
instead of a reader that retries it forever. Remote URLs (`pipe:`, `s3://`, ...) are left to the reader.

`tar_samples` is WebDataset's own tar reader (url_opener -> tar_file_expander -> group_by_keys) with one addition:
Python's tarfile treats a damaged header in the middle of an archive as its end, silently, so every sample after
it vanished uncounted. Here each local shard's read position is compared with its size when the reader is done
with it; if it stopped early, the rest of the file is scanned for intact headers and the samples they belong to
are counted as skipped (lost), with the shard named.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import webdataset as wds

from moda_train.core.config_loader import ConfigError

SHOWN_PROBLEMS = 5  # shard problems listed in one error message


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def shard_problem(path: Path) -> str | None:
    """Why `path` is not a usable tar shard, or None."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a tar file"
    try:
        with path.open("rb") as stream:
            header = stream.read(tarfile.BLOCKSIZE)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if not header:
        return "empty file"
    try:
        tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return "not a tar file (no valid tar header at its start)"
    return None


def check_shard_spec(spec: str, key: str) -> None:
    """Raise ConfigError naming `key` and the unusable shards of `spec` (a pattern `expand_urls` understands)."""
    from moda_train.data.wds import expand_urls  # wds.py uses this module's reader

    try:
        urls = [url for source in expand_urls(spec) for url in source.urls]
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from err
    problems = []
    for url in urls:
        if not _is_remote(url) and (problem := shard_problem(Path(url.removeprefix("file:")))):
            problems.append(f"{url} ({problem})")
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise ConfigError(f"{key}: {len(problems)} of {len(urls)} shards unusable: {shown}{more}")


class _CountingReader:
    """A read-only stream that counts the bytes handed out (how far tarfile got)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.consumed = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.consumed += len(data)
        return data

    def close(self) -> None:
        self.stream.close()


def sample_key(member_name: str) -> str:
    """The sample a tar member belongs to, by WebDataset's rule (the name up to the first dot of its basename)."""
    prefix, _ = wds.tariterators.base_plus_ext(member_name)
    return member_name if prefix is None else prefix


def keys_after(path: Path, offset: int) -> set[str]:
    """Sample keys of the intact tar headers from about `offset` to the end of `path` (skipping damaged blocks)."""
    keys = set()
    # tarfile reads ahead a record at a time: headers just before the stop point may not have been parsed.
    position = max(0, offset - 2 * tarfile.RECORDSIZE) // tarfile.BLOCKSIZE * tarfile.BLOCKSIZE
    with path.open("rb") as stream:
        while True:
            stream.seek(position)
            block = stream.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                return keys
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError:
                position += tarfile.BLOCKSIZE  # data of the damaged member, or padding
                continue
            if info.isfile():
                keys.add(sample_key(info.name))
            position += tarfile.BLOCKSIZE + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def tar_samples(shards: Iterable[dict], handler: Any) -> Iterator[dict]:
    """WebDataset's `tarfile_samples` that also reports samples lost after a damaged header to `handler`
    (a SkipCounter): it is called with `lost=<count>` once per damaged shard."""
    read_keys: dict[str, set[str]] = {}

    def opened(sources: Iterable[dict]) -> Iterator[dict]:
        previous: tuple[str, _CountingReader] | None = None
        for source in sources:
            if previous is not None:
                _account(*previous)
            url = source["url"]
            if _is_remote(url):
                previous = None
            else:
                source["stream"] = _CountingReader(source["stream"])
                previous = (url, source["stream"])
            yield source
        if previous is not None:
            _account(*previous)

    def _account(url: str, reader: _CountingReader) -> None:
        path = Path(url.removeprefix("file:"))
        seen = read_keys.pop(url, set())
        if reader.consumed < path.stat().st_size:
            lost = keys_after(path, reader.consumed) - seen
            if lost:
                handler(
                    ValueError(
                        f"{url}: damaged tar header at about byte {reader.consumed}: {len(lost)} samples lost"
                    ),
                    lost=len(lost),
                )

    def noted(files: Iterable[dict]) -> Iterator[dict]:
        for file in files:
            if "fname" in file:  # not the end-of-shard marker
                read_keys.setdefault(file["__url__"], set()).add(sample_key(file["fname"]))
            yield file

    streams = opened(wds.tariterators.url_opener(shards, handler=handler))
    files = noted(wds.tariterators.tar_file_expander(streams, handler=handler))
    return wds.tariterators.group_by_keys(files, handler=handler)
