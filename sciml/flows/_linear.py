"""Linear bijections: `Permute`, `Reverse`, `LULinear` (Glow) and `ActNorm` with its explicit
data-dependent initialisation `actnorm_init` (REFERENCES §3.2).

All act on one unbatched point (batch with `jax.vmap`). Permutations are
stored as integer array leaves: `eqx.filter_grad`, `eqx.filter_jit` and the
`eqx.is_inexact_array` filter leave them alone, so train with equinox's
filtered transformations (plain `jax.grad` over the whole module would reject
the integer leaves).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import lu, solve_triangular
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP
from ._bijection import AbstractBijection, check_input
from ._elementwise import _as_shape, context_network, float_dtype

__all__ = ["ActNorm", "LULinear", "Permute", "Reverse", "actnorm_init"]


class Permute(AbstractBijection):
    """Permute the entries of a vector: `x = z[permutation]` (log-det 0).

    Args:
        permutation: a permutation of `0 … n−1` (sequence or integer array);
            the bijection acts on points of shape `(n,)`.

    Attributes:
        permutation, inverse_permutation: int32 arrays (non-trainable leaves).

    Raises:
        ValueError: `permutation` is not 1-D, not integer, or not a
            permutation of `0 … n−1` (the message names the missing/repeated
            entries); when called, a wrong input shape or any context.
    """

    permutation: Array
    inverse_permutation: Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, permutation):
        perm = np.asarray(permutation)
        if perm.ndim != 1 or perm.size == 0:
            raise ValueError(f"Permute: permutation must be a non-empty 1-D array, got {perm!r}")
        if not np.issubdtype(perm.dtype, np.integer):
            raise ValueError(f"Permute: permutation must hold integers, got dtype {perm.dtype}")
        n = perm.size
        if not np.array_equal(np.sort(perm), np.arange(n)):
            missing = sorted(set(range(n)) - set(perm.tolist()))
            raise ValueError(
                f"Permute: {perm.tolist()} is not a permutation of 0..{n - 1} (missing {missing})"
            )
        self.permutation = jnp.asarray(perm, jnp.int32)
        self.inverse_permutation = jnp.asarray(np.argsort(perm), jnp.int32)
        self.shape = (n,)
        self.cond_shape = None

    def transform_and_log_det(self, z, context=None):
        check_input("Permute", z, self.shape, context, self.cond_shape)
        return z[self.permutation], jnp.zeros((), z.dtype)

    def inverse_and_log_det(self, x, context=None):
        check_input("Permute", x, self.shape, context, self.cond_shape)
        return x[self.inverse_permutation], jnp.zeros((), x.dtype)


class Reverse(AbstractBijection):
    """Reverse the order of the entries along every axis, `x = flip(z)` (log-det 0).

    For a vector this is the order reversal used between autoregressive or
    coupling layers. No parameters, no context.

    Args:
        shape: shape of one point (an int means `(int,)`).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, shape):
        self.shape = _as_shape(shape, "Reverse")
        self.cond_shape = None

    def transform_and_log_det(self, z, context=None):
        check_input("Reverse", z, self.shape, context, self.cond_shape)
        return jnp.flip(z), jnp.zeros((), z.dtype)

    def inverse_and_log_det(self, x, context=None):
        check_input("Reverse", x, self.shape, context, self.cond_shape)
        return jnp.flip(x), jnp.zeros((), x.dtype)


class LULinear(AbstractBijection):
    """Invertible linear map in LU form (Glow): `x = P L (U + diag(s)) z + bias`.

    `P` is a fixed permutation, `L` unit lower triangular, `U` strictly upper
    triangular, `s = sign ⊙ exp(log_abs_diag)` with a fixed sign. Then
    `log|det| = Σ log|s_i|` (O(D)), and the inverse is two triangular solves
    (`jax.scipy.linalg.solve_triangular`), O(D²). The bias starts at zero.

    Initialisation (Glow): the LU decomposition of a random rotation, so the
    layer starts volume preserving and mixes all coordinates. With
    `cond_dim`, a context network (`MLP`, last layer zero) adds offsets to the
    strict lower and upper entries, to `log_abs_diag` and to the bias.

    Args:
        dim: dimension `D` (points have shape `(D,)`).
        key: PRNG key (the rotation and the context network).
        cond_dim: context dimension, or `None`.
        width, depth: size of the context network.
        dtype: parameter dtype (default float dtype if `None`).

    Attributes:
        lower, upper: `(D, D)` arrays; only the strict lower / strict upper
            parts are used (the rest gets zero gradient).
        log_abs_diag: `(D,)`. bias: `(D,)`.
        sign: int8 `(D,)`, the fixed signs of the diagonal (not trainable).
        permutation: int32 `(D,)`, `P v = v[permutation]` (not trainable).

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1
    Convolutions", NeurIPS 2018.
    """

    lower: Array
    upper: Array
    log_abs_diag: Array
    bias: Array
    sign: Array
    permutation: Array
    net: MLP | None
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        cond_dim: int | None = None,
        width: int = 32,
        depth: int = 1,
        dtype=None,
    ):
        (dim,) = _as_shape(dim, "LULinear")
        self.shape = (dim,)
        dtype = float_dtype(dtype)
        rkey, nkey = jax.random.split(key)
        rotation = jax.random.orthogonal(rkey, dim, dtype=dtype)
        p, l_, u = lu(rotation)
        d = jnp.diag(u)
        self.permutation = jnp.argmax(p, axis=1).astype(jnp.int32)
        self.lower = jnp.tril(l_, -1)
        self.upper = jnp.triu(u, 1)
        self.log_abs_diag = jnp.log(jnp.abs(d))
        self.sign = jnp.where(d < 0, -1, 1).astype(jnp.int8)
        self.bias = jnp.zeros((dim,), dtype)
        self.cond_shape, self.net = context_network(
            "LULinear", cond_dim, dim * dim + dim, width=width, depth=depth, dtype=dtype, key=nkey
        )

    def _factors(self, dtype, context):
        dim = self.shape[0]
        lower = jnp.tril(self.lower.astype(dtype), -1)
        upper = jnp.triu(self.upper.astype(dtype), 1)
        log_abs = self.log_abs_diag.astype(dtype)
        bias = self.bias.astype(dtype)
        if self.net is not None:
            out = self.net(context.astype(self.net.layers[0].weight.dtype)).astype(dtype)
            m = dim * (dim - 1) // 2
            il, iu = np.tril_indices(dim, -1), np.triu_indices(dim, 1)
            lower = lower.at[il].add(out[:m])
            upper = upper.at[iu].add(out[m : 2 * m])
            log_abs = log_abs + out[2 * m : 2 * m + dim]
            bias = bias + out[2 * m + dim :]
        unit_lower = lower + jnp.eye(dim, dtype=dtype)
        upper_diag = upper + jnp.diag(self.sign.astype(dtype) * jnp.exp(log_abs))
        return unit_lower, upper_diag, log_abs, bias

    def weight(self, context: Array | None = None) -> Array:
        """The `(D, D)` matrix `W = P L (U + diag(s))` (for inspection and tests)."""
        if (context is None) != (self.cond_shape is None):
            check_input("LULinear", jnp.zeros(self.shape), self.shape, context, self.cond_shape)
        dtype = self.log_abs_diag.dtype
        unit_lower, upper_diag, _, _ = self._factors(dtype, context)
        return (unit_lower @ upper_diag)[self.permutation]

    def transform_and_log_det(self, z, context=None):
        check_input("LULinear", z, self.shape, context, self.cond_shape)
        unit_lower, upper_diag, log_abs, bias = self._factors(z.dtype, context)
        x = (unit_lower @ (upper_diag @ z))[self.permutation] + bias
        return x, jnp.sum(log_abs)

    def inverse_and_log_det(self, x, context=None):
        check_input("LULinear", x, self.shape, context, self.cond_shape)
        unit_lower, upper_diag, log_abs, bias = self._factors(x.dtype, context)
        y = jnp.zeros_like(x).at[self.permutation].set(x - bias)  # Pᵀ(x − bias)
        v = solve_triangular(unit_lower, y, lower=True, unit_diagonal=True)
        z = solve_triangular(upper_diag, v, lower=False)
        return z, -jnp.sum(log_abs)


class ActNorm(AbstractBijection):
    """Activation normalisation (Glow): `x = exp(log_scale) ⊙ z + loc`, `log|det| = Σ log_scale`.

    Starts as the identity. Its data-dependent initialisation is the explicit
    function `actnorm_init(actnorm, data)`, which returns a new module (no
    hidden "initialised" state, REFERENCES §3.2). No context (`cond_shape` is
    `None`): a context-dependent normalisation has no data-dependent init; use
    a conditional `Affine` for that.

    Args:
        dim: dimension `D` (an int; a tuple gives any point shape).
        dtype: parameter dtype (default float dtype if `None`).
    """

    loc: Array
    log_scale: Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, dim, *, dtype=None):
        self.shape = _as_shape(dim, "ActNorm")
        self.cond_shape = None
        dtype = float_dtype(dtype)
        self.loc = jnp.zeros(self.shape, dtype)
        self.log_scale = jnp.zeros(self.shape, dtype)

    def transform_and_log_det(self, z, context=None):
        check_input("ActNorm", z, self.shape, context, self.cond_shape)
        log_scale = self.log_scale.astype(z.dtype)
        return jnp.exp(log_scale) * z + self.loc.astype(z.dtype), jnp.sum(log_scale)

    def inverse_and_log_det(self, x, context=None):
        check_input("ActNorm", x, self.shape, context, self.cond_shape)
        log_scale = self.log_scale.astype(x.dtype)
        return (x - self.loc.astype(x.dtype)) * jnp.exp(-log_scale), -jnp.sum(log_scale)


def actnorm_init(actnorm: ActNorm, data: Array, *, inverse: bool = False) -> ActNorm:
    """Return a copy of `actnorm` whose output on `data` has zero mean and unit variance.

    With `inverse=False` (default) `transform` maps the batch `data` to
    per-dimension mean 0 and (population) variance 1: `log_scale = −log std`,
    `loc = −mean/std`. With `inverse=True` it is `inverse` that does so
    (`loc = mean`, `log_scale = log std`): use this when the layer sits in the
    density direction of a flow trained by maximum likelihood, where data
    enter through the inverse.

    Args:
        actnorm: the `ActNorm` to initialise (left unchanged).
        data: `(batch, *actnorm.shape)` array, `batch >= 2`.
        inverse: which direction to normalise (see above).

    Returns:
        A new `ActNorm`.

    Raises:
        TypeError: `actnorm` is not an `ActNorm`.
        ValueError: `data` has the wrong shape, fewer than two rows, or (when
            concrete) a dimension with zero variance.
    """
    if not isinstance(actnorm, ActNorm):
        raise TypeError(f"actnorm_init: expected an ActNorm, got a {type(actnorm).__name__}")
    data = jnp.asarray(data)
    if data.ndim != len(actnorm.shape) + 1 or tuple(data.shape[1:]) != actnorm.shape:
        raise ValueError(
            f"actnorm_init: data must have shape (batch, *{actnorm.shape}), got {data.shape}"
        )
    if data.shape[0] < 2:
        raise ValueError(f"actnorm_init: need at least 2 data points, got {data.shape[0]}")
    dtype = actnorm.log_scale.dtype
    data = data.astype(dtype)
    mean, std = jnp.mean(data, axis=0), jnp.std(data, axis=0)
    if not isinstance(std, jax.core.Tracer) and not bool(jnp.all(std > 0)):
        bad = np.argwhere(np.asarray(std) <= 0).tolist()
        raise ValueError(f"actnorm_init: data have zero variance in dimension(s) {bad}")
    if inverse:
        loc, log_scale = mean, jnp.log(std)
    else:
        loc, log_scale = -mean / std, -jnp.log(std)
    return eqx.tree_at(lambda a: (a.loc, a.log_scale), actnorm, (loc, log_scale))
