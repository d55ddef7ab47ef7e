"""YAML config files -> validated config objects, with clear errors.

A config has five top-level sections: `problem` (its `name` plus that
problem's parameters), `model`, `optimizer`, `train` and `output`. Every
section is a pydantic model that forbids unknown keys and does not coerce
types, so a typo or a wrong type is reported with its dotted key path, the
value found and what is allowed, before anything is compiled.

Example:
    >>> cfg = load_config("configs/neural_ode_spiral.yaml", ["train.steps=200"])
    >>> cfg.train.steps
    200
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "Section",
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "AdamConfig",
    "AdamWConfig",
    "SGDConfig",
    "LBFGSConfig",
    "SequenceConfig",
    "TrainConfig",
    "EmptyModel",
    "OutputConfig",
    "Config",
    "load_yaml",
    "apply_overrides",
    "validate_config",
    "load_config",
    "validate_section",
]


class ConfigError(ValueError):
    """A config could not be read or validated; `str()` lists every problem found."""

    def __init__(self, messages: list[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class Section(BaseModel):
    """Base for every config section: unknown keys rejected, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


# ----------------------------------------------------------------------------
# Learning-rate schedules


class ConstantSchedule(Section):
    """Constant learning rate, after an optional linear warmup from 0."""

    name: Literal["constant"] = "constant"
    warmup_steps: NonNegativeInt = 0


class CosineSchedule(Section):
    """Cosine decay from `lr` to `final_lr_ratio * lr` over `decay_steps`.

    `decay_steps: null` decays over the whole run after the warmup (the
    resolved config records the number).
    """

    name: Literal["cosine"]
    warmup_steps: NonNegativeInt = 0
    decay_steps: PositiveInt | None = None
    final_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0


class ExponentialSchedule(Section):
    """`lr * decay_rate ** (step / transition_steps)`, floored at `final_lr_ratio * lr`."""

    name: Literal["exponential"]
    warmup_steps: NonNegativeInt = 0
    decay_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    transition_steps: PositiveInt = 1000
    staircase: bool = False
    final_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0


Schedule = Annotated[
    Union[ConstantSchedule, CosineSchedule, ExponentialSchedule], Field(discriminator="name")
]

# ----------------------------------------------------------------------------
# Optimizers


class AdamConfig(Section):
    """Adam (Kingma & Ba 2015) with an optional schedule and global-norm clipping."""

    name: Literal["adam"]
    lr: PositiveFloat = 1e-3
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-8
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class AdamWConfig(Section):
    """AdamW (decoupled weight decay, Loshchilov & Hutter 2019)."""

    name: Literal["adamw"]
    lr: PositiveFloat = 1e-3
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class SGDConfig(Section):
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    name: Literal["sgd"]
    lr: PositiveFloat = 1e-2
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class LBFGSConfig(Section):
    """optax's L-BFGS with a zoom line search (full-batch, deterministic losses).

    The line search re-evaluates the loss with the step's own PRNG key, so a
    stochastic loss is treated as fixed within one step.
    """

    name: Literal["lbfgs"]
    memory_size: PositiveInt = 10
    max_linesearch_steps: PositiveInt = 20
    clip_norm: PositiveFloat | None = None


SingleOptimizerConfig = Annotated[
    Union[AdamConfig, AdamWConfig, SGDConfig, LBFGSConfig], Field(discriminator="name")
]


class SequenceConfig(Section):
    """Optimizer phases run one after another (e.g. Adam, then L-BFGS).

    `phases[i + 1]` starts at step `boundaries[i]`. A phase's schedule spans
    its own steps (a cosine schedule in the first phase decays to its end).
    """

    name: Literal["sequence"]
    phases: Annotated[list[SingleOptimizerConfig], Field(min_length=2)]
    boundaries: list[PositiveInt]

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.boundaries) != len(self.phases) - 1:
            raise ValueError(
                f"boundaries needs {len(self.phases) - 1} step(s) for {len(self.phases)} phases, "
                f"got {self.boundaries}"
            )
        if any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must increase, got {self.boundaries}")
        return self


OptimizerConfig = Annotated[
    Union[AdamConfig, AdamWConfig, SGDConfig, LBFGSConfig, SequenceConfig],
    Field(discriminator="name"),
]

# ----------------------------------------------------------------------------
# Training and output


class TrainConfig(Section):
    """Training-loop settings.

    Attributes:
        steps: total optimizer steps.
        seed: seed of the run's PRNG key (model init and every batch).
        log_every: steps per compiled chunk (one host round-trip), and per
            line of `metrics.jsonl`.
        eval_every: steps between calls of the problem's `evaluate` (`null`:
            only at the end).
        checkpoint_every: steps between checkpoints (`null`: only at the end).
        keep_checkpoints: how many recent checkpoints to keep (`null`: all).
        devices: `1`, a device count, or `all` local devices (data parallel).
        dtype: `float64` switches JAX to double precision for this run.
        progress: show a progress bar.
    """

    steps: PositiveInt = 1000
    seed: NonNegativeInt = 0
    log_every: PositiveInt = 100
    eval_every: PositiveInt | None = None
    checkpoint_every: PositiveInt | None = 1000
    keep_checkpoints: PositiveInt | None = 3
    devices: PositiveInt | Literal["all"] = 1
    dtype: Literal["float32", "float64"] = "float32"
    progress: bool = True


class EmptyModel(Section):
    """`model` section of a problem whose model has no settings (write `model: {}`)."""


class OutputConfig(Section):
    """Where the run directory goes (`null`: `runs/<config file stem>`)."""

    dir: str | None = None


class _TopLevel(Section):
    problem: dict[str, Any]
    model: dict[str, Any] = {}
    optimizer: OptimizerConfig = AdamConfig(name="adam")
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()


@dataclass(frozen=True)
class Config:
    """A fully validated config.

    Attributes:
        problem_name: the registered problem name.
        problem: validated `problem` section (without `name`).
        model: validated `model` section.
        optimizer: one of `AdamConfig`, `AdamWConfig`, `SGDConfig`, `LBFGSConfig`.
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


# ----------------------------------------------------------------------------
# YAML with YAML-1.2 floats: plain PyYAML reads `3e-3` as a string.


class _Loader(yaml.SafeLoader):
    pass


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


# ----------------------------------------------------------------------------
# Validation and error messages


def _unwrap(annotation) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation may hold (through Optional/Union/Annotated/list)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list):
        return [c for a in typing.get_args(annotation) for c in _unwrap(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _pick(candidates: list[type[BaseModel]], node: Any) -> type[BaseModel] | None:
    """The candidate model class for `node` (by its `name` tag when there are several)."""
    if len(candidates) == 1:
        return candidates[0]
    if candidates and isinstance(node, dict):
        tag = node.get("name")
        for c in candidates:
            if "name" in c.model_fields and typing.get_args(c.model_fields["name"].annotation) == (tag,):
                return c
    return None


def _walk(cls: type[BaseModel], data: Any, loc: tuple) -> tuple[list[str], type | None]:
    """Turn a pydantic error location into the keys the user wrote.

    Drops what pydantic inserts that is not a key in the data: discriminator
    tags of tagged unions and the branch names of plain unions. List indices
    become `[i]`. Also returns the model class that owns the last key (to
    list the allowed keys).
    """
    names: list[str] = []
    owner: type | None = cls
    candidates: list[type[BaseModel]] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            names.append(f"[{part}]")
            node = node[part]
            owner = _pick(candidates, node)
            continue
        if not isinstance(node, dict) or (part not in node and owner is None):
            continue  # a union branch name or tag, not a user key
        if part not in node:
            # A key the user did not write: a missing required key, or the
            # tag of a tagged union.
            if node.get("name") == part:
                continue
            names.append(str(part))
            owner, node = None, None
            continue
        names.append(str(part))
        candidates = []
        if owner is not None and part in owner.model_fields:
            candidates = _unwrap(owner.model_fields[part].annotation)
        node = node[part]
        owner = _pick(candidates, node)
    return names, owner


def _is_int_field(field) -> bool:
    """Whether a pydantic field holds an integer (through Annotated/Optional)."""
    if field is None:
        return False
    args = typing.get_args(field.annotation) or (field.annotation,)
    flat = [typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a for a in args]
    return int in flat and float not in flat


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "a mapping"


def _format_errors(err: ValidationError, cls, data, prefix: str) -> list[str]:
    # (path -> [requirement texts], value) so that the branches of a union
    # (`devices: 3` or `devices: all`) read as one message.
    found: dict[str, tuple[list[str], Any]] = {}
    whole: dict[str, str] = {}
    for e in err.errors():
        names, _ = _walk(cls, data, e["loc"])
        _, owner = _walk(cls, data, e["loc"][:-1])
        field = owner.model_fields.get(names[-1]) if owner is not None and names else None
        path = ".".join([p for p in [prefix, *names] if p]).replace(".[", "[")
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = sorted(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(names[-1], allowed, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            whole[path] = f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
        elif kind == "missing":
            whole[path] = "required key is missing"
        elif kind == "union_tag_invalid":
            tags = re.findall(r"'([^']+)'", e["ctx"]["expected_tags"])
            got = e["ctx"]["tag"]
            close = difflib.get_close_matches(str(got), tags, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            whole[f"{path}.name"] = f"unknown choice {got!r}{hint}; allowed: {', '.join(tags)}"
        elif kind == "union_tag_not_found":
            whole[f"{path}.name"] = "required key is missing (it selects the kind)"
        else:
            if kind == "greater_than" and e["ctx"].get("gt") == 0 and _is_int_field(field):
                text = "must be a positive integer"
            else:
                text = e["msg"].replace("Input should be", "must be")
                text = text[0].lower() + text[1:]
            texts, _ = found.setdefault(path, ([], e["input"]))
            if text not in texts:
                texts.append(text)
    messages = [f"config error: {path}: {msg}" for path, msg in whole.items()]
    for path, (texts, value) in found.items():
        if path in whole:
            continue
        joined = texts[0] + "".join(" or " + t.removeprefix("must be ") for t in texts[1:])
        messages.append(f"config error: {path}: {joined}, got {_describe(value)}")
    return messages


def validate_section(cls: type[BaseModel], data: Any, prefix: str) -> BaseModel:
    """Validate `data` against section class `cls`; errors name `prefix.key`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {prefix}: must be a mapping, got {data!r}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, cls, data, prefix)) from None


def validate_config(data: Any) -> Config:
    """Validate a raw config mapping (from YAML) into a `Config`.

    Raises `ConfigError` listing every error found, each with the dotted key.
    """
    from sciml import problems

    if not isinstance(data, dict):
        raise ConfigError(
            f"config error: the config must be a mapping with keys problem, model, "
            f"optimizer, train, output; got {data!r}"
        )
    messages: list[str] = []
    top = None
    try:
        top = validate_section(_TopLevel, data, "")
    except ConfigError as e:
        messages += e.messages
    raw_problem = data.get("problem")
    problem_name = raw_problem.get("name") if isinstance(raw_problem, dict) else None
    problem = model = None
    if isinstance(raw_problem, dict):
        params = {k: v for k, v in raw_problem.items() if k != "name"}
        if problem_name is None:
            names = ", ".join(problems.list_problems())
            messages.append(f"config error: problem.name: required key is missing; registered: {names}")
        else:
            try:
                spec = problems.get_problem_spec(problem_name)
            except KeyError as e:
                messages.append(f"config error: problem.name: {e.args[0]}")
            else:
                for cls, raw, prefix, out in (
                    (spec.params, params, "problem", "problem"),
                    (spec.model, data.get("model"), "model", "model"),
                ):
                    try:
                        section = validate_section(cls, raw, prefix)
                    except ConfigError as e:
                        messages += e.messages
                    else:
                        if out == "problem":
                            problem = section
                        else:
                            model = section
    if messages:
        # de-duplicate while keeping order (top-level and section checks overlap)
        raise ConfigError(list(dict.fromkeys(messages)))
    assert top is not None and problem is not None and model is not None
    optimizer = top.optimizer
    schedule = getattr(optimizer, "schedule", None)
    if isinstance(schedule, CosineSchedule) and schedule.decay_steps is None:
        # Resolve the decay horizon now, so that the saved config pins it: a
        # resumed run with more steps keeps the schedule it started with.
        decay = max(top.train.steps - schedule.warmup_steps, 1)
        optimizer = optimizer.model_copy(
            update={"schedule": schedule.model_copy(update={"decay_steps": decay})}
        )
    return Config(problem_name, problem, model, optimizer, top.train, top.output)


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config file, apply dotted overrides, and validate it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"config error: cannot read config file {str(path)!r}: {e.strerror}") from None
    data = load_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: must hold a mapping, got {data!r}")
    return validate_config(apply_overrides(data, list(overrides)))
