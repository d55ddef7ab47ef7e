"""Named problems of the differential-equations pillar, registered with `sciml.problems`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from sciml.config import Section
from sciml.nn import ACTIVATIONS
from sciml.problems import register_problem
from sciml.ude._spiral import NeuralODESpiral

__all__ = ["SpiralParams", "MLPModel"]


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


def _build_spiral(p: SpiralParams, m: MLPModel) -> NeuralODESpiral:
    return NeuralODESpiral(
        n_points=p.n_points,
        t_end=p.t_end,
        batch_size=p.batch_size,
        batch_time=p.batch_time,
        rtol=p.rtol,
        atol=p.atol,
        max_steps=p.max_steps,
        loss_kind=p.loss,
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
