"""Reading configs from the command line: YAML files and dotted `key.path=value` overrides.

Example:
    >>> cfg = load_config("configs/neural_ode_spiral.yaml", ["train.steps=200"])
    >>> cfg.train.steps
    200
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sciml.config import Config, validate_config
from sciml.schema import ConfigError

__all__ = ["load_yaml", "apply_overrides", "load_config"]


# YAML with YAML-1.2 floats: plain PyYAML reads `3e-3` as a string.
class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats, and a duplicate key in a mapping is an error (not last-wins)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the last one would silently win)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
        |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text (with `1e-3`-style floats); syntax errors become `ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = e.problem or e.context or "cannot parse"
        raise ConfigError(f"config error: {source}: invalid YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config error: {source}: invalid YAML: {e}") from None


# ----------------------------------------------------------------------------
# Overrides


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with dotted `key.path=value` overrides applied.

    Values are parsed as YAML (`train.steps=200`, `optimizer.lr=3e-3`,
    `output.dir=null`); intermediate sections are created as needed.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(
                f"config error: override {item!r}: expected KEY.PATH=VALUE, e.g. train.steps=200"
            )
        value = load_yaml(raw, f"override {item!r}")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                path = ".".join(parts[: i + 1])
                raise ConfigError(
                    f"config error: override {item!r}: {path} is {child!r}, not a section"
                )
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config file, apply dotted overrides, and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config error: cannot read config file {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config error: {path}: not a UTF-8 text file (byte {e.start}: {e.reason}); "
            "a config is YAML text"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"config error: {path}: holds NUL bytes; a config is YAML text")
    data = load_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: must hold a mapping, got {data!r}")
    return validate_config(apply_overrides(data, list(overrides)))
