"""The layers of docs/ARCHITECTURE.md, checked from the source with `ast` (nothing is imported or run).

core <- perception <- training <- generation <- jobs (data_prep, evaluation): a module may import its own layer and
the ones below it, never one above; training does not use perception; nothing imports a job.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("moda_train", "data_prep", "evaluation")
JOBS = ("data_prep", "evaluation")
LAYERS = {"core": 0, "perception": 1, "training": 2, "generation": 3, "job": 4}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] in JOBS:
        return "job"
    if len(parts) > 1 and parts[1] in ("core", "perception", "generation"):
        return parts[1]
    if len(parts) > 1 and parts[1] in ("generate", "demo"):  # the generation CLIs
        return "generation"
    return "training"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every project module `path` imports, function-local imports included, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
    return {m for m in found if m.split(".")[0] in PACKAGES}


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def violations(path: Path) -> list[str]:
    here = module_name(path)
    problems = []
    for target in sorted(imported_modules(path)):
        mine, theirs = layer(here), layer(target)
        if theirs == "job" and target.split(".")[0] != here.split(".")[0]:
            problems.append(f"{here} imports the job {target}")
        elif LAYERS[theirs] > LAYERS[mine]:
            problems.append(f"{here} ({mine}) imports {target} ({theirs}), a higher layer")
        elif mine == "training" and theirs == "perception":
            problems.append(f"{here} (training) imports {target} (perception)")
    return problems


def test_sources_found():
    names = {module_name(p) for p in SOURCES}
    assert {"moda_train.core.checkpoint", "moda_train.perception.decode", "data_prep.shard"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    assert violations(path) == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = ROOT / "moda_train" / "core" / "motion_layout.py"
    monkeypatch.setattr(Path, "read_text", lambda self: "from moda_train.generation import render\n")
    assert violations(fake) == [
        "moda_train.core.motion_layout (core) imports moda_train.generation (generation), a higher layer"
    ]
