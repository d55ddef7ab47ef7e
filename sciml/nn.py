"""Shared equinox layers used by every pillar.

Layers act on a single unbatched example; batch with `jax.vmap`. Dense layers
are explicit `Dense` (or `FactorizedDense`) modules, with weight and bias as
plain arrays, so that curvature-aware optimizers such as K-FAC can find them in
the pytree. Every network here is built from them.

PINN architectures (REFERENCES §2.4): `FourierFeatures` and `PeriodicEmbedding`
are input embeddings, `FactorizedDense` is the random weight factorisation,
`ModifiedMLP` the gated network of Wang et al. 2021. An embedding is put in
front of a network with `Sequential`:

    >>> embed = PeriodicEmbedding(2, axes=(1,), periods=(2.0,))  # (t, x), x 2-periodic
    >>> net = Sequential(embed, MLP(embed.out_size, 1, width=32, depth=3, key=jax.random.key(0)))
    >>> net(jnp.array([0.1, 0.3])).shape
    (1,)
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "Dense",
    "FactorizedDense",
    "FourierFeatures",
    "MLP",
    "ModifiedMLP",
    "PeriodicEmbedding",
    "Sequential",
    "activation_by_name",
    "affine",
    "batch_apply",
]

# Set by sciml.kfac while it traces a problem (None otherwise): `batch_apply` hands the batch
# to `_BATCH_HOOK`, which runs each example with `_DENSE_TAP` set, and every `Dense` passes
# its input and output through that tap (to record the input and add a zero probe).
_BATCH_HOOK: contextvars.ContextVar = contextvars.ContextVar("sciml_batch_hook", default=None)
_DENSE_TAP: contextvars.ContextVar = contextvars.ContextVar("sciml_dense_tap", default=None)


class _AffineCall(NamedTuple):
    """What K-FAC's tap sees of one `affine` call: the arrays (by identity) and the sizes."""

    weight: Array
    bias: Array | None
    in_size: int
    out_size: int


def affine(weight: Array, bias: Array | None, x: Array) -> Array:
    """`weight @ x + bias` for ONE example, visible to K-FAC (the call `Dense` makes).

    A custom layer that applies a weight matrix should call this, so that K-FAC
    (`sciml.kfac`) can give it a Kronecker block; calling it several times with
    the same weight (e.g. once per Taylor-mode channel, with `bias=None` for
    the derivative channels) makes a weight-sharing layer.

    Args:
        weight: `(out, in)`. bias: `(out,)` or `None`. x: `(in,)`.
    """
    y = weight @ x
    y = y if bias is None else y + bias
    tap = _DENSE_TAP.get()
    if tap is None:
        return y
    return tap(_AffineCall(weight, bias, weight.shape[1], weight.shape[0]), x, y)


def batch_apply(fn: Callable, xs):
    """`jax.vmap(fn)(xs)`: a per-example function over a batch, where K-FAC can see it.

    Use it wherever a problem evaluates its network on a batch in `loss` and
    `per_sample`: K-FAC (`sciml.kfac`) gets the input and output gradient of
    every `Dense` that `fn` calls, per example. Without K-FAC it is exactly
    `jax.vmap(fn)(xs)`.

    Args:
        fn: a function of ONE example (a pytree of arrays), e.g. a model.
        xs: the batch: arrays with a common leading axis.
    """
    hook = _BATCH_HOOK.get()
    return jax.vmap(fn)(xs) if hook is None else hook(fn, xs)


def _rbf(x):
    return jnp.exp(-(x**2))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "sin": jnp.sin,
    "rbf": _rbf,
    "identity": lambda x: x,
}
"""Activation functions selectable by name from config files."""


def activation_by_name(name: str) -> Callable[[Array], Array]:
    """Return the activation function called `name` (a key of `ACTIVATIONS`).

    Raises `ValueError` naming the allowed choices for an unknown name.
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r}; allowed: {allowed}") from None


INITS: tuple[str, ...] = ("glorot_normal", "glorot_uniform", "uniform")
"""Weight initialisations of `Dense` (and of every network built from it):

- `"uniform"` (default): weight and bias uniform on ±1/sqrt(in_size), PyTorch's
  `nn.Linear` default.
- `"glorot_normal"`: weight ~ N(0, 2/(in_size + out_size)) (untruncated), bias 0.
- `"glorot_uniform"`: weight uniform on ±sqrt(6/(in_size + out_size)), bias 0.
"""


def _check_init(init: str, where: str) -> None:
    if init not in INITS:
        raise ValueError(f"{where}: unknown init {init!r}; allowed: {', '.join(INITS)}")


def _check_input(x, in_size: int, where: str) -> None:
    if x.shape != (in_size,):
        raise ValueError(
            f"{where}: expected input shape ({in_size},), got {x.shape}; "
            "layers act on one example, use jax.vmap for batches"
        )


class Dense(eqx.Module):
    """Affine layer `y = W x + b` on one example.

    Attributes:
        weight: `(out_size, in_size)` array.
        bias: `(out_size,)` array, or `None` when built with `use_bias=False`.

    Args:
        in_size, out_size: input and output dimensions (positive).
        use_bias: whether to add a bias.
        init: weight initialisation, one of `INITS`. The default `"uniform"`
            draws weight and bias uniformly on ±1/sqrt(in_size) (PyTorch's
            `nn.Linear` default, which the classic neural-ODE demos use); the
            Glorot choices set the bias to zero.
        dtype: parameter dtype (the default float dtype if `None`).
        key: PRNG key.

    Raises:
        ValueError: non-positive sizes or an unknown `init`; when called, an
            input that is not of shape `(in_size,)`.
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    kfac_affine: ClassVar[tuple] = (("weight", "bias"),)  # what K-FAC may precondition

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        use_bias: bool = True,
        init: str = "uniform",
        dtype=None,
        key: PRNGKeyArray,
    ):
        if in_size < 1 or out_size < 1:
            raise ValueError(
                f"Dense: sizes must be positive, got in_size={in_size}, out_size={out_size}"
            )
        _check_init(init, "Dense")
        dtype = jnp.result_type(float) if dtype is None else dtype
        wkey, bkey = jax.random.split(key)
        shape = (out_size, in_size)
        if init == "uniform":
            lim = 1.0 / math.sqrt(in_size)
            self.weight = jax.random.uniform(wkey, shape, dtype, -lim, lim)
            bias = jax.random.uniform(bkey, (out_size,), dtype, -lim, lim)
        else:
            if init == "glorot_normal":
                std = math.sqrt(2.0 / (in_size + out_size))
                self.weight = std * jax.random.normal(wkey, shape, dtype)
            else:  # glorot_uniform
                lim = math.sqrt(6.0 / (in_size + out_size))
                self.weight = jax.random.uniform(wkey, shape, dtype, -lim, lim)
            bias = jnp.zeros((out_size,), dtype)
        self.bias = bias if use_bias else None
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        _check_input(x, self.in_size, "Dense")
        return affine(self.weight, self.bias, x)


class FactorizedDense(eqx.Module):
    """Dense layer with random weight factorisation, `y = diag(exp(s)) V x + b` (RWF).

    Each output row of the weight is a trainable scale `exp(s_i)` times a
    direction `V_i` (Wang et al. 2022). At construction `W` is drawn exactly as
    `Dense(in_size, out_size, init=init, key=key)` draws it, `s ~ N(mu, sigma²)`
    per row and `V = W / exp(s)` row-wise, so the initial function equals that
    plain `Dense` with the same key (to rounding).

    Attributes:
        log_scale: `(out_size,)` array `s`.
        direction: `(out_size, in_size)` array `V`. For K-FAC it is an ordinary
            dense weight whose output gradient is scaled by `exp(s)`.
        bias: `(out_size,)` array, or `None` when `use_bias=False`.

    Args:
        in_size, out_size, use_bias, init, dtype, key: as for `Dense`.
        mu, sigma: mean and standard deviation of `s` (the paper uses
            μ = 0.5 or 1.0, σ = 0.1; `sigma >= 0`).

    Raises:
        ValueError: as `Dense`, and for `sigma < 0`.

    Reference: Wang, Wang, Perdikaris, "Random Weight Factorization Improves the
    Training of Continuous Neural Representations", arXiv:2210.01274.
    """

    log_scale: Float[Array, " out"]
    direction: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        mu: float = 1.0,
        sigma: float = 0.1,
        use_bias: bool = True,
        init: str = "uniform",
        dtype=None,
        key: PRNGKeyArray,
    ):
        if not sigma >= 0:
            raise ValueError(f"FactorizedDense: sigma must be >= 0, got {sigma}")
        plain = Dense(in_size, out_size, use_bias=use_bias, init=init, dtype=dtype, key=key)
        # `key` itself reproduces the plain layer; the scales use a derived key.
        skey = jax.random.fold_in(key, 1)
        s = mu + sigma * jax.random.normal(skey, (out_size,), plain.weight.dtype)
        self.log_scale = s
        self.direction = plain.weight / jnp.exp(s)[:, None]
        self.bias = plain.bias
        self.in_size = in_size
        self.out_size = out_size

    @property
    def weight(self) -> Float[Array, "out in"]:
        """The effective weight `diag(exp(s)) V` (computed, not a parameter)."""
        return jnp.exp(self.log_scale)[:, None] * self.direction

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        _check_input(x, self.in_size, "FactorizedDense")
        y = jnp.exp(self.log_scale) * (self.direction @ x)
        return y if self.bias is None else y + self.bias


def _check_factorization(weight_factorization, where: str) -> None:
    if weight_factorization is None:
        return
    ok = (
        isinstance(weight_factorization, tuple | list)
        and len(weight_factorization) == 2
        and all(isinstance(v, int | float) for v in weight_factorization)
    )
    if not ok:
        raise ValueError(
            f"{where}: weight_factorization must be None or a (mu, sigma) pair of numbers, "
            f"got {weight_factorization!r}"
        )


def _linear(in_size, out_size, *, init, weight_factorization, dtype, key):
    """A `Dense`, or a `FactorizedDense` when `weight_factorization = (mu, sigma)`."""
    if weight_factorization is None:
        return Dense(in_size, out_size, init=init, dtype=dtype, key=key)
    mu, sigma = weight_factorization
    return FactorizedDense(in_size, out_size, mu=mu, sigma=sigma, init=init, dtype=dtype, key=key)


class MLP(eqx.Module):
    """Multilayer perceptron `in_size -> width x depth -> out_size` on one example.

    Args:
        in_size: input dimension.
        out_size: output dimension.
        width: hidden width.
        depth: number of hidden layers (0 gives a single affine map).
        activation: elementwise nonlinearity applied after each hidden layer.
        final_activation: applied to the output (identity by default).
        init: weight initialisation of every layer, one of `INITS`
            (default `"uniform"`, see `Dense`).
        weight_factorization: `None` (plain `Dense` layers, the default) or a
            pair `(mu, sigma)`: every layer is then a `FactorizedDense` with
            those parameters, and the initial function equals the plain MLP
            built with the same key and `init`.
        dtype: parameter dtype (the default float dtype if `None`).
        key: PRNG key.

    Raises:
        ValueError: `depth < 0`, `width < 1`, an unknown `init` or a malformed
            `weight_factorization`; when called, an input not of shape `(in_size,)`.

    Example:
        >>> mlp = MLP(2, 2, width=50, depth=1, activation=jnp.tanh, key=jax.random.key(0))
        >>> mlp(jnp.ones(2)).shape
        (2,)
    """

    layers: tuple[Dense | FactorizedDense, ...]
    activation: Callable[[Array], Array]
    final_activation: Callable[[Array], Array]

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        width: int,
        depth: int,
        activation: Callable[[Array], Array] = jnp.tanh,
        final_activation: Callable[[Array], Array] = lambda x: x,
        init: str = "uniform",
        weight_factorization: tuple[float, float] | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if depth < 0:
            raise ValueError(f"MLP: depth must be >= 0, got {depth}")
        if width < 1:
            raise ValueError(f"MLP: width must be positive, got {width}")
        _check_init(init, "MLP")
        _check_factorization(weight_factorization, "MLP")
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            _linear(a, b, init=init, weight_factorization=weight_factorization, dtype=dtype, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.final_activation = final_activation

    @property
    def in_size(self) -> int:
        return self.layers[0].in_size

    @property
    def out_size(self) -> int:
        return self.layers[-1].out_size

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))


class ModifiedMLP(eqx.Module):
    """The modified MLP of Wang, Teng & Perdikaris (2021) on one example.

    Two encoders of the input gate every hidden layer after the first:

        U = σ(W_U x + b_U),  V = σ(W_V x + b_V),  H_1 = σ(W_1 x + b_1),
        Z_k = σ(W_{k+1} H_k + b_{k+1}),  H_{k+1} = (1 − Z_k) ⊙ U + Z_k ⊙ V,
        k = 1 … depth − 1,  output = final_activation(W H_depth + b).

    `depth` counts hidden layers as for `MLP` (H_1 … H_depth), so
    `ModifiedMLP(depth=d)` has the dense layers of `MLP(depth=d)` plus the two
    encoders. (jaxpi's `ModifiedMlp` gates every layer including the first and
    writes Z ⊙ U + (1 − Z) ⊙ V; this follows the paper.)

    Args:
        in_size, out_size, width: dimensions.
        depth: number of hidden layers, at least 2 (H_1 and one gated layer).
        activation: σ. final_activation: applied to the output (identity).
        init, weight_factorization, dtype: as for `MLP`, for every layer. The
            paper initialises with `"glorot_normal"`; the default is `"uniform"`
            like every network here.
        key: PRNG key.

    Attributes:
        encoder_u, encoder_v: the `in_size -> width` encoders.
        hidden: `depth` layers, `in_size -> width` then `width -> width`.
        output: the `width -> out_size` layer.

    Raises:
        ValueError: `depth < 2`, `width < 1`, an unknown `init` or a malformed
            `weight_factorization`; when called, an input not of shape `(in_size,)`.

    Reference: Wang, Teng, Perdikaris, "Understanding and mitigating gradient
    flow pathologies in physics-informed neural networks", SISC 2021.
    """

    encoder_u: Dense | FactorizedDense
    encoder_v: Dense | FactorizedDense
    hidden: tuple[Dense | FactorizedDense, ...]
    output: Dense | FactorizedDense
    activation: Callable[[Array], Array]
    final_activation: Callable[[Array], Array]

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        width: int,
        depth: int,
        activation: Callable[[Array], Array] = jnp.tanh,
        final_activation: Callable[[Array], Array] = lambda x: x,
        init: str = "uniform",
        weight_factorization: tuple[float, float] | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if depth < 2:
            raise ValueError(
                f"ModifiedMLP: depth must be >= 2 (H_1 and at least one gated layer), got {depth}"
            )
        if width < 1:
            raise ValueError(f"ModifiedMLP: width must be positive, got {width}")
        _check_init(init, "ModifiedMLP")
        _check_factorization(weight_factorization, "ModifiedMLP")
        keys = jax.random.split(key, depth + 3)
        opts = dict(init=init, weight_factorization=weight_factorization, dtype=dtype)
        self.encoder_u = _linear(in_size, width, key=keys[0], **opts)
        self.encoder_v = _linear(in_size, width, key=keys[1], **opts)
        sizes = [in_size] + [width] * depth
        self.hidden = tuple(
            _linear(a, b, key=k, **opts) for a, b, k in zip(sizes[:-1], sizes[1:], keys[2:])
        )
        self.output = _linear(width, out_size, key=keys[-1], **opts)
        self.activation = activation
        self.final_activation = final_activation

    @property
    def in_size(self) -> int:
        return self.encoder_u.in_size

    @property
    def out_size(self) -> int:
        return self.output.out_size

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        _check_input(x, self.in_size, "ModifiedMLP")
        u = self.activation(self.encoder_u(x))
        v = self.activation(self.encoder_v(x))
        h = self.activation(self.hidden[0](x))
        for layer in self.hidden[1:]:
            z = self.activation(layer(h))
            h = (1 - z) * u + z * v
        return self.final_activation(self.output(h))


class FourierFeatures(eqx.Module):
    """Random Fourier feature embedding `x -> [cos(B x), sin(B x)]` (Tancik et al. 2020).

    `B` is `(num_features, in_size)` with entries ~ N(0, sigma²), drawn once
    and kept fixed. The output has `2 * num_features` entries, cosines first.
    As in jaxpi there is no 2π factor: the angular frequencies are `B` itself.

    `B` is stored as an ordinary array leaf, so it checkpoints with the other
    parameters, and `__call__` reads it through `jax.lax.stop_gradient`, so its
    gradient is exactly zero and gradient-based updates leave it in place.
    (An optimizer with decoupled weight decay would still shrink it; exclude it
    there.)

    Args:
        in_size: input dimension.
        num_features: number of frequencies (jaxpi uses 256 at σ = 1–2).
        sigma: standard deviation of the entries of `B` (> 0).
        dtype: dtype of `B` (the default float dtype if `None`).
        key: PRNG key.

    Attributes:
        frequencies: the `(num_features, in_size)` matrix `B`.
        out_size: `2 * num_features`.

    Raises:
        ValueError: non-positive sizes or `sigma`; when called, an input not of
            shape `(in_size,)`.

    Reference: Tancik et al., "Fourier Features Let Networks Learn High
    Frequency Functions in Low Dimensional Domains", NeurIPS 2020.
    """

    frequencies: Float[Array, "features in"]
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self, in_size: int, num_features: int, sigma: float, *, dtype=None, key: PRNGKeyArray
    ):
        if in_size < 1 or num_features < 1:
            raise ValueError(
                "FourierFeatures: sizes must be positive, got "
                f"in_size={in_size}, num_features={num_features}"
            )
        if not sigma > 0:
            raise ValueError(f"FourierFeatures: sigma must be > 0, got {sigma}")
        dtype = jnp.result_type(float) if dtype is None else dtype
        self.frequencies = sigma * jax.random.normal(key, (num_features, in_size), dtype)
        self.in_size = in_size
        self.out_size = 2 * num_features

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        _check_input(x, self.in_size, "FourierFeatures")
        # B is fixed by construction (Tancik et al.); the stop-gradient keeps the
        # trainer, which trains every inexact leaf, from moving it.
        z = jax.lax.stop_gradient(self.frequencies) @ x
        return jnp.concatenate([jnp.cos(z), jnp.sin(z)])


class PeriodicEmbedding(eqx.Module):
    """Exact periodic embedding of chosen input coordinates.

    Each coordinate `x_i` with `i` in `axes` is replaced by
    `(cos(ω x_i), sin(ω x_i), cos(2ω x_i), sin(2ω x_i), …, sin(H ω x_i))`,
    `ω = 2π / period_i`, `H = harmonics`; the other coordinates pass through.
    Output entries keep the input's coordinate order. Any network applied
    after it, and every derivative of that network in x_i, is then exactly
    `period_i`-periodic in x_i, so no periodic boundary loss is needed.

    Args:
        in_size: input dimension.
        axes: the periodic coordinates (distinct, in `[0, in_size)`).
        periods: one positive period per entry of `axes`.
        harmonics: number of harmonics `H >= 1`.
        trainable_period: if `True` the periods are a trainable array leaf
            (jaxpi can learn the time period); by default they are static
            Python floats and not parameters.
        dtype: dtype of the trainable periods (default float dtype if `None`).

    Attributes:
        out_size: `in_size + len(axes) * (2 * harmonics - 1)`.
        periods: the trainable `(len(axes),)` periods, or `None` when fixed.
        fixed_periods: the fixed periods, or `None` when trainable.

    Raises:
        ValueError: bad axes, periods or harmonics; when called, an input not
            of shape `(in_size,)`.
    """

    periods: Float[Array, " k"] | None
    fixed_periods: tuple[float, ...] | None = eqx.field(static=True)
    axes: tuple[int, ...] = eqx.field(static=True)
    harmonics: int = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        axes,
        periods,
        harmonics: int = 1,
        *,
        trainable_period: bool = False,
        dtype=None,
    ):
        if in_size < 1:
            raise ValueError(f"PeriodicEmbedding: in_size must be positive, got {in_size}")
        axes = tuple(int(a) for a in np.atleast_1d(axes))
        periods = tuple(float(p) for p in np.atleast_1d(periods))
        if not axes or len(set(axes)) != len(axes) or not all(0 <= a < in_size for a in axes):
            raise ValueError(
                f"PeriodicEmbedding: axes must be distinct indices in [0, {in_size}), got {axes}"
            )
        if len(periods) != len(axes):
            raise ValueError(
                f"PeriodicEmbedding: need one period per axis, got axes={axes}, periods={periods}"
            )
        if not all(p > 0 and math.isfinite(p) for p in periods):
            raise ValueError(f"PeriodicEmbedding: periods must be positive, got {periods}")
        if not (isinstance(harmonics, int | np.integer) and harmonics >= 1):
            raise ValueError(
                f"PeriodicEmbedding: harmonics must be an integer >= 1, got {harmonics!r}"
            )
        if trainable_period:
            dtype = jnp.result_type(float) if dtype is None else dtype
            self.periods = jnp.asarray(periods, dtype)
            self.fixed_periods = None
        else:
            self.periods = None
            self.fixed_periods = periods
        self.axes = axes
        self.harmonics = int(harmonics)
        self.in_size = in_size
        self.out_size = in_size + len(axes) * (2 * harmonics - 1)

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        _check_input(x, self.in_size, "PeriodicEmbedding")
        if self.periods is None:  # fixed: ω in float64 numpy, then the input's dtype
            omega = jnp.asarray(2 * np.pi / np.asarray(self.fixed_periods), x.dtype)
        else:
            omega = (2 * jnp.pi / self.periods).astype(x.dtype)
        m = jnp.arange(1, self.harmonics + 1, dtype=x.dtype)
        pieces = []
        for i in range(self.in_size):
            if i in self.axes:
                angle = omega[self.axes.index(i)] * m * x[i]
                # interleave: cos ωx, sin ωx, cos 2ωx, sin 2ωx, ...
                pieces.append(jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1).reshape(-1))
            else:
                pieces.append(x[i : i + 1])
        return jnp.concatenate(pieces)


def _size(module, name: str):
    value = getattr(module, name, None)
    return value if isinstance(value, int) else None


class Sequential(eqx.Module):
    """Apply `layers` in order on one example: `Sequential(f, g)(x) = g(f(x))`.

    Any callables may be chained (modules, activation functions). Where both
    neighbours state sizes (`out_size` of one, `in_size` of the next: every
    module in this file does) they must agree. Typical use puts an embedding in
    front of a network, e.g.
    `Sequential(FourierFeatures(2, 64, 1.0, key=k1), MLP(128, 1, width=64, depth=3, key=k2))`.

    Raises:
        ValueError: no layers, or mismatched sizes of neighbours.
    """

    layers: tuple

    def __init__(self, *layers):
        if not layers:
            raise ValueError("Sequential: need at least one layer")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            out_a, in_b = _size(a, "out_size"), _size(b, "in_size")
            if out_a is not None and in_b is not None and out_a != in_b:
                raise ValueError(
                    f"Sequential: layer {i} ({type(a).__name__}) gives out_size={out_a} but "
                    f"layer {i + 1} ({type(b).__name__}) expects in_size={in_b}"
                )
        self.layers = tuple(layers)

    @property
    def in_size(self) -> int | None:
        return _size(self.layers[0], "in_size")

    @property
    def out_size(self) -> int | None:
        return _size(self.layers[-1], "out_size")

    def __call__(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer(x)
        return x
