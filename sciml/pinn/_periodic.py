"""Evolution equations on a periodic interval: Allen-Cahn, convection, Korteweg-de Vries.

All three pose u(x, t) on [a, b) × [0, T] with an initial condition and
periodic boundaries. Periodicity is exact: the network sees x only through
`(cos ωmx, sin ωmx)`, ω = 2π/(b − a), m = 1..`harmonics`
(`sciml.nn.PeriodicEmbedding`), so u and all its x-derivatives are periodic
and no boundary term is needed. Loss terms: `pde` and, unless
`hard_initial` (u = u0(x) + t·net), `initial`. Causal weighting
(`causal: {chunks: M, epsilon: ε}`) orders training in time.

- `pinn_allen_cahn`: u_t = 1e-4 u_xx + 5u − 5u³ on [−1,1), u0 = x² cos πx;
  reference by Fourier ETDRK4 (`reference.allen_cahn_reference`).
- `pinn_convection`: u_t + β u_x = 0 on [0, 2π), β = 40, u0 = sin x; exact
  u = sin(x − βt).
- `pinn_kdv`: u_t + u u_x + δ² u_xxx = 0 on [−1,1), δ = 0.022, u0 = cos πx;
  reference by ETDRK4 (`reference.kdv_reference`); the third derivative
  comes from the chosen engine (Taylor mode does u_xxx in one pass).
"""

from __future__ import annotations

import abc
import math
from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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
from sciml.pinn.conditions import HardConstraint, initial_residual
from sciml.pinn.geometry import Interval, SpaceTime, TimeInterval
from sciml.pinn.reference import allen_cahn_reference, kdv_reference
from sciml.problems import resolve_settings
from sciml.schema import PositiveFloat, PositiveInt, Section

__all__ = [
    "AllenCahn",
    "AllenCahnSettings",
    "Convection",
    "ConvectionSettings",
    "KdV",
    "KdVSettings",
]


def _time(x):
    return x[1]


def _allen_cahn_u0(x):
    return x[0] ** 2 * jnp.cos(jnp.pi * x[0])


def _allen_cahn_u0_of_row(x):
    return _allen_cahn_u0(x[:1])


def _convection_u0(x):
    return jnp.sin(x[0])


def _convection_u0_of_row(x):
    return _convection_u0(x[:1])


def _kdv_u0(x):
    return jnp.cos(jnp.pi * x[0])


def _kdv_u0_of_row(x):
    return _kdv_u0(x[:1])


class _PeriodicCommon(Section):
    n_interior: PositiveInt = 4096
    n_initial: PositiveInt = 256
    t_final: PositiveFloat = 1.0
    harmonics: Annotated[int, Field(ge=1, le=64)] = 1
    hard_initial: bool = False
    sampler: Sampler = "uniform"
    engine: Engine = "reverse"
    weights: dict[str, Annotated[float, Field(ge=0)]] = {}
    weighting: WeightingSettings = WeightingSettings()
    resample: ResampleSettings = ResampleSettings()
    causal: CausalSettings = CausalSettings()
    eval_nx: Annotated[int, Field(ge=4, le=4096)] = 256
    eval_nt: Annotated[int, Field(ge=2, le=4096)] = 101


class AllenCahnSettings(_PeriodicCommon):
    """`problem` section of `pinn_allen_cahn`: u_t = epsilon u_xx + coeff (u − u³).

    Attributes:
        epsilon, coeff: diffusion and reaction coefficients.
        n_interior, n_initial: PDE and initial-condition points.
        t_final: end time.
        harmonics: Fourier harmonics of the periodic embedding of x.
        hard_initial: u = u0 + t·net (no initial term).
        sampler, engine, weights, weighting, resample, causal: as for every PINN.
        eval_nx, eval_nt: reference grid (periodic x without the right end, t in [0, T]).
    """

    epsilon: PositiveFloat = 1e-4
    coeff: PositiveFloat = 5.0


class ConvectionSettings(_PeriodicCommon):
    """`problem` section of `pinn_convection`: u_t + beta u_x = 0 on [0, 2π), u0 = sin x.

    Attributes:
        beta: the transport speed β.
        (the others as in `AllenCahnSettings`)
    """

    beta: PositiveFloat = 40.0


class KdVSettings(_PeriodicCommon):
    """`problem` section of `pinn_kdv`: u_t + u u_x + delta² u_xxx = 0, u0 = cos πx.

    Attributes:
        delta: the dispersion δ.
        (the others as in `AllenCahnSettings`)
    """

    delta: PositiveFloat = 0.022


class _AbstractPeriodic(AbstractPINN):
    """Shared pieces of the periodic evolution problems (abstract)."""

    time_dependent: ClassVar[bool] = True
    ModelSettings: ClassVar[type[Section]] = PINNNetwork
    metric_names: ClassVar[tuple[str, ...]] = ("rel_l2", "max_abs_error")
    space: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    @staticmethod
    @abc.abstractmethod
    def u0(x):
        """The initial condition at a space point `x` of shape (1,)."""

    @property
    @abc.abstractmethod
    def initial_value(self):
        """`(x, t) -> u0(x)`, a module-level function (a hard constraint stores it)."""

    @abc.abstractmethod
    def residual(self, u, x):
        """The PDE residual of the field `u` at one point (x, t)."""

    @property
    def grid_shape(self):
        return (self.settings.eval_nx, self.settings.eval_nt)

    @property
    def reference(self):
        return self.ref_points, self.ref_values

    @property
    def domain(self):
        return SpaceTime(Interval(*self.space), TimeInterval(0.0, self.settings.t_final))

    def _grid(self):
        s = self.settings
        a, b = self.space
        x = a + (b - a) * np.arange(s.eval_nx) / s.eval_nx
        t = np.linspace(0.0, s.t_final, s.eval_nt)
        xx, tt = np.meshgrid(x, t, indexing="ij")
        return x, t, jnp.asarray(np.stack([xx.ravel(), tt.ravel()], axis=-1))

    def make_model(self, key):
        a, b = self.space
        net = make_network(
            self.model_settings, 2, 1, key=key, periodic={0: b - a},
            harmonics=self.settings.harmonics,
        )
        if self.settings.hard_initial:
            return HardConstraint(net, distance=_time, particular=self.initial_value)
        return net

    def collocation(self, key):
        ikey, ckey = jax.random.split(key)
        s, dom = self.settings, self.domain
        points = {"pde": dom.sample_interior(ikey, s.n_interior, method=s.sampler)}
        if not s.hard_initial:
            points["initial"] = dom.sample_initial(ckey, s.n_initial, method=s.sampler)
        return points

    def candidates(self, key, n):
        return self.domain.sample_interior(key, n)

    def solution(self, model, x):
        return model(x) if self.settings.hard_initial else model(x)[0]

    def terms(self, model, key=None):
        u = lambda x: self.solution(model, x)  # noqa: E731
        out = {"pde": lambda x: self.residual(u, x)}
        if not self.settings.hard_initial:
            out["initial"] = lambda x: initial_residual(u, x, self.u0)
        return out


class AllenCahn(_AbstractPeriodic):
    """Allen-Cahn u_t = ε u_xx + c(u − u³) on [−1,1) periodic, u0 = x² cos πx (ETDRK4 reference)."""

    Settings: ClassVar[type[Section]] = AllenCahnSettings

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    settings: AllenCahnSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        x, t, self.ref_points = self._grid()
        _, _, u = allen_cahn_reference(
            n_x=s.eval_nx, save_times=t, t_final=s.t_final, epsilon=s.epsilon, coeff=s.coeff,
            domain=self.space, n_modes=max(1024, s.eval_nx),
        )
        self.ref_values = jnp.asarray(u.T.ravel())

    u0 = staticmethod(_allen_cahn_u0)

    @property
    def initial_value(self):
        return _allen_cahn_u0_of_row

    def residual(self, u, x):
        s, engine = self.settings, self.settings.engine
        u_t = operators.partial(u, x, (1,), engine=engine)
        u_xx = operators.partial(u, x, (0, 0), engine=engine)
        v = u(x)
        return u_t - s.epsilon * u_xx - s.coeff * (v - v**3)


class Convection(_AbstractPeriodic):
    """Linear convection u_t + β u_x = 0 on [0, 2π) periodic, u0 = sin x (exact sin(x − βt))."""

    Settings: ClassVar[type[Section]] = ConvectionSettings
    space: ClassVar[tuple[float, float]] = (0.0, 2 * math.pi)

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    settings: ConvectionSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        _, _, self.ref_points = self._grid()
        x, t = self.ref_points[:, 0], self.ref_points[:, 1]
        self.ref_values = jnp.sin(x - self.settings.beta * t)

    u0 = staticmethod(_convection_u0)

    @property
    def initial_value(self):
        return _convection_u0_of_row

    def residual(self, u, x):
        g = operators.gradient(u, x, engine=self.settings.engine)
        return g[1] + self.settings.beta * g[0]


class KdV(_AbstractPeriodic):
    """Korteweg-de Vries u_t + u u_x + δ² u_xxx = 0 on [−1,1) periodic, u0 = cos πx (ETDRK4 reference)."""

    Settings: ClassVar[type[Section]] = KdVSettings

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    settings: KdVSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        x, t, self.ref_points = self._grid()
        _, _, u = kdv_reference(
            n_x=s.eval_nx, save_times=t, t_final=s.t_final, delta=s.delta, domain=self.space,
            n_modes=max(512, s.eval_nx),
        )
        self.ref_values = jnp.asarray(u.T.ravel())

    u0 = staticmethod(_kdv_u0)

    @property
    def initial_value(self):
        return _kdv_u0_of_row

    def residual(self, u, x):
        engine = self.settings.engine
        g = operators.gradient(u, x, engine=engine)
        u_xxx = operators.partial(u, x, (0, 0, 0), engine=engine)
        return g[1] + u(x) * g[0] + self.settings.delta**2 * u_xxx
