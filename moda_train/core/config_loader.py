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

Where the configs live (`CONFIGS_ROOT`): `$MODA_CONFIGS` if set; else the copy shipped inside the installed package
(`moda_train/configs`, present in a wheel install); else the repository's `configs/` folder (a checkout or an
editable install). A config named on the command line is found as given, else (when it starts with `configs/`)
under CONFIGS_ROOT, else by bare name in its group: `mmdit_tiny_cpu` is `configs/experiments/mmdit_tiny_cpu.yaml`.
So every command of the README also works from any folder once the package is installed.
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


def _configs_root() -> Path:
    if os.environ.get("MODA_CONFIGS"):
        return Path(os.environ["MODA_CONFIGS"])
    package = Path(__file__).resolve().parent.parent
    shipped = package / "configs"  # setup.py maps the repository's configs/ here in a built wheel
    return shipped if shipped.is_dir() else package.parent / "configs"


CONFIGS_ROOT = _configs_root()


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


def config_names(group: str) -> list[str]:
    """The configs shipped in one group (`experiments`, `data_prep`, `eval`, `model`, ...), by name."""
    return sorted(p.stem for p in (CONFIGS_ROOT / group).glob("*.yaml"))


def find_config_file(path: str | Path, group: str | None = None) -> Path:
    """A config file as given, else under CONFIGS_ROOT (paths starting `configs/`), else by name in `group`.

    Raises `ConfigError` naming what was looked for and, with a group, the names that exist.
    """
    path = Path(path)
    if path.is_file():
        return path
    candidates = []
    if not path.is_absolute() and path.parts[:1] == ("configs",):
        candidates.append(CONFIGS_ROOT.joinpath(*path.parts[1:]))
    if group is not None and len(path.parts) == 1:
        candidates.append(CONFIGS_ROOT / group / (path.name if path.suffix else f"{path.name}.yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = f" (shipped {group}: {', '.join(config_names(group))})" if group and config_names(group) else ""
    raise ConfigError(f"config file not found: {path}{known}")


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
    group: str | None = None,
) -> tuple[Any, DictConfig]:
    """Build a typed config from an experiment YAML plus `key=value` overrides.

    `schema` is a dataclass, or a mapping from task name to dataclass: then the YAML's `task` key picks one.
    `group` (e.g. `experiments`) lets `path` be a bare config name, found as `find_config_file` says.
    Returns the dataclass instance (checks run) and the resolved OmegaConf tree (for saving).
    """
    body: dict[str, Any] = {}
    presets: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        path = find_config_file(path, group)
        body = _read_yaml(path)
        defaults = body.pop("defaults", {}) or {}
        if not isinstance(defaults, dict):
            raise ConfigError(f"{path}: `defaults` must map config groups to preset names")
        for preset_group, preset in defaults.items():
            preset_file = _preset_path(preset_group, str(preset), path.parent)
            if not preset_file.is_file():
                available = config_names(preset_group)
                raise ConfigError(
                    f"{path}: defaults.{preset_group}={preset!r}: no file {preset_file}"
                    + (f" (presets: {', '.join(available)})" if available else "")
                )
            presets.append((str(preset_file), {preset_group: _read_yaml(preset_file)}))

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
        # a plain field, or a free-form mapping (e.g. renderer options): one line
        if not isinstance(value, DictConfig) or not dataclasses.is_dataclass(OmegaConf.get_type(value)):
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
