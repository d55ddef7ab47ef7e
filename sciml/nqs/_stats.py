"""Monte Carlo statistics of Markov-chain samples: mean, error, variance, τ_int, split-R̂.

`statistics(values)` takes values of shape `(n_chains, n_per_chain)` (e.g. local
energies of `sampler.sample`'s output), real or complex, and returns a `Stats`;
`check_convergence(stats)` warns (`ConvergenceWarning`) when split-R̂ is above a
threshold. References: Sokal, "Monte Carlo methods in statistical mechanics"
(1997) for τ_int and its window; Vehtari et al., "Rank-normalization, folding,
and localization: an improved R̂", Bayesian Analysis (2021) for split-R̂.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ConvergenceWarning", "Stats", "check_convergence", "statistics"]

# Sokal's window: the smallest W with W >= _SOKAL_C · τ(W).
_SOKAL_C = 5.0
# Values whose spread is below this many ulps of their mean count as constant for R̂.
_CONSTANT_ULPS = 100.0


class ConvergenceWarning(UserWarning):
    """Warned by `check_convergence` when split-R̂ says the chains have not mixed."""


class Stats(NamedTuple):
    """Summary of Monte Carlo samples (a pytree of scalar arrays).

    Attributes:
        mean: mean of all samples (complex for complex values).
        error_of_mean: `sqrt(variance · tau_corr / n_samples)`, the standard error
            of `mean` corrected for autocorrelation (0 for constant values).
        variance: `mean |x − mean|²` over all samples (no ddof correction).
        tau_corr: integrated autocorrelation time `τ = 1 + 2 Σ_{t≥1} ρ(t)` in
            samples (1 for independent samples; 1 when fewer than 2 samples per
            chain or the values are constant).
        r_hat: split-R̂ (1 for well-mixed chains; see `statistics` for the
            degenerate cases).
        n_samples: total number of samples `n_chains · n_per_chain`.
    """

    mean: jax.Array
    error_of_mean: jax.Array
    variance: jax.Array
    tau_corr: jax.Array
    r_hat: jax.Array
    n_samples: jax.Array

    def __str__(self) -> str:
        mean = complex(self.mean)
        shown = f"{mean.real:.6g}" if mean.imag == 0 else f"{mean:.6g}"
        return (
            f"{shown} ± {float(self.error_of_mean):.2g} [σ²={float(self.variance):.3g}, "
            f"τ={float(self.tau_corr):.2f}, R̂={float(self.r_hat):.4f}]"
        )


def _autocorr_time(centred: jax.Array) -> jax.Array:
    """τ_int from per-chain-centred values `(m, n)`: FFT autocovariance averaged over chains."""
    m, n = centred.shape
    if n < 2:
        return jnp.ones((), jnp.real(centred).dtype)
    size = 1 << (2 * n - 1).bit_length()  # zero-pad: the circular correlation becomes linear
    f = jnp.fft.fft(centred, n=size, axis=1)
    acov = jnp.fft.ifft(f * jnp.conj(f), axis=1)[:, :n].real  # Σ_i Re[x_i* x_{i+t}]
    acov = jnp.mean(acov, axis=0) / n
    safe0 = jnp.where(acov[0] > 0, acov[0], 1)
    rho = acov / safe0
    taus = 1 + 2 * jnp.cumsum(rho[1:])  # τ(W) for W = 1 .. n-1
    window = jnp.arange(1, n, dtype=taus.dtype)
    ok = window >= _SOKAL_C * taus
    # Sokal: the first W that satisfies the condition; none (chains too short): the last.
    w = jnp.where(jnp.any(ok), jnp.argmax(ok), n - 2)
    tau = taus[w]
    # An estimate can come out non-positive for strongly anti-correlated (or very short)
    # chains; floor it so the error stays positive.
    tau = jnp.maximum(tau, 1 / n)
    return jnp.where(acov[0] > 0, tau, 1)


def _split_r_hat(values: jax.Array, mean: jax.Array) -> jax.Array:
    """Split-R̂ (Vehtari et al. 2021) of `(m, n)` values; |·|² for complex values."""
    m, n = values.shape
    half = n // 2
    if half < 2:
        return jnp.full((), jnp.nan, jnp.real(values).dtype)
    # First and last `half` samples (the middle one is dropped for odd n).
    parts = jnp.concatenate([values[:, :half], values[:, n - half :]], axis=0)  # (2m, n')
    part_means = jnp.mean(parts, axis=1)
    w = jnp.mean(jnp.sum(jnp.abs(parts - part_means[:, None]) ** 2, axis=1) / (half - 1))
    b_over_n = jnp.sum(jnp.abs(part_means - jnp.mean(part_means)) ** 2) / (2 * m - 1)
    var_plus = (half - 1) / half * w + b_over_n
    eps = jnp.finfo(w.dtype).eps
    constant = var_plus <= (_CONSTANT_ULPS * eps * jnp.abs(mean)) ** 2
    r_hat = jnp.sqrt(var_plus / jnp.where(w > 0, w, 1))
    return jnp.where(constant, 1.0, jnp.where(w > 0, r_hat, jnp.inf)).astype(w.dtype)


@jax.jit
def statistics(values) -> Stats:
    """Mean, error of the mean, variance, τ_int and split-R̂ of Markov-chain samples.

    Args:
        values: shape `(n_chains, n_per_chain)` (one row per chain, in chain order),
            real or complex floating point; a 1-D array is one chain.

    Returns:
        `Stats` with:

        - `mean`, `variance = mean |x − mean|²` over all samples.
        - `tau_corr`: `τ = 1 + 2 Σ_{t=1}^{W} ρ(t)`, with `ρ` the autocovariance of
          each chain (centred on its own mean, by FFT, `Re[x_i* x_{i+t}]` for
          complex values) averaged over chains and normalised by lag 0; `W` is
          Sokal's window, the smallest with `W ≥ 5 τ(W)` (the largest lag if
          none). Floored at `1/n_per_chain`; exactly 1 for constant values or
          fewer than 2 samples per chain.
        - `error_of_mean = sqrt(variance · τ / n_samples)`.
        - `r_hat`: split-R̂ (Vehtari et al. 2021): the `m` chains are cut into
          `2m` halves of `n' = ⌊n_per_chain/2⌋` samples (the middle sample of an
          odd chain is dropped); `W` = mean within-half variance (ddof 1),
          `B/n'` = variance of the half means (ddof 1),
          `R̂ = sqrt(((n'−1)/n' W + B/n') / W)`; for complex values the
          variances are of `|x − x̄|²`. Degenerate cases, without NaN: values
          constant to within 100 ulps of the mean (e.g. the local energy of an
          exact eigenstate) give `R̂ = 1`; chains each stuck at a different value
          (`W = 0 < B`) give `R̂ = +inf` (never converged). Only with fewer than
          4 samples per chain (no halves of 2) is `R̂` NaN (undefined;
          `check_convergence` does not flag it).
        - `n_samples = n_chains · n_per_chain`.

    Raises:
        ValueError: `values` not 1-D or 2-D, or empty. TypeError: not floating point.

    Example:
        >>> e_loc = local_energies(op, model, samples)  # (n_chains, n_per_chain)
        >>> stats = statistics(e_loc); check_convergence(stats)
    """
    values = jnp.asarray(values)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(
            f"statistics: values must have shape (n_chains, n_per_chain) (or one chain (n,)) "
            f"and be non-empty, got shape {values.shape}"
        )
    if not jnp.issubdtype(values.dtype, jnp.inexact):
        raise TypeError(f"statistics: values must be real or complex floats, got {values.dtype}")
    m, n = values.shape
    mean = jnp.mean(values)
    variance = jnp.mean(jnp.abs(values - mean) ** 2)
    tau = _autocorr_time(values - jnp.mean(values, axis=1, keepdims=True))
    error = jnp.sqrt(variance * tau / (m * n))
    r_hat = _split_r_hat(values, mean)
    return Stats(mean, error, variance, tau, r_hat, jnp.asarray(m * n, jnp.int32))


def check_convergence(stats: Stats, threshold: float = 1.05) -> bool:
    """Warn (`ConvergenceWarning`) when split-R̂ exceeds `threshold`; return whether it did not.

    Runs on the host (reads `stats.r_hat`). A NaN R̂ (too few samples per chain
    to compute it) is not flagged; `+inf` (chains stuck at different values) is.

    Args:
        stats: from `statistics`.
        threshold: largest acceptable R̂ (default 1.05; common choices 1.01–1.1).

    Returns:
        `True` if R̂ ≤ threshold (or unavailable), `False` otherwise (and warns).
    """
    if not threshold >= 1:
        raise ValueError(f"check_convergence: threshold must be >= 1, got {threshold!r}")
    r_hat = float(stats.r_hat)
    if math.isnan(r_hat) or r_hat <= threshold:
        return True
    warnings.warn(
        f"split-R̂ = {r_hat:.4f} > {threshold}: the Markov chains have not mixed (they sample "
        "different distributions or drift); estimates are unreliable. Sample longer, "
        "thermalise more (n_discard) or change the proposal rule.",
        ConvergenceWarning,
        stacklevel=2,
    )
    return False
