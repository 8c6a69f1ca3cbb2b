"""The one strict loader from plain dicts / YAML files to typed dataclass configs.

Every key is checked against the dataclass's fields and type hints (nested dataclasses included), unknown keys are
rejected with their dotted name, YAML files may `extends: other.yaml` (resolved relative to the file, deep-merged),
and `a.b=value` overrides are parsed as YAML and then type-checked like the file itself.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")
EXTENDS_KEY = "extends"


class ConfigError(ValueError):
    """A configuration value that cannot build what it configures; the message says which and why."""


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fail(where: str, hint: Any, value: Any) -> ConfigError:
    extra = " (YAML spells infinity .inf and not-a-number .nan)" if hint is float and isinstance(value, str) else ""
    shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ConfigError(f"{where or 'value'} must be {shown}, got {value!r}{extra}")


def _coerce_union(value: Any, options: tuple, where: str, hint: Any) -> Any:
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce(value, option, where)
        except ConfigError:
            continue
    raise _fail(where, hint, value)


def _coerce_sequence(value: Any, origin: type, args: tuple, where: str, hint: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _fail(where, hint, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_scalar(value: Any, hint: type, where: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint in (int, float, bool, str) and type(value) is not hint:
        raise _fail(where, hint, value)
    if not isinstance(value, hint):
        raise _fail(where, hint, value)
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type `hint` (converted where the conversion is lossless: int -> float, list ->
    tuple, str -> Path, dict -> dataclass)."""
    if hint is Any or hint is object:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _coerce_dataclass(value, hint, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, args, where, hint)
    if origin is Literal:
        if value not in args:
            # YAML 1.1 reads unquoted no/yes/off/on as booleans: mixed_precision=no arrives as False
            hint_yaml = (
                " (YAML reads an unquoted no/yes/off/on as a boolean: quote it)" if isinstance(value, bool) else ""
            )
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}{hint_yaml}")
        return value
    if origin in (tuple, list):
        return _coerce_sequence(value, origin, args, where, hint)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _fail(where, hint, value)
        key_hint, value_hint = args or (Any, Any)
        return {_coerce(k, key_hint, where): _coerce(v, value_hint, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(hint, type):
        return _coerce_scalar(value, hint, where)
    return value


def _coerce_dataclass(value: Any, cls: type, where: str) -> Any:
    """A nested config: an instance as is, a dict built strictly, a string through `cls.preset(name)` if it has one."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and callable(getattr(cls, "preset", None)):
        return cls.preset(value)
    if isinstance(value, dict):
        return build_config(cls, value, where)
    raise _fail(where, cls, value)


def build_config(cls: type[T], values: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a plain dict, strictly: unknown keys and wrongly typed values are ConfigErrors."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        at = f" (in {where})" if where else ""
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}{at}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    checked = {key: _coerce(value, hints.get(key, Any), _name(where, key)) for key, value in values.items()}
    return cls(**checked)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `override` on top of `base`, merging nested dicts key by key (other values are replaced)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping with its `extends: other.yaml` chain resolved (relative to this file), deep-merged."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config files extend each other in a loop: {' -> '.join(str(p) for p in (*_seen, path))}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping, got {type(values).__name__}")
    parent = values.pop(EXTENDS_KEY, None)
    if parent is None:
        return values
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: `{EXTENDS_KEY}` must name one file, got {parent!r}")
    return deep_merge(load_yaml(path.parent / parent, (*_seen, path)), values)


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A new dict with `a.b=value` overrides applied (values parsed as YAML: `lr=1e-3`, `refs=[0, 3]`, `x=null`)."""
    out = deep_merge({}, values)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.get(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} holds {child!r}, not a mapping")
            node[part] = dict(child)
            node = node[part]
        node[leaf] = yaml.safe_load(raw)
    return out


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read a YAML file (with `extends:`), apply `key=value` overrides, and build `cls` strictly."""
    return build_config(cls, apply_overrides(load_yaml(path), overrides))
