"""Adaptive collocation: RAD probabilities and draws, RAR selection, fixed shapes under jit."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.pinn.geometry import Disk, Interval, Rectangle, TimeInterval
from sciml.pinn.sampling import (
    AdaptiveSampler,
    evaluate_residuals,
    rad_add,
    rad_mix,
    rad_probabilities,
    rad_resample,
    rar_add,
    rar_replace,
    rar_select,
    sample_points,
)


def _key(i=0):
    # rbg keys compile faster; the statistical test below uses the default threefry keys.
    return jax.random.key(2000 + i, impl="rbg")


# Test programs run a few times: skip XLA's LLVM optimisation, it costs more than it saves.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _run(f, *args):
    """Run `f` as one jitted program (not one compile per eager op); numpy results."""
    return jax.tree.map(np.asarray, jax.jit(f, compiler_options=FAST_COMPILE)(*args))


def _rad_p(r, k, c):
    """Independent numpy form of Wu et al.'s density, normalised."""
    a = np.abs(np.asarray(r, float)) ** k
    q = a / a.mean() + c
    return q / q.sum()


# --------------------------------------------------------------------------- RAD


def test_rad_probabilities_formula():
    r = np.array([0.0, -1.0, 2.0, 3.0, -4.0])
    rv = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    p = _run(
        lambda: (
            rad_probabilities(r),
            rad_probabilities(r, k=2.0, c=0.0),
            rad_probabilities(r, k=0.0),
            rad_probabilities(np.zeros(4)),
            rad_probabilities(np.zeros(4), c=0.0),
            rad_probabilities(rv, c=0.0),
        )
    )
    # k = 1, c = 1: |r| / mean|r| + 1 = |r| / 2 + 1 -> (1, 1.5, 2, 2.5, 3) / 10
    np.testing.assert_allclose(p[0], [0.1, 0.15, 0.2, 0.25, 0.3], atol=1e-15)
    np.testing.assert_allclose(p[1], r**2 / 30, atol=1e-15)
    np.testing.assert_allclose(p[2], np.full(5, 0.2), atol=1e-15)
    # all-zero residuals: uniform (no 0/0), with and without the floor c
    np.testing.assert_allclose(p[3], np.full(4, 0.25))
    np.testing.assert_allclose(p[4], np.full(4, 0.25))
    # vector residuals: Euclidean norm per candidate
    np.testing.assert_allclose(p[5], np.array([5.0, 1.0, 0.0]) / 6)


def test_rad_selection_frequencies_match_probabilities():
    # Toy: 5 candidates (their index as coordinate), 20000 independent draws.
    n_cand, trials = 5, 20000
    candidates = jnp.arange(n_cand, dtype=float)[:, None]
    r = jnp.array([0.0, 1.0, -2.0, 3.0, 4.0])

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def draws(keys):
        def one(key):
            k1, k2 = jax.random.split(key)
            single = rad_resample(k1, candidates, r, 1)  # k = c = 1
            pair = rad_resample(k2, candidates, r, 2, k=2.0, c=0.5)
            return single[:, 0], pair[:, 0]

        return jax.vmap(one)(keys)

    single, pair = map(np.asarray, draws(jax.random.split(jax.random.key(7), trials)))
    # one draw: frequency of each candidate = p_i (binomial, 4.5 sigma)
    p = _rad_p(r, 1.0, 1.0)
    freq = np.bincount(single[:, 0].astype(int), minlength=n_cand) / trials
    assert np.all(np.abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / trials)), (freq, p)
    # two draws without replacement (successive sampling): never a duplicate, and
    # P(i picked) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    assert np.all(pair[:, 0] != pair[:, 1])
    q = _rad_p(r, 2.0, 0.5)
    incl = np.array(
        [q[i] + sum(q[j] * q[i] / (1 - q[j]) for j in range(n_cand) if j != i) for i in range(5)]
    )
    np.testing.assert_allclose(incl.sum(), 2.0)
    freq2 = np.bincount(pair.astype(int).ravel(), minlength=n_cand) / trials
    assert np.all(np.abs(freq2 - incl) < 4.5 * np.sqrt(incl * (1 - incl) / trials)), (freq2, incl)


def test_rad_resample_fixed_shape_distinct_and_compiled_once():
    candidates = jax.random.uniform(_key(), (50, 2))

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @eqx.debug.assert_max_traces(max_traces=1)
    def resample(key, r):
        return rad_resample(key, candidates, r, 40, c=0.0)

    cand = np.asarray(candidates)
    for i in range(3):
        # residual zero except on 40 candidates: with c = 0 exactly those are drawn
        support = np.random.default_rng(i).permutation(50)[:40]
        r = np.zeros(50)
        r[support] = np.random.default_rng(i).uniform(0.5, 2.0, 40)
        x = np.asarray(resample(_key(i), jnp.asarray(r)))
        assert x.shape == (40, 2)
        assert len(np.unique(x, axis=0)) == 40
        rows = [int(np.flatnonzero(np.all(cand == row, axis=1))[0]) for row in x]
        assert sorted(rows) == sorted(support.tolist())


def test_rad_mix_and_rad_add():
    points = jnp.asarray(np.random.default_rng(0).uniform(size=(20, 2)))
    candidates = jnp.asarray(np.random.default_rng(1).uniform(10.0, 11.0, size=(30, 2)))
    r = jnp.linspace(0.0, 1.0, 30)
    mixed, grown = _run(
        lambda key: (
            rad_mix(points, key, candidates, r, 0.25),
            rad_add(points, key, candidates, r, 7),
        ),
        _key(),
    )
    assert mixed.shape == (20, 2)
    changed = np.any(mixed != np.asarray(points), axis=1)
    assert changed.sum() == 5  # round(0.25 * 20)
    assert np.all(mixed[changed] >= 10.0)  # the new rows come from the candidates
    assert len(np.unique(mixed, axis=0)) == 20
    assert grown.shape == (27, 2)
    np.testing.assert_array_equal(grown[:20], points)
    assert np.all(grown[20:] >= 10.0) and len(np.unique(grown[20:], axis=0)) == 7


# --------------------------------------------------------------------------- RAR


def test_rar_select_and_add_take_the_top_m():
    rng = np.random.default_rng(3)
    candidates = rng.uniform(size=(40, 3))
    r = rng.normal(size=40)
    rv = rng.normal(size=(40, 2))  # vector residuals: by Euclidean norm
    points = rng.uniform(size=(10, 3))
    top, top_v, grown = _run(
        lambda: (
            rar_select(candidates, r, 6),
            rar_select(candidates, rv, 4),
            rar_add(points, candidates, r, 6),
        )
    )
    np.testing.assert_array_equal(top, candidates[np.argsort(-np.abs(r))[:6]])
    np.testing.assert_array_equal(top_v, candidates[np.argsort(-np.linalg.norm(rv, axis=1))[:4]])
    np.testing.assert_array_equal(grown, np.concatenate([points, top]))


def test_rar_replace_ring_buffer_under_jit():
    points = jnp.arange(20.0).reshape(10, 2)  # rows (2i, 2i + 1)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @eqx.debug.assert_max_traces(max_traces=1)
    def step(points, cursor, candidates, r):
        return rar_replace(points, candidates, r, 4, cursor=cursor, start=4)

    cursor = jnp.asarray(0, jnp.int32)
    history = []
    for i in range(3):
        candidates = jnp.full((8, 2), 100.0 * (i + 1)) + jnp.arange(8.0)[:, None]
        r = jnp.arange(8.0)  # top 4: candidates 7, 6, 5, 4
        points, cursor = step(points, cursor, candidates, r)
        history.append((np.asarray(points), int(cursor)))
    # ring of capacity 6 after the 4 protected rows: writes at 4-7, then 8, 9, 4, 5, then 6-9
    first, second, third = history
    np.testing.assert_array_equal(first[0][:4], np.arange(8.0).reshape(4, 2))
    np.testing.assert_array_equal(first[0][4:8, 0], [107, 106, 105, 104])
    np.testing.assert_array_equal(first[0][8:, 0], [16, 18])
    assert (first[1], second[1], third[1]) == (4, 2, 0)
    np.testing.assert_array_equal(second[0][[8, 9, 4, 5], 0], [207, 206, 205, 204])
    np.testing.assert_array_equal(second[0][6:8, 0], [105, 104])  # not yet evicted
    np.testing.assert_array_equal(third[0][6:10, 0], [307, 306, 305, 304])
    np.testing.assert_array_equal(third[0][:4], np.arange(8.0).reshape(4, 2))


# ------------------------------------------------------------------ adaptive helper


def test_evaluate_residuals_batched_equals_vmapped():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 2)))

    def residual(p):  # two components per point
        return jnp.stack([jnp.sin(p[0]) * p[1], p[0] ** 2 - 1.0])

    expected = np.sqrt((np.sin(x[:, 0]) * x[:, 1]) ** 2 + (np.asarray(x[:, 0]) ** 2 - 1.0) ** 2)
    both = _run(
        lambda x: (evaluate_residuals(residual, x), evaluate_residuals(residual, x, batch_size=5)),
        x,
    )
    np.testing.assert_allclose(both[0], expected, rtol=1e-14)
    np.testing.assert_allclose(both[1], expected, rtol=1e-14)


PEAK = jnp.array([0.25, 0.75])


def _peaked(x):  # sharp residual bump at PEAK
    return jnp.exp(-200.0 * jnp.sum((x - PEAK) ** 2)) - 0.001


def test_adaptive_sampler_rules_under_jit():
    domain = Rectangle((0.0, 0.0), (1.0, 1.0))
    samplers = {
        "rad": AdaptiveSampler(domain, 256, 4096, every=2),
        "rad_mix": AdaptiveSampler(domain, 64, 2048, rule="rad_mix", fraction=0.5),
        "rar": AdaptiveSampler(domain, 64, 2048, rule="rar", n_add=8, n_fixed=32),
    }

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @eqx.debug.assert_max_traces(max_traces=1)
    def update(key, states):
        return {
            n: s.update(jax.random.fold_in(key, i), states[n], _peaked)
            for i, (n, s) in enumerate(samplers.items())
        }

    init = {n: s.init(jax.random.fold_in(_key(), i)) for i, (n, s) in enumerate(samplers.items())}
    history = [jax.tree.map(np.asarray, init)]
    states = init
    for i in range(3):
        states = update(_key(10 + i), states)
        history.append(jax.tree.map(np.asarray, states))

    def near(points):  # share within 0.1 of the bump; uniform: pi * 0.01 ~ 3%
        return np.mean(np.linalg.norm(points - np.asarray(PEAK), axis=1) < 0.1)

    for n in samplers:
        assert all(h[n].points.shape == (256 if n == "rad" else 64, 2) for h in history)
        assert [int(h[n].step) for h in history] == [0, 1, 2, 3]
        assert np.all(np.asarray(domain.contains(history[-1][n].points)))
    # rad, every=2: resampled at steps 0 and 2 only
    rad = [h["rad"].points for h in history]
    assert not np.array_equal(rad[0], rad[1]) and np.array_equal(rad[1], rad[2])
    assert not np.array_equal(rad[2], rad[3])
    # With k = c = 1: mean |r| ~ pi/200 + 0.001 ~ 0.0167 and the disc of radius 0.1 holds
    # (pi/200 (1 - e^-2) / 0.0167 + 0.031) / 2 ~ 0.42 of the probability (sd of the share
    # for 256 points ~ 0.03); uniform sampling puts ~3% there.
    assert near(rad[1]) > 0.25 and near(rad[3]) > 0.25
    # rad_mix: half the set replaced per update
    mix = [h["rad_mix"].points for h in history]
    assert np.sum(np.any(mix[1] != mix[0], axis=1)) == 32
    assert near(mix[3]) > near(mix[0]) + 0.1
    # rar: 32 protected rows, 8 top points per update into a ring of 32 slots
    rar = [h["rar"] for h in history]
    assert [int(s.cursor) for s in rar] == [0, 8, 16, 24]
    for s in rar:
        np.testing.assert_array_equal(s.points[:32], rar[0].points[:32])
    np.testing.assert_array_equal(rar[1].points[48:], rar[0].points[48:])
    assert np.all(np.linalg.norm(rar[3].points[32:56] - np.asarray(PEAK), axis=1) < 0.1)


def test_adaptive_sampler_on_space_time_and_sample_points():
    omega = Interval(0.0, 1.0) * TimeInterval(0.0, 2.0)
    sampler = AdaptiveSampler(omega, 16, 64, method="sobol", candidate_method="halton")
    disk_t = Disk((0.0, 0.0), 1.0) * TimeInterval(0.0, 1.0)

    def run(key):
        state = sampler.init(key)
        new = sampler.resample(key, state, lambda x: x[1] - 2.0)  # largest at t = 0
        parts = (
            sample_points(disk_t, key, 8),
            sample_points(disk_t, key, 8, "halton", part="boundary"),
            sample_points(disk_t, key, 8, part="initial"),
        )
        return state, new, parts

    state, new, (x, (xb, nb), x0) = _run(run, _key())
    assert state.points.shape == new.points.shape == (16, 2)
    assert (int(state.step), int(new.step)) == (0, 1)
    assert np.all(np.asarray(omega.contains(new.points)))
    assert not np.array_equal(state.points, new.points)
    assert x.shape == xb.shape == nb.shape == x0.shape == (8, 3)
    np.testing.assert_allclose(np.linalg.norm(xb[:, :2], axis=1), 1.0)
    assert np.all(x0[:, 2] == 0.0)


# ------------------------------------------------------------------------ errors

C = np.zeros((10, 2))
R = np.ones(10)
ERRORS = [
    (lambda: rad_resample(_key(), C, R, 11), ValueError, r"n must be in \[1, 10\], got 11"),
    (lambda: rad_resample(_key(), C, R, 0), ValueError, "n must be in"),
    (lambda: rad_resample(_key(), C, np.ones(9), 3), ValueError, r"shape \(10,\)"),
    (lambda: rad_resample(_key(), np.zeros(10), R, 3), ValueError, r"shape \(N, dim\)"),
    (lambda: rad_resample(_key(), C, R, 3, k=-1.0), ValueError, "k must be finite and >= 0"),
    (lambda: rad_probabilities(R, c=-0.1), ValueError, "c must be"),
    (lambda: rad_mix(np.zeros((4, 2)), _key(), C, R, 0.0), ValueError, r"fraction.*\(0, 1\]"),
    (lambda: rad_mix(np.zeros((4, 3)), _key(), C, R, 0.5), ValueError, r"shape \(n, 2\)"),
    (lambda: rar_select(C, R, 11), ValueError, "m must be in"),
    (lambda: rar_replace(np.zeros((4, 2)), C, R, 2, start=4), ValueError, "start"),
    (lambda: rar_replace(np.zeros((4, 2)), C, R, 3, start=2), ValueError, r"m must be in \[1, 2\]"),
    (lambda: evaluate_residuals(jnp.sum, C, batch_size=0), ValueError, "batch_size"),
    (lambda: sample_points(Disk((0, 0), 1), _key(), 4, part="edge"), ValueError, "interior, bo"),
    (lambda: sample_points(Disk((0, 0), 1), _key(), 4, part="initial"), TypeError, "SpaceTime"),
    (lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 16, rule="rard"), ValueError, "rad, rad_mix, rar"),
    (lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 4), ValueError, "n_candidates must be >="),
    (lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 16, method="sobel"), ValueError, "allowed"),
    (lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 16, rule="rar", n_fixed=8), ValueError, "n_fixed"),
    (
        lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 16, rule="rar", n_add=5, n_fixed=4),
        ValueError,
        "n_add",
    ),
    (lambda: AdaptiveSampler(Disk((0, 0), 1), 8, 16, every=0), ValueError, "every"),
    (lambda: AdaptiveSampler(None, 8, 16), TypeError, "domain"),
]


@pytest.mark.parametrize("make, exc, match", ERRORS)
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
