"""Named problems of the differential-equations pillar, registered with `sciml.problems`."""

from __future__ import annotations

from typing import Annotated, Literal

import diffrax as dfx
from pydantic import Field, model_validator

from sciml.config import EmptyModel, Section
from sciml.nn import ACTIVATIONS
from sciml.problems import register_problem
from sciml.ude._lorenz import LorenzParams, build_lorenz
from sciml.ude._lotka_volterra import LotkaVolterraUDE
from sciml.ude._ou import NeuralSDEOU
from sciml.ude._robertson import RobertsonParams, build_robertson
from sciml.ude._spiral import NeuralODESpiral

__all__ = [
    "SpiralParams",
    "MLPModel",
    "OUParams",
    "SDEModel",
    "LotkaVolterraParams",
    "RBFNetModel",
    "adjoint_by_name",
]


class SpiralParams(Section):
    """`problem` section of `neural_ode_spiral` (see `NeuralODESpiral`)."""

    n_points: Annotated[int, Field(ge=3)] = 1000
    t_end: Annotated[float, Field(gt=0)] = 25.0
    batch_size: Annotated[int, Field(gt=0)] = 20
    batch_time: Annotated[int, Field(ge=2)] = 10
    rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    atol: Annotated[float, Field(gt=0)] = 1e-4
    max_steps: Annotated[int, Field(gt=0)] = 4096
    loss: Literal["l1", "mse"] = "l1"
    adjoint: Literal["recursive_checkpoint", "backsolve", "direct"] = "recursive_checkpoint"
    batch_solve: Literal["vmap", "joint"] = "vmap"

    @model_validator(mode="after")
    def _window_fits(self):
        if self.batch_time >= self.n_points:
            raise ValueError(
                f"batch_time ({self.batch_time}) must be smaller than n_points ({self.n_points})"
            )
        return self


class MLPModel(Section):
    """`model` section for an MLP: hidden `width`, `depth` hidden layers, `activation`."""

    width: Annotated[int, Field(gt=0)] = 50
    depth: Annotated[int, Field(ge=0)] = 1
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"


def adjoint_by_name(name: str, rtol: float = 1e-3, atol: float = 1e-6):
    """The diffrax adjoint for a config name (the one place these strings become objects)."""
    if name == "recursive_checkpoint":
        return dfx.RecursiveCheckpointAdjoint()
    if name == "backsolve":
        # the backward solve gets the forward tolerances (diffrax's default is 1e-3/1e-6)
        return dfx.BacksolveAdjoint(stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol))
    if name == "direct":
        return dfx.DirectAdjoint()
    raise ValueError(f"unknown adjoint {name!r}; allowed: recursive_checkpoint, backsolve, direct")


def _build_spiral(p: SpiralParams, m: MLPModel) -> NeuralODESpiral:
    return NeuralODESpiral(
        adjoint=adjoint_by_name(p.adjoint, p.rtol, p.atol),
        n_points=p.n_points,
        t_end=p.t_end,
        batch_size=p.batch_size,
        batch_time=p.batch_time,
        rtol=p.rtol,
        atol=p.atol,
        max_steps=p.max_steps,
        loss_kind=p.loss,
        batch_solve=p.batch_solve,
        width=m.width,
        depth=m.depth,
        activation=m.activation,
    )


register_problem(
    "neural_ode_spiral",
    description="neural ODE fitted to the cubic spiral dy/dt = (y**3) A (torchdiffeq demo); reports trajectory mse",
    params=SpiralParams,
    model=MLPModel,
    build=_build_spiral,
)


class OUParams(Section):
    """`problem` section of `neural_sde_ou` (see `NeuralSDEOU`)."""

    kappa: Annotated[float, Field(gt=0)] = 2.0
    mean: float = 0.5
    vol: Annotated[float, Field(gt=0)] = 0.3
    x0: float = 1.5
    n_paths: Annotated[int, Field(gt=0)] = 256
    n_steps: Annotated[int, Field(gt=0)] = 500
    dt: Annotated[float, Field(gt=0)] = 0.01
    batch_paths: Annotated[int, Field(gt=0)] = 64
    data_seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.batch_paths > self.n_paths:
            raise ValueError(
                f"batch_paths ({self.batch_paths}) must not exceed n_paths ({self.n_paths})"
            )
        return self


class SDEModel(Section):
    """`model` section of `neural_sde_ou`: drift and diffusion MLPs (1 -> width^depth -> 1)."""

    width: Annotated[int, Field(gt=0)] = 32
    depth: Annotated[int, Field(ge=0)] = 1
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"


register_problem(
    "neural_sde_ou",
    description="neural SDE drift and diffusion learned from Ornstein-Uhlenbeck paths; reports rate and volatility errors",
    params=OUParams,
    model=SDEModel,
    build=lambda p, m: NeuralSDEOU(**p.model_dump(), **m.model_dump()),
)


register_problem(
    "robertson_fit",
    description="Robertson stiff kinetics (Kvaerno5, float64): recover log k1, k2, k3 from noisy data; reports relative rate errors",
    params=RobertsonParams,
    model=EmptyModel,
    build=build_robertson,
)


register_problem(
    "lorenz_sindy",
    description="SINDy (STLSQ, degree-2 library) recovers the Lorenz equations from one trajectory; reports sigma, rho, beta and active terms",
    params=LorenzParams,
    model=EmptyModel,
    build=build_lorenz,
)


class LotkaVolterraParams(Section):
    """`problem` section of `ude_lotka_volterra` (see `LotkaVolterraUDE`)."""

    noise: Annotated[float, Field(ge=0)] = 0.05
    noise_seed: Annotated[int, Field(ge=0)] = 0
    t_end: Annotated[float, Field(gt=0)] = 3.0
    dt: Annotated[float, Field(gt=0)] = 0.1
    degree: Annotated[int, Field(ge=1, le=5)] = 2
    alpha: Annotated[float, Field(ge=0)] = 0.05
    selection: Literal["bic", "tol"] = "bic"
    selection_tol: Annotated[float, Field(ge=0)] = 0.1
    rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-7
    atol: Annotated[float, Field(gt=0)] = 1e-9


class RBFNetModel(Section):
    """`model` section of `ude_lotka_volterra`: the 2-5-5-5-2 network with exp(-x^2)."""

    width: Annotated[int, Field(gt=0)] = 5
    depth: Annotated[int, Field(ge=0)] = 3
    activation: Literal[tuple(ACTIVATIONS)] = "rbf"


register_problem(
    "ude_lotka_volterra",
    description="UDE learns the missing Lotka-Volterra interaction from noisy data, then SINDy + data-refit model selection recovers it",
    params=LotkaVolterraParams,
    model=RBFNetModel,
    build=lambda p, m: LotkaVolterraUDE(**p.model_dump(), **m.model_dump()),
)
