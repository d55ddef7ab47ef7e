"""Config sections of the built-in optimizers and learning-rate schedules."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from sciml.schema import NonNegativeInt, PositiveFloat, PositiveInt, Section

__all__ = [
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "Schedule",
    "AdamConfig",
    "AdamWConfig",
    "SGDConfig",
    "LBFGSConfig",
    "SequenceConfig",
    "GaussNewtonConfig",
]


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
"""Any of the schedule sections, chosen by `name`."""

Beta = Annotated[float, Field(ge=0, lt=1)]


class AdamConfig(Section):
    """Adam (Kingma & Ba 2015) with an optional schedule and global-norm clipping.

    Supports complex parameters (optax's second moment uses |g|^2).
    """

    name: Literal["adam"]
    lr: PositiveFloat = 1e-3
    b1: Beta = 0.9
    b2: Beta = 0.999
    eps: PositiveFloat = 1e-8
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class AdamWConfig(Section):
    """AdamW (decoupled weight decay, Loshchilov & Hutter 2019)."""

    name: Literal["adamw"]
    lr: PositiveFloat = 1e-3
    b1: Beta = 0.9
    b2: Beta = 0.999
    eps: PositiveFloat = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class SGDConfig(Section):
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    name: Literal["sgd"]
    lr: PositiveFloat = 1e-2
    momentum: Beta = 0.9
    nesterov: bool = False
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class LBFGSConfig(Section):
    """optax's L-BFGS with a zoom line search (full-batch, deterministic losses).

    The line search re-evaluates the loss with the step's own PRNG key and
    problem state, so a stochastic loss is treated as fixed within one step
    (and a problem's `advance` hook is not re-run).

    `initial_guess`: the step length the line search tries first. `"one"`
    (optax.lbfgs's default) tries the full quasi-Newton step, which gives
    L-BFGS its superlinear convergence; `"keep"` starts from the previous
    step's length, so after a short step the iteration stays damped and
    converges only linearly (before sciml 0.1's core rework this was the only
    behaviour; the Lotka-Volterra recipe's figures were measured with it).
    """

    name: Literal["lbfgs"]
    memory_size: PositiveInt = 10
    max_linesearch_steps: PositiveInt = 20
    initial_guess: Literal["one", "keep"] = "one"
    clip_norm: PositiveFloat | None = None


class GaussNewtonConfig(Section):
    """Damped Gauss-Newton (Levenberg-Marquardt style) on the problem's residuals.

    The step is `-lr * (J^T J + damping I)^-1 J^T r` with `J` the Jacobian of
    `per_sample()["residuals"]`; needs a problem that defines `per_sample`.
    Dense: for models up to a few thousand parameters.
    """

    name: Literal["gauss_newton"]
    lr: PositiveFloat = 1.0
    damping: Annotated[float, Field(ge=0)] = 0.0
    schedule: Schedule = ConstantSchedule()
    clip_norm: PositiveFloat | None = None


class SequenceConfig(Section):
    """Optimizer phases run one after another (e.g. Adam, then L-BFGS).

    `phases[i + 1]` starts at step `boundaries[i]`. Each phase is any
    registered optimizer's section; a phase's schedule spans its own steps
    (a cosine schedule in the first phase decays to its end).
    """

    name: Literal["sequence"]
    # Validated one by one against the optimizer registry (see
    # `validate_optimizer`), so phases can be any plug-in's optimizer.
    phases: Annotated[list[Any], Field(min_length=2)]
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
