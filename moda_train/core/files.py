"""Putting a finished file under a second name without ever showing a partial one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` (replacing it) as a hard link, or a copy on file systems without hard links.

    It goes through a temporary name beside `target` and a rename, so `target` only ever shows a complete file.
    """
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)
