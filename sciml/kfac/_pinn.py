"""`kfac_pinn_poisson2d`: the 2-D Poisson PINN of Dangel, Müller & Zeinhofer (2024) for K-FAC.

    −Δu = 2π² sin(πx) sin(πy) on [0, 1]²,   u = 0 on the boundary,   u* = sin(πx) sin(πy),

a tanh MLP 2-64-1, 900 interior points (the centres of a 30 × 30 grid) and 120
boundary points (30 per side), float64. The loss is

    ½ mean_interior (Δu + f)² + ½ mean_boundary u²,

with the interior residual from `mlp_laplacian` (one forward-Laplacian pass
through `sciml.nn.affine`), so K-FAC sees every layer as a weight-sharing
layer over the value, gradient and Laplacian channels, and the boundary
term as plain dense layers. `evaluate` reports the relative L2 error against
`u*` on an `eval_grid × eval_grid` grid.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from sciml.nn import ACTIVATIONS, MLP, activation_by_name, batch_apply
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import Section

from ._taylor import mlp_laplacian

__all__ = ["KFACPoisson2D"]


class Poisson2DSettings(Section):
    """`kfac_pinn_poisson2d` (`problem` section).

    Attributes:
        n_side: interior points are the centres of an `n_side × n_side` grid;
            the boundary has `n_boundary_side` equally spaced points per side.
        n_boundary_side: boundary points per side.
        eval_grid: the relative L2 error is measured on an `eval_grid²` grid.
    """

    n_side: Annotated[int, Field(ge=2, le=1000)] = 30
    n_boundary_side: Annotated[int, Field(ge=1, le=10000)] = 30
    eval_grid: Annotated[int, Field(ge=2, le=2000)] = 101


class Poisson2DModel(Section):
    """The network (`model` section): an MLP 2 → `width` (× `depth`) → 1."""

    width: Annotated[int, Field(ge=1, le=4096)] = 64
    depth: Annotated[int, Field(ge=1, le=16)] = 1
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"


def _exact(p):
    return jnp.sin(jnp.pi * p[..., 0]) * jnp.sin(jnp.pi * p[..., 1])


class KFACPoisson2D(AbstractProblem):
    """The Poisson PINN benchmark of the K-FAC-for-PINNs paper (module docstring)."""

    settings: Poisson2DSettings
    model_settings: Poisson2DModel
    interior: jax.Array
    boundary: jax.Array
    grid: jax.Array

    Settings: ClassVar[type] = Poisson2DSettings
    ModelSettings: ClassVar[type] = Poisson2DModel
    default_dtype: ClassVar[str] = "float64"
    metric_names: ClassVar[tuple[str, ...]] = ("l2_rel", "loss")

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )
        s = self.settings
        dtype = jnp.result_type(float)
        c = (np.arange(s.n_side) + 0.5) / s.n_side
        xx, yy = np.meshgrid(c, c, indexing="ij")
        self.interior = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), dtype)
        t = np.linspace(0.0, 1.0, s.n_boundary_side, endpoint=False)
        sides = [
            np.stack([t, np.zeros_like(t)], 1),
            np.stack([np.ones_like(t), t], 1),
            np.stack([1 - t, np.ones_like(t)], 1),
            np.stack([np.zeros_like(t), 1 - t], 1),
        ]
        self.boundary = jnp.asarray(np.concatenate(sides), dtype)
        g = np.linspace(0.0, 1.0, s.eval_grid)
        gx, gy = np.meshgrid(g, g, indexing="ij")
        self.grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), dtype)

    def init(self, key):
        m = self.model_settings
        net = MLP(
            2, 1, width=m.width, depth=m.depth, activation=activation_by_name(m.activation), key=key
        )
        return net, None

    def _residuals(self, model):
        def interior(x):
            _, _, lap = mlp_laplacian(model, x)
            f = 2 * jnp.pi**2 * _exact(x)
            return lap[0] + f

        r_in = batch_apply(interior, self.interior) / jnp.sqrt(self.interior.shape[0])
        r_b = batch_apply(model, self.boundary)[:, 0] / jnp.sqrt(self.boundary.shape[0])
        return jnp.concatenate([r_in, r_b])

    def loss(self, model, state, key):
        r = self._residuals(model)
        return 0.5 * jnp.sum(r**2), (state, {})

    def per_sample(self, model, state, key):
        return {"residuals": self._residuals(model)}

    def evaluate(self, model, state, key):
        u = jax.vmap(model)(self.grid)[:, 0]
        exact = _exact(self.grid)
        l2 = jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact)
        return {"l2_rel": float(l2), "loss": float(self.loss(model, state, key)[0])}
