"""Named problems and the `kfac` optimizer of the K-FAC pillar (registered with sciml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sciml.kfac._kfac import kfac
from sciml.kfac._pinn import KFACPoisson2D
from sciml.kfac._problems import DigitsAutoencoder, DigitsLeastSquares, DigitsSoftmax
from sciml.optim import register_optimizer
from sciml.optim._builtin import make_schedule
from sciml.optim._configs import ConstantSchedule, Schedule
from sciml.problems import register_problem
from sciml.schema import PositiveFloat, PositiveInt, Section


class KFACConfig(Section):
    """K-FAC (`optimizer: {name: kfac}`; see `sciml.kfac.kfac` and docs/kfac.md).

    Attributes:
        lr: learning rate η.
        damping: Tikhonov damping λ of the curvature.
        curvature: `ggn` (exact generalised Gauss-Newton factors), `fisher`
            (sampled targets) or `empirical` (data targets).
        damping_kind: `factored` (π-adjusted) or `exact` (eigenbasis).
        ema: decay of the factors' moving average.
        inverse_every: steps between eigendecompositions.
        momentum: heavy-ball μ on the preconditioned gradient.
        norm_constraint: cap on `η² ∇ᵀF̂⁻¹∇` (`null`: none).
        adaptive: learning rate and momentum from the exact quadratic model
            (the step is `lr` times the model's; use `lr: 1`).
        adapt_damping: Levenberg-Marquardt adaptation of λ every `damping_every` steps.
        damping_every, min_damping: its interval and floor.
        l2: the curvature of the loss's L2 penalty (added to the damping; e.g. the
            softmax problem's `weight_decay`).
        schedule: learning-rate schedule.
    """

    name: Literal["kfac"]
    lr: PositiveFloat = 1.0
    damping: PositiveFloat = 1e-3
    curvature: Literal["ggn", "fisher", "empirical"] = "ggn"
    damping_kind: Literal["factored", "exact"] = "factored"
    ema: Annotated[float, Field(ge=0, lt=1)] = 0.95
    inverse_every: PositiveInt = 1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    norm_constraint: PositiveFloat | None = None
    adaptive: bool = False
    adapt_damping: bool = False
    damping_every: PositiveInt = 5
    min_damping: PositiveFloat = 1e-8
    l2: Annotated[float, Field(ge=0)] = 0.0
    schedule: Schedule = ConstantSchedule()


def _kfac(cfg: KFACConfig, total_steps: int):
    return kfac(
        make_schedule(cfg.lr, cfg.schedule, total_steps),
        cfg.damping,
        curvature=cfg.curvature,
        damping_kind=cfg.damping_kind,
        ema=cfg.ema,
        inverse_every=cfg.inverse_every,
        momentum=cfg.momentum,
        norm_constraint=cfg.norm_constraint,
        adaptive=cfg.adaptive,
        adapt_damping=cfg.adapt_damping,
        damping_every=cfg.damping_every,
        min_damping=cfg.min_damping,
        l2=cfg.l2,
    )


register_optimizer(
    "kfac",
    KFACConfig,
    _kfac,
    description="K-FAC: Kronecker-factored curvature on sciml.nn.Dense layers (needs per_sample)",
)
register_problem(
    "kfac_digits_least_squares",
    DigitsLeastSquares,
    description="K-FAC: digits least squares 64->10 (optimum 0.1540112138; K-FAC = Newton)",
)
register_problem(
    "kfac_digits_softmax",
    DigitsSoftmax,
    description="K-FAC: digits softmax regression + L2 (optimum 0.2618645472)",
)
register_problem(
    "kfac_digits_autoencoder",
    DigitsAutoencoder,
    description="K-FAC: digits autoencoder 64-128-64-16-64-128-64 (PCA baseline 0.35339786)",
)
register_problem(
    "kfac_pinn_poisson2d",
    KFACPoisson2D,
    description="K-FAC: 2-D Poisson PINN, tanh MLP 2-64-1, weight-sharing (Taylor-mode) K-FAC",
)
