"""Reading a params.yaml section into its dataclass: key and type checks, the
range and choice checks every section runs on itself, and the error they raise."""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import ClassVar


class ParamsError(ValueError):
    """params.yaml does not match the expected sections, keys, types or ranges."""


class Section:
    """Checks shared by the sections: each error names the key, its value and
    what would be valid. Sections check themselves on construction, so no
    stage ever starts (let alone deletes or writes anything) with a bad value."""

    SECTION: ClassVar[str] = ""

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name

    def _require(self, name: str, ok: bool, valid: str) -> None:
        if not ok:
            raise ParamsError(f"params.yaml: {self._key(name)}={getattr(self, name)!r}; {valid}")

    def _at_least(self, low, *names: str) -> None:
        for name in names:
            self._require(name, getattr(self, name) >= low, f"must be >= {low}")

    def _fraction(self, *names: str, below_one: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            ok = 0 <= value < 1 if below_one else 0 <= value <= 1
            self._require(name, ok, "must lie in [0, 1)" if below_one else "must lie in [0, 1]")

    def _choice(self, name: str, choices) -> None:
        check_choice(getattr(self, name), choices, key=self._key(name))


def registry_names(module: str, attribute: str) -> list[str]:
    """The names of a library registry (a dict or tuple), imported on use so
    that reading params costs no torch import where a stage needs none."""
    return list(getattr(importlib.import_module(module), attribute))


def check_choice(value: str, choices, *, key: str) -> str:
    """Raises ParamsError unless ``value`` is one of ``choices`` (a dict or list)."""
    if value not in choices:
        raise ParamsError(f"params.yaml: {key}={value!r} is not one of {sorted(choices)}")
    return value


def build_section(cls: type, raw: dict, *, where: str):
    """The dataclass ``cls`` from the mapping ``raw``: unknown keys are refused
    listing the valid ones, values are checked against the field types (an int
    is taken for a float), sections are built recursively."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(
            f"{where}: unknown key(s) {unknown}; valid keys are {names}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, where=f"{where}: {name}")
    return cls(**values)


def _coerce(hint, value, *, where: str):
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a section (mapping), got {value!r}")
        return build_section(hint, value, where=where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        return tuple(_coerce(item, v, where=where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = hint if not isinstance(hint, types.UnionType) else typing.get_args(hint)
    if not isinstance(value, expected) or (hint is int and isinstance(value, bool)):
        raise ParamsError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
