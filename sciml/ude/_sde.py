"""Neural stochastic differential equations with diagonal noise.

dY = mu(Y) dt + diag(sigma(Y)) dW, simulated with diffrax's SDE solvers over a
`VirtualBrownianTree`, and fitted to observed paths by the Euler-Maruyama
transition likelihood (Kidger et al., "Efficient and Accurate Gradients for
Neural SDEs", NeurIPS 2021, for the solver side).
"""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

__all__ = ["NeuralSDE", "simulate_sde", "euler_maruyama_nll"]


class NeuralSDE(eqx.Module):
    """dY = drift(Y) dt + diag(softplus(diffusion(Y))) dW on one state Y of shape (n,).

    Args:
        drift: module mapping y (n,) to the drift (n,).
        diffusion: module mapping y (n,) to (n,) raw values; the noise scale
            is their softplus (plus `min_scale`), so it stays positive.
        min_scale: floor on the noise scale (keeps the likelihood finite).
    """

    drift: eqx.Module
    diffusion: eqx.Module
    min_scale: float = eqx.field(static=True, default=1e-6)

    def drift_fn(self, t, y, args=None):
        """mu(y), shape (n,)."""
        return self.drift(y)

    def scale(self, y):
        """sigma(y) > 0, shape (n,) (the diagonal of the diffusion matrix)."""
        return jax.nn.softplus(self.diffusion(y)) + self.min_scale

    def diffusion_fn(self, t, y, args=None):
        """diag(sigma(y)) as a lineax operator acting on dW."""
        return lx.DiagonalLinearOperator(self.scale(y))


def simulate_sde(
    sde: NeuralSDE,
    y0,
    ts,
    key,
    *,
    solver: dfx.AbstractSolver | None = None,
    dt0: float | None = None,
    max_steps: int | None = 100_000,
):
    """One sample path of `sde` from `y0`, saved at `ts` (vmap over keys for more).

    Uses a `VirtualBrownianTree` (so the same key gives the same path at any
    step size) and, by default, the Euler-Maruyama solver (`dfx.Euler()`,
    strong order 0.5 for Ito SDEs) with fixed steps `dt0` (default: a tenth
    of the smallest save interval).
    """
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"simulate_sde: ts must be 1-D with at least 2 times, got shape {ts.shape}")
    y0 = jnp.asarray(y0)
    if dt0 is None:
        dt0 = float(jnp.min(jnp.diff(ts))) / 10
    bm = dfx.VirtualBrownianTree(ts[0], ts[-1], tol=dt0 / 2, shape=y0.shape, key=key)
    terms = dfx.MultiTerm(dfx.ODETerm(sde.drift_fn), dfx.ControlTerm(sde.diffusion_fn, bm))
    sol = dfx.diffeqsolve(
        terms,
        dfx.Euler() if solver is None else solver,
        ts[0],
        ts[-1],
        dt0,
        y0,
        saveat=dfx.SaveAt(ts=ts),
        max_steps=max_steps,
    )
    return sol.ys


def euler_maruyama_nll(sde: NeuralSDE, ys, dt):
    """Mean negative log-likelihood per increment of paths under the Euler-Maruyama transition.

    y_{k+1} | y_k ~ N(y_k + mu(y_k) dt, diag(sigma(y_k)^2) dt).

    Args:
        sde: the model.
        ys: observed states, shape (..., T, n) (any leading batch axes).
        dt: the (uniform) observation interval.
    """
    ys = jnp.asarray(ys)
    if ys.ndim < 2 or ys.shape[-2] < 2:
        raise ValueError(f"euler_maruyama_nll: ys must have shape (..., T >= 2, n), got {ys.shape}")
    x, x_next = ys[..., :-1, :], ys[..., 1:, :]
    flat = x.reshape(-1, x.shape[-1])
    mu = jax.vmap(sde.drift)(flat).reshape(x.shape)
    sigma = jax.vmap(sde.scale)(flat).reshape(x.shape)
    var = sigma**2 * dt
    r = x_next - x - mu * dt
    nll = 0.5 * (r**2 / var + jnp.log(2 * jnp.pi * var))
    return jnp.mean(jnp.sum(nll, axis=-1))
