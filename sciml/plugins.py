"""Registries of named components, filled by plug-ins found through entry points.

sciml's pillars and third-party packages add problems and optimizers the same
way: a package lists a module under the entry-point group `sciml.plugins` in
its `pyproject.toml`,

    [project.entry-points."sciml.plugins"]
    my_pillar = "my_package.problems"

and importing that module registers its names (`sciml.problems.register_problem`,
`sciml.optim.register_optimizer`). The modules are imported on the first
look-up in any registry, never at `import sciml`, so importing stays cheap.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["ENTRY_POINT_GROUP", "Registry", "load_plugins", "PluginError"]

ENTRY_POINT_GROUP = "sciml.plugins"
"""The entry-point group whose modules register problems and optimizers."""

T = TypeVar("T")
_loaded: set[str] = set()
_loading = False


class PluginError(ImportError):
    """A module listed under the `sciml.plugins` entry points failed to import."""


def load_plugins() -> None:
    """Import every module listed under the `sciml.plugins` entry points (once each).

    Raises `PluginError` naming the entry point and the distribution that
    declares it when one fails to import.
    """
    global _loading
    if _loading:  # a plug-in module looking something up while it registers
        return
    _loading = True
    try:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            key = f"{ep.name}={ep.value}"
            if key in _loaded:
                continue
            _loaded.add(key)
            try:
                ep.load()
            except Exception as e:
                dist = getattr(ep.dist, "name", "?")
                raise PluginError(
                    f"sciml plug-in {ep.name!r} ({ep.value}, from the package {dist!r}) "
                    f"failed to import: {type(e).__name__}: {e}"
                ) from e
    finally:
        _loading = False


class Registry(Generic[T]):
    """Name -> spec mapping for one kind of component (`"problem"`, `"optimizer"`).

    Look-ups load the plug-ins first; an unknown name raises `KeyError` with
    the closest registered names and the full list.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._specs: dict[str, T] = {}
        self.version = 0  # bumped on every registration (caches key on it)

    def add(self, name: str, spec: T) -> None:
        """Register `spec` as `name`; `ValueError` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._specs:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._specs[name] = spec
        self.version += 1

    def get(self, name) -> T:
        load_plugins()
        if isinstance(name, str) and name in self._specs:
            return self._specs[name]
        close = difflib.get_close_matches(str(name), list(self._specs), n=3) if isinstance(name, str) else []
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ";"
        raise KeyError(
            f"unknown {self.kind} {name!r}{hint} registered: {', '.join(sorted(self._specs))}"
        )

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._specs)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        return iter(sorted(self._specs.items()))

    def __contains__(self, name) -> bool:
        load_plugins()
        return name in self._specs
