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
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.nn import MLP, activation_by_name
from sciml.parallel import shard_batch
from sciml.problems import AbstractProblem
from sciml.ude._sde import NeuralSDE, euler_maruyama_nll

__all__ = ["NeuralSDEOU", "ou_exact_paths", "ou_mle"]


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


class NeuralSDEOU(AbstractProblem):
    """Fit a neural SDE to Ornstein-Uhlenbeck paths.

    Args:
        kappa, mean, vol, x0: the true process and start.
        n_paths, n_steps, dt: the data set (paths of `n_steps` intervals of `dt`).
        batch_paths: paths per training batch (a multiple of the device count).
        data_seed: seed of the data.
        width, depth, activation: drift and diffusion MLPs (1 -> width^depth -> 1).

    `evaluate` reports `kappa`, `vol` (recovered), `kappa_rel_error`,
    `vol_rel_error`, and `kappa_mle_rel_error`, `vol_mle_rel_error` (the
    closed-form estimate from the same data: the best any method can do).
    """

    paths: Float[Array, "p t"]
    kappa: float = eqx.field(static=True)
    mean: float = eqx.field(static=True)
    vol: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    batch_paths: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)

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
        *,
        kappa: float = 2.0,
        mean: float = 0.5,
        vol: float = 0.3,
        x0: float = 1.5,
        n_paths: int = 256,
        n_steps: int = 500,
        dt: float = 0.01,
        batch_paths: int = 64,
        data_seed: int = 0,
        width: int = 32,
        depth: int = 1,
        activation: str = "tanh",
    ):
        for name, v in (("kappa", kappa), ("vol", vol), ("dt", dt)):
            if not v > 0:
                raise ValueError(f"NeuralSDEOU: {name} must be positive, got {v}")
        if not 0 < batch_paths <= n_paths:
            raise ValueError(f"NeuralSDEOU: need 0 < batch_paths <= n_paths, got {batch_paths}, {n_paths}")
        activation_by_name(activation)
        self.paths = ou_exact_paths(
            jax.random.PRNGKey(data_seed), n_paths, n_steps, dt, kappa, mean, vol, x0
        )
        self.kappa, self.mean, self.vol, self.dt = kappa, mean, vol, dt
        self.batch_paths = batch_paths
        self.width, self.depth, self.activation = width, depth, activation

    def init(self, key):
        k1, k2 = jax.random.split(key)
        act = activation_by_name(self.activation)
        kw = dict(width=self.width, depth=self.depth, activation=act, dtype=self.paths.dtype)
        return NeuralSDE(MLP(1, 1, key=k1, **kw), MLP(1, 1, key=k2, **kw)), None

    def loss(self, model, state, key):
        idx = jax.random.choice(key, self.paths.shape[0], (self.batch_paths,), replace=False)
        batch = shard_batch(self.paths[idx])
        nll = euler_maruyama_nll(model, batch[..., None], self.dt)
        return nll, (state, {})

    def recovered(self, model) -> tuple[float, float]:
        """(kappa, vol) read off the learned drift and diffusion over the data."""
        x = self.paths[:, :-1].reshape(-1, 1)
        drift = jax.vmap(model.drift)(x)[:, 0]
        slope = jnp.polyfit(x[:, 0], drift, 1)[0]
        vol = jnp.mean(jax.vmap(model.scale)(x))
        return float(-slope), float(vol)

    def evaluate(self, model, state, key):
        kappa, vol = self.recovered(model)
        k_mle, _, v_mle = ou_mle(self.paths, self.dt)
        return {
            "kappa": kappa,
            "vol": vol,
            "kappa_rel_error": abs(kappa - self.kappa) / self.kappa,
            "vol_rel_error": abs(vol - self.vol) / self.vol,
            "kappa_mle_rel_error": abs(k_mle - self.kappa) / self.kappa,
            "vol_mle_rel_error": abs(v_mle - self.vol) / self.vol,
        }

    def figures(self, model, state, outdir):
        from matplotlib.figure import Figure

        x = np.linspace(float(self.paths.min()), float(self.paths.max()), 100)[:, None]
        drift = np.asarray(jax.vmap(model.drift)(jnp.asarray(x, self.paths.dtype)))[:, 0]
        scale = np.asarray(jax.vmap(model.scale)(jnp.asarray(x, self.paths.dtype)))[:, 0]
        fig = Figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(x[:, 0], self.kappa * (self.mean - x[:, 0]), "k-", label="true drift")
        ax1.plot(x[:, 0], drift, "C1--", label="learned drift")
        ax1.legend()
        ax1.set_xlabel("x")
        ax2.axhline(self.vol, color="k", label="true volatility")
        ax2.plot(x[:, 0], scale, "C1--", label="learned volatility")
        ax2.legend()
        ax2.set_xlabel("x")
        fig.tight_layout()
        path = Path(outdir) / "drift_diffusion.png"
        fig.savefig(path, dpi=100)
        return [str(path)]
