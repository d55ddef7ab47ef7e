"""Distributions: the `AbstractDistribution` interface, base distributions (`StandardNormal`,
`DiagNormal`, `StudentT`, `GaussianMixture`) and flows as distributions (`Transformed`).

Every method acts on ONE point of shape `shape` (and draws one sample per
key); batch with `jax.vmap`, e.g.
`jax.vmap(dist.log_prob)(xs)` or `jax.vmap(dist.sample)(jax.random.split(key, n))`
(with a context: `jax.vmap(dist.log_prob)(xs, contexts)`).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, logsumexp
from jaxtyping import Array, PRNGKeyArray

from ._bijection import AbstractBijection
from ._elementwise import _as_shape, float_dtype

__all__ = [
    "AbstractDistribution",
    "DiagNormal",
    "GaussianMixture",
    "StandardNormal",
    "StudentT",
    "Transformed",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _check_point(name: str, x, shape, context, cond_shape) -> None:
    x_shape = jnp.shape(x)
    if x_shape != tuple(shape):
        hint = " (one point: batch with jax.vmap)" if len(x_shape) == len(shape) + 1 else ""
        raise ValueError(f"{name}: expected a point of shape {tuple(shape)}, got {x_shape}{hint}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name}: x must be floating point, got dtype {jnp.result_type(x)}")
    _check_context(name, context, cond_shape)


def _check_context(name: str, context, cond_shape) -> None:
    if cond_shape is None:
        if context is not None:
            raise ValueError(
                f"{name}: this distribution takes no context (cond_shape None), got one of "
                f"shape {jnp.shape(context)}"
            )
    elif context is None:
        raise ValueError(f"{name}: expected a context of shape {tuple(cond_shape)}, got None")
    elif jnp.shape(context) != tuple(cond_shape):
        raise ValueError(
            f"{name}: expected context shape {tuple(cond_shape)}, got {jnp.shape(context)}"
        )


class AbstractDistribution(eqx.Module):
    """A probability distribution over points of shape `shape`, optionally conditional.

    Attributes:
        shape: shape of one point.
        cond_shape: shape of the context, or `None` (unconditional).

    Methods (one point each; batch with `jax.vmap`):
        log_prob(x, context=None): log-density at `x` (scalar).
        sample(key, context=None): one sample of shape `shape`.
        sample_and_log_prob(key, context=None): `(x, log_prob(x))`; subclasses
            override it where both come cheaper together (`Transformed`).

    Wrong point or context shapes raise `ValueError` at trace time.
    """

    shape: eqx.AbstractVar[tuple[int, ...]]
    cond_shape: eqx.AbstractVar[tuple[int, ...] | None]

    @abstractmethod
    def log_prob(self, x: Array, context: Array | None = None) -> Array:
        """Log-density at one point `x` of shape `shape`."""

    @abstractmethod
    def sample(self, key: PRNGKeyArray, context: Array | None = None) -> Array:
        """One sample of shape `shape`."""

    def sample_and_log_prob(
        self, key: PRNGKeyArray, context: Array | None = None
    ) -> tuple[Array, Array]:
        """`(x, log_prob(x))` for one sample `x`."""
        x = self.sample(key, context)
        return x, self.log_prob(x, context)


class StandardNormal(AbstractDistribution):
    """Standard normal N(0, I) on points of shape `shape` (no parameters, no context).

    Args:
        shape: shape of one point (an int means `(int,)`).
        dtype: dtype of samples; `None` means the default float dtype at
            sampling time. `log_prob` computes in the dtype of `x`.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)
    dtype: np.dtype | None = eqx.field(static=True)

    def __init__(self, shape, *, dtype=None):
        self.shape = _as_shape(shape, "StandardNormal")
        self.cond_shape = None
        self.dtype = None if dtype is None else jnp.dtype(dtype)

    def log_prob(self, x, context=None):
        _check_point("StandardNormal", x, self.shape, context, self.cond_shape)
        return -0.5 * jnp.sum(x**2) - x.size * _HALF_LOG_2PI

    def sample(self, key, context=None):
        _check_context("StandardNormal", context, self.cond_shape)
        return jax.random.normal(key, self.shape, float_dtype(self.dtype))


class DiagNormal(AbstractDistribution):
    """Normal with diagonal covariance N(loc, diag(scale²)), trainable.

    The scale is stored as `log_scale`, so it stays positive under any update.
    No context.

    Args:
        loc: mean, an array of the point shape.
        scale: standard deviations, positive, broadcastable to `loc`'s shape.

    Raises:
        ValueError: a non-positive `scale` or shapes that do not broadcast.
    """

    loc: Array
    log_scale: Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, loc, scale):
        loc = jnp.asarray(loc)
        if not jnp.issubdtype(loc.dtype, jnp.floating):
            loc = loc.astype(float_dtype(None))
        scale = jnp.asarray(scale, loc.dtype)
        try:
            scale = jnp.broadcast_to(scale, loc.shape)
        except ValueError:
            raise ValueError(
                f"DiagNormal: scale of shape {scale.shape} does not broadcast to loc's shape "
                f"{loc.shape}"
            ) from None
        if not isinstance(scale, jax.core.Tracer) and not bool(jnp.all(scale > 0)):
            raise ValueError(f"DiagNormal: scale must be positive, got {np.asarray(scale)}")
        self.shape = tuple(loc.shape)
        self.cond_shape = None
        self.loc = loc
        self.log_scale = jnp.log(scale)

    @property
    def scale(self) -> Array:
        """The standard deviations `exp(log_scale)`."""
        return jnp.exp(self.log_scale)

    def log_prob(self, x, context=None):
        _check_point("DiagNormal", x, self.shape, context, self.cond_shape)
        loc, log_scale = self.loc.astype(x.dtype), self.log_scale.astype(x.dtype)
        r = (x - loc) * jnp.exp(-log_scale)
        return jnp.sum(-0.5 * r**2 - log_scale) - x.size * _HALF_LOG_2PI

    def sample(self, key, context=None):
        _check_context("DiagNormal", context, self.cond_shape)
        eps = jax.random.normal(key, self.shape, self.loc.dtype)
        return self.loc + jnp.exp(self.log_scale) * eps


class StudentT(AbstractDistribution):
    """Standard Student-t with `df` degrees of freedom, independent per entry (heavy tails).

    Density per entry: Γ((ν+1)/2) / (Γ(ν/2) √(νπ)) (1 + x²/ν)^{−(ν+1)/2}.
    Location 0 and scale 1: compose with an `Affine` for others. Samples are
    `ε / √(g/ν)`, `ε ~ N(0,1)`, `g ~ χ²_ν`.

    `df` is fixed (a static float) by default; with `trainable_df=True` it is
    a trainable array leaf stored as `log_df` (positive under any update). No
    context.

    Args:
        shape: shape of one point (an int means `(int,)`).
        df: degrees of freedom ν > 0 (scalar).
        trainable_df: store ν as a parameter.
        dtype: dtype of samples / of `log_df` (default float dtype if `None`).

    Raises:
        ValueError: `df <= 0` or not finite.
    """

    log_df: Array | None
    fixed_df: float | None = eqx.field(static=True)
    dtype: np.dtype | None = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, shape, df: float = 5.0, *, trainable_df: bool = False, dtype=None):
        self.shape = _as_shape(shape, "StudentT")
        self.cond_shape = None
        df = float(df)
        if not (df > 0 and math.isfinite(df)):
            raise ValueError(f"StudentT: df must be positive and finite, got {df}")
        self.dtype = None if dtype is None else jnp.dtype(dtype)
        if trainable_df:
            self.log_df = jnp.asarray(math.log(df), float_dtype(dtype))
            self.fixed_df = None
        else:
            self.log_df = None
            self.fixed_df = df

    def df(self, dtype=None) -> Array:
        """The degrees of freedom ν as an array (in `dtype`, default its own)."""
        if self.log_df is None:
            return jnp.asarray(self.fixed_df, float_dtype(self.dtype if dtype is None else dtype))
        nu = jnp.exp(self.log_df)
        return nu if dtype is None else nu.astype(dtype)

    def log_prob(self, x, context=None):
        _check_point("StudentT", x, self.shape, context, self.cond_shape)
        nu = self.df(x.dtype)
        norm = gammaln(0.5 * (nu + 1)) - gammaln(0.5 * nu) - 0.5 * jnp.log(nu * jnp.pi)
        return x.size * norm - 0.5 * (nu + 1) * jnp.sum(jnp.log1p(x**2 / nu))

    def sample(self, key, context=None):
        _check_context("StudentT", context, self.cond_shape)
        dtype = float_dtype(self.dtype) if self.log_df is None else self.log_df.dtype
        nu = self.df(dtype)
        nkey, gkey = jax.random.split(key)
        eps = jax.random.normal(nkey, self.shape, dtype)
        chi2 = 2.0 * jax.random.gamma(gkey, 0.5 * nu, self.shape, dtype)
        return eps * jnp.sqrt(nu / chi2)


class GaussianMixture(AbstractDistribution):
    """Mixture of `K` diagonal Gaussians on R^D with trainable weights, means and scales.

    `log p(x) = logsumexp_k [log π_k + log N(x; μ_k, diag σ_k²)]` with
    `π = softmax(logits)` and `σ = exp(log_scales)`. Sampling draws the
    component `k ~ Categorical(π)` and then `μ_k + σ_k ε`: the normal part is
    reparameterised (gradients flow to μ and σ), the component choice is not
    (no gradient reaches `logits` through a sample). No context.

    Args:
        num_components: `K >= 1`.
        dim: `D >= 1` (points have shape `(D,)`).
        key: PRNG key for the initial means (standard normal draws).
        init_scale: initial σ of every component.
        dtype: parameter dtype (default float dtype if `None`).

    Attributes:
        logits: `(K,)` (zeros: equal weights). means: `(K, D)`. log_scales: `(K, D)`.
    """

    logits: Array
    means: Array
    log_scales: Array
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        num_components: int,
        dim: int,
        *,
        key: PRNGKeyArray,
        init_scale: float = 1.0,
        dtype=None,
    ):
        if not isinstance(num_components, int | np.integer) or num_components < 1:
            raise ValueError(
                f"GaussianMixture: num_components must be a positive int, got {num_components!r}"
            )
        (dim,) = _as_shape(dim, "GaussianMixture")
        if not init_scale > 0:
            raise ValueError(f"GaussianMixture: init_scale must be > 0, got {init_scale}")
        dtype = float_dtype(dtype)
        k = int(num_components)
        self.shape = (dim,)
        self.cond_shape = None
        self.logits = jnp.zeros((k,), dtype)
        self.means = jax.random.normal(key, (k, dim), dtype)
        self.log_scales = jnp.full((k, dim), math.log(init_scale), dtype)

    def log_prob(self, x, context=None):
        _check_point("GaussianMixture", x, self.shape, context, self.cond_shape)
        dt = x.dtype
        log_w = jax.nn.log_softmax(self.logits.astype(dt))
        log_s = self.log_scales.astype(dt)
        r = (x - self.means.astype(dt)) * jnp.exp(-log_s)
        comp = jnp.sum(-0.5 * r**2 - log_s, axis=-1) - x.size * _HALF_LOG_2PI
        return logsumexp(log_w + comp)

    def sample(self, key, context=None):
        _check_context("GaussianMixture", context, self.cond_shape)
        ckey, nkey = jax.random.split(key)
        k = jax.random.categorical(ckey, jax.lax.stop_gradient(self.logits))
        eps = jax.random.normal(nkey, self.shape, self.means.dtype)
        return self.means[k] + jnp.exp(self.log_scales[k]) * eps


class Transformed(AbstractDistribution):
    """The distribution of `x = T(z)`, `z ~ base`: a normalizing flow.

    `log_prob(x) = base.log_prob(T⁻¹(x)) + log|det ∂T⁻¹/∂x|` (needs the
    inverse); `sample_and_log_prob` needs only the forward pass:
    `x = T(z)`, `log q(x) = base.log_prob(z) − log|det ∂T/∂z|` (REFERENCES
    §3.1), the direction to use for reverse-KL / variational training.

    The context goes to the bijection (and to the base if it is conditional);
    `cond_shape` is theirs (they must agree when both are conditional).

    Args:
        base: an `AbstractDistribution` of shape `bijection.shape`.
        bijection: an `AbstractBijection`.

    Raises:
        TypeError: wrong argument types. ValueError: shapes or context shapes
            of base and bijection disagree.
    """

    base: AbstractDistribution
    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, base: AbstractDistribution, bijection: AbstractBijection):
        if not isinstance(base, AbstractDistribution):
            raise TypeError(
                f"Transformed: base must be an AbstractDistribution, got {type(base).__name__}"
            )
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(
                f"Transformed: bijection must be an AbstractBijection, got "
                f"{type(bijection).__name__}"
            )
        if tuple(base.shape) != tuple(bijection.shape):
            raise ValueError(
                f"Transformed: base shape {tuple(base.shape)} != bijection shape "
                f"{tuple(bijection.shape)}"
            )
        conds = {c for c in (base.cond_shape, bijection.cond_shape) if c is not None}
        if len(conds) > 1:
            raise ValueError(
                f"Transformed: base context shape {base.cond_shape} != bijection context "
                f"shape {bijection.cond_shape}"
            )
        self.base = base
        self.bijection = bijection
        self.shape = tuple(base.shape)
        self.cond_shape = conds.pop() if conds else None

    def _base_ctx(self, context):
        return None if self.base.cond_shape is None else context

    def _bij_ctx(self, context):
        return None if self.bijection.cond_shape is None else context

    def log_prob(self, x, context=None):
        _check_point("Transformed", x, self.shape, context, self.cond_shape)
        z, log_det_inv = self.bijection.inverse_and_log_det(x, self._bij_ctx(context))
        return self.base.log_prob(z, self._base_ctx(context)) + log_det_inv

    def sample(self, key, context=None):
        _check_context("Transformed", context, self.cond_shape)
        z = self.base.sample(key, self._base_ctx(context))
        return self.bijection.transform(z, self._bij_ctx(context))

    def sample_and_log_prob(self, key, context=None):
        """`(x, log q(x))` from one forward pass (no inverse)."""
        _check_context("Transformed", context, self.cond_shape)
        z, log_p = self.base.sample_and_log_prob(key, self._base_ctx(context))
        x, log_det = self.bijection.transform_and_log_det(z, self._bij_ctx(context))
        return x, log_p - log_det
