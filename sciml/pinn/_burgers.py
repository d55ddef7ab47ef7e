"""`pinn_burgers`: u_t + u u_x = ν u_xx on [−1,1] × [0,T], u(x,0) = −sin πx, u(±1,t) = 0.

ν = 0.01/π by default (Raissi et al. 2019's benchmark): a shock forms at
x = 0 around t ≈ 1/π and stays there, steepening to a width of ~ν. The
reference is the Cole-Hopf solution by Gauss-Hermite quadrature
(`sciml.pinn.reference.burgers_cole_hopf`), valid for any ν > 0 and T.

Options that matter for accuracy (the measured recipe is
`configs/pinn_burgers.yaml`, timed over seeds by
`benchmarks/pinn_burgers_recipe.py`): residual-based adaptive resampling
(`resample: {method: rad}`) puts points at the shock; `hard_constraints`
builds the initial and wall conditions into the model,
`u = −sin πx + t (1 − x²) net(x, t)`, so the loss is the PDE residual alone;
then L-BFGS with a long memory on the last point set. The residual takes
u, u_x, u_t and u_xx from one `operators.value_and_derivatives` call, so
every exact engine works (`forward_laplacian`: one weighted pass).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from pydantic import Field, field_validator, model_validator

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
from sciml.pinn.conditions import HardConstraint, dirichlet_residual, initial_residual
from sciml.pinn.geometry import Interval, SpaceTime, TimeInterval
from sciml.pinn.reference import burgers_cole_hopf
from sciml.problems import resolve_settings
from sciml.schema import PositiveFloat, PositiveInt, Section

__all__ = ["Burgers", "BurgersSettings", "burgers_u0"]

PI = jnp.pi
_PARTIALS = ((0,), (1,), (0, 0))  # u_x, u_t, u_xx of a point (x, t)


def burgers_u0(x):
    """The initial condition −sin πx (of the space coordinate(s) `x`, shape (1,))."""
    return -jnp.sin(PI * x[0])


class BurgersSettings(Section):
    """`problem` section of `pinn_burgers`.

    Attributes:
        nu: viscosity ν (default 0.01/π).
        t_final: end time T.
        n_interior, n_boundary, n_initial: collocation points (boundary and
            initial points are unused with `hard_constraints`).
        points_file: an `.npz` with arrays `interior`, `boundary`, `initial`
            (rows (x, t); boundary rows at x = ±1, initial rows at t = 0;
            only `interior` with `hard_constraints`) to use instead of drawn
            points (for side-by-side comparisons with other libraries).
            Raises `ValueError` naming the array for a missing array, a wrong
            shape or rows outside the domain.
        hard_constraints: build u(x,0) and u(±1,t) into the model.
        sampler, engine, weights, weighting, resample, causal: as for every
            PINN.
        resample_at: further steps (counted from 1, as `resample.every`
            counts them) at which the PDE points are redrawn by the
            `resample` rule, on top of its `every`/`until` cadence. The
            recipe redraws often during Adam (`every`/`until`) and once at
            the start of each L-BFGS phase (`resample_at`), so that every
            quasi-Newton phase sees one fixed objective.
        eval_nx, eval_nt: reference grid (x including both walls, t in [0, T]).
    """

    nu: PositiveFloat = 0.01 / math.pi
    t_final: PositiveFloat = 1.0
    n_interior: PositiveInt = 10_000
    n_boundary: PositiveInt = 200
    n_initial: PositiveInt = 200
    points_file: str | None = None
    hard_constraints: bool = False
    sampler: Sampler = "uniform"
    engine: Engine = "reverse"
    weights: dict[Literal["pde", "boundary", "initial"], Annotated[float, Field(ge=0)]] = {}
    weighting: WeightingSettings = WeightingSettings()
    resample: ResampleSettings = ResampleSettings()
    causal: CausalSettings = CausalSettings()
    resample_at: tuple[PositiveInt, ...] = ()
    eval_nx: Annotated[int, Field(ge=3, le=4000)] = 256
    eval_nt: Annotated[int, Field(ge=2, le=4000)] = 101

    @field_validator("resample_at", mode="before")
    @classmethod
    def _steps_tuple(cls, value):
        # YAML gives a list; the frozen section keeps a (hashable) tuple
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _resample_at_needs_a_rule(self):
        if self.resample_at and self.resample.method == "none":
            raise ValueError(
                f"resample_at={list(self.resample_at)} needs a resampling rule: set "
                "resample.method to rad or rar"
            )
        return self


class Burgers(AbstractPINN):
    """Viscous Burgers on [−1,1] × [0,T] with a Cole-Hopf reference; points are (x, t).

    Terms: `pde` (u_t + u u_x − ν u_xx), and unless `hard_constraints`,
    `boundary` (u at x = ±1) and `initial` (u + sin πx at t = 0).
    """

    Settings: ClassVar[type[Section]] = BurgersSettings
    ModelSettings: ClassVar[type[Section]] = PINNNetwork
    metric_names: ClassVar[tuple[str, ...]] = ("rel_l2", "max_abs_error")
    time_dependent: ClassVar[bool] = True

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    given_points: dict | None
    settings: BurgersSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        x = np.linspace(-1.0, 1.0, s.eval_nx)
        t = np.linspace(0.0, s.t_final, s.eval_nt)
        xx, tt = np.meshgrid(x, t, indexing="ij")
        self.ref_points = jnp.asarray(np.stack([xx.ravel(), tt.ravel()], axis=-1))
        self.ref_values = jnp.asarray(burgers_cole_hopf(xx, tt, nu=s.nu).ravel())
        self.given_points = (
            _load_points(s.points_file, s.t_final, s.hard_constraints) if s.points_file else None
        )

    @property
    def grid_shape(self):
        return (self.settings.eval_nx, self.settings.eval_nt)

    @property
    def reference(self):
        return self.ref_points, self.ref_values

    @property
    def domain(self):
        return SpaceTime(Interval(-1.0, 1.0), TimeInterval(0.0, self.settings.t_final))

    def make_model(self, key):
        net = make_network(self.model_settings, 2, 1, key=key)
        if self.settings.hard_constraints:
            return HardConstraint(net, distance=_burgers_distance, particular=_burgers_particular)
        return net

    def collocation(self, key):
        s = self.settings
        if self.given_points is not None:
            if s.hard_constraints:
                return {"pde": self.given_points["pde"]}
            return dict(self.given_points)
        ikey, bkey, ckey = jax.random.split(key, 3)
        dom = self.domain
        points = {"pde": dom.sample_interior(ikey, s.n_interior, method=s.sampler)}
        if not s.hard_constraints:
            points["boundary"] = dom.sample_boundary(bkey, s.n_boundary, method=s.sampler)[0]
            points["initial"] = dom.sample_initial(ckey, s.n_initial, method=s.sampler)
        return points

    def advance(self, model, state, key):
        """The shared hook (resampling on the `resample` cadence, adaptive and causal
        weights), then a redraw of the PDE points if this step is in `resample_at`."""
        state = AbstractPINN.advance(self, model, state, key)
        if not self.settings.resample_at:
            return state
        due = jnp.any(state.step == jnp.asarray(self.settings.resample_at, state.step.dtype))
        points = jax.lax.cond(
            due,
            lambda: self._resampled(
                model, state.points, jax.random.fold_in(key, 2), self.settings.resample
            ),
            lambda: state.points,
        )
        state = eqx.tree_at(lambda st: st.points, state, points)
        if self._causal_chunks:  # the causal weights follow the new points at once
            state = eqx.tree_at(
                lambda st: st.causal, state, self._causal_weights(model, state.points)
            )
        return state

    def candidates(self, key, n):
        return self.domain.sample_interior(key, n)

    def solution(self, model, x):
        return model(x) if self.settings.hard_constraints else model(x)[0]

    def terms(self, model, key=None):
        u = lambda x: self.solution(model, x)  # noqa: E731
        engine, nu = self.settings.engine, self.settings.nu

        def pde(x):
            # one call, so engines that share passes do (taylor: a 2-jet in x and a
            # 1-jet in t; forward_laplacian: u, u_x, u_t, u_xx in one weighted pass)
            value, d = operators.value_and_derivatives(u, x, _PARTIALS, engine=engine)
            return d[(1,)] + value * d[(0,)] - nu * d[(0, 0)]

        out = {"pde": pde}
        if not self.settings.hard_constraints:
            out["boundary"] = lambda x: dirichlet_residual(u, x, 0.0)
            out["initial"] = lambda x: initial_residual(u, x, burgers_u0)
        return out


# module-level functions (not lambdas): a hard constraint's functions are static
# fields, and two models built alike must compare equal (checkpoint templates)
def _burgers_distance(x):
    return x[1] * (1 - x[0] ** 2)


def _burgers_particular(x):
    return burgers_u0(x[:1])


def _load_points(path: str, t_final: float, hard_constraints: bool) -> dict:
    """The point sets of an `.npz` file as term rows `{"pde", "boundary", "initial"}`.

    Needs the array `interior` (rows (x, t) inside [−1, 1] × [0, T]) and, unless
    `hard_constraints`, `boundary` (rows with x = ±1) and `initial` (rows with t = 0).
    """
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"points_file: cannot read {path!r} as an .npz file: {e}") from None
    names = {"interior": "pde"}
    if not hard_constraints:
        names.update(boundary="boundary", initial="initial")
    missing = [k for k in names if k not in data]
    if missing:
        raise ValueError(
            f"points_file {path!r} lacks array(s) {missing}; it has {sorted(data.files)} and "
            f"needs {sorted(names)}"
            + ("" if hard_constraints else " (only 'interior' with hard_constraints: true)")
        )
    out = {}
    tol = 1e-12
    for k, term in names.items():
        a = np.asarray(data[k], dtype=float)
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
            raise ValueError(
                f"points_file {path!r}: {k} must have shape (N, 2) with N >= 1, rows (x, t); "
                f"got {a.shape}"
            )
        x, t = a[:, 0], a[:, 1]
        inside = (np.abs(x) <= 1 + tol) & (t >= -tol) & (t <= t_final + tol)
        if not np.all(inside):
            bad = a[~inside][0].tolist()
            raise ValueError(
                f"points_file {path!r}: {k} has {int(np.sum(~inside))} row(s) outside "
                f"[-1, 1] x [0, t_final={t_final}], e.g. {bad}"
            )
        if k == "boundary" and not np.all(np.abs(np.abs(x) - 1) <= tol):
            raise ValueError(f"points_file {path!r}: boundary rows must have x = -1 or 1")
        if k == "initial" and not np.all(np.abs(t) <= tol):
            raise ValueError(f"points_file {path!r}: initial rows must have t = 0")
        out[term] = jnp.asarray(a)
    return out
