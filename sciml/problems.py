"""The Problem contract and the one registry of named problems.

A Problem is an `eqx.Module` holding its data and settings. The trainer only
ever calls the methods of `AbstractProblem`; each pillar registers its named
problems here with `register_problem`, from its own `problems.py`.
"""

from __future__ import annotations

import abc
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import equinox as eqx

__all__ = [
    "AbstractProblem",
    "ProblemSpec",
    "register_problem",
    "get_problem_spec",
    "list_problems",
    "build_problem",
]

# Pillar modules whose import registers their problems. Imported on first use
# of the registry, never at `import sciml`, so importing stays cheap.
_BUILTIN_MODULES = ("sciml.ude.problems",)
_REGISTRY: dict[str, ProblemSpec] = {}
_loaded = False


class AbstractProblem(eqx.Module):
    """Interface every trainable problem implements.

    Subclasses hold their data as arrays and their settings as static fields,
    and define:

    - `init(key) -> (model, state)`: the trainable pytree and the
      non-trainable state threaded through `loss` (may be `None`).
    - `loss(model, state, key) -> (loss, (state, metrics))`: draws its own
      batch from `key`; pure and jit-able; `metrics` is a dict of scalars.
    - `evaluate(model, state, key) -> dict[str, float | str]`: the numbers a
      user judges the result by; may run outside jit. Its keys are listed in
      the class variable `metric_names`.
    - optionally `figures(model, state, outdir)`: save PNGs into `outdir`.
    - optionally `diagnose(model, state, key) -> str | None`: explain a
      non-finite loss (e.g. which solve failed, at what time); the trainer
      calls it after a divergence with the failing step's parameters and key.

    Batch arrays that should be split over devices go through
    `sciml.parallel.shard_batch` inside `loss`.
    """

    metric_names: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def init(self, key) -> tuple[Any, Any]:
        """Return `(model, state)` for PRNG key `key`."""

    @abc.abstractmethod
    def loss(self, model, state, key) -> tuple[Any, tuple[Any, dict[str, Any]]]:
        """Return `(scalar_loss, (new_state, metrics))`."""

    @abc.abstractmethod
    def evaluate(self, model, state, key) -> dict[str, Any]:
        """Return the evaluation metrics named in `metric_names`."""

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


@dataclass(frozen=True)
class ProblemSpec:
    """A registered problem.

    Attributes:
        name: the name used in configs (`problem.name`).
        description: one line shown by `python -m sciml.train --list`.
        params: pydantic model (a `sciml.config.Section`) for the `problem`
            section of a config, without the `name` key.
        model: pydantic model for the `model` section.
        build: `build(params, model) -> AbstractProblem` from validated sections.
    """

    name: str
    description: str
    params: type
    model: type
    build: Callable[[Any, Any], AbstractProblem]


def register_problem(
    name: str,
    *,
    description: str,
    params: type,
    model: type,
    build: Callable[[Any, Any], AbstractProblem],
) -> None:
    """Add a named problem to the registry (called by each pillar's `problems.py`).

    Raises `ValueError` if `name` is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"problem {name!r} is already registered")
    _REGISTRY[name] = ProblemSpec(name, description, params, model, build)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_problems() -> dict[str, str]:
    """Return `{name: one-line description}` for every registered problem."""
    _load_builtins()
    return {name: spec.description for name, spec in sorted(_REGISTRY.items())}


def get_problem_spec(name: str) -> ProblemSpec:
    """Return the `ProblemSpec` registered as `name`.

    Raises `KeyError` with the closest registered names for an unknown name.
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"unknown problem {name!r}{hint} registered: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build_problem(
    name: str, problem: dict[str, Any] | None = None, model: dict[str, Any] | None = None
) -> AbstractProblem:
    """Build registered problem `name` from raw `problem` and `model` parameter dicts.

    The dicts are validated exactly as config sections are (unknown keys and
    wrong types raise `sciml.config.ConfigError`); missing keys take defaults.

    Example:
        >>> p = build_problem("neural_ode_spiral", {"n_points": 200}, {"width": 16})
    """
    from sciml.config import validate_section

    spec = get_problem_spec(name)
    params = validate_section(spec.params, problem or {}, "problem")
    model_params = validate_section(spec.model, model or {}, "model")
    return spec.build(params, model_params)
