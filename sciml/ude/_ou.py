"""`neural_sde_ou`: learn drift and diffusion of an Ornstein-Uhlenbeck process from paths.

dX = kappa (m - X) dt + s dW. The data are sampled from the exact Gaussian
transition (mean m + (x - m) e^{-kappa dt}, variance s^2 (1 - e^{-2 kappa dt}) /
(2 kappa)), so they do not depend on any solver. The model is a `NeuralSDE`
with MLP drift and diffusion, fitted by the Euler-Maruyama likelihood. The
recovered rate and volatility come from the learned functions over the data
(least-squares line through the drift; mean noise scale) and are compared
with the truth and with the closed-form maximum-likelihood estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from pydantic import Field, model_validator

from sciml.nn import ACTIVATIONS, MLP, activation_by_name
from sciml.parallel import shard_batch
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import PositiveFloat, Section
from sciml.ude._noise import FiniteFloat
from sciml.ude._sde import NeuralSDE, euler_maruyama_nll

__all__ = ["NeuralSDEOU", "OUParams", "SDEModel", "ou_exact_paths", "ou_mle"]


def ou_exact_paths(key, n_paths, n_steps, dt, kappa, mean, vol, x0):
    """Paths of shape (n_paths, n_steps + 1) sampled from the exact OU transition."""
    a = jnp.exp(-kappa * dt)
    sd = vol * jnp.sqrt((1 - a**2) / (2 * kappa))
    noise = jax.random.normal(key, (n_steps, n_paths))

    def step(x, z):
        x = mean + (x - mean) * a + sd * z
        return x, x

    _, xs = jax.lax.scan(step, jnp.full((n_paths,), x0, dtype=noise.dtype), noise)
    return jnp.concatenate([jnp.full((1, n_paths), x0, dtype=noise.dtype), xs]).T


def ou_mle(paths, dt):
    """Closed-form MLE (kappa, mean, vol) of an OU process from paths (n_paths, T).

    The exact transition is an AR(1): x' = c + a x + e, so (a, c) come from
    least squares and kappa = -log(a)/dt, mean = c/(1-a),
    vol^2 = 2 kappa var(e) / (1 - a^2).
    """
    x, y = np.asarray(paths[:, :-1]).ravel(), np.asarray(paths[:, 1:]).ravel()
    a, c = np.polyfit(x, y, 1)
    resid = y - (a * x + c)
    kappa = -np.log(a) / dt
    return float(kappa), float(c / (1 - a)), float(np.sqrt(2 * kappa * resid.var() / (1 - a**2)))


class OUParams(Section):
    """`problem` section of `neural_sde_ou`: the settings of `NeuralSDEOU`.

    The process is dX = kappa (mean - X) dt + vol dW from X(0) = x0; every
    path is observed without measurement error at t = 0, dt, ..., n_steps dt,
    so its noise model is the diffusion `vol` itself (the paths' randomness).

    Attributes:
        kappa: mean-reversion rate (> 0; 1/kappa is the relaxation time).
        mean: the level the process reverts to.
        vol: volatility, the diffusion coefficient (> 0; stationary standard
            deviation vol / sqrt(2 kappa)).
        x0: the start of every path.
        n_paths, n_steps, dt: the data set (paths of `n_steps` intervals of
            `dt`, so on [0, n_steps dt]); at most 10**8 samples in all.
        batch_paths: paths per training batch (at most `n_paths`; a multiple
            of the device count).
        data_seed: seed of the data.
    """

    kappa: PositiveFloat = 2.0
    mean: FiniteFloat = 0.5
    vol: PositiveFloat = 0.3
    x0: FiniteFloat = 1.5
    n_paths: Annotated[int, Field(gt=0)] = 256
    n_steps: Annotated[int, Field(gt=0)] = 500
    dt: PositiveFloat = 0.01
    batch_paths: Annotated[int, Field(gt=0)] = 64
    data_seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.batch_paths > self.n_paths:
            raise ValueError(
                f"batch_paths ({self.batch_paths}) must not exceed n_paths ({self.n_paths})"
            )
        samples = self.n_paths * (self.n_steps + 1)
        if samples > 10**8:
            raise ValueError(
                f"n_paths * (n_steps + 1) = {self.n_paths} * {self.n_steps + 1} = {samples:.3g} "
                "samples; at most 10**8 (the data set would not fit in memory)"
            )
        return self


class SDEModel(Section):
    """`model` section of `neural_sde_ou`: drift and diffusion MLPs (1 -> width^depth -> 1)."""

    width: Annotated[int, Field(gt=0)] = 32
    depth: Annotated[int, Field(ge=0)] = 1
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"


class NeuralSDEOU(AbstractProblem):
    """Fit a neural SDE to Ornstein-Uhlenbeck paths.

    Settings: `OUParams` (the `problem` section) and `SDEModel` (the `model`
    section), given as sections or as keyword arguments, e.g.
    `NeuralSDEOU(n_paths=64, width=16)`.

    `evaluate` reports `kappa`, `vol` (recovered), `kappa_rel_error`,
    `vol_rel_error`, and `kappa_mle_rel_error`, `vol_mle_rel_error` (the
    closed-form estimate from the same data: the best any method can do).
    """

    Settings: ClassVar[type[Section]] = OUParams
    ModelSettings: ClassVar[type[Section]] = SDEModel

    paths: Float[Array, "p t"]
    settings: OUParams = eqx.field(static=True)
    model_settings: SDEModel = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = (
        "kappa",
        "vol",
        "kappa_rel_error",
        "vol_rel_error",
        "kappa_mle_rel_error",
        "vol_mle_rel_error",
    )

    def __init__(
        self,
        settings: OUParams | dict | None = None,
        model_settings: SDEModel | dict | None = None,
        **kwargs,
    ):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        self.paths = ou_exact_paths(
            jax.random.PRNGKey(s.data_seed), s.n_paths, s.n_steps, s.dt, s.kappa, s.mean, s.vol, s.x0
        )

    def init(self, key):
        k1, k2 = jax.random.split(key)
        m = self.model_settings
        act = activation_by_name(m.activation)
        kw = dict(width=m.width, depth=m.depth, activation=act, dtype=self.paths.dtype)
        return NeuralSDE(MLP(1, 1, key=k1, **kw), MLP(1, 1, key=k2, **kw)), None

    def loss(self, model, state, key):
        s = self.settings
        idx = jax.random.choice(key, self.paths.shape[0], (s.batch_paths,), replace=False)
        batch = shard_batch(self.paths[idx])
        nll = euler_maruyama_nll(model, batch[..., None], s.dt)
        return nll, (state, {})

    def recovered(self, model) -> tuple[float, float]:
        """(kappa, vol) read off the learned drift and diffusion over the data."""
        x = self.paths[:, :-1].reshape(-1, 1)
        drift = jax.vmap(model.drift)(x)[:, 0]
        slope = jnp.polyfit(x[:, 0], drift, 1)[0]
        vol = jnp.mean(jax.vmap(model.scale)(x))
        return float(-slope), float(vol)

    def evaluate(self, model, state, key):
        s = self.settings
        kappa, vol = self.recovered(model)
        k_mle, _, v_mle = ou_mle(self.paths, s.dt)
        return {
            "kappa": kappa,
            "vol": vol,
            "kappa_rel_error": abs(kappa - s.kappa) / s.kappa,
            "vol_rel_error": abs(vol - s.vol) / s.vol,
            "kappa_mle_rel_error": abs(k_mle - s.kappa) / s.kappa,
            "vol_mle_rel_error": abs(v_mle - s.vol) / s.vol,
        }

    def figures(self, model, state, outdir):
        from matplotlib.figure import Figure

        s = self.settings
        x = np.linspace(float(self.paths.min()), float(self.paths.max()), 100)[:, None]
        drift = np.asarray(jax.vmap(model.drift)(jnp.asarray(x, self.paths.dtype)))[:, 0]
        scale = np.asarray(jax.vmap(model.scale)(jnp.asarray(x, self.paths.dtype)))[:, 0]
        fig = Figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(x[:, 0], s.kappa * (s.mean - x[:, 0]), "k-", label="true drift")
        ax1.plot(x[:, 0], drift, "C1--", label="learned drift")
        ax1.legend()
        ax1.set_xlabel("x")
        ax2.axhline(s.vol, color="k", label="true volatility")
        ax2.plot(x[:, 0], scale, "C1--", label="learned volatility")
        ax2.legend()
        ax2.set_xlabel("x")
        fig.tight_layout()
        path = Path(outdir) / "drift_diffusion.png"
        fig.savefig(path, dpi=100)
        return [str(path)]
