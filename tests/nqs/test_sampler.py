"""Samplers: histograms against |ψ|² (chi-square), exact acceptance rates, conservation,
explicit chain state, compile-once and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from sciml.nqs._hilbert import SpinHilbert
from sciml.nqs._lattice import chain
from sciml.nqs._sampler import (
    ExactSampler,
    MetropolisExchange,
    MetropolisLocal,
    SamplerState,
)

N = 6


class TableLogPsi(eqx.Module):
    """log ψ(s) = table[code(s)], code = Σ b_i 2^(N-1-i), b_i = (1 - s_i)/2 (site 0 first)."""

    table: jax.Array

    def __call__(self, s):
        bits = ((1 - s) / 2).astype(jnp.int32)
        code = jnp.sum(bits * 2 ** jnp.arange(s.shape[0] - 1, -1, -1))
        return self.table[code]


def _table(seed=0):
    rng = np.random.default_rng(seed)
    re = 0.6 * rng.standard_normal(2**N)
    im = rng.uniform(-np.pi, np.pi, 2**N)  # a phase: must not change the distribution
    return re + 1j * im


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def log_psi(table):
    return TableLogPsi(jnp.asarray(table, jnp.complex64))


def _codes(samples):
    s = np.asarray(samples).reshape(-1, N)
    bits = ((1 - s) / 2).astype(np.int64)
    return bits @ (2 ** np.arange(N - 1, -1, -1))


def _sector_codes(n_down):
    codes = np.arange(2**N)
    return codes[np.array([bin(c).count("1") for c in codes]) == n_down]


def _chi2_pvalue(codes, allowed, probs):
    """Chi-square p-value of the observed codes against probabilities `probs` on `allowed`."""
    assert np.isin(codes, allowed).all(), "a sample left the allowed set"
    counts = np.array([np.sum(codes == c) for c in allowed])
    expected = probs / probs.sum() * len(codes)
    return scipy.stats.chisquare(counts, expected).pvalue


def _check_histogram(codes, allowed, table):
    p = np.exp(2 * table.real[allowed])
    assert _chi2_pvalue(codes, allowed, p) > 1e-3
    # The test can fail: the same samples are far from |ψ| (instead of |ψ|²).
    assert _chi2_pvalue(codes, allowed, np.sqrt(p)) < 1e-6


def test_local_histogram_and_acceptance(table, log_psi, getkey):
    sampler = MetropolisLocal(SpinHilbert(N), n_chains=64, sweep_size=5 * N)
    state = sampler.init(getkey())
    _, state = sampler.sample(log_psi, state, getkey(), 64, n_discard=10)
    before = state
    samples, state = sampler.sample(log_psi, state, getkey(), 20_000)
    assert samples.shape == (64, 313, N)  # 20000 rounded up to a multiple of 64
    _check_histogram(_codes(samples), np.arange(2**N), table)

    # Stationary acceptance of single flips, exactly: Σ_s p(s) (1/N) Σ_i min(1, p(s^i)/p(s)).
    p = np.exp(2 * table.real)
    p /= p.sum()
    flips = [np.arange(2**N) ^ (1 << (N - 1 - i)) for i in range(N)]
    exact = sum(np.sum(p * np.minimum(1, p[f] / p)) for f in flips) / N
    n_acc = np.sum(state.n_accepted - before.n_accepted)
    n_prop = np.sum(state.n_proposed - before.n_proposed)
    assert n_prop == 64 * 313 * 5 * N
    assert abs(n_acc / n_prop - exact) < 0.01
    assert 0 < float(state.acceptance) < 1


@pytest.mark.parametrize("d_max", [1, 2])
def test_exchange_histogram_in_sector(table, log_psi, getkey, d_max):
    hilbert = SpinHilbert(N, magnetization=0)
    sampler = MetropolisExchange(hilbert, chain(N), n_chains=64, d_max=d_max, sweep_size=5 * N)
    state = sampler.init(getkey())
    assert np.all(np.sum(np.asarray(state.states), axis=1) == 0)  # chains start in the sector
    samples, state = sampler.sample(log_psi, state, getkey(), 16_000, n_discard=10)
    # Magnetisation is conserved exactly, entries stay ±1.
    assert np.all(np.sum(np.asarray(samples), axis=-1) == 0)
    assert np.all(np.abs(np.asarray(samples)) == 1)
    _check_histogram(_codes(samples), _sector_codes(N // 2), table)
    n_bonds = len(chain(N).bonds(1)) + (len(chain(N).bonds(2)) if d_max == 2 else 0)
    assert len(sampler.bonds) == n_bonds


def test_exchange_acceptance_and_other_sector(table, log_psi, getkey):
    """Acceptance of nearest-neighbour exchanges in the M = 2 sector, computed exactly."""
    hilbert = SpinHilbert(N, magnetization=2)
    sampler = MetropolisExchange(hilbert, chain(N), n_chains=64)
    state = sampler.init(getkey())
    _, state = sampler.sample(log_psi, state, getkey(), 64, n_discard=20)
    before = state
    samples, state = sampler.sample(log_psi, state, getkey(), 64 * 200)
    assert np.all(np.sum(np.asarray(samples), axis=-1) == 2)
    allowed = _sector_codes(2)
    p = np.zeros(2**N)
    p[allowed] = np.exp(2 * table.real[allowed])
    p /= p.sum()
    exact = 0.0
    bonds = chain(N).bonds(1)
    for c in allowed:
        for i, j in bonds:
            bi, bj = (c >> (N - 1 - i)) & 1, (c >> (N - 1 - j)) & 1
            swapped = c ^ ((bi ^ bj) * ((1 << (N - 1 - i)) | (1 << (N - 1 - j))))
            exact += p[c] * min(1.0, p[swapped] / p[c]) / len(bonds)
    rate = np.sum(state.n_accepted - before.n_accepted) / np.sum(
        state.n_proposed - before.n_proposed
    )
    assert abs(rate - exact) < 0.01


def test_exact_sampler_histogram_and_probabilities(table, log_psi, getkey):
    sampler = ExactSampler(SpinHilbert(N), n_chains=16)
    state = sampler.init(getkey())
    samples, new = sampler.sample(log_psi, state, getkey(), 16_000)
    assert samples.shape == (16, 1000, N)
    _check_histogram(_codes(samples), np.arange(2**N), table)
    np.testing.assert_array_equal(new.states, samples[:, -1])
    np.testing.assert_array_equal(new.n_proposed, np.full(16, 1000))

    states, probs = sampler.probabilities(log_psi)
    np.testing.assert_array_equal(_codes(states), np.arange(2**N))  # ED basis order
    p = np.exp(2 * table.real)
    np.testing.assert_allclose(probs, p / p.sum(), rtol=1e-4)


def test_exact_sampler_sector_and_chunks(table, log_psi, getkey):
    hilbert = SpinHilbert(N, magnetization=0)
    sampler = ExactSampler(hilbert, n_chains=8, chunk_size=7)
    samples, _ = sampler.sample(log_psi, sampler.init(getkey()), getkey(), 8000)
    _check_histogram(_codes(samples), _sector_codes(N // 2), table)


def test_zero_amplitudes_are_never_sampled(getkey):
    """States with ψ = 0 (log ψ = −inf) are never drawn; chains started there leave them."""
    down_first = lambda s: jnp.where(s[0] < 0, -jnp.inf, 0.1 * jnp.sum(s))  # noqa: E731
    hilbert = SpinHilbert(N)
    for sampler in (MetropolisLocal(hilbert, n_chains=8), ExactSampler(hilbert, n_chains=8)):
        samples, _ = sampler.sample(down_first, sampler.init(getkey()), getkey(), 800, 20)
        assert np.all(np.asarray(samples)[..., 0] == 1)


def test_state_is_carried_between_calls(log_psi, getkey):
    sampler = MetropolisLocal(SpinHilbert(N), n_chains=8, sweep_size=1)
    state = sampler.init(getkey())
    np.testing.assert_array_equal(state.n_proposed, np.zeros(8))
    first, state1 = sampler.sample(log_psi, state, getkey(), 8 * 5, n_discard=2)
    np.testing.assert_array_equal(state1.states, first[:, -1])
    np.testing.assert_array_equal(state1.n_proposed, np.full(8, 7))
    second, state2 = sampler.sample(log_psi, state1, getkey(), 8 * 5)
    # One proposal per sweep: each chain's first new sample is at most one flip away from
    # where the previous call left it.
    changed = np.sum(np.asarray(second[:, 0]) != np.asarray(state1.states), axis=1)
    assert np.all(changed <= 1)
    np.testing.assert_array_equal(state2.n_proposed, np.full(8, 12))
    assert np.all(state2.n_accepted >= state1.n_accepted)
    assert np.all(state2.n_accepted <= state2.n_proposed)


def test_uniform_target_accepts_everything(getkey):
    sampler = MetropolisLocal(SpinHilbert(N), n_chains=4)
    uniform = lambda s: jnp.zeros((), s.dtype)  # noqa: E731
    _, state = sampler.sample(uniform, sampler.init(getkey()), getkey(), 40, n_discard=1)
    np.testing.assert_array_equal(state.n_accepted, state.n_proposed)
    np.testing.assert_array_equal(state.n_proposed, np.full(4, 11 * N))
    assert float(state.acceptance) == 1.0


_TRACES = []


class _Counting(eqx.Module):
    w: jax.Array

    def __call__(self, s):
        _TRACES.append(None)  # runs only while tracing
        return self.w * jnp.sum(s[:-1] * s[1:])


def test_compiles_once_and_jits(getkey):
    sampler = MetropolisExchange(SpinHilbert(N, magnetization=0), chain(N), n_chains=4)
    state = sampler.init(getkey())
    _, state = sampler.sample(_Counting(jnp.asarray(0.3)), state, getkey(), 20, n_discard=2)
    n_traces = len(_TRACES)
    assert n_traces > 0
    _, state = sampler.sample(_Counting(jnp.asarray(-0.5)), state, getkey(), 20, n_discard=2)
    assert len(_TRACES) == n_traces  # new parameters, keys and chains: no retrace

    @jax.jit
    def step(model, state, key):
        return sampler.sample(model, state, key, 20, n_discard=2)

    samples, new = step(_Counting(jnp.asarray(0.1)), state, getkey())
    assert samples.shape == (4, 5, N) and isinstance(new, SamplerState)
    assert new.n_accepted.dtype == jnp.int32


def test_float64(x64, getkey):
    hilbert = SpinHilbert(N)
    log_psi = lambda s: 0.2 * jnp.sum(s) + 0.1j * s[0]  # noqa: E731
    for sampler in (MetropolisLocal(hilbert, n_chains=4), ExactSampler(hilbert, n_chains=4)):
        state = sampler.init(getkey(), jnp.float64)
        samples, new = sampler.sample(log_psi, state, getkey(), 8)
        assert samples.dtype == jnp.float64 and new.states.dtype == jnp.float64
    state = MetropolisLocal(hilbert, n_chains=4).init(getkey(), jnp.float32)
    samples, _ = MetropolisLocal(hilbert, n_chains=4).sample(log_psi, state, getkey(), 8)
    assert samples.dtype == jnp.float32


def test_errors(log_psi, getkey):
    sector = SpinHilbert(N, magnetization=0)
    with pytest.raises(ValueError, match="MetropolisLocal.*MetropolisExchange"):
        MetropolisLocal(sector)
    with pytest.raises(ValueError, match="not ergodic"):
        MetropolisExchange(SpinHilbert(N), chain(N))
    with pytest.raises(ValueError, match="lattice has 8 sites"):
        MetropolisExchange(sector, chain(8))
    with pytest.raises(ValueError, match="d_max"):
        MetropolisExchange(sector, chain(N), d_max=3)
    with pytest.raises(ValueError, match="n_chains"):
        MetropolisLocal(SpinHilbert(N), n_chains=0)
    with pytest.raises(ValueError, match="sweep_size"):
        MetropolisLocal(SpinHilbert(N), sweep_size=0)
    with pytest.raises(ValueError, match="about 20 sites"):
        ExactSampler(SpinHilbert(21))
    ExactSampler(SpinHilbert(22, magnetization=0))  # 705432 states: fine

    sampler = MetropolisLocal(SpinHilbert(N), n_chains=4)
    state = sampler.init(getkey())
    with pytest.raises(ValueError, match="scalar"):
        sampler.sample(lambda s: s * 2.0, state, getkey(), 8)
    with pytest.raises(ValueError, match="n_samples"):
        sampler.sample(log_psi, state, getkey(), 0)
    with pytest.raises(ValueError, match="n_discard"):
        sampler.sample(log_psi, state, getkey(), 8, n_discard=-1)
    with pytest.raises(ValueError, match=r"shape \(n_chains, N\) = \(4, 6\)"):
        sampler.sample(log_psi, MetropolisLocal(SpinHilbert(N), 5).init(getkey()), getkey(), 8)
    with pytest.raises(TypeError, match="SamplerState"):
        sampler.sample(log_psi, state.states, getkey(), 8)
    with pytest.raises(ValueError, match="scalar"):
        ExactSampler(SpinHilbert(N), n_chains=4).sample(lambda s: s, state, getkey(), 8)
