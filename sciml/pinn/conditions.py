"""Boundary, initial and data conditions as per-point residuals, and hard constraints.

Each residual function acts on ONE point and a field `u` (a callable on one
point returning a scalar or a vector); vmap over points. A loss term is the
mean square of such residuals over its points (see `AbstractPINN`).

- Dirichlet: `u(x) − g(x)`
- Neumann: `∇u(x)·n(x) − g(x)`
- Robin: `a u(x) + b ∇u(x)·n(x) − g(x)`
- periodic: `u(x_left) − u(x_right)` (and the first derivatives along the
  periodic axis), or, exactly, `sciml.nn.PeriodicEmbedding` in the network
- initial: `u(x, t0) − u0(x)`
- data: `u(x) − y`

`HardConstraint` builds the conditions into the model instead:
`u(x) = A(x) + D(x) · net(x)` with `D = 0` on the constrained boundary and
`A` equal to the prescribed values there.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

import sciml.pinn.operators as operators

__all__ = [
    "dirichlet_residual",
    "neumann_residual",
    "robin_residual",
    "periodic_residual",
    "initial_residual",
    "data_residual",
    "HardConstraint",
]

Field = Callable[[Array], Array]


def _point(x, name):
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected one point of shape (d,), got shape {x.shape}")
    return x


def _normal_derivative(u: Field, x: Array, normal: Array, engine: str) -> Array:
    normal = jnp.asarray(normal)
    if normal.shape != x.shape:
        raise ValueError(f"normal must have the point's shape {x.shape}, got {normal.shape}")
    return operators.gradient(u, x, engine=engine) @ normal


def dirichlet_residual(u: Field, x: Array, g: Field | float = 0.0) -> Array:
    """`u(x) − g(x)` (`g` a function of the point or a constant)."""
    x = _point(x, "dirichlet_residual")
    return u(x) - (g(x) if callable(g) else g)


def neumann_residual(
    u: Field, x: Array, normal: Array, g: Field | float = 0.0, *, engine: str = "reverse"
) -> Array:
    """`∂u/∂n − g = ∇u(x)·n − g(x)` for a scalar field `u` and the outward unit normal `n`."""
    x = _point(x, "neumann_residual")
    return _normal_derivative(u, x, normal, engine) - (g(x) if callable(g) else g)


def robin_residual(
    u: Field,
    x: Array,
    normal: Array,
    a: float,
    b: float,
    g: Field | float = 0.0,
    *,
    engine: str = "reverse",
) -> Array:
    """`a u + b ∂u/∂n − g` at `x` (scalar `u`)."""
    x = _point(x, "robin_residual")
    du = _normal_derivative(u, x, normal, engine)
    return a * u(x) + b * du - (g(x) if callable(g) else g)


def periodic_residual(
    u: Field, x_left: Array, x_right: Array, *, axis: int, derivatives: int = 1,
    engine: str = "reverse",
) -> Array:
    """Mismatch of `u` and its first `derivatives` derivatives along `axis` between paired points.

    Returns a vector of length `derivatives + 1` (for scalar `u`). The exact
    alternative is a periodic input embedding (`sciml.nn.PeriodicEmbedding`).
    """
    xl, xr = _point(x_left, "periodic_residual"), _point(x_right, "periodic_residual")
    if derivatives < 0:
        raise ValueError(f"periodic_residual: derivatives must be >= 0, got {derivatives}")
    out = [u(xl) - u(xr)]
    for k in range(1, derivatives + 1):
        axes = (axis,) * k
        out.append(
            operators.partial(u, xl, axes, engine=engine)
            - operators.partial(u, xr, axes, engine=engine)
        )
    return jnp.stack(out)


def initial_residual(u: Field, x: Array, u0: Field) -> Array:
    """`u(x) − u0(x_space)` for a space-time point `x = (x_space..., t0)` (time last)."""
    x = _point(x, "initial_residual")
    return u(x) - u0(x[:-1])


def data_residual(u: Field, row: Array, n_inputs: int) -> Array:
    """`u(x) − y` for a data row `(x_1..x_n_inputs, y...)` (observed values appended to the point)."""
    row = _point(row, "data_residual")
    if not 0 < n_inputs < row.shape[0]:
        raise ValueError(
            f"data_residual: a row of length {row.shape[0]} cannot hold {n_inputs} inputs "
            "and at least one observed value"
        )
    y = row[n_inputs:]
    pred = u(row[:n_inputs])
    return pred - (y[0] if jnp.ndim(pred) == 0 and y.shape == (1,) else y)


class HardConstraint(eqx.Module):
    """`u(x) = particular(x) + distance(x) · net(x)`: boundary/initial values built in.

    `distance` vanishes exactly where the condition holds (e.g.
    `x(1−x)` for zero values at 0 and 1; `t` for an initial condition) and
    `particular` takes the prescribed values there. The conditions then hold
    for every parameter value and need no loss term. The output is the
    network's first component for a scalar field (`scalar=True`).

    Example:
        >>> box = lambda x: x[0] * (1 - x[0]) * x[1] * (1 - x[1])
        >>> u = HardConstraint(net, distance=box)   # u = 0 on the unit square's boundary
    """

    net: eqx.Module
    distance: Callable[[Array], Array] = eqx.field(static=True)
    particular: Callable[[Array], Array] | None = eqx.field(static=True, default=None)
    scalar: bool = eqx.field(static=True, default=True)

    def __call__(self, x: Array) -> Array:
        out = self.net(x)
        if self.scalar:
            out = out[0]
        out = self.distance(x) * out
        return out if self.particular is None else out + self.particular(x)
