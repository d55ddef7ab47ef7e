"""`pinn_heat1d`: u_t = κ u_xx on [0,1] × [0,1], u(x,0) = sin πx, u(0,t) = u(1,t) = 0.

Exact solution u*(x,t) = exp(−κπ²t) sin πx; κ = 1/4 by default (Müller &
Zeinhofer 2023's heat benchmark; published relative L2: ENGD 3.0e-8, Adam
1.2e-4).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from pydantic import Field

import sciml.pinn.operators as operators
from sciml.pinn._base import AbstractPINN
from sciml.pinn._network import make_network
from sciml.pinn._settings import (
    CausalSettings,
    Engine,
    PINNNetwork,
    ResampleSettings,
    Sampler,
    WeightingSettings,
)
from sciml.pinn.conditions import dirichlet_residual, initial_residual
from sciml.pinn.geometry import Interval, SpaceTime, TimeInterval
from sciml.problems import resolve_settings
from sciml.schema import PositiveFloat, PositiveInt, Section

__all__ = ["Heat1D", "Heat1DSettings"]

PI = jnp.pi


class Heat1DSettings(Section):
    """`problem` section of `pinn_heat1d`.

    Attributes:
        kappa: diffusivity κ.
        n_interior, n_boundary, n_initial: points inside, on the walls x = 0, 1
            and at t = 0.
        sampler, engine, weights, weighting, resample, causal: as for every PINN
            (see `sciml.pinn`).
        eval_grid: points per axis of the evaluation grid.
    """

    kappa: PositiveFloat = 0.25
    n_interior: PositiveInt = 900
    n_boundary: PositiveInt = 80
    n_initial: PositiveInt = 40
    sampler: Sampler = "uniform"
    engine: Engine = "reverse"
    weights: dict[Literal["pde", "boundary", "initial"], Annotated[float, Field(ge=0)]] = {}
    weighting: WeightingSettings = WeightingSettings()
    resample: ResampleSettings = ResampleSettings()
    causal: CausalSettings = CausalSettings()
    eval_grid: Annotated[int, Field(ge=2, le=1000)] = 101


class Heat1D(AbstractPINN):
    """u_t = κ u_xx on [0,1]², u(x,0) = sin πx, zero walls; points are (x, t).

    Terms: `pde`, `boundary` (u at x = 0, 1), `initial` (u − sin πx at t = 0).
    """

    Settings: ClassVar[type[Section]] = Heat1DSettings
    ModelSettings: ClassVar[type[Section]] = PINNNetwork
    metric_names: ClassVar[tuple[str, ...]] = ("rel_l2", "max_abs_error")
    time_dependent: ClassVar[bool] = True

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    settings: Heat1DSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        n = self.settings.eval_grid
        self.ref_points = self.domain.grid((n, n))
        x, t = self.ref_points[:, 0], self.ref_points[:, 1]
        self.ref_values = jnp.exp(-self.settings.kappa * PI**2 * t) * jnp.sin(PI * x)

    @property
    def grid_shape(self):
        return (self.settings.eval_grid, self.settings.eval_grid)

    @property
    def reference(self):
        return self.ref_points, self.ref_values

    @property
    def domain(self):
        return SpaceTime(Interval(0.0, 1.0), TimeInterval(0.0, 1.0))

    def make_model(self, key):
        return make_network(self.model_settings, 2, 1, key=key)

    def collocation(self, key):
        ikey, bkey, ckey = jax.random.split(key, 3)
        s, dom = self.settings, self.domain
        return {
            "pde": dom.sample_interior(ikey, s.n_interior, method=s.sampler),
            "boundary": dom.sample_boundary(bkey, s.n_boundary, method=s.sampler)[0],
            "initial": dom.sample_initial(ckey, s.n_initial, method=s.sampler),
        }

    def candidates(self, key, n):
        return self.domain.sample_interior(key, n)

    def solution(self, model, x):
        return model(x)[0]

    def terms(self, model, key=None):
        u = lambda x: self.solution(model, x)  # noqa: E731
        engine, kappa = self.settings.engine, self.settings.kappa

        def pde(x):
            u_t = operators.partial(u, x, (1,), engine=engine)
            u_xx = operators.partial(u, x, (0, 0), engine=engine)
            return u_t - kappa * u_xx

        return {
            "pde": pde,
            "boundary": lambda x: dirichlet_residual(u, x, 0.0),
            "initial": lambda x: initial_residual(u, x, lambda xs: jnp.sin(PI * xs[0])),
        }
