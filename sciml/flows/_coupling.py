"""Coupling layers: `AffineCoupling` (RealNVP) and `SplineCoupling` (neural spline flow).

A coupling layer splits a point into an untransformed block `x_A` and a
transformed block `x_B`; `x_B` goes through an elementwise bijection whose
parameters are a network (the conditioner) of `x_A` and the context:

    y_A = x_A,    y_B = τ(x_B; θ),    θ = net([x_A, context]).

Both directions cost one network pass. The conditioner's last layer starts
at zero, so a fresh layer is the identity (REFERENCES §3.2). Stack layers
with alternating `flip` (or permutations in between) so that every
coordinate gets transformed.

The affine transformer uses the scale `softplus(r + c) + 1e-2` (flowjax's
choice, REFERENCES §3.2) instead of `exp(s)`: the scale is bounded below and
grows only linearly in the network output, and `c = log(e^0.99 − 1)` makes a
zero output the identity.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from sciml.nn import MLP

from ._bijection import AbstractBijection, check_input
from ._elementwise import _cond_shape, zero_output_mlp
from ._spline import (
    _check_spline_settings,
    rational_quadratic_knots,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_param_count,
)

__all__ = ["AffineCoupling", "SplineCoupling"]

MIN_SCALE = 1e-2
_SCALE_SHIFT = math.log(math.expm1(1 - MIN_SCALE))


def affine_scale(raw: Array) -> tuple[Array, Array]:
    """`(scale, log scale)` from unconstrained `raw`: `softplus(raw + c) + 1e-2`, 1 at `raw = 0`."""
    scale = jax.nn.softplus(raw + _SCALE_SHIFT) + MIN_SCALE
    return scale, jnp.log(scale)


def affine_forward(z: Array, params: Array) -> tuple[Array, Array]:
    """`x = z · scale + shift` elementwise; `params` is `z.shape + (2,)` = (shift, raw scale)."""
    scale, log_scale = affine_scale(params[..., 1])
    return z * scale + params[..., 0], jnp.sum(log_scale)


def affine_inverse(x: Array, params: Array) -> tuple[Array, Array]:
    """Inverse of `affine_forward`: `z = (x − shift) / scale`, log-det `−Σ log scale`."""
    scale, log_scale = affine_scale(params[..., 1])
    return (x - params[..., 0]) / scale, -jnp.sum(log_scale)


def _coupling_setup(
    name: str, dim, untransformed_dim, flip, cond_dim, per_dim: int, width, depth, key
) -> tuple[int, bool, tuple[int, ...] | None, MLP]:
    """Check the sizes; return `(split, flip, cond_shape, conditioner)`.

    The conditioner maps `[x_A, context]` to `per_dim` numbers per coordinate
    of `x_B`, and its last layer is zero (a fresh coupling is the identity).
    """
    if not (isinstance(dim, int) and dim >= 2):
        raise ValueError(
            f"{name}: dim must be an integer >= 2 (a coupling needs two blocks), got {dim!r}"
        )
    n = dim // 2 if untransformed_dim is None else untransformed_dim
    if not (isinstance(n, int) and 1 <= n <= dim - 1):
        raise ValueError(
            f"{name}: untransformed_dim must be an integer in [1, {dim - 1}], "
            f"got {untransformed_dim!r}"
        )
    cond_shape = _cond_shape(cond_dim, name)
    flip = bool(flip)
    n_a, n_b = (dim - n, n) if flip else (n, dim - n)
    in_size = n_a + (0 if cond_shape is None else cond_shape[0])
    net = zero_output_mlp(in_size, per_dim * n_b, width=width, depth=depth, key=key)
    return n, flip, cond_shape, net


def _blocks(x: Array, split: int, flip: bool) -> tuple[Array, Array]:
    """(conditioning block A, transformed block B)."""
    first, second = x[:split], x[split:]
    return (second, first) if flip else (first, second)


def _join(a: Array, b: Array, flip: bool) -> Array:
    return jnp.concatenate([b, a] if flip else [a, b])


def _conditioner_params(net: MLP, a: Array, context, n_b: int, per_dim: int) -> Array:
    inp = a if context is None else jnp.concatenate([a, context.astype(a.dtype)])
    # the conditioner's parameters may be of another float dtype: follow the input's
    return net(inp).astype(a.dtype).reshape(n_b, per_dim)


class AffineCoupling(AbstractBijection):
    """RealNVP affine coupling: `y_B = x_B · scale(x_A, c) + shift(x_A, c)`, `y_A = x_A`.

    `scale = softplus(r + c₀) + 1e-2` (bounded below, 1 at `r = 0`); the
    log-determinant is `Σ log scale`. The conditioner outputs `(shift, r)`
    for every transformed coordinate and starts at zero (the identity).

    Args:
        dim: size of a point (shape `(dim,)`, `dim >= 2`).
        key: PRNG key of the conditioner.
        cond_dim: context size, or `None`; the conditioner's input is `x_A`
            concatenated with the context.
        width, depth: the conditioner `MLP` (hidden width, number of hidden layers).
        untransformed_dim: split index `n` (default `dim // 2`): the blocks are
            `x[:n]` and `x[n:]`.
        flip: `False`: `x[:n]` conditions and `x[n:]` is transformed; `True`:
            the roles swap. Alternate it in a stack so every coordinate moves.

    Raises:
        ValueError: bad sizes; when called, wrong input or context shapes.

    Example:
        >>> layer = AffineCoupling(4, key=jax.random.key(0), flip=True)
        >>> x, logdet = layer.transform_and_log_det(jnp.ones(4))

    Reference: Dinh et al., "Density estimation using Real NVP", ICLR 2017.
    """

    conditioner: MLP
    split: int = eqx.field(static=True)
    flip: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        cond_dim: int | None = None,
        width: int = 64,
        depth: int = 2,
        untransformed_dim: int | None = None,
        flip: bool = False,
    ):
        self.split, self.flip, self.cond_shape, self.conditioner = _coupling_setup(
            "AffineCoupling", dim, untransformed_dim, flip, cond_dim, 2, width, depth, key
        )
        self.shape = (dim,)

    def _params(self, a, context):
        n_b = self.shape[0] - a.shape[0]
        return _conditioner_params(self.conditioner, a, context, n_b, 2)

    def transform_and_log_det(self, z, context=None):
        check_input("AffineCoupling", z, self.shape, context, self.cond_shape)
        a, b = _blocks(z, self.split, self.flip)
        y_b, logdet = affine_forward(b, self._params(a, context))
        return _join(a, y_b, self.flip), logdet

    def inverse_and_log_det(self, x, context=None):
        check_input("AffineCoupling", x, self.shape, context, self.cond_shape)
        a, b = _blocks(x, self.split, self.flip)
        z_b, logdet = affine_inverse(b, self._params(a, context))
        return _join(a, z_b, self.flip), logdet


class SplineCoupling(AbstractBijection):
    """Neural spline coupling: `y_B = RQS(x_B; θ(x_A, c))`, `y_A = x_A` (Durkan et al. 2019).

    Each transformed coordinate gets a rational-quadratic spline with `knots`
    bins on `[-interval, interval]` (identity outside); the conditioner
    outputs its `3·knots − 1` parameters (see `rational_quadratic_knots`) and
    starts at zero (the identity).

    Args:
        dim, key, cond_dim, width, depth, untransformed_dim, flip: as for
            `AffineCoupling`.
        knots: number of bins `K` (default 8).
        interval: `B` (default 3.0).

    Raises:
        ValueError: bad sizes, knots or interval; when called, wrong input or
            context shapes.

    Reference: Durkan et al., "Neural Spline Flows", NeurIPS 2019.
    """

    conditioner: MLP
    knots: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    split: int = eqx.field(static=True)
    flip: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        knots: int = 8,
        interval: float = 3.0,
        cond_dim: int | None = None,
        width: int = 64,
        depth: int = 2,
        untransformed_dim: int | None = None,
        flip: bool = False,
    ):
        _check_spline_settings("SplineCoupling", knots, interval)
        npar = spline_param_count(knots)
        self.split, self.flip, self.cond_shape, self.conditioner = _coupling_setup(
            "SplineCoupling", dim, untransformed_dim, flip, cond_dim, npar, width, depth, key
        )
        self.knots = knots
        self.interval = float(interval)
        self.shape = (dim,)

    def _knots(self, a, context):
        n_b = self.shape[0] - a.shape[0]
        params = _conditioner_params(
            self.conditioner, a, context, n_b, spline_param_count(self.knots)
        )
        return rational_quadratic_knots(params, self.interval)

    def transform_and_log_det(self, z, context=None):
        check_input("SplineCoupling", z, self.shape, context, self.cond_shape)
        a, b = _blocks(z, self.split, self.flip)
        y_b, logd = rational_quadratic_spline(b, self._knots(a, context), self.interval)
        return _join(a, y_b, self.flip), jnp.sum(logd)

    def inverse_and_log_det(self, x, context=None):
        check_input("SplineCoupling", x, self.shape, context, self.cond_shape)
        a, b = _blocks(x, self.split, self.flip)
        z_b, logd = rational_quadratic_spline_inverse(b, self._knots(a, context), self.interval)
        return _join(a, z_b, self.flip), jnp.sum(logd)
