"""Reading a configuration: YAML experiment files, ``--set`` overrides and type checks.

An experiment YAML holds only what differs from the defaults of ``simtune.schema`` and may
name a ``base`` file (resolved relative to itself). ``--set a.b=value`` overrides come last.
Unknown keys and wrong types fail with the dotted path and the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from simtune.errors import ConfigError
from simtune.keys import flat_dict, suggest
from simtune.schema import Config


# ----------------------------------------------------------------------------- building


def build(data: dict[str, Any], *, source: str = "<config>") -> Config:
    """Build a ``Config`` from a nested dict of changes to the defaults.

    Args:
        data: nested mapping, e.g. ``{"stage1": {"lambda_ci": 0.01}}``.
        source: file name used in error messages.
    Raises:
        ConfigError: unknown key (with the nearest valid one) or wrong type.
    """
    return _build_dataclass(Config, data, prefix="", source=source)


def _build_dataclass(cls: type, data: Any, *, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    defaults = cls()
    values = {}
    for key, raw in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{path}'{suggest(str(key), list(fields), prefix, list_all=True)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(raw, dict):
                raise ConfigError(f"{source}: '{path}' must be a mapping, got {raw!r}")
            merged = deep_merge(dataclasses.asdict(getattr(defaults, key)), raw)
            values[key] = _build_dataclass(typing.cast(type, hint), merged, prefix=path + ".", source=source)
        else:
            values[key] = _coerce(hint, raw, path=path, source=source)
    return dataclasses.replace(defaults, **values)


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def as_number(raw: Any) -> Any:
    """``"1e-3"`` -> 0.001 (YAML 1.1 reads 1e-3, without dot or sign, as a string); else ``raw``."""
    return float(raw) if isinstance(raw, str) and NUMBER.fullmatch(raw.strip()) else raw


def _coerce(hint: Any, raw: Any, *, path: str, source: str) -> Any:
    """Check ``raw`` against a field's type hint; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _coerce_union(hint, raw, path=path, source=source)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise ConfigError(f"{source}: '{path}' must be one of {list(choices)}, got {raw!r}")
        return raw
    if origin is tuple:
        return _coerce_tuple(hint, raw, path=path, source=source)
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{source}: '{path}' must be true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{source}: '{path}' must be an integer, got {raw!r}")
        return raw
    if hint is float:
        raw = as_number(raw)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{source}: '{path}' must be a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{source}: '{path}' must be a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # a schema bug, not user input


def _coerce_union(hint: Any, raw: Any, *, path: str, source: str) -> Any:
    """The first member of ``int | Literal["auto"]`` (and the like) that accepts ``raw``."""
    for member in typing.get_args(hint):
        try:
            return _coerce(member, raw, path=path, source=source)
        except ConfigError:
            continue
    names = " or ".join(_type_name(m) for m in typing.get_args(hint))
    raise ConfigError(f"{source}: '{path}' must be {names}, got {raw!r}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(hint))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _coerce_tuple(hint: Any, raw: Any, *, path: str, source: str) -> tuple[Any, ...]:
    args = typing.get_args(hint)
    if not isinstance(raw, (list, tuple)) or len(raw) != len(args):
        names = ", ".join(a.__name__ for a in args)
        raise ConfigError(f"{source}: '{path}' must be a list [{names}], got {raw!r}")
    return tuple(_coerce(a, v, path=f"{path}[{i}]", source=source) for i, (a, v) in enumerate(zip(args, raw)))


# ----------------------------------------------------------------------------- files and overrides


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; one-line ``ConfigError`` on any problem."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def experiment_changes(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The nested changes an experiment file makes, with its ``base`` chain merged in.

    Relative dataset roots and weight paths are made absolute against the file that
    names them, because Ray trials run in their own working directory.
    """
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    data = read_yaml(path)
    base_name = data.pop("base", None)
    _absolutise_paths(data, path.parent)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base_name!r}")
    base = experiment_changes(path.parent / base_name, (*_seen, path))
    return deep_merge(base, data)


# Dotted keys holding file paths: made absolute against the file that names them.
PATH_KEYS: tuple[str, ...] = ("data.source.root", "data.target.root", "data.source.list_file",
                              "data.target.list_file", "model.init_weights")


def _absolutise_paths(data: dict[str, Any], folder: Path) -> None:
    for keys in (key.split(".") for key in PATH_KEYS):
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str) and node[keys[-1]]:
            node[keys[-1]] = str((folder / node[keys[-1]]).resolve())


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, recursively for nested mappings."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``'stage1.lambda_ci=0.01'`` -> ``{"stage1": {"lambda_ci": 0.01}}`` (value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. stage1.lambda_ci=0.01")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return nest(key, parsed)


def nest(path: str, value: Any) -> dict[str, Any]:
    """``("stage1.lambda_ci", 0.01)`` -> ``{"stage1": {"lambda_ci": 0.01}}``."""
    nested: dict[str, Any] = {}
    node = nested
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load(path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """The resolved config of an experiment file plus ``--set`` overrides."""
    changes = experiment_changes(path) if path is not None else {}
    for text in overrides:
        changes = deep_merge(changes, parse_override(text))
    return build(changes, source=str(path) if path is not None else "--set")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), for YAML/JSON."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: Config) -> dict[str, Any]:
    """``{"stage1.lambda_ci": 0.01, ...}`` for every leaf field."""
    return flat_dict(to_dict(cfg))


def config_hash(settings: Any) -> str:
    """16 hex digits of SHA-256 over ``settings`` as canonical JSON (sorted keys, ``str`` for the rest).

    The one hash of settings: stage-cache keys (``train.stage_cache``) and a sweep's space
    (``sweep.runner.space_hash``). Equal settings give equal hashes across processes and machines.
    """
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def leaf_types() -> dict[str, Any]:
    """Dotted path -> type hint of every leaf field of the schema."""
    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        for name, hint in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{name}.")  # type: ignore[arg-type]
            else:
                out[f"{prefix}{name}"] = hint

    walk(Config, "")
    return out


def check_value(path: str, value: Any, *, source: str) -> Any:
    """Validate one value for a dotted path; ``ConfigError`` names the path."""
    types_ = leaf_types()
    if path not in types_:
        raise ConfigError(f"{source}: unknown config key '{path}'{suggest(path, list(types_))}")
    return _coerce(types_[path], value, path=path, source=source)


def help_table() -> list[tuple[str, Any, str]]:
    """(dotted key, default, meaning) for every leaf field, for ``simtune config --help``."""
    rows: list[tuple[str, Any, str]] = []
    defaults = flatten(Config())

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]
            else:
                key = f"{prefix}{f.name}"
                rows.append((key, defaults[key], f.metadata.get("help", "")))

    walk(Config, "")
    return rows

