"""The checks every params.yaml section runs on itself, and the error they raise."""

from __future__ import annotations

import importlib
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
