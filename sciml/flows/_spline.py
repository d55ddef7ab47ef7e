"""Rational-quadratic splines (Durkan et al. 2019) and the elementwise `RationalQuadraticSpline`.

The maths (REFERENCES §3.3). On `[-B, B]` a monotone rational-quadratic
spline with `K` bins maps knots `(x_k, y_k)` with derivatives `δ_k`; outside
it is the identity (log-derivative 0), and the boundary derivatives
`δ_0 = δ_K = 1` make the join C¹. In bin `k`, with `Δx, Δy` the bin sizes,
`s = Δy/Δx`, `ξ = (x − x_k)/Δx` and `β = δ_{k+1} + δ_k − 2s`:

    y      = y_k + Δy [s ξ² + δ_k ξ(1−ξ)] / [s + β ξ(1−ξ)]
    dy/dx  = s² [δ_{k+1} ξ² + 2 s ξ(1−ξ) + δ_k (1−ξ)²] / [s + β ξ(1−ξ)]²

The inverse solves the quadratic `a ξ² + b ξ + c = 0` with the stable root
`ξ = 2c / (−b − √(b² − 4ac))`.

Clip before mask: the spline branch is evaluated on `clip(x, −B, B)` with `ξ`
clamped to `[0, 1]` and the discriminant to `≥ 0`, and only then is the
identity selected outside with `jnp.where`. `where`'s gradient multiplies the
unused branch by zero, and `0 · inf = NaN`, so the unused branch must be
finite for every input (the NaN-gradient bug of flowjax #239, nflows #23,
pyro #3139).

Parameterisation: per dimension `3K − 1` unconstrained numbers, `K` widths,
`K` heights (softmax, a minimum size, rescaled to `2B`) and `K − 1` interior
derivatives (softplus plus a minimum). The derivatives' softplus is shifted
so that all-zero parameters give `δ = 1` and equal bins: the identity. A
conditioner whose last layer is zero-initialised therefore starts as the
identity.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from sciml.nn import MLP

from ._bijection import AbstractBijection, check_input
from ._elementwise import context_network

__all__ = [
    "RationalQuadraticSpline",
    "rational_quadratic_knots",
    "rational_quadratic_spline",
    "rational_quadratic_spline_inverse",
    "spline_param_count",
]

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3


def spline_param_count(knots: int) -> int:
    """Number of unconstrained parameters of one spline with `knots` bins: `3 * knots - 1`."""
    return 3 * knots - 1


def _check_spline_settings(name: str, knots, interval) -> None:
    if not (isinstance(knots, int) and knots >= 1):
        raise ValueError(f"{name}: knots must be an integer >= 1, got {knots!r}")
    if not (isinstance(interval, int | float) and math.isfinite(interval) and interval > 0):
        raise ValueError(f"{name}: interval must be a positive finite number, got {interval!r}")
    if knots * MIN_BIN >= 1:
        raise ValueError(f"{name}: knots * {MIN_BIN} must be < 1, got knots={knots}")


def _cumulative_knots(raw: Array, interval: float) -> Array:
    """Bin edges on `[-B, B]` from `K` unconstrained sizes (softmax + minimum size)."""
    k = raw.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * k) * jax.nn.softmax(raw, axis=-1)
    # cumulative sums as a product with a triangular matrix: K is small, and this
    # compiles faster than a cumsum under jacfwd/grad
    upper = jnp.triu(jnp.ones((k, k - 1), raw.dtype))
    inner = -interval + 2 * interval * (sizes @ upper)
    lo = jnp.full(raw.shape[:-1] + (1,), -interval, raw.dtype)
    hi = jnp.full(raw.shape[:-1] + (1,), interval, raw.dtype)
    # the end knots are set exactly (a cumsum may miss B by rounding)
    return jnp.concatenate([lo, inner, hi], axis=-1)


def rational_quadratic_knots(params: Array, interval: float = 3.0) -> tuple[Array, Array, Array]:
    """Knots of rational-quadratic splines from unconstrained parameters.

    Args:
        params: `(..., 3K - 1)`: per spline `K` width, `K` height and `K - 1`
            interior-derivative parameters, in that order. All zeros give the
            identity (equal bins, all derivatives 1).
        interval: `B`, the spline acts on `[-B, B]`.

    Returns:
        `(x_knots, y_knots, derivatives)`, each `(..., K + 1)`: increasing knots
        from `-B` to `B` (bins at least `1e-3 · 2B` wide and high) and positive
        derivatives (`>= 1e-3`, the two boundary ones exactly 1).

    Raises:
        ValueError: a last axis of length not of the form `3K - 1`.
    """
    n = params.shape[-1]
    if n < 2 or (n + 1) % 3:
        raise ValueError(
            f"rational_quadratic_knots: the last axis must have 3K - 1 entries (K bins), got {n}"
        )
    k = (n + 1) // 3
    widths, heights, derivs = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]
    xk = _cumulative_knots(widths, interval)
    yk = _cumulative_knots(heights, interval)
    # shift so that a zero parameter gives a derivative of exactly 1 (the identity)
    shift = math.log(math.expm1(1 - MIN_DERIVATIVE))
    inner = MIN_DERIVATIVE + jax.nn.softplus(derivs + shift)
    one = jnp.ones(params.shape[:-1] + (1,), params.dtype)
    dk = jnp.concatenate([one, inner, one], axis=-1)
    return xk, yk, dk


def _bin_values(edges: Array, v: Array, *tables: Array) -> list[Array]:
    """Left and right values of each table at the bin of `v` (edges: the K + 1 knots).

    The bin is the number of interior edges `<= v`, in [0, K-1]. Entries are
    picked with a one-hot sum rather than a gather: K is small, and the
    gradient of a gather (a scatter) is slow to compile under vmap.
    """
    k = jnp.sum(edges[1:-1] <= v)
    onehot = (jnp.arange(edges.shape[-1] - 1) == k).astype(edges.dtype)
    out = []
    for t in tables:
        out += [jnp.dot(onehot, t[:-1]), jnp.dot(onehot, t[1:])]
    return out


def _log_derivative(xi, s, d0, d1):
    om = xi * (1 - xi)
    den = s + (d1 + d0 - 2 * s) * om
    num = d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2
    return 2 * jnp.log(s) + jnp.log(num) - 2 * jnp.log(den)


def _forward_scalar(x, xk, yk, dk, interval):
    inside = (x >= -interval) & (x <= interval)
    xc = jnp.clip(x, -interval, interval)  # clip before mask: the spline branch stays finite
    x0, x1, y0, y1, d0, d1 = _bin_values(xk, xc, xk, yk, dk)
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    xi = jnp.clip((xc - x0) / dx, 0, 1)
    om = xi * (1 - xi)
    y = y0 + dy * (s * xi**2 + d0 * om) / (s + (d1 + d0 - 2 * s) * om)
    logd = _log_derivative(xi, s, d0, d1)
    return jnp.where(inside, y, x), jnp.where(inside, logd, jnp.zeros_like(logd))


def _inverse_scalar(y, xk, yk, dk, interval):
    inside = (y >= -interval) & (y <= interval)
    yc = jnp.clip(y, -interval, interval)
    x0, x1, y0, y1, d0, d1 = _bin_values(yk, yc, xk, yk, dk)
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    beta = d1 + d0 - 2 * s
    r = yc - y0
    a = dy * (s - d0) + r * beta
    b = dy * d0 - r * beta
    c = -s * r
    disc = jnp.maximum(b**2 - 4 * a * c, 0)
    # b > 0 whenever c = 0, so the denominator of the stable root is never 0
    xi = jnp.clip(2 * c / (-b - jnp.sqrt(disc)), 0, 1)
    x = x0 + xi * dx
    logd = -_log_derivative(xi, s, d0, d1)
    return jnp.where(inside, x, y), jnp.where(inside, logd, jnp.zeros_like(logd))


_SIG = "(),(k),(k),(k)->(),()"


def rational_quadratic_spline(
    x: Array, knots: tuple[Array, Array, Array], interval: float = 3.0
) -> tuple[Array, Array]:
    """Evaluate rational-quadratic splines elementwise: `(y, log dy/dx)`.

    Args:
        x: any shape `S`.
        knots: `(x_knots, y_knots, derivatives)`, each `S + (K + 1,)`, as
            returned by `rational_quadratic_knots` (end knots at `∓interval`).
        interval: `B`; outside `[-B, B]` the map is the identity.

    Returns:
        `y` (shape `S`) and the elementwise log-derivatives (shape `S`, 0
        outside `[-B, B]`). Values and gradients are finite for every finite
        input, however large.
    """
    xk, yk, dk = knots
    fn = jnp.vectorize(lambda v, a, b, c: _forward_scalar(v, a, b, c, interval), signature=_SIG)
    return fn(x, xk, yk, dk)


def rational_quadratic_spline_inverse(
    y: Array, knots: tuple[Array, Array, Array], interval: float = 3.0
) -> tuple[Array, Array]:
    """Invert `rational_quadratic_spline` elementwise: `(x, log dx/dy)` (log dx/dy = −log dy/dx).

    Arguments and shapes as for `rational_quadratic_spline`.
    """
    xk, yk, dk = knots
    fn = jnp.vectorize(lambda v, a, b, c: _inverse_scalar(v, a, b, c, interval), signature=_SIG)
    return fn(y, xk, yk, dk)


class RationalQuadraticSpline(AbstractBijection):
    """Elementwise monotone rational-quadratic spline with learnable knots per element.

    Each element of the input gets its own spline on `[-interval, interval]`
    (identity outside, C¹ at the ends); the log-determinant is the sum of the
    elementwise log-derivatives. The parameters start at the identity.

    Without context the `3K − 1` parameters per element are an array
    `params` of shape `shape + (3K − 1,)`. With `cond_dim` set they are
    `params + net(context)`, `net` an `MLP` (`width`, `depth`) whose last layer
    starts at zero.

    Args:
        shape: shape of one point, e.g. `(3,)`.
        knots: number of bins `K` (default 8).
        interval: `B` (default 3.0).
        key: PRNG key; needed only when `cond_dim` is set.
        cond_dim: context size, or `None` for an unconditional spline.
        width, depth: size of the context network.

    Raises:
        ValueError: bad `knots`/`interval`/`cond_dim`, or `cond_dim` without a key;
            when called, wrong input or context shapes (see `check_input`).

    Example:
        >>> rqs = RationalQuadraticSpline((2,))
        >>> x, logdet = rqs.transform_and_log_det(jnp.array([0.5, 10.0]))  # identity at first

    Reference: Durkan et al., "Neural Spline Flows", NeurIPS 2019.
    """

    params: Array
    net: MLP | None
    knots: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        shape: tuple[int, ...],
        knots: int = 8,
        interval: float = 3.0,
        *,
        key: PRNGKeyArray | None = None,
        cond_dim: int | None = None,
        width: int = 64,
        depth: int = 2,
    ):
        _check_spline_settings("RationalQuadraticSpline", knots, interval)
        shape = tuple(int(n) for n in shape)
        if any(n < 1 for n in shape):
            raise ValueError(f"RationalQuadraticSpline: shape entries must be >= 1, got {shape}")
        npar = spline_param_count(knots)
        self.params = jnp.zeros(shape + (npar,))
        self.cond_shape, self.net = context_network(
            "RationalQuadraticSpline",
            cond_dim,
            math.prod(shape) * npar,
            width=width,
            depth=depth,
            key=key,
        )
        self.knots = knots
        self.interval = float(interval)
        self.shape = shape

    def _knots(self, dtype, context):
        params = self.params.astype(dtype)
        if self.net is not None:
            params = params + self.net(context).astype(dtype).reshape(params.shape)
        return rational_quadratic_knots(params, self.interval)

    def transform_and_log_det(self, z, context=None):
        check_input("RationalQuadraticSpline", z, self.shape, context, self.cond_shape)
        knots = self._knots(jnp.result_type(z), context)
        x, logd = rational_quadratic_spline(z, knots, self.interval)
        return x, jnp.sum(logd)

    def inverse_and_log_det(self, x, context=None):
        check_input("RationalQuadraticSpline", x, self.shape, context, self.cond_shape)
        knots = self._knots(jnp.result_type(x), context)
        z, logd = rational_quadratic_spline_inverse(x, knots, self.interval)
        return z, jnp.sum(logd)
