"""Named problems of the differential-equations pillar, registered with `sciml.problems`.

Each problem's settings are declared once, as the sections beside its class
(`NeuralODESpiral.Settings` is `SpiralParams`, ...); the section names are
re-exported here.
"""

from __future__ import annotations

from sciml.problems import register_problem
from sciml.ude._lorenz import LorenzParams, LorenzSINDy
from sciml.ude._lotka_volterra import LotkaVolterraParams, LotkaVolterraUDE, RBFNetModel
from sciml.ude._ou import NeuralSDEOU, OUParams, SDEModel
from sciml.ude._robertson import RobertsonFit, RobertsonParams
from sciml.ude._spiral import MLPModel, NeuralODESpiral, SpiralParams, adjoint_by_name

__all__ = [
    "SpiralParams",
    "MLPModel",
    "OUParams",
    "SDEModel",
    "RobertsonParams",
    "LorenzParams",
    "LotkaVolterraParams",
    "RBFNetModel",
    "adjoint_by_name",
]

register_problem(
    "neural_ode_spiral",
    NeuralODESpiral,
    description="neural ODE fitted to the cubic spiral dy/dt = (y**3) A (torchdiffeq demo); reports trajectory mse",
)
register_problem(
    "neural_sde_ou",
    NeuralSDEOU,
    description="neural SDE drift and diffusion learned from Ornstein-Uhlenbeck paths; reports rate and volatility errors",
)
register_problem(
    "robertson_fit",
    RobertsonFit,
    description="Robertson stiff kinetics (Kvaerno5, float64): recover log k1, k2, k3 from noisy data; reports relative rate errors",
)
register_problem(
    "lorenz_sindy",
    LorenzSINDy,
    description="SINDy (STLSQ, degree-2 library) recovers the Lorenz equations from one trajectory; reports sigma, rho, beta and active terms",
)
register_problem(
    "ude_lotka_volterra",
    LotkaVolterraUDE,
    description="UDE learns the missing Lotka-Volterra interaction from noisy data, then SINDy + data-refit model selection recovers it",
)
