"""Build a named backend (audio features, motion extraction) from a registry, checking its options by name."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def build_backend(kind: str, registry: dict[str, type[T]], name: str, options: dict[str, Any]) -> T:
    """`registry[name](**options)`, with a ValueError naming the choices for an unknown backend or option."""
    if name not in registry:
        raise ValueError(f"unknown {kind} backend {name!r}: choose one of {', '.join(registry)}")
    cls = registry[name]
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {name!r} {kind} backend; it takes {sorted(known)}")
    return cls(**options)
