"""The Problem contract and the registry of named problems.

A Problem is an `eqx.Module` holding its data and settings. The trainer only
ever calls the methods of `AbstractProblem`; pillars (and third-party
packages) register named problems with `register_problem` from a module
listed under the `sciml.plugins` entry points (see `sciml.plugins`).

The full contract, with the optional hooks and what the trainer does with
each, is written up in `docs/core.md`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import equinox as eqx

from sciml.plugins import Registry
from sciml.schema import ConfigError, EmptyModel, Section, validate_section

__all__ = [
    "AbstractProblem",
    "ProblemSpec",
    "register_problem",
    "get_problem_spec",
    "list_problems",
    "build_problem",
    "resolve_settings",
    "has_hook",
]


class AbstractProblem(eqx.Module):
    """Interface every trainable problem implements.

    Required:

    - `init(key) -> (model, state)`: the trainable pytree and the
      non-trainable state threaded through training (may be `None`).
      Floating-point array leaves of `model` are trained; integer and boolean
      array leaves (permutations, masks, neighbour tables) are carried along
      unchanged and saved in checkpoints.
    - `loss(model, state, key) -> (loss, (state, metrics))`: draws its own
      batch from `key`; pure and jit-able; `metrics` is a dict of scalars.
    - `evaluate(model, state, key) -> dict[str, float | str]`: the numbers a
      user judges the result by; may run outside jit. Its keys are listed in
      the class variable `metric_names`.

    Optional hooks (the trainer uses each only when a subclass defines it):

    - `advance(model, state, key) -> state`: advance state that lives outside
      differentiation (Markov-chain walkers, resampled collocation points).
      Called once per step inside the compiled loop, before `loss`, with a
      key of its own; never differentiated, never re-run by a line search.
    - `per_sample(model, state, key) -> dict[str, Array]`: the per-sample
      function behind the loss, for curvature-aware optimizers. Keys:
      `"residuals"` (loss == 0.5 * sum(r**2)), `"log_amplitudes"` (log psi on
      the current samples), `"outputs"` (per-sample model outputs; reserved
      for the K-FAC pillar).
    - `diagnose(model, state, key) -> str | None`: explain a non-finite loss.
    - `figures(model, state, outdir) -> list[str]`: save PNGs.

    Problems configured from YAML declare their settings once, as sections:
    the class variables `Settings` (the `problem` section) and
    `ModelSettings` (the `model` section), stored on the instance as the
    static fields `settings` and `model_settings` (see `resolve_settings`).

    Batch arrays that should be split over devices go through
    `sciml.parallel.shard_batch` inside `loss` (and `per_sample`).
    """

    metric_names: ClassVar[tuple[str, ...]] = ()
    default_dtype: ClassVar[str] = "float32"
    """Precision of a config that does not set `train.dtype` (PINNs: `"float64"`)."""
    surrogate_gradient: ClassVar[bool] = False
    """True when `loss`'s gradient is a Monte Carlo estimator rather than the derivative of
    its value (VMC's covariance estimator): the contract battery then skips its
    finite-difference check, and the problem's own tests check the estimator instead."""

    @abc.abstractmethod
    def init(self, key) -> tuple[Any, Any]:
        """Return `(model, state)` for PRNG key `key`."""

    @abc.abstractmethod
    def loss(self, model, state, key) -> tuple[Any, tuple[Any, dict[str, Any]]]:
        """Return `(scalar_loss, (new_state, metrics))`."""

    @abc.abstractmethod
    def evaluate(self, model, state, key) -> dict[str, Any]:
        """Return the evaluation metrics named in `metric_names`."""

    def advance(self, model, state, key):
        """Advance the non-differentiated part of `state` by one step; return the new state.

        Runs inside the compiled training step before `loss`, outside
        differentiation (the model's parameters enter as constants). Its
        result is checked for NaN/Inf like the loss and saved in checkpoints.
        The default leaves `state` unchanged (and the trainer skips the call).
        """
        return state

    def per_sample(self, model, state, key) -> dict[str, Any]:
        """The per-sample quantities behind `loss` at this step's batch (see the class doc).

        The trainer hands optimizers `per_sample_fn(params)`, this method as a
        function of the trainable leaves, so they can form Jacobians, J^T v,
        J v or Gram matrices. Not defined by default.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define per_sample")

    def figures(self, model, state, outdir) -> list[str]:
        """Save problem-specific figures into `outdir`; return their paths."""
        return []

    def diagnose(self, model, state, key) -> str | None:
        """Explain why `loss(model, state, key)` is not finite, or return `None`.

        Called outside jit by the trainer after a divergence, with the
        parameters, state and key of the step whose loss or gradient was
        NaN/Inf, so it can redraw that step's batch. Problems that solve
        differential equations report the failed solve here: which sample,
        the time it reached and what to change.
        """
        return None


def has_hook(problem: AbstractProblem, name: str) -> bool:
    """Whether `problem`'s class overrides the optional hook `name` of `AbstractProblem`."""
    return getattr(type(problem), name) is not getattr(AbstractProblem, name)


def resolve_settings(
    cls: type,
    settings: Section | dict | None = None,
    model_settings: Section | dict | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[Section, Section]:
    """The validated `(settings, model_settings)` of problem class `cls`.

    A problem's constructor calls this so that it can be built from config
    sections (what the registry does) or from keyword arguments (what
    research code does): `NeuralODESpiral(n_points=200, width=16)`. Each
    keyword goes to the section that declares it (`cls.Settings` or
    `cls.ModelSettings`) and is validated there; an unknown keyword raises
    `ConfigError` listing the allowed ones.

    Args:
        cls: the problem class, with class variables `Settings` and
            (optionally) `ModelSettings`.
        settings, model_settings: sections (or raw dicts) to start from;
            `None` means all defaults.
        overrides: keyword arguments, applied over the sections.
    """
    settings_cls = cls.Settings
    model_cls = getattr(cls, "ModelSettings", EmptyModel)
    raw = [_as_dict(settings), _as_dict(model_settings)]
    for key, value in (overrides or {}).items():
        if key in settings_cls.model_fields:
            raw[0][key] = value
        elif key in model_cls.model_fields:
            raw[1][key] = value
        else:
            allowed = sorted({*settings_cls.model_fields, *model_cls.model_fields})
            raise ConfigError(
                f"{cls.__name__}: unknown setting {key!r}; allowed: {', '.join(allowed)}"
            )
    return (
        validate_section(settings_cls, raw[0], "problem"),
        validate_section(model_cls, raw[1], "model"),
    )


def _as_dict(section) -> dict[str, Any]:
    # shallow: nested sections stay objects (a Section iterates as (name, value))
    return {} if section is None else dict(section)


@dataclass(frozen=True)
class ProblemSpec:
    """A registered problem.

    Attributes:
        name: the name used in configs (`problem.name`).
        description: one line shown by `python -m sciml.train --list`.
        params: the `Section` class of a config's `problem` section (without `name`).
        model: the `Section` class of the `model` section.
        build: `build(params, model) -> AbstractProblem` from validated sections.
        dtype: the precision a config gets when its `train.dtype` is not set
            (`"float32"`, or `"float64"` for problems that need it, such as
            PINNs; the class variable `default_dtype` of a problem class).
    """

    name: str
    description: str
    params: type
    model: type
    build: Callable[[Any, Any], AbstractProblem]
    dtype: str = "float32"


_PROBLEMS: Registry[ProblemSpec] = Registry("problem")


def register_problem(
    name: str,
    problem: type | None = None,
    *,
    description: str,
    params: type | None = None,
    model: type | None = None,
    build: Callable[[Any, Any], AbstractProblem] | None = None,
    dtype: str | None = None,
) -> None:
    """Add a named problem to the registry.

    Either pass the problem class, whose `Settings` / `ModelSettings`
    class variables are its config sections and whose constructor takes
    `(settings, model_settings)`:

        register_problem("neural_ode_spiral", NeuralODESpiral, description="...")

    or, for a problem assembled by a function, the sections and the builder:
    `register_problem(name, description=..., params=P, model=M, build=f)`.

    `dtype` (`"float32"` or `"float64"`) is the precision of a config that
    does not set `train.dtype`; by default the class variable `default_dtype`
    of the problem class, else `"float32"`. It is applied per run by the
    config layer, never at import.

    Raises `ValueError` if `name` is already registered or the arguments mix
    the two forms.
    """
    if problem is not None:
        if params is not None or model is not None or build is not None:
            raise ValueError(
                f"register_problem({name!r}): give the problem class or params/model/build, not both"
            )
        if not isinstance(getattr(problem, "Settings", None), type):
            raise ValueError(
                f"register_problem({name!r}): {problem.__name__} has no `Settings` section class"
            )
        params = problem.Settings
        model = getattr(problem, "ModelSettings", EmptyModel)
        build = problem
        dtype = dtype or getattr(problem, "default_dtype", None)
    elif params is None or build is None:
        raise ValueError(f"register_problem({name!r}): needs a problem class, or params and build")
    dtype = dtype or "float32"
    if dtype not in ("float32", "float64"):
        raise ValueError(f"register_problem({name!r}): dtype must be float32 or float64, got {dtype!r}")
    _PROBLEMS.add(
        name, ProblemSpec(name, description, params, model or EmptyModel, build, dtype)
    )


def list_problems() -> dict[str, str]:
    """Return `{name: one-line description}` for every registered problem."""
    return {name: spec.description for name, spec in _PROBLEMS.items()}


def get_problem_spec(name: str) -> ProblemSpec:
    """Return the `ProblemSpec` registered as `name`.

    Raises `KeyError` with the closest registered names for an unknown name.
    """
    return _PROBLEMS.get(name)


def build_problem(
    name: str, problem: dict[str, Any] | None = None, model: dict[str, Any] | None = None
) -> AbstractProblem:
    """Build registered problem `name` from raw `problem` and `model` parameter dicts.

    The dicts are validated exactly as config sections are (unknown keys and
    wrong types raise `sciml.schema.ConfigError`); missing keys take defaults.

    Example:
        >>> p = build_problem("neural_ode_spiral", {"n_points": 200}, {"width": 16})
    """
    spec = get_problem_spec(name)
    params = validate_section(spec.params, problem or {}, "problem")
    model_params = validate_section(spec.model, model or {}, "model")
    return spec.build(params, model_params)
