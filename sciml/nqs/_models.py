"""Variational wave functions: RBM, Jastrow, feed-forward and translation-symmetric models.

Every model is an equinox module that maps ONE configuration `s` (shape `(N,)`,
entries ±1, the σᶻ eigenvalues; see `SpinHilbert`) to the scalar log ψ(s);
batch with `jax.vmap`. The input is cast to the parameters' real dtype inside.

Parameters are real (`float32`/`float64`) or complex (`complex64`/`complex128`),
chosen with `param_dtype` (default: JAX's default float dtype). Complex
parameters are complex leaves of the pytree and the output log ψ is then
complex; with real parameters log ψ is real (ψ > 0, enough for stoquastic
Hamiltonians: the TFIM, and the Heisenberg model after the Marshall rotation).
A complex log ψ is defined modulo 2πi: only ψ = exp(log ψ) is meaningful.

The models are holomorphic functions of their complex parameters (the default
activation `log_cosh` is), so `jax.grad(..., holomorphic=True)` gives
∂ log ψ/∂θ.

Reference: Carleo & Troyer, "Solving the quantum many-body problem with
artificial neural networks", Science 355, 602 (2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact, PRNGKeyArray

from sciml.nn import affine

__all__ = ["FFN", "PARAM_DTYPES", "RBM", "Jastrow", "SymmetricFFN", "SymmetricRBM", "log_cosh"]

PARAM_DTYPES: tuple[str, ...] = ("float32", "float64", "complex64", "complex128")
"""Parameter dtypes the models accept (`param_dtype`); the 64-bit ones need `jax_enable_x64`."""

_INIT_STD = 0.01  # REFERENCES §4.5: small weights, so ψ starts close to uniform


def log_cosh(z: Array) -> Array:
    """Numerically stable log cosh z, elementwise, for real or complex `z`.

    With z' = ±z chosen so that Re z' ≥ 0 (cosh is even),
    log cosh z = z' + log1p(exp(−2z')) − log 2; `exp(−2z')` has modulus ≤ 1, so
    nothing overflows (log cosh 1e4 = 1e4 − log 2, where `log(cosh(z))` is inf).
    Its derivative is tanh z. For complex z the result is one branch of the
    logarithm: its imaginary part may differ from `log(cosh(z))` by a multiple
    of 2π (and it jumps by 2π across Re z = 0 where |Im z| > π/2; cosh itself is
    continuous there).

    Args:
        z: array of any shape, real or complex.

    Returns:
        log cosh z, same shape and dtype as `z`.
    """
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.inexact):
        z = z.astype(jnp.result_type(float))
    zp = jnp.where(jnp.real(z) < 0, -z, z)
    return zp + jnp.log1p(jnp.exp(-2 * zp)) - math.log(2.0)


# -- shared checks ---------------------------------------------------------------------------


def _param_dtype(param_dtype, where: str) -> np.dtype:
    """Canonical parameter dtype; clear errors for unsupported or unavailable ones."""
    if param_dtype is None:
        return jnp.dtype(jnp.result_type(float))
    try:
        dtype = jnp.dtype(param_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in PARAM_DTYPES:
        raise ValueError(
            f"{where}: unsupported param_dtype {param_dtype!r}; allowed: {', '.join(PARAM_DTYPES)}"
        )
    if dtype.name in ("float64", "complex128") and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{where}: param_dtype {dtype.name} needs 64-bit JAX; call "
            "jax.config.update('jax_enable_x64', True) first, or use "
            f"{'float32' if dtype.kind == 'f' else 'complex64'}"
        )
    return dtype


def _check_n_sites(n_sites, where: str) -> int:
    if not isinstance(n_sites, int | np.integer) or isinstance(n_sites, bool) or n_sites < 1:
        raise ValueError(f"{where}: n_sites must be a positive integer, got {n_sites!r}")
    return int(n_sites)


def _normal(key, shape, dtype, std):
    # For a complex dtype `jax.random.normal` draws real and imaginary parts with
    # variance 1/2 each, so `std` is the modulus' standard deviation in both cases.
    return std * jax.random.normal(key, shape, dtype)


def _config(s, n_sites: int, dtype, where: str) -> Array:
    """Check one configuration's shape; cast it to the parameters' real dtype."""
    s = jnp.asarray(s)
    if s.shape != (n_sites,):
        raise ValueError(
            f"{where}: expected one configuration of shape ({n_sites},), got {s.shape}; "
            "models act on one configuration, use jax.vmap for batches"
        )
    return s.astype(jnp.finfo(dtype).dtype)


def _n_parameters(module) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_inexact_array))
    return int(sum(leaf.size for leaf in leaves))


def _translations(lattice, where: str) -> tuple[tuple[int, ...], ...]:
    try:
        perms = np.asarray(lattice.translations())
        n = int(lattice.n_sites)
    except AttributeError:
        raise TypeError(
            f"{where}: expected a Lattice (chain(L) or square(L)), got {type(lattice).__name__}"
        ) from None
    if perms.ndim != 2 or perms.shape[1] != n or perms.shape[0] < 1:
        raise ValueError(f"{where}: translations must have shape (n_T, {n}), got {perms.shape}")
    return tuple(tuple(int(v) for v in g) for g in perms)


# -- RBM -------------------------------------------------------------------------------------


class RBM(eqx.Module):
    """Restricted Boltzmann machine with the hidden units traced out (Carleo & Troyer 2017).

    log ψ(s) = Σ_i a_i s_i + Σ_{j<M} log cosh(b_j + Σ_i W_ji s_i), M = ⌊αN⌋ hidden units.

    Args:
        n_sites: number of sites N.
        alpha: hidden-unit density α > 0; M = ⌊αN⌋ (NetKet's convention) must be ≥ 1.
        use_visible_bias: whether to include the visible bias a (else a = 0).
        param_dtype: one of `PARAM_DTYPES` (default: JAX's default float dtype).
        key: PRNG key. All parameters start as N(0, 0.01²) draws (complex: the modulus),
            so ψ starts close to uniform.

    Attributes:
        visible_bias: `(N,)` a, or `None`; `hidden_bias`: `(M,)` b; `weights`: `(M, N)` W.

    Raises:
        ValueError: bad `n_sites`, αN < 1, an unsupported `param_dtype`; when called, an
            input not of shape `(N,)`.

    Example:
        >>> model = RBM(10, alpha=2, key=jax.random.key(0))
        >>> model(jnp.ones(10)).shape, jax.vmap(model)(jnp.ones((5, 10))).shape
        ((), (5,))
    """

    visible_bias: Inexact[Array, " N"] | None
    hidden_bias: Inexact[Array, " M"]
    weights: Inexact[Array, "M N"]
    kfac_affine: ClassVar[tuple] = (("weights", "hidden_bias"),)  # K-FAC's Kronecker block
    n_sites: int = eqx.field(static=True)
    n_hidden: int = eqx.field(static=True)

    def __init__(
        self,
        n_sites: int,
        alpha: float = 1,
        *,
        use_visible_bias: bool = True,
        param_dtype=None,
        key: PRNGKeyArray,
    ):
        n = _check_n_sites(n_sites, "RBM")
        if not isinstance(alpha, int | float | np.number) or not alpha > 0:
            raise ValueError(f"RBM: alpha must be a positive number, got {alpha!r}")
        m = int(alpha * n)
        if m < 1:
            raise ValueError(
                f"RBM: alpha={alpha} gives floor(alpha*N) = {m} hidden units for N={n}; "
                f"need alpha >= 1/N = {1 / n:.4g}"
            )
        dtype = _param_dtype(param_dtype, "RBM")
        ka, kb, kw = jax.random.split(key, 3)
        self.visible_bias = _normal(ka, (n,), dtype, _INIT_STD) if use_visible_bias else None
        self.hidden_bias = _normal(kb, (m,), dtype, _INIT_STD)
        self.weights = _normal(kw, (m, n), dtype, _INIT_STD)
        self.n_sites, self.n_hidden = n, m

    @property
    def alpha(self) -> float:
        """Hidden-unit density M/N."""
        return self.n_hidden / self.n_sites

    @property
    def n_parameters(self) -> int:
        """Number of parameter entries (a complex entry counts once: 2× as many real numbers)."""
        return _n_parameters(self)

    def __call__(self, s: Array) -> Array:
        """log ψ(s) for one configuration `s` of shape `(N,)`; a scalar of the parameter dtype."""
        s = _config(s, self.n_sites, self.weights.dtype, "RBM")
        out = jnp.sum(log_cosh(affine(self.weights, self.hidden_bias, s)))
        if self.visible_bias is not None:
            out = out + self.visible_bias @ s
        return out


# -- Jastrow ---------------------------------------------------------------------------------


class Jastrow(eqx.Module):
    """Two-body Jastrow wave function, log ψ(s) = Σ_{i<j} W_ij s_i s_j.

    Only the strictly upper triangle of W is stored, as a vector of the N(N−1)/2
    pairs in the row-major order of `numpy.triu_indices(N, 1)`: (0,1), (0,2), …,
    (1,2), …; every parameter is therefore independent. `matrix` returns the
    symmetric W with zero diagonal.

    Args:
        n_sites: number of sites N ≥ 2.
        param_dtype: one of `PARAM_DTYPES` (default: JAX's default float dtype).
        key: PRNG key; the couplings start as N(0, 0.01²) draws.

    Attributes:
        pair_weights: `(N(N−1)/2,)` couplings W_ij, i < j.

    Raises:
        ValueError: N < 2, an unsupported `param_dtype`; when called, an input not of
            shape `(N,)`.
    """

    pair_weights: Inexact[Array, " P"]
    n_sites: int = eqx.field(static=True)

    def __init__(self, n_sites: int, *, param_dtype=None, key: PRNGKeyArray):
        n = _check_n_sites(n_sites, "Jastrow")
        if n < 2:
            raise ValueError(f"Jastrow: needs at least 2 sites (one pair), got n_sites={n}")
        dtype = _param_dtype(param_dtype, "Jastrow")
        self.pair_weights = _normal(key, (n * (n - 1) // 2,), dtype, _INIT_STD)
        self.n_sites = n

    @property
    def n_parameters(self) -> int:
        """Number of parameter entries (a complex entry counts once: 2× as many real numbers)."""
        return _n_parameters(self)

    def matrix(self) -> Array:
        """The symmetric `(N, N)` coupling matrix W with zero diagonal."""
        i, j = np.triu_indices(self.n_sites, 1)
        w = jnp.zeros((self.n_sites, self.n_sites), self.pair_weights.dtype)
        w = w.at[i, j].set(self.pair_weights)
        return w + w.T

    def __call__(self, s: Array) -> Array:
        """log ψ(s) for one configuration `s` of shape `(N,)`; a scalar of the parameter dtype."""
        s = _config(s, self.n_sites, self.pair_weights.dtype, "Jastrow")
        i, j = np.triu_indices(self.n_sites, 1)
        return jnp.sum(self.pair_weights * (s[i] * s[j]))


# -- feed-forward network --------------------------------------------------------------------


class FFN(eqx.Module):
    """Feed-forward network log ψ(s) = Σ_k h_L,k with h_{l+1} = σ(W_l h_l + b_l), h_0 = s.

    `depth` dense layers of `width` units, each followed by the activation σ; the
    last hidden layer is summed to the scalar log ψ (no output layer). With
    `depth=1` and σ = `log_cosh` this is an RBM without visible bias and α = width/N.
    The dense layers are this module's own (complex weights are plain complex
    leaves); the layers after the first are stacked and applied with `lax.scan`, so
    compile time does not grow with depth.

    Args:
        n_sites: number of sites N.
        width: units per hidden layer (≥ 1).
        depth: number of hidden layers (≥ 1).
        activation: elementwise σ; default `log_cosh`. With complex parameters use a
            holomorphic one (`log_cosh`, `jnp.tanh`, …), not `relu`.
        param_dtype: one of `PARAM_DTYPES` (default: JAX's default float dtype).
        key: PRNG key. Weights ~ N(0, 1/fan_in) (LeCun normal; complex: the modulus),
            biases zero.

    Attributes:
        weights_in: `(width, N)`; `bias_in`: `(width,)`: the first layer.
        weights_hidden: `(depth−1, width, width)`; `bias_hidden`: `(depth−1, width)`:
            the stacked further layers (`None` when `depth=1`).

    Raises:
        ValueError: non-positive sizes, an unsupported `param_dtype`, a non-callable
            activation; when called, an input not of shape `(N,)`.
    """

    weights_in: Inexact[Array, "W N"]
    bias_in: Inexact[Array, " W"]
    weights_hidden: Inexact[Array, "D W W"] | None
    bias_hidden: Inexact[Array, "D W"] | None
    activation: Callable[[Array], Array] = eqx.field(static=True)
    n_sites: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        n_sites: int,
        width: int,
        depth: int = 1,
        *,
        activation: Callable[[Array], Array] = log_cosh,
        param_dtype=None,
        key: PRNGKeyArray,
    ):
        n = _check_n_sites(n_sites, "FFN")
        for name, v in (("width", width), ("depth", depth)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise ValueError(f"FFN: {name} must be a positive integer, got {v!r}")
        if not callable(activation):
            raise ValueError(f"FFN: activation must be a callable, got {activation!r}")
        dtype = _param_dtype(param_dtype, "FFN")
        width, depth = int(width), int(depth)
        k_in, k_hid = jax.random.split(key)
        self.weights_in = _normal(k_in, (width, n), dtype, 1 / math.sqrt(n))
        self.bias_in = jnp.zeros((width,), dtype)
        if depth > 1:
            shape = (depth - 1, width, width)
            self.weights_hidden = _normal(k_hid, shape, dtype, 1 / math.sqrt(width))
            self.bias_hidden = jnp.zeros((depth - 1, width), dtype)
        else:
            self.weights_hidden = self.bias_hidden = None
        self.activation = activation
        self.n_sites, self.width, self.depth = n, width, depth

    @property
    def n_parameters(self) -> int:
        """Number of parameter entries (a complex entry counts once: 2× as many real numbers)."""
        return _n_parameters(self)

    def _forward(self, s: Array) -> Array:
        h = self.activation(self.weights_in @ s + self.bias_in)
        if self.weights_hidden is not None:

            def layer(h, wb):
                w, b = wb
                return self.activation(w @ h + b), None

            h, _ = jax.lax.scan(layer, h, (self.weights_hidden, self.bias_hidden))
        return jnp.sum(h)

    def __call__(self, s: Array) -> Array:
        """log ψ(s) for one configuration `s` of shape `(N,)`; a scalar of the parameter dtype."""
        return self._forward(_config(s, self.n_sites, self.weights_in.dtype, "FFN"))


# -- translation-symmetric models ------------------------------------------------------------


class SymmetricRBM(eqx.Module):
    """RBM whose hidden units are α filters shared over the lattice's translations.

    log ψ(s) = a Σ_i s_i + Σ_{f<α} Σ_{g∈T} log cosh(b_f + Σ_i W_{f,i} s_{g(i)}),

    with T the translation group (`lattice.translations()`, permutations g with
    g[i] the image of site i). Translating s permutes the set {s∘g : g ∈ T} (T is a
    group), so log ψ is invariant under every translation by construction. It is
    an RBM with α·|T| hidden units but only 1 + α + αN parameters.

    Args:
        lattice: a `Lattice` (`chain(L)`, `square(L)`); open boundaries have only the
            identity, which gives a plain RBM with a uniform visible bias.
        alpha: number of filters α (a positive integer: the hidden-unit density).
        use_visible_bias: whether to include the uniform visible bias a.
        param_dtype: one of `PARAM_DTYPES` (default: JAX's default float dtype).
        key: PRNG key; parameters start as N(0, 0.01²) draws.

    Attributes:
        visible_bias: scalar a, or `None`; `hidden_bias`: `(α,)` b;
        filters: `(α, N)` W.

    Raises:
        ValueError: `alpha` not a positive integer, an unsupported `param_dtype`; when
            called, an input not of shape `(N,)`.
        TypeError: `lattice` is not a lattice.
    """

    visible_bias: Inexact[Array, ""] | None
    hidden_bias: Inexact[Array, " F"]
    filters: Inexact[Array, "F N"]
    translations: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    n_sites: int = eqx.field(static=True)
    alpha: int = eqx.field(static=True)

    def __init__(
        self,
        lattice,
        alpha: int = 1,
        *,
        use_visible_bias: bool = True,
        param_dtype=None,
        key: PRNGKeyArray,
    ):
        self.translations = _translations(lattice, "SymmetricRBM")
        n = len(self.translations[0])
        if not isinstance(alpha, int | np.integer) or isinstance(alpha, bool) or alpha < 1:
            raise ValueError(
                f"SymmetricRBM: alpha (the number of filters) must be a positive integer, "
                f"got {alpha!r}"
            )
        dtype = _param_dtype(param_dtype, "SymmetricRBM")
        ka, kb, kw = jax.random.split(key, 3)
        self.visible_bias = _normal(ka, (), dtype, _INIT_STD) if use_visible_bias else None
        self.hidden_bias = _normal(kb, (int(alpha),), dtype, _INIT_STD)
        self.filters = _normal(kw, (int(alpha), n), dtype, _INIT_STD)
        self.n_sites, self.alpha = n, int(alpha)

    @property
    def n_parameters(self) -> int:
        """Number of parameter entries (a complex entry counts once: 2× as many real numbers)."""
        return _n_parameters(self)

    def __call__(self, s: Array) -> Array:
        """log ψ(s) for one configuration `s` of shape `(N,)`; a scalar of the parameter dtype."""
        s = _config(s, self.n_sites, self.filters.dtype, "SymmetricRBM")
        translated = s[np.asarray(self.translations)]  # (n_T, N), row g is s∘g
        theta = translated @ self.filters.T + self.hidden_bias  # (n_T, α)
        out = jnp.sum(log_cosh(theta))
        if self.visible_bias is not None:
            out = out + self.visible_bias * jnp.sum(s)
        return out


class SymmetricFFN(eqx.Module):
    """A feed-forward network made translation invariant by summing over translates.

    log ψ(s) = Σ_{g∈T} f(s∘g), i.e. ψ(s) = Π_g ψ_f(s∘g), with f an `FFN` and T the
    lattice's translation group (sum pooling of log ψ, as in `SymmetricRBM`: with
    `depth=1` and `log_cosh` it equals a `SymmetricRBM` of α = width filters and no
    visible bias). Invariant under every translation by construction.

    Args:
        lattice: a `Lattice` (`chain(L)`, `square(L)`).
        width, depth, activation, param_dtype, key: as for `FFN`.

    Attributes:
        network: the shared `FFN` f.

    Raises:
        ValueError, TypeError: as `FFN` and `SymmetricRBM`.
    """

    network: FFN
    translations: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    n_sites: int = eqx.field(static=True)

    def __init__(
        self,
        lattice,
        width: int,
        depth: int = 1,
        *,
        activation: Callable[[Array], Array] = log_cosh,
        param_dtype=None,
        key: PRNGKeyArray,
    ):
        self.translations = _translations(lattice, "SymmetricFFN")
        self.n_sites = len(self.translations[0])
        self.network = FFN(
            self.n_sites, width, depth, activation=activation, param_dtype=param_dtype, key=key
        )

    @property
    def n_parameters(self) -> int:
        """Number of parameter entries (a complex entry counts once: 2× as many real numbers)."""
        return _n_parameters(self)

    def __call__(self, s: Array) -> Array:
        """log ψ(s) for one configuration `s` of shape `(N,)`; a scalar of the parameter dtype."""
        s = _config(s, self.n_sites, self.network.weights_in.dtype, "SymmetricFFN")
        translated = s[np.asarray(self.translations)]
        return jnp.sum(jax.vmap(self.network._forward)(translated))
