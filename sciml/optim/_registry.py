"""The registry of named optimizers: config section -> optax transformation."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optax
from pydantic import BaseModel

from sciml.plugins import Registry
from sciml.schema import ConfigError, Section, validate_section

__all__ = [
    "OptimizerSpec",
    "register_optimizer",
    "get_optimizer_spec",
    "list_optimizers",
    "validate_optimizer",
    "make_optimizer",
]


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer.

    Attributes:
        name: the value of `optimizer.name` in configs.
        config: its `Section` class; must have a field `name: Literal[name]`.
        build: `build(section, total_steps) -> optax.GradientTransformation`.
        nested: names of fields that hold lists of optimizer sections (each
            element validated against the registry, e.g. `sequence`'s `phases`).
        description: one line for listings.
    """

    name: str
    config: type[Section]
    build: Callable[[Any, int], optax.GradientTransformation]
    nested: tuple[str, ...] = ()
    description: str = ""


_OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def register_optimizer(
    name: str,
    config: type[Section],
    build: Callable[[Any, int], optax.GradientTransformation],
    *,
    nested: tuple[str, ...] = (),
    description: str = "",
) -> None:
    """Make `optimizer: {name: <name>, ...}` in configs build `build(section, total_steps)`.

    Args:
        name: the optimizer's config name.
        config: its section class (a `sciml.schema.Section` with a field
            `name: Literal["<name>"]`); its other fields are the settings.
        build: returns an optax transformation from a validated section and
            the run's step count (for schedules). An optimizer that needs
            per-sample information takes it from the keyword arguments the
            trainer passes to `update` (see `docs/core.md`).
        nested: fields holding lists of further optimizer sections.
        description: one line for listings.

    Raises `ValueError` if the name is taken or `config` does not declare it.
    """
    field = config.model_fields.get("name")
    if field is None or getattr(field.annotation, "__args__", None) != (name,):
        raise ValueError(
            f"register_optimizer({name!r}): {config.__name__} needs a field "
            f"`name: Literal[{name!r}]`"
        )
    _OPTIMIZERS.add(name, OptimizerSpec(name, config, build, tuple(nested), description))


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """The `OptimizerSpec` registered as `name` (`KeyError` lists the registered names)."""
    return _OPTIMIZERS.get(name)


def list_optimizers() -> dict[str, str]:
    """`{name: description}` of every registered optimizer."""
    return {name: spec.description for name, spec in _OPTIMIZERS.items()}


def validate_optimizer(data: Any, prefix: str = "optimizer") -> Section:
    """Validate a raw optimizer mapping against the section of the optimizer it names.

    Sections (already validated) are checked for being registered and
    returned as they are, after their nested phases are validated.

    Raises:
        ConfigError: naming `prefix.key` for every problem found.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {prefix}: must be a mapping, got {data!r}")
    names = _OPTIMIZERS.names()
    if data.get("name") is None:
        raise ConfigError(
            f"config error: {prefix}.name: required key is missing (it selects the kind); "
            f"allowed: {', '.join(names)}"
        )
    name = data["name"]
    if not isinstance(name, str) or name not in names:
        close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"config error: {prefix}.name: unknown choice {name!r}{hint}; allowed: {', '.join(names)}"
        )
    spec = _OPTIMIZERS.get(name)
    messages: list[str] = []
    children: dict[str, list] = {}
    for field in spec.nested:
        items = data.get(field)
        if not isinstance(items, list):
            continue  # the section's own validation reports it
        validated = []
        for i, item in enumerate(items):
            try:
                validated.append(validate_optimizer(item, f"{prefix}.{field}[{i}]"))
            except ConfigError as e:
                messages += e.messages
        children[field] = validated
    try:
        section = validate_section(spec.config, data, prefix)
    except ConfigError as e:
        messages += e.messages
    if messages:
        raise ConfigError(list(dict.fromkeys(messages)))
    return section.model_copy(update=children) if children else section


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """Build the optax optimizer described by an optimizer section (or raw mapping).

    Args:
        cfg: a registered optimizer's section, e.g. `AdamConfig(name="adam")`,
            or the raw mapping from a config file.
        total_steps: the run's step count (for schedules that decay over it;
            in a sequence, each phase's own length).
    """
    if isinstance(cfg, dict) or not isinstance(cfg, Section):
        cfg = validate_optimizer(cfg)
    spec = get_optimizer_spec(cfg.name)
    built = spec.build(cfg, total_steps)
    return built if isinstance(built, optax.GradientTransformationExtraArgs) else optax.with_extra_args_support(built)
