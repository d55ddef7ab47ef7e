"""Training objectives and diagnostics for flows: maximum likelihood, reverse KL, importance weights.

All functions take a distribution with the single-point interface of
`sciml.flows` (`log_prob(x, context)`, `sample_and_log_prob(key, context)`)
and batch with `jax.vmap` themselves.

- Maximum likelihood: `−mean_i log q(x_i)` (nats per point).
- Reverse KL against an unnormalised log density `log p̃`:
  `L = E_{x~q}[log q(x) − log p̃(x)] = KL(q‖p) − log Z ≥ −log Z`, with the
  reparameterised samples of `sample_and_log_prob`; the ELBO is `−L`.
  "Sticking the landing" (Roeder et al. 2017) evaluates `log q` with the
  parameters held constant (`stop_gradient`) at the reparameterised sample,
  which drops the score term whose expectation is zero: the gradient's
  variance goes to zero as q approaches p. It needs the density direction
  (`log_prob`, an inverse pass) besides the sampling direction.
- Importance sampling with weights `w = p̃/q`: `ESS/n = (Σw)² / (n Σw²)`
  in (0, 1], and `log Ẑ = logsumexp(log w) − log n`, a stochastic lower bound
  of `log Z` in expectation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "ImportanceDiagnostics",
    "importance_diagnostics",
    "maximum_likelihood_loss",
    "reverse_kl_loss",
]


def _batched_context(name, context, n):
    if context is None:
        return None
    context = jnp.asarray(context)
    if context.ndim == 0 or context.shape[0] != n:
        raise ValueError(
            f"{name}: context must have one row per point, shape ({n}, ...), got {context.shape}"
        )
    return context


def maximum_likelihood_loss(dist, x: Float[Array, "n ..."], context: Array | None = None) -> Array:
    """Negative mean log-likelihood `−(1/n) Σ log q(x_i | c_i)` of a batch.

    Args:
        dist: a flow (`Transformed`) or any distribution with `log_prob(x, context)`.
        x: the data, shape `(n, *dist.shape)`.
        context: `(n, *dist.cond_shape)` for a conditional distribution, else `None`.

    Returns:
        A scalar (nats per point).
    """
    x = jnp.asarray(x)
    if x.shape[1:] != tuple(dist.shape):
        raise ValueError(
            f"maximum_likelihood_loss: data must have shape (n, *{tuple(dist.shape)}), got {x.shape}"
        )
    context = _batched_context("maximum_likelihood_loss", context, x.shape[0])
    if context is None:
        log_q = jax.vmap(dist.log_prob)(x)
    else:
        log_q = jax.vmap(dist.log_prob)(x, context)
    return -jnp.mean(log_q)


def _sample_batch(dist, key, num_samples, context):
    keys = jax.random.split(key, num_samples)
    if context is None:
        return jax.vmap(lambda k: dist.sample_and_log_prob(k))(keys)
    return jax.vmap(lambda k: dist.sample_and_log_prob(k, context))(keys)


def reverse_kl_loss(
    dist,
    log_density: Callable[[Array], Array],
    key: PRNGKeyArray,
    num_samples: int,
    *,
    context: Array | None = None,
    stick_the_landing: bool = False,
) -> tuple[Array, tuple[Array, Array]]:
    """Monte Carlo reverse KL `E_q[log q − log p̃]` (the negative ELBO) with reparameterised samples.

    Args:
        dist: the variational flow (sampling and density).
        log_density: the unnormalised target `log p̃(x)` of ONE point (vmapped here).
        key: draws the `num_samples` base samples.
        num_samples: Monte Carlo samples.
        context: one context shared by all samples (conditional flows), or `None`.
        stick_the_landing: drop the score term (Roeder et al. 2017): `log q`
            is evaluated at the sample with `stop_gradient` parameters (one
            extra density pass).

    Returns:
        `(loss, (log_q, log_p))`: the scalar loss and, per sample, `log q`
        (with the live parameters) and `log p̃`, for `importance_diagnostics`.
    """
    if int(num_samples) < 1:
        raise ValueError(f"reverse_kl_loss: num_samples must be >= 1, got {num_samples}")
    x, log_q = _sample_batch(dist, key, int(num_samples), context)
    log_p = jax.vmap(log_density)(x)
    if log_p.shape != log_q.shape:
        raise ValueError(
            f"reverse_kl_loss: log_density must return a scalar per point, got shape {log_p.shape[1:]}"
        )
    if stick_the_landing:
        frozen = jax.lax.stop_gradient(eqx.filter(dist, eqx.is_inexact_array))
        frozen = eqx.combine(frozen, eqx.filter(dist, eqx.is_inexact_array, inverse=True))
        if context is None:
            log_q_loss = jax.vmap(frozen.log_prob)(x)
        else:
            log_q_loss = jax.vmap(lambda xi: frozen.log_prob(xi, context))(x)
    else:
        log_q_loss = log_q
    return jnp.mean(log_q_loss - log_p), (log_q, log_p)


class ImportanceDiagnostics(NamedTuple):
    """Importance-sampling summary of a variational flow against its target.

    Attributes:
        elbo: `mean(log p̃ − log q)`, a lower bound of `log Z`.
        log_z: `logsumexp(log w) − log n`, the importance estimate of `log Z`
            (a lower bound in expectation, tighter than the ELBO).
        ess_fraction: `(Σw)² / (n Σw²)` in `(0, 1]` (1: q = p).
    """

    elbo: Array
    log_z: Array
    ess_fraction: Array


def importance_diagnostics(
    log_q: Float[Array, " n"], log_p: Float[Array, " n"]
) -> ImportanceDiagnostics:
    """ELBO, importance estimate of `log Z` and the effective sample size fraction.

    Args:
        log_q: `log q(x_i)` of samples `x_i ~ q`, shape `(n,)`.
        log_p: the unnormalised target `log p̃(x_i)` at the same samples, shape `(n,)`.
    """
    log_q, log_p = jnp.asarray(log_q), jnp.asarray(log_p)
    if log_q.ndim != 1 or log_q.shape != log_p.shape:
        raise ValueError(
            f"importance_diagnostics: log_q and log_p must be 1-D of equal length, got "
            f"{log_q.shape} and {log_p.shape}"
        )
    n = log_q.shape[0]
    log_w = log_p - log_q
    lse = jax.scipy.special.logsumexp(log_w)
    ess = jnp.exp(2 * lse - jax.scipy.special.logsumexp(2 * log_w)) / n
    return ImportanceDiagnostics(jnp.mean(log_w), lse - jnp.log(n), ess)
