"""Elementwise bijections: `Affine` (with the `Shift` and `Scale` parametrisations) and the
constraint maps `Tanh`, `Sigmoid`, `Softplus` (REFERENCES §3.2).

All act on one unbatched point of any `shape` (batch with `jax.vmap`). The
constraint maps are fixed functions: they have no parameters and take no
context (`cond_shape` is `None`; a conditional `Chain` skips them).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP
from ._bijection import AbstractBijection, check_input

__all__ = ["Affine", "Scale", "Shift", "Sigmoid", "Softplus", "Tanh"]


# ---------------------------------------------------------------- helpers shared by the family


def _as_shape(shape, name: str) -> tuple[int, ...]:
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name}: shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(s < 1 for s in shape):
        raise ValueError(f"{name}: shape entries must be positive, got {shape}")
    return shape


def _cond_shape(cond_dim, name: str) -> tuple[int, ...] | None:
    """Check a context size: `None` (no context) or an integer >= 1; return the context shape."""
    if cond_dim is None:
        return None
    if not isinstance(cond_dim, int | np.integer) or cond_dim < 1:
        raise ValueError(f"{name}: cond_dim must be None or an integer >= 1, got {cond_dim!r}")
    return (int(cond_dim),)


def zero_last_layer(layer):
    """`layer` (a `Dense`) with its weight and bias set to zero."""
    return eqx.tree_at(
        lambda d: (d.weight, d.bias),
        layer,
        (jnp.zeros_like(layer.weight), jnp.zeros_like(layer.bias)),
    )


def zero_output_mlp(in_size: int, out_size: int, *, width: int, depth: int, key, dtype=None) -> MLP:
    """An `MLP` whose last layer (weight and bias) is zero: it outputs 0 everywhere at first.

    Conditioners are built this way so that a fresh flow is the identity
    (REFERENCES §3.2).
    """
    mlp = MLP(in_size, out_size, width=width, depth=depth, dtype=dtype, key=key)
    return eqx.tree_at(lambda m: m.layers[-1], mlp, zero_last_layer(mlp.layers[-1]))


def context_network(
    name: str, cond_dim, out_size: int, *, width: int, depth: int, key, dtype=None
) -> tuple[tuple[int, ...] | None, MLP | None]:
    """Check `cond_dim` and build the optional context network of a conditional layer.

    Returns `(cond_shape, net)`: `(None, None)` without context, else
    `((cond_dim,), zero_output_mlp(cond_dim, out_size, ...))`, whose offsets
    are exactly zero at initialisation, so a fresh conditional bijection
    equals its unconditional counterpart (REFERENCES §3.2).

    Raises:
        ValueError: `cond_dim` is not `None` or an integer >= 1, or it is set
            and `key` is `None`.
    """
    cond_shape = _cond_shape(cond_dim, name)
    if cond_shape is None:
        return None, None
    if key is None:
        raise ValueError(f"{name}: a key is needed to build the context network (cond_dim is set)")
    net = zero_output_mlp(cond_shape[0], out_size, width=width, depth=depth, dtype=dtype, key=key)
    return cond_shape, net


def float_dtype(dtype):
    """`dtype`, or the current default float dtype (float64 under x64) when `None`."""
    return jnp.result_type(float) if dtype is None else jnp.dtype(dtype)


def log_sech2(y: Array) -> Array:
    """log(1 − tanh²(y)) = 2(log 2 − |y| − softplus(−2|y|)), finite for every finite y."""
    a = jnp.abs(y)
    return 2.0 * (math.log(2.0) - a - jax.nn.softplus(-2.0 * a))


# ---------------------------------------------------------------- Affine


class Affine(AbstractBijection):
    """Elementwise shift and scale `x = loc + exp(log_scale) ⊙ z`.

    `log|det| = Σ log_scale`. The scale is positive (log parametrisation).
    With `cond_dim` set, `loc` and `log_scale` are the trainable arrays plus
    the output of a small network of the context (`MLP`, last layer zero), so
    a fresh conditional `Affine` equals the unconditional one.

    `Shift(...)` and `Scale(...)` build an `Affine` in which only one of the
    two parameters exists (the other is fixed at 0 / 1 and is `None` here).

    Args:
        shape: shape of one point (an int means `(int,)`).
        loc: initial shift, broadcastable to `shape` (default 0); `None` with
            `trainable_loc=False` fixes it at 0.
        scale: initial scale, positive, broadcastable to `shape` (default 1).
        cond_dim: context dimension, or `None` for an unconditional layer.
        width, depth: size of the context network (when `cond_dim` is set).
        trainable_loc, trainable_scale: `False` drops that parameter (fixed at
            0 / 1); `Shift` and `Scale` set these.
        dtype: parameter dtype (default float dtype if `None`).
        key: PRNG key, required only with `cond_dim`.

    Raises:
        ValueError: bad shapes, non-positive `scale`, `cond_dim` without `key`,
            both parameters dropped, or a value given for a dropped parameter;
            when called, a wrong input or context shape.

    Example:
        >>> b = Affine(2, loc=jnp.array([1.0, -1.0]), scale=2.0)
        >>> x, log_det = b.transform_and_log_det(jnp.zeros(2))  # x = loc, log_det = 2 log 2
    """

    loc: Array | None
    log_scale: Array | None
    net: MLP | None
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        shape,
        *,
        loc=None,
        scale=None,
        cond_dim: int | None = None,
        width: int = 32,
        depth: int = 1,
        trainable_loc: bool = True,
        trainable_scale: bool = True,
        dtype=None,
        key: PRNGKeyArray | None = None,
    ):
        self.shape = _as_shape(shape, "Affine")
        dtype = float_dtype(dtype)
        if not (trainable_loc or trainable_scale):
            raise ValueError("Affine: at least one of loc and scale must be trainable")
        if not trainable_loc and loc is not None:
            raise ValueError(
                "Affine: loc given but trainable_loc=False (use Scale for a pure scale)"
            )
        if not trainable_scale and scale is not None:
            raise ValueError("Affine: scale given but trainable_scale=False (use Shift)")

        def full(value, default, what):
            value = default if value is None else value
            arr = jnp.asarray(value, dtype)
            try:
                return jnp.broadcast_to(arr, self.shape) + jnp.zeros(self.shape, dtype)
            except ValueError:
                raise ValueError(
                    f"Affine: {what} of shape {arr.shape} does not broadcast to {self.shape}"
                ) from None

        self.loc = full(loc, 0.0, "loc") if trainable_loc else None
        if trainable_scale:
            s = full(scale, 1.0, "scale")
            if not isinstance(s, jax.core.Tracer) and not bool(jnp.all(s > 0)):
                raise ValueError(f"Affine: scale must be positive, got {np.asarray(s)}")
            self.log_scale = jnp.log(s)
        else:
            self.log_scale = None
        size = math.prod(self.shape) * (int(trainable_loc) + int(trainable_scale))
        self.cond_shape, self.net = context_network(
            "Affine", cond_dim, size, width=width, depth=depth, dtype=dtype, key=key
        )

    def _params(self, dtype, context):
        zero = jnp.zeros(self.shape, dtype)
        loc = zero if self.loc is None else self.loc.astype(dtype)
        log_scale = zero if self.log_scale is None else self.log_scale.astype(dtype)
        if self.net is not None:
            out = self.net(context.astype(self.net.layers[0].weight.dtype)).astype(dtype)
            parts = out.reshape(-1, *self.shape)
            i = 0
            if self.loc is not None:
                loc, i = loc + parts[0], 1
            if self.log_scale is not None:
                log_scale = log_scale + parts[i]
        return loc, log_scale

    def transform_and_log_det(self, z, context=None):
        check_input("Affine", z, self.shape, context, self.cond_shape)
        loc, log_scale = self._params(z.dtype, context)
        return loc + jnp.exp(log_scale) * z, jnp.sum(log_scale)

    def inverse_and_log_det(self, x, context=None):
        check_input("Affine", x, self.shape, context, self.cond_shape)
        loc, log_scale = self._params(x.dtype, context)
        return (x - loc) * jnp.exp(-log_scale), -jnp.sum(log_scale)


def Shift(
    shape,
    *,
    loc=None,
    cond_dim: int | None = None,
    width: int = 32,
    depth: int = 1,
    dtype=None,
    key: PRNGKeyArray | None = None,
) -> Affine:
    """A pure shift `x = z + loc` (log-det 0): an `Affine` without scale (`log_scale` is `None`).

    Arguments as for `Affine`.
    """
    return Affine(
        shape,
        loc=loc,
        cond_dim=cond_dim,
        width=width,
        depth=depth,
        trainable_scale=False,
        dtype=dtype,
        key=key,
    )


def Scale(
    shape,
    *,
    scale=None,
    cond_dim: int | None = None,
    width: int = 32,
    depth: int = 1,
    dtype=None,
    key: PRNGKeyArray | None = None,
) -> Affine:
    """A pure positive scale `x = exp(log_scale) ⊙ z`: an `Affine` without shift (`loc` is `None`).

    Arguments as for `Affine`.
    """
    return Affine(
        shape,
        scale=scale,
        cond_dim=cond_dim,
        width=width,
        depth=depth,
        trainable_loc=False,
        dtype=dtype,
        key=key,
    )


# ---------------------------------------------------------------- constraint maps


class Tanh(AbstractBijection):
    """`x = tanh(z)`: R → (−1, 1) elementwise, with a stable log-derivative.

    `log tanh'(z) = 2(log 2 − |z| − softplus(−2|z|))` is finite for every finite
    `z` (no `log(1 − tanh²)` cancellation). The inverse is `atanh`, defined on
    the open interval (−1, 1) with `log|det| = −log1p(−x) − log1p(x)`. At the
    boundary `x = ±1` it returns `z = ±inf` and log-det `+inf` (the exact
    limits); outside the interval the results are NaN. In floating point
    `tanh(z)` rounds to ±1 for |z| ≳ 9 (float32) / 19 (float64), so the round
    trip only holds below that; the forward log-det stays exact beyond it.

    No parameters and no context (`cond_shape` is `None`).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = _as_shape(shape, "Tanh")
        self.cond_shape = None

    def transform_and_log_det(self, z, context=None):
        check_input("Tanh", z, self.shape, context, self.cond_shape)
        return jnp.tanh(z), jnp.sum(log_sech2(z))

    def inverse_and_log_det(self, x, context=None):
        check_input("Tanh", x, self.shape, context, self.cond_shape)
        return jnp.arctanh(x), -jnp.sum(jnp.log1p(-x) + jnp.log1p(x))


class Sigmoid(AbstractBijection):
    """`x = σ(z) = 1/(1 + e^{−z})`: R → (0, 1) elementwise, with a stable log-derivative.

    `log σ'(z) = −softplus(−z) − softplus(z)`. The inverse is the logit
    `z = log x − log1p(−x)` on the open interval (0, 1), with
    `log|det| = −log x − log1p(−x)`; at `x = 0` / `1` it returns `z = −inf` /
    `+inf` and log-det `+inf`, outside the interval NaN. `σ(z)` rounds to 1
    for z ≳ 17 (float32) / 37 (float64), limiting the round trip there.

    No parameters and no context (`cond_shape` is `None`).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = _as_shape(shape, "Sigmoid")
        self.cond_shape = None

    def transform_and_log_det(self, z, context=None):
        check_input("Sigmoid", z, self.shape, context, self.cond_shape)
        return jax.nn.sigmoid(z), -jnp.sum(jax.nn.softplus(-z) + jax.nn.softplus(z))

    def inverse_and_log_det(self, x, context=None):
        check_input("Sigmoid", x, self.shape, context, self.cond_shape)
        log_x, log_1mx = jnp.log(x), jnp.log1p(-x)
        return log_x - log_1mx, -jnp.sum(log_x + log_1mx)


class Softplus(AbstractBijection):
    """`x = softplus(z) = log(1 + e^z)`: R → (0, ∞) elementwise.

    `log softplus'(z) = log σ(z) = −softplus(−z)`. The inverse on (0, ∞) is
    `z = x + log(−expm1(−x))`, accurate for small and large `x`, with
    `log|det| = −log(−expm1(−x))`; at `x = 0` it returns `z = −inf` and
    log-det `+inf`, for `x < 0` NaN. `softplus(z)` underflows to 0 for very
    negative z (≲ −103 in float32), limiting the round trip there.

    No parameters and no context (`cond_shape` is `None`).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = _as_shape(shape, "Softplus")
        self.cond_shape = None

    def transform_and_log_det(self, z, context=None):
        check_input("Softplus", z, self.shape, context, self.cond_shape)
        return jax.nn.softplus(z), -jnp.sum(jax.nn.softplus(-z))

    def inverse_and_log_det(self, x, context=None):
        check_input("Softplus", x, self.shape, context, self.cond_shape)
        log_sig = jnp.log(-jnp.expm1(-x))  # log σ(z) = log(1 − e^{−x})
        return x + log_sig, -jnp.sum(log_sig)
