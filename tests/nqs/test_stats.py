"""Statistics: error of the mean, τ_int on AR(1) chains, split-R̂ (analytic and diagnostic
cases), degenerate inputs without NaN surprises, and the convergence warning."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from sciml.nqs._stats import ConvergenceWarning, Stats, check_convergence, statistics


def _ar1(rho, n_chains, n, seed):
    """Stationary AR(1) chains x_t = ρ x_{t-1} + ε_t, ε ~ N(0, 1): variance 1/(1-ρ²)."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n_chains, n))
    eps[:, 0] /= np.sqrt(1 - rho**2)  # start in the stationary law
    return scipy.signal.lfilter([1.0], [1.0, -rho], eps, axis=1)


def test_iid_normal():
    rng = np.random.default_rng(0)
    sigma, m, n = 2.0, 8, 2000
    stats = statistics(jnp.asarray(sigma * rng.standard_normal((m, n)) + 5.0))
    assert isinstance(stats, Stats)
    assert int(stats.n_samples) == m * n
    assert abs(float(stats.variance) - sigma**2) < 0.05 * sigma**2
    assert abs(float(stats.tau_corr) - 1) < 0.15
    assert abs(float(stats.error_of_mean) / (sigma / np.sqrt(m * n)) - 1) < 0.1
    assert abs(float(stats.mean) - 5.0) < 4 * sigma / np.sqrt(m * n)
    assert 0.99 < float(stats.r_hat) < 1.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_convergence(stats)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_ar1_tau_and_error(rho):
    values = _ar1(rho, 16, 4000, seed=int(10 * rho))
    stats = statistics(jnp.asarray(values))
    tau = (1 + rho) / (1 - rho)
    assert abs(float(stats.tau_corr) / tau - 1) < 0.15
    # Var(mean) ≈ σ² τ / n_total with σ² = 1/(1 − ρ²) for a long AR(1) chain.
    expected_error = np.sqrt(tau / (1 - rho**2) / values.size)
    assert abs(float(stats.error_of_mean) / expected_error - 1) < 0.15
    assert float(stats.r_hat) < 1.05


def test_tau_matches_spread_of_chain_means():
    """Cross-check: τ ≈ n · Var(chain means) / Var(samples), from many independent chains."""
    values = _ar1(0.6, 256, 400, seed=3)
    stats = statistics(jnp.asarray(values))
    tau_from_means = values.shape[1] * np.var(values.mean(axis=1), ddof=1) / np.var(values)
    assert abs(float(stats.tau_corr) / tau_from_means - 1) < 0.3
    assert abs(float(stats.tau_corr) / 4.0 - 1) < 0.15


def test_complex_values():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((8, 1000)) + 1j * (rng.standard_normal((8, 1000)) + 2)
    stats = statistics(jnp.asarray(values, jnp.complex64))
    assert jnp.iscomplexobj(stats.mean)
    assert abs(complex(stats.mean) - 2j) < 0.1
    assert abs(float(stats.variance) - 2.0) < 0.1  # mean |x − x̄|² = Var Re + Var Im
    assert abs(float(stats.tau_corr) - 1) < 0.15
    assert 0.99 < float(stats.r_hat) < 1.01


def test_r_hat_flags_chains_with_different_means():
    rng = np.random.default_rng(2)
    values = rng.standard_normal((4, 500))
    values[3] += 1.0
    stats = statistics(jnp.asarray(values))
    assert float(stats.r_hat) > 1.05
    with pytest.warns(ConvergenceWarning, match="R̂"):
        assert not check_convergence(stats)
    assert check_convergence(stats, threshold=float(stats.r_hat) + 0.1)


def test_split_r_hat_analytic_trend():
    """Two identical linear trends: plain R̂ ≈ 1 but split-R̂ sees the drift (by hand)."""
    values = jnp.asarray(np.stack([np.arange(100.0)] * 2))
    half = 50
    w = half * (half + 1) / 12  # variance (ddof 1) of 0..49 (or 50..99)
    b_over_n = 4 * 25.0**2 / 3  # half means 24.5, 74.5, 24.5, 74.5 around 49.5 (ddof 1)
    expected = np.sqrt(((half - 1) / half * w + b_over_n) / w)
    np.testing.assert_allclose(float(statistics(values).r_hat), expected, rtol=1e-5)


def test_degenerate_inputs():
    # Constant values (an exact eigenstate's local energy): no NaN, R̂ = 1, zero error.
    stats = statistics(jnp.full((4, 50), -3.25))
    assert float(stats.r_hat) == 1.0 and float(stats.tau_corr) == 1.0
    assert float(stats.variance) == 0.0 and float(stats.error_of_mean) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_convergence(stats)
    # Roundoff-level noise around a constant also counts as converged.
    noisy = -3.25 * (1 + 1e-7 * np.random.default_rng(0).standard_normal((4, 50)))
    assert float(statistics(jnp.asarray(noisy, jnp.float32)).r_hat) == 1.0

    # Chains stuck at different values: W = 0 < B, R̂ = +inf, flagged.
    stuck = jnp.asarray(np.repeat([[1.0], [2.0]], 20, axis=1))
    stats = statistics(stuck)
    assert float(stats.r_hat) == np.inf and np.isfinite(float(stats.error_of_mean))
    with pytest.warns(ConvergenceWarning):
        assert not check_convergence(stats)

    # Too short for split-R̂: NaN (documented), not flagged; τ = 1 for single samples.
    short = statistics(jnp.asarray([[1.0, 2.0, 4.0], [0.0, 1.0, 3.0]]))
    assert np.isnan(float(short.r_hat)) and np.isfinite(float(short.error_of_mean))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_convergence(short)
    single = statistics(jnp.arange(8.0).reshape(8, 1))
    assert float(single.tau_corr) == 1.0
    np.testing.assert_allclose(float(single.error_of_mean), np.sqrt(np.var(np.arange(8.0)) / 8))


def test_one_chain_and_float64(x64):
    values = _ar1(0.5, 1, 20_000, seed=7)[0]
    stats = statistics(jnp.asarray(values))  # 1-D: one chain
    assert stats.mean.dtype == jnp.float64
    assert abs(float(stats.tau_corr) / 3.0 - 1) < 0.15
    assert float(stats.r_hat) < 1.05


def test_errors():
    with pytest.raises(ValueError, match="n_chains, n_per_chain"):
        statistics(jnp.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="floats"):
        statistics(jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="threshold"):
        check_convergence(statistics(jnp.zeros((2, 8))), threshold=0.5)
    assert "±" in str(statistics(jnp.arange(16.0).reshape(2, 8)))
