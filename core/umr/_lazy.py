"""One mechanism for the packages that export names lazily (``umr``, ``umr.late``, ``umr.train``).

A package lists ``name -> module`` and gets a module-level ``__getattr__`` / ``__dir__``: the module is
imported on first use of one of its names (torch and transformers load only when a model is used).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], names: Sequence[str], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps an exported name to its module; a value,
    once imported, is kept in ``namespace`` (the package's ``globals()``) so the next access is direct."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
