"""Named problems and the `sr` optimizer of the neural-quantum-state pillar (registered with sciml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sciml.nqs._problems import HeisenbergChain, J1J2Chain, TFIMChain, TFIMSquare
from sciml.nqs._vmc import stochastic_reconfiguration
from sciml.optim import register_optimizer
from sciml.optim._builtin import make_schedule
from sciml.optim._configs import ConstantSchedule, Schedule
from sciml.problems import register_problem
from sciml.schema import PositiveFloat, Section


class SRConfig(Section):
    """Stochastic reconfiguration (`optimizer: {name: sr}`; see `sciml.nqs.stochastic_reconfiguration`).

    Attributes:
        lr: learning rate η of `θ ← θ − η (S + λI)⁻¹ F` (`F = g/2`: η is the
            imaginary-time step; NetKet's `VMC_SR` takes η/2 for the same step).
        diag_shift: λ.
        solver: `dense` (parameter space), `minsr` (sample space) or `auto` (the smaller).
        momentum: SPRING's μ (0: none).
        schedule: learning-rate schedule.
    """

    name: Literal["sr"]
    lr: PositiveFloat = 0.01
    diag_shift: PositiveFloat = 0.01
    solver: Literal["auto", "dense", "minsr"] = "auto"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    schedule: Schedule = ConstantSchedule()


def _sr(cfg: SRConfig, total_steps: int):
    lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
    return stochastic_reconfiguration(lr, cfg.diag_shift, solver=cfg.solver, momentum=cfg.momentum)


register_optimizer(
    "sr",
    SRConfig,
    _sr,
    description="stochastic reconfiguration / minSR / SPRING (needs per_sample log-amplitudes)",
)
register_problem(
    "nqs_tfim_chain",
    TFIMChain,
    description="NQS: transverse-field Ising chain (N=20, h=1), exact E0 from free fermions",
)
register_problem(
    "nqs_tfim_square",
    TFIMSquare,
    description="NQS: transverse-field Ising on a 4x4 periodic square (h=3), exact E0 by ED",
)
register_problem(
    "nqs_heisenberg_chain",
    HeisenbergChain,
    description="NQS: Heisenberg chain (N=20, Pauli units), zero magnetisation, exchange moves",
)
register_problem(
    "nqs_j1j2_chain",
    J1J2Chain,
    description="NQS: J1-J2 chain (L=14, J2=0.2), zero magnetisation",
)
