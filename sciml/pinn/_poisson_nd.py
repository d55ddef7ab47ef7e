"""`pinn_poisson_nd`: −Δu = π² Σ_i cos πx_i on [0,1]^d, u = u* on the boundary.

The exact solution is u*(x) = Σ_i cos πx_i. The dimension `d` is a setting
(5 by default; the scaling study runs d = 100), and so is the Laplacian's
engine: the exact ones, or the randomised Hutchinson / stochastic-dimension
estimators that cost O(probes) instead of O(d) passes. `rel_l2` is measured
on `n_eval` points drawn uniformly in the cube (a tensor grid is out of
reach in high dimension).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from pydantic import Field, model_validator

import sciml.pinn.operators as operators
from sciml.pinn._base import AbstractPINN
from sciml.pinn._network import make_network
from sciml.pinn._settings import PINNNetwork, ResampleSettings, Sampler, WeightingSettings
from sciml.pinn.conditions import dirichlet_residual
from sciml.pinn.geometry import Box
from sciml.problems import resolve_settings
from sciml.schema import PositiveInt, Section

__all__ = ["PoissonND", "PoissonNDSettings"]

PI = jnp.pi


class PoissonNDSettings(Section):
    """`problem` section of `pinn_poisson_nd`.

    Attributes:
        dim: the dimension d.
        n_interior, n_boundary: collocation points.
        engine: Laplacian engine: `reverse`, `forward_over_reverse`, `taylor`,
            `forward_laplacian`, or the randomised `hutchinson` / `sdgd`.
        num_probes: probe vectors per point (`hutchinson`) or sampled
            dimensions per point (`sdgd`).
        sampler, weights, weighting, resample: as for every PINN.
        n_eval, eval_seed: evaluation points (uniform in the cube).
    """

    dim: Annotated[int, Field(ge=1, le=10_000)] = 5
    n_interior: PositiveInt = 1000
    n_boundary: PositiveInt = 500
    engine: Literal[
        "reverse", "forward_over_reverse", "taylor", "forward_laplacian", "hutchinson", "sdgd"
    ] = "forward_laplacian"
    num_probes: PositiveInt = 8
    sampler: Sampler = "uniform"
    weights: dict[Literal["pde", "boundary"], Annotated[float, Field(ge=0)]] = {}
    weighting: WeightingSettings = WeightingSettings()
    resample: ResampleSettings = ResampleSettings()
    n_eval: PositiveInt = 10_000
    eval_seed: Annotated[int, Field(ge=0)] = 12345

    @model_validator(mode="after")
    def _probes(self):
        if self.engine == "sdgd" and self.num_probes > self.dim:
            raise ValueError(
                f"num_probes ({self.num_probes}) sampled dimensions cannot exceed dim ({self.dim})"
            )
        return self


def exact_poisson_nd(x):
    """u*(x) = Σ_i cos πx_i at one point."""
    return jnp.sum(jnp.cos(PI * x))


class PoissonND(AbstractPINN):
    """−Δu = π² Σ cos πx_i on [0,1]^d with u* on the boundary; exact u* = Σ cos πx_i."""

    Settings: ClassVar[type[Section]] = PoissonNDSettings
    ModelSettings: ClassVar[type[Section]] = PINNNetwork
    metric_names: ClassVar[tuple[str, ...]] = ("rel_l2", "max_abs_error")

    ref_points: Float[Array, "m d"]
    ref_values: Float[Array, " m"]
    settings: PoissonNDSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        key = jax.random.PRNGKey(s.eval_seed)
        self.ref_points = jax.random.uniform(key, (s.n_eval, s.dim), jnp.result_type(float))
        self.ref_values = jax.vmap(exact_poisson_nd)(self.ref_points)

    @property
    def reference(self):
        return self.ref_points, self.ref_values

    @property
    def domain(self):
        d = self.settings.dim
        return Box((0.0,) * d, (1.0,) * d)

    def make_model(self, key):
        return make_network(self.model_settings, self.settings.dim, 1, key=key)

    def collocation(self, key):
        ikey, bkey = jax.random.split(key)
        s = self.settings
        return {
            "pde": self.domain.sample_interior(ikey, s.n_interior, method=s.sampler),
            "boundary": self.domain.sample_boundary(bkey, s.n_boundary, method=s.sampler)[0],
        }

    def candidates(self, key, n):
        return self.domain.sample_interior(key, n)

    def solution(self, model, x):
        return model(x)[0]

    def _laplacian(self, u, x, key):
        s = self.settings
        if s.engine == "hutchinson":
            return operators.laplacian(u, x, engine="hutchinson", key=key, num_probes=s.num_probes)
        if s.engine == "sdgd":
            return operators.laplacian(u, x, engine="sdgd", key=key, num_dims=s.num_probes)
        return operators.laplacian(u, x, engine=s.engine)

    def terms(self, model, key=None):
        u = lambda x: self.solution(model, x)  # noqa: E731
        # randomised engines: the step's key, so every point of a step shares
        # its probes (each point's estimate stays unbiased) and the loss, its
        # gradient and the per-sample residuals of one step agree
        probe_key = jax.random.PRNGKey(0) if key is None else key

        def pde(x):
            f = PI**2 * jnp.sum(jnp.cos(PI * x))
            return -self._laplacian(u, x, probe_key) - f

        return {"pde": pde, "boundary": lambda x: dirichlet_residual(u, x, exact_poisson_nd)}
