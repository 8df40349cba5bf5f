"""Typed configuration: dataclass schemas filled from YAML files and `key=value` overrides with OmegaConf.

An experiment YAML may start with a `defaults:` mapping from config group to preset, Hydra-style:

    defaults:
      model: tiny            # configs/model/tiny.yaml, merged under `model`
      data: demo             # configs/data/demo.yaml, merged under `data`
    train:
      max_steps: 300         # the experiment's own values win over the presets

Presets are partial overrides over the dataclass defaults. Merge order: schema defaults, presets (in the order
listed), the experiment body, command-line overrides. Every problem (unknown key, wrong type, missing value,
failed check) raises one `ConfigError` that names the key and the file or override it came from.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIGS_ROOT = Path(os.environ.get("MODA_CONFIGS", Path(__file__).resolve().parents[2] / "configs"))


class ConfigError(ValueError):
    """A configuration problem, with the key and the source (file or override) named in the message."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return content


def _preset_path(group: str, preset: str, relative_to: Path) -> Path:
    if preset.endswith((".yaml", ".yml")):
        path = Path(preset)
        return path if path.is_absolute() else relative_to / path
    return CONFIGS_ROOT / group / f"{preset}.yaml"


def _merge(base: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {_describe(err)}") from err


def _describe(err: OmegaConfBaseException) -> str:
    # OmegaConf's messages carry a "full_key: ..." line and an object-type line; keep the first sentence and
    # put the full key in front, which is what a user needs to find the typo.
    first_line = str(err).splitlines()[0]
    full_key = getattr(err, "full_key", None)
    return f"{full_key}: {first_line}" if full_key else first_line


def load_config(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    schema: type | Mapping[str, type],
) -> tuple[Any, DictConfig]:
    """Build a typed config from an experiment YAML plus `key=value` overrides.

    `schema` is a dataclass, or a mapping from task name to dataclass: then the YAML's `task` key picks one.
    Returns the dataclass instance (checks run) and the resolved OmegaConf tree (for saving).
    """
    body: dict[str, Any] = {}
    presets: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        path = Path(path)
        body = _read_yaml(path)
        defaults = body.pop("defaults", {}) or {}
        if not isinstance(defaults, dict):
            raise ConfigError(f"{path}: `defaults` must map config groups to preset names")
        for group, preset in defaults.items():
            preset_file = _preset_path(group, str(preset), path.parent)
            if not preset_file.is_file():
                available = sorted(p.stem for p in (CONFIGS_ROOT / group).glob("*.yaml"))
                raise ConfigError(
                    f"{path}: defaults.{group}={preset!r}: no file {preset_file}"
                    + (f" (presets: {', '.join(available)})" if available else "")
                )
            presets.append((str(preset_file), {group: _read_yaml(preset_file)}))

    if isinstance(schema, Mapping):
        task = body.get("task", next(iter(schema)))
        if task not in schema:
            raise ConfigError(f"{path}: task={task!r} is not one of {', '.join(schema)}")
        schema = schema[task]

    cfg = OmegaConf.structured(schema)
    for source, preset in presets:
        cfg = _merge(cfg, preset, source)
    if body:
        cfg = _merge(cfg, body, str(path))
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"command-line override {override!r}: expected key=value")
        key, _, value = override.partition("=")
        # `key=` means the empty string (OmegaConf alone would read it as null)
        dotlist = [override if value else f'{key}=""']
        cfg = _merge(cfg, OmegaConf.from_dotlist(dotlist), f"command-line override {override!r}")

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        where = f" (in {path} or as key=value)" if path else ""
        raise ConfigError(f"missing required value(s){where}: {', '.join(missing)}")
    try:
        OmegaConf.resolve(cfg)
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path or 'config'}: {_describe(err)}") from err
    except ValueError as err:  # a dataclass __post_init__ check
        raise ConfigError(f"{path or 'config'}: {err}") from err
    return typed, cfg


def config_from_dict(tree: dict[str, Any], schema: type) -> Any:
    """Rebuild a typed config from a resolved plain dict (e.g. the copy stored in a checkpoint)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), tree))
    except OmegaConfBaseException as err:
        raise ConfigError(f"stored config: {_describe(err)}") from err


def save_config(cfg: DictConfig | Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(tree, resolve=True))
    os.replace(tmp, path)


def field_docs(schema: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (litgpt style), keyed by field name."""
    docs: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        statements = tree.body[0].body
        for stmt, nxt in zip(statements, statements[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe_schema(schema: type) -> str:
    """Human-readable listing of a schema's config groups and fields, for `--help`."""
    lines: list[str] = []
    defaults = OmegaConf.structured(schema)
    top_docs = field_docs(schema)
    for f in dataclasses.fields(schema):
        value = defaults[f.name]
        if not isinstance(value, DictConfig):
            lines.append(f"  {f.name} = {value!s}    {top_docs.get(f.name, '')}")
            continue
        lines.append(f"\n[{f.name}]  {top_docs.get(f.name, '')}")
        group_schema = OmegaConf.get_type(value)
        docs = field_docs(group_schema)
        for sub in dataclasses.fields(group_schema):
            shown = "???" if OmegaConf.is_missing(value, sub.name) else value[sub.name]
            lines.append(f"  {f.name}.{sub.name} = {shown!s}")
            if sub.name in docs:
                lines.extend("      " + line for line in textwrap.wrap(docs[sub.name], 100))
    return "\n".join(lines)
