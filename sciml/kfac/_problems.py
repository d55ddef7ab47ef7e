"""K-FAC's digits problems: scikit-learn's bundled `load_digits`, features in [0, 1], full batch.

Each evaluates its network through `sciml.nn.batch_apply`, so K-FAC sees its
dense layers, and reports the loss against an optimum computed independently
when the problem is built (least squares by `numpy.linalg.lstsq`, softmax
regression by Newton's method with the exact Hessian, the autoencoder's PCA
baseline by an SVD).
"""

from __future__ import annotations

import functools
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, field_validator

from sciml.nn import ACTIVATIONS, Dense, activation_by_name, batch_apply
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import EmptyModel, Section

__all__ = ["DigitsAutoencoder", "DigitsLeastSquares", "DigitsSoftmax", "digits"]


def digits(n: int | None = None):
    """`(x, labels)`: `load_digits` pixels / 16 (float64 `(n, 64)`) and the digit classes.

    Args:
        n: the first `n` images (`None`: all 1797).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data / 16.0, data.target.astype(np.int32)
    if n is not None:
        if not 1 <= n <= len(x):
            raise ValueError(f"digits: n must be in [1, {len(x)}], got {n}")
        x, y = x[:n], y[:n]
    return x, y


class DigitsSettings(Section):
    """Data of the K-FAC digits problems (`problem` section).

    Attributes:
        n_images: use the first `n_images` of the 1797 (`null`: all; full batch either way).
    """

    n_images: Annotated[int, Field(ge=2, le=1797)] | None = None


class SoftmaxSettings(DigitsSettings):
    """`kfac_digits_softmax`: mean cross-entropy + (λ/2)‖W‖² (the bias is not penalised).

    Attributes:
        weight_decay: λ >= 0.
    """

    weight_decay: Annotated[float, Field(ge=0)] = 1e-3


class AutoencoderModel(Section):
    """The autoencoder (`model` section of `kfac_digits_autoencoder`).

    Attributes:
        widths: the hidden widths, encoder then decoder; the narrowest is the code.
        activation: of every hidden layer except the code, which is linear.
    """

    widths: Annotated[
        tuple[Annotated[int, Field(ge=1, le=4096)], ...], Field(min_length=1, max_length=16)
    ] = (128, 64, 16, 64, 128)
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"

    @field_validator("widths", mode="before")
    @classmethod
    def _as_tuple(cls, value):
        # YAML gives a list; the section keeps a (hashable) tuple
        return tuple(value) if isinstance(value, list) else value


class _DigitsProblem(AbstractProblem):
    settings: Section
    model_settings: Section
    x: jax.Array
    labels: jax.Array
    optimum: float = eqx.field(static=True)

    default_dtype: ClassVar[str] = "float64"
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "optimum", "gap")

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )
        x, labels = digits(self.settings.n_images)
        dtype = jnp.result_type(float)
        self.x = jnp.asarray(x, dtype)
        self.labels = jnp.asarray(labels)
        self.optimum = float(self._optimum(x, labels))

    def _optimum(self, x, labels) -> float:
        raise NotImplementedError

    def loss(self, model, state, key):
        value = self._objective(model)
        return value, (state, {})

    def evaluate(self, model, state, key):
        value = float(self._objective(model))
        return {"loss": value, "optimum": self.optimum, "gap": value - self.optimum}


class DigitsLeastSquares(_DigitsProblem):
    """`kfac_digits_least_squares`: one dense layer 64 → 10, mean ½‖Wx + b − y‖² on one-hot y.

    Its Gauss-Newton matrix is `E[āāᵀ] ⊗ I` exactly, so K-FAC with exact
    factors is Newton's method: one step with learning rate 1 lands on the
    least-squares optimum (0.1540112138 on all 1797 images).
    """

    Settings: ClassVar[type] = DigitsSettings
    ModelSettings: ClassVar[type] = EmptyModel

    def _optimum(self, x, labels):
        y = np.eye(10)[labels]
        xa = np.hstack([x, np.ones((len(x), 1))])
        coef, *_ = np.linalg.lstsq(xa, y, rcond=None)
        return 0.5 * np.mean(np.sum((xa @ coef - y) ** 2, axis=1))

    def init(self, key):
        return Dense(64, 10, key=key), None

    def _residuals(self, model):
        y = jax.nn.one_hot(self.labels, 10, dtype=self.x.dtype)
        return (batch_apply(model, self.x) - y) / jnp.sqrt(self.x.shape[0])

    def _objective(self, model):
        return 0.5 * jnp.sum(self._residuals(model) ** 2)

    def per_sample(self, model, state, key):
        return {"residuals": self._residuals(model)}


class DigitsSoftmax(_DigitsProblem):
    """`kfac_digits_softmax`: softmax regression 64 → 10, mean cross-entropy + (λ/2)‖W‖².

    The optimum (0.2618645472 for λ = 1e-3 on all images) comes from Newton's
    method with the exact Hessian when the problem is built. K-FAC's factors
    do not include the penalty's curvature λI; its damping stands in for it.
    """

    Settings: ClassVar[type] = SoftmaxSettings
    ModelSettings: ClassVar[type] = EmptyModel

    def _optimum(self, x, labels):
        return _softmax_optimum(self.settings.n_images, self.settings.weight_decay)

    def init(self, key):
        return Dense(64, 10, key=key), None

    def _logits(self, model):
        return batch_apply(model, self.x)

    def _objective(self, model):
        logits = self._logits(model)
        n = logits.shape[0]
        ce = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(n), self.labels])
        return ce + 0.5 * self.settings.weight_decay * jnp.sum(model.weight**2)

    def per_sample(self, model, state, key):
        return {"logits": self._logits(model), "labels": self.labels}


# the reference value for the default settings (all images, λ = 1e-3); the tests check
# that `_newton_softmax` reproduces it
_SOFTMAX_KNOWN = {(None, 1e-3): 0.2618645472171725}


@functools.lru_cache(maxsize=8)
def _softmax_optimum(n_images: int | None, lam: float) -> float:
    """The minimum of mean cross-entropy + (λ/2)‖W‖²."""
    if (n_images, lam) in _SOFTMAX_KNOWN:
        return _SOFTMAX_KNOWN[(n_images, lam)]
    return _newton_softmax(n_images, lam)


def _newton_softmax(n_images: int | None, lam: float, iterations: int = 12) -> float:
    """Newton's method with the exact Hessian in float64 (quadratic convergence: 12 steps reach
    the loss's rounding from zero). The Hessian is singular along a common shift of the biases,
    along which the gradient vanishes: a ridge of 1e-12 of its trace fixes that direction."""
    x, labels = digits(n_images)
    with jax.enable_x64(True):
        xa = jnp.asarray(np.hstack([x, np.ones((len(x), 1))]), jnp.float64)
        onehot = jnp.asarray(np.eye(10)[labels])
        n = xa.shape[0]
        penalty = jnp.concatenate([jnp.ones(64), jnp.zeros(1)])  # W only

        def loss(wb):
            logits = xa @ wb.T
            ce = jnp.mean(jax.nn.logsumexp(logits, 1) - jnp.sum(onehot * logits, 1))
            return ce + 0.5 * lam * jnp.sum(wb**2 * penalty)

        @jax.jit
        def step(wb):
            p = jax.nn.softmax(xa @ wb.T, axis=1)
            d = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]  # (n, 10, 10)
            h = jnp.einsum("nij,nk,nl->ikjl", d, xa, xa) / n
            h = h + lam * jnp.einsum("ij,kl->ikjl", jnp.eye(10), jnp.diag(penalty))
            g = jax.grad(loss)(wb)
            # a tiny ridge fixes the common bias shift (the gradient has no component along it)
            hm = h.reshape(650, 650)
            delta = jnp.linalg.solve(hm + 1e-12 * jnp.trace(hm) * jnp.eye(650), g.ravel())
            return wb - delta.reshape(10, 65)

        wb = jnp.zeros((10, 65))
        for _ in range(iterations):
            wb = step(wb)
        return float(loss(wb))


class Autoencoder(eqx.Module):
    """A dense autoencoder: `activation` on the hidden layers, a linear code and output.

    Attributes:
        layers: the `Dense` layers, input to output.
        code: index of the code layer (linear).
    """

    layers: tuple[Dense, ...]
    code: int = eqx.field(static=True)
    activation_name: str = eqx.field(static=True)

    def __init__(self, size: int, widths, activation: str = "tanh", *, key):
        sizes = [size, *widths, size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            Dense(a, b, init="glorot_normal", key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.code = int(np.argmin(widths))
        self.activation_name = activation

    def __call__(self, x):
        act = activation_by_name(self.activation_name)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i != self.code and i != len(self.layers) - 1:
                x = act(x)
        return x


class DigitsAutoencoder(_DigitsProblem):
    """`kfac_digits_autoencoder`: 64-128-64-16-64-128-64 autoencoder, ½ mean squared error.

    The baseline is the best linear 16-dimensional code, PCA with the mean
    removed: 0.35339786 on all images (an SVD when the problem is built).
    `evaluate`'s `gap` is the loss minus that baseline (negative: better than PCA).
    """

    Settings: ClassVar[type] = DigitsSettings
    ModelSettings: ClassVar[type] = AutoencoderModel
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "optimum", "gap")

    def _optimum(self, x, labels):
        k = min(self.model_settings.widths)
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        rec = centred @ vt[:k].T @ vt[:k]
        return 0.5 * np.mean(np.sum((rec - centred) ** 2, axis=1))

    def init(self, key):
        m = self.model_settings
        return Autoencoder(64, m.widths, m.activation, key=key), None

    def _residuals(self, model):
        return (batch_apply(model, self.x) - self.x) / jnp.sqrt(self.x.shape[0])

    def _objective(self, model):
        return 0.5 * jnp.sum(self._residuals(model) ** 2)

    def per_sample(self, model, state, key):
        return {"residuals": self._residuals(model)}
