"""Config sections: the validated settings objects every part of sciml declares.

A `Section` is a frozen pydantic model that forbids unknown keys and does not
coerce types. Each part of sciml declares the section it is configured by
beside its own code (the trainer's `TrainConfig`, each optimizer's config in
`sciml.optim`, each problem's settings in its pillar), and `validate_section`
turns raw YAML data into one, with errors that name the dotted key, the value
found and what is allowed.

This module imports nothing else from sciml, so every layer can use it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sciml._config_errors import format_validation_error

__all__ = [
    "ConfigError",
    "Section",
    "EmptyModel",
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "MAX_INT",
    "validate_section",
]


class ConfigError(ValueError):
    """A config could not be read or validated; `str()` lists every problem found.

    Attributes:
        messages: one line per problem, each `config error: <dotted.key>: ...`.
    """

    def __init__(self, messages: list[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class Section(BaseModel):
    """Base of every config section: unknown keys rejected, no type coercion, frozen.

    Frozen sections are hashable, so a problem can keep its section as a
    static (compile-time) field.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmptyModel(Section):
    """`model` section of a problem whose model has no settings (write `model: {}`)."""


MAX_INT = 2**31 - 1
"""Largest step count or interval: the trainer counts steps in int32."""

PositiveInt = Annotated[int, Field(gt=0, le=MAX_INT)]
"""An `int` in 1 .. 2**31 - 1."""
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_INT)]
"""An `int` in 0 .. 2**31 - 1."""
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A finite `float` > 0."""


def validate_section(cls: type[BaseModel], data: Any, prefix: str) -> BaseModel:
    """Validate raw `data` against section class `cls`.

    Args:
        cls: a `Section` subclass.
        data: a mapping (from YAML or keyword arguments); `None` means `{}`.
        prefix: the dotted key of the section, used in messages (`"problem"`).

    Raises:
        ConfigError: listing every problem, each naming `prefix.key`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {prefix}: must be a mapping, got {data!r}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, cls, data, prefix)) from None
