"""The whole config: validation of the five sections against the registries.

A config has five top-level sections: `problem` (its `name` plus that
problem's settings), `model`, `optimizer`, `train` and `output`. Each
section's schema lives beside what it configures (a problem's `Settings`, an
optimizer's section in `sciml.optim`, `TrainConfig` in `sciml.trainer`);
this module only assembles them, looking the problem and optimizer up by
name, and reports every error with its dotted key before anything compiles.
Reading YAML files and command-line overrides is `sciml.cli_config`'s job.

Example:
    >>> cfg = validate_config({"problem": {"name": "neural_ode_spiral"}, "train": {"steps": 200}})
    >>> cfg.train.steps
    200
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sciml.optim import validate_optimizer
from sciml.optim._configs import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    GaussNewtonConfig,
    LBFGSConfig,
    SequenceConfig,
    SGDConfig,
)
from sciml.problems import get_problem_spec, list_problems
from sciml.schema import ConfigError, EmptyModel, Section, validate_section
from sciml.trainer._config import TrainConfig

__all__ = [
    "Config",
    "OutputConfig",
    "validate_config",
    # re-exported from where they are declared
    "ConfigError",
    "Section",
    "EmptyModel",
    "TrainConfig",
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "AdamConfig",
    "AdamWConfig",
    "SGDConfig",
    "LBFGSConfig",
    "GaussNewtonConfig",
    "SequenceConfig",
    "validate_section",
]

SECTIONS = ("problem", "model", "optimizer", "train", "output")


class OutputConfig(Section):
    """Where the run directory goes (`null`: `runs/<config file stem>`)."""

    dir: str | None = None


@dataclass(frozen=True)
class Config:
    """A fully validated config.

    Attributes:
        problem_name: the registered problem name.
        problem: validated `problem` section (without `name`).
        model: validated `model` section.
        optimizer: the validated section of the optimizer named by `optimizer.name`.
        train: `TrainConfig`.
        output: `OutputConfig`.
    """

    problem_name: str
    problem: BaseModel
    model: BaseModel
    optimizer: BaseModel
    train: TrainConfig
    output: OutputConfig

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (every default filled in) as plain YAML-able data."""
        return {
            "problem": {"name": self.problem_name, **self.problem.model_dump()},
            "model": self.model.model_dump(),
            "optimizer": self.optimizer.model_dump(),
            "train": self.train.model_dump(),
            "output": self.output.model_dump(),
        }


def _collect(messages: list[str], fn, *args):
    try:
        return fn(*args)
    except ConfigError as e:
        messages += e.messages
        return None


def _problem_sections(data: dict, messages: list[str]):
    raw = data.get("problem")
    if raw is None:
        messages.append("config error: problem: required key is missing")
        return None, None, None
    if not isinstance(raw, dict):
        messages.append(f"config error: problem: must be a mapping, got {raw!r}")
        return None, None, None
    name = raw.get("name")
    if name is None:
        names = ", ".join(list_problems())
        messages.append(f"config error: problem.name: required key is missing; registered: {names}")
        return None, None, None
    try:
        spec = get_problem_spec(name)
    except KeyError as e:
        messages.append(f"config error: problem.name: {e.args[0]}")
        return None, None, None
    params = {k: v for k, v in raw.items() if k != "name"}
    problem = _collect(messages, validate_section, spec.params, params, "problem")
    model = _collect(messages, validate_section, spec.model, data.get("model"), "model")
    return name, problem, model


def _train_with_dtype(data: dict, name: str | None):
    """The raw `train` section, with `dtype` from the problem's default when not given.

    A problem that needs double precision (the PINNs) registers
    `dtype="float64"`; the resolved config then records it, so the run
    switches JAX to float64 for itself (never at import).
    """
    raw = data.get("train")
    if name is None or (raw is not None and not isinstance(raw, dict)):
        return raw
    raw = dict(raw or {})
    if "dtype" not in raw:
        raw["dtype"] = get_problem_spec(name).dtype
    return raw


def _longer_than_the_run(optimizer: Section, train: TrainConfig) -> list[str]:
    """Intervals that cannot complete within `train.steps` (checks across sections)."""
    out = []
    steps = train.steps
    # (a cosine decay longer than the run is allowed: a resumed run may stop
    # earlier than planned and keeps the horizon it started with)
    schedule = getattr(optimizer, "schedule", None)
    warmup = getattr(schedule, "warmup_steps", 0)
    if warmup > steps:
        out.append(
            f"config error: optimizer.schedule.warmup_steps: {warmup} is longer than the run "
            f"(train.steps = {steps}): the learning rate would never reach optimizer.lr; "
            f"use at most {steps}"
        )
    if train.eval_every is not None and train.eval_every > steps:
        out.append(
            f"config error: train.eval_every: {train.eval_every} is longer than the run "
            f"(train.steps = {steps}), so it would never evaluate; use at most {steps}, or null "
            "to evaluate only at the end"
        )
    return out


def _resolve_schedules(optimizer: Section, steps: int) -> Section:
    """Pin `decay_steps: null` of the optimizer's cosine schedule to the run's length.

    The saved config then records the horizon, so a resumed run with more
    steps keeps the schedule it started with. (A `sequence`'s phases decay
    over their own lengths when built.)
    """
    update = {}
    schedule = getattr(optimizer, "schedule", None)
    if isinstance(schedule, CosineSchedule) and schedule.decay_steps is None:
        decay = max(steps - schedule.warmup_steps, 1)
        update["schedule"] = schedule.model_copy(update={"decay_steps": decay})
    return optimizer.model_copy(update=update) if update else optimizer


def validate_config(data: Any) -> Config:
    """Validate a raw config mapping (from YAML) into a `Config`.

    Raises `ConfigError` listing every error found, each with the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"config error: the config must be a mapping with keys {', '.join(SECTIONS)}; "
            f"got {data!r}"
        )
    messages: list[str] = []
    for key in data:
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            messages.append(
                f"config error: {key}: unknown key; {hint}allowed keys: {', '.join(sorted(SECTIONS))}"
            )
    name, problem, model = _problem_sections(data, messages)
    optimizer = _collect(
        messages, validate_optimizer, data.get("optimizer") or {"name": "adam"}, "optimizer"
    )
    train = _collect(messages, validate_section, TrainConfig, _train_with_dtype(data, name), "train")
    output = _collect(messages, validate_section, OutputConfig, data.get("output"), "output")
    if train is not None and optimizer is not None:
        messages += _longer_than_the_run(optimizer, train)
    if messages:
        raise ConfigError(list(dict.fromkeys(messages)))
    optimizer = _resolve_schedules(optimizer, train.steps)
    return Config(name, problem, model, optimizer, train, output)


def __getattr__(name: str):
    # The YAML and override readers moved to `sciml.cli_config` (they import
    # this module); kept reachable here for existing code.
    if name in ("load_config", "load_yaml", "apply_overrides"):
        return getattr(importlib.import_module("sciml.cli_config"), name)
    raise AttributeError(f"module 'sciml.config' has no attribute {name!r}")
