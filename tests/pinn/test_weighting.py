"""Loss weighting: grad-norm and NTK balancing, EMA cadence, causal weights.

Oracles: toy losses and linear residuals whose gradient norms and NTK traces are known
in closed form, numpy re-implementations of the causal chunking, and hand-rolled
gradients with the weights held constant."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.nn import Dense
from sciml.pinn.weighting import (
    NORMALIZATIONS,
    WeightingState,
    balanced_weights,
    causal_loss,
    causal_weights,
    ema_weights,
    grad_norm_weights,
    init_weighting,
    maybe_update,
    ntk_trace_weights,
    ntk_traces,
    term_grad_norms,
    update_weighting,
    weighted_sum,
)

A_COEF, B_COEF = 3.0, 0.5
C = np.array([1.0, -2.0, 0.5, 0.25, 4.0])
THETA = np.array([0.3, 1.2, -0.7, 2.0, -1.1])


def split(theta):
    """A two-leaf pytree view of a 5-vector, so the norm must flatten across leaves."""
    return {"w": jnp.asarray(theta[:3]), "b": jnp.asarray(theta[3:])}


def flat(p):
    return jnp.concatenate([p["w"], p["b"]])


def toy_losses(p):
    th = flat(p)
    return {
        "one": 0.5 * A_COEF * jnp.sum(th**2),
        "two": 0.5 * B_COEF * jnp.sum((th - C) ** 2),
    }


def expected_weights(m1, m2, normalization):
    if normalization == "sum":
        return (m1 + m2) / m1, (m1 + m2) / m2
    if normalization == "mean":
        return (m1 + m2) / 2 / m1, (m1 + m2) / 2 / m2
    inv = 1 / m1 + 1 / m2
    return 2 / m1 / inv, 2 / m2 / inv


# --- gradient-norm weights ---------------------------------------------------------------


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_grad_norm_weights_match_the_formula(normalization):
    g1 = A_COEF * np.linalg.norm(THETA)  # ∇L1 = a θ
    g2 = B_COEF * np.linalg.norm(THETA - C)  # ∇L2 = b (θ − c)
    norms = term_grad_norms(toy_losses, split(THETA))
    np.testing.assert_allclose([norms["one"], norms["two"]], [g1, g2], rtol=1e-13)
    w = grad_norm_weights(toy_losses, split(THETA), normalization=normalization)
    np.testing.assert_allclose(
        [w["one"], w["two"]], expected_weights(g1, g2, normalization), rtol=1e-13
    )
    # balanced: every weighted term has the same gradient norm
    np.testing.assert_allclose(w["one"] * g1, w["two"] * g2, rtol=1e-13)


def test_normalizations_differ_by_the_number_of_terms():
    m = {"a": 1.0, "b": 4.0, "c": 0.5}
    s = balanced_weights(m, normalization="sum")
    mean = balanced_weights(m, normalization="mean")
    unit = balanced_weights(m, normalization="unit_mean")
    for k in m:
        np.testing.assert_allclose(s[k], 3 * mean[k], rtol=1e-14)
    np.testing.assert_allclose(np.mean([unit[k] for k in m]), 1.0, rtol=1e-14)


def test_grad_norms_of_an_equinox_model_flatten_all_leaves(getkey):
    model = Dense(3, 2, key=getkey())
    xs = jnp.array([[0.1, -0.3, 0.7], [1.0, 0.2, -0.5]])

    def losses(m):
        out = jax.vmap(m)(xs)
        return {"fit": jnp.mean((out - 1.0) ** 2), "small": 0.1 * jnp.mean(out**4)}

    norms = term_grad_norms(losses, model)
    for k in ("fit", "small"):
        g = eqx.filter_grad(lambda m, k=k: losses(m)[k])(model)
        vec = np.concatenate([np.ravel(g.weight), np.ravel(g.bias)])
        np.testing.assert_allclose(norms[k], np.linalg.norm(vec), rtol=1e-13)


def test_weights_carry_no_gradient():
    def weighted(theta):
        w = grad_norm_weights(toy_losses, split(theta))
        return w["one"] + w["two"]

    np.testing.assert_array_equal(jax.grad(weighted)(jnp.asarray(THETA)), 0.0)


# --- NTK trace weights ----------------------------------------------------------------------


def test_ntk_traces_of_a_linear_model_are_mean_row_norms(getkey):
    rng = np.random.default_rng(0)
    a1, a2 = rng.normal(size=(6, 5)), 3.0 * rng.normal(size=(4, 5))
    y1, y2 = rng.normal(size=6), rng.normal(size=4)

    def residuals(p):
        th = flat(p)
        return {"pde": jnp.asarray(a1) @ th - y1, "bc": jnp.asarray(a2) @ th - y2}

    k1 = np.mean(np.sum(a1**2, axis=1))  # ∇_θ r(x_n) is row n of A
    k2 = np.mean(np.sum(a2**2, axis=1))
    traces = ntk_traces(residuals, split(THETA))
    np.testing.assert_allclose([traces["pde"], traces["bc"]], [k1, k2], rtol=1e-13)
    w = ntk_trace_weights(residuals, split(THETA), normalization="sum")
    np.testing.assert_allclose([w["pde"], w["bc"]], [(k1 + k2) / k1, (k1 + k2) / k2], rtol=1e-13)
    w = ntk_trace_weights(residuals, split(THETA))  # default: jaxpi's mean
    np.testing.assert_allclose(w["pde"], (k1 + k2) / 2 / k1, rtol=1e-13)


def test_ntk_traces_of_a_nonlinear_residual():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(7, 5))

    def residuals(p):
        return {"r": jnp.tanh(jnp.asarray(a) @ flat(p))}

    s = 1 - np.tanh(a @ THETA) ** 2  # ∇_θ tanh(a_n·θ) = (1 − tanh²) a_n
    expected = np.mean(s**2 * np.sum(a**2, axis=1))
    np.testing.assert_allclose(ntk_traces(residuals, split(THETA))["r"], expected, rtol=1e-13)


# --- EMA and cadence ---------------------------------------------------------------------------


def test_ema_weights():
    out = ema_weights({"a": 1.0, "b": 2.0}, {"a": 11.0, "b": -8.0}, momentum=0.9)
    np.testing.assert_allclose([out["a"], out["b"]], [2.0, 1.0], rtol=1e-14)
    out = ema_weights({"a": 1.0}, {"a": 5.0}, momentum=0.0)
    np.testing.assert_allclose(out["a"], 5.0)


def test_update_weighting_cadence_under_jit():
    state = init_weighting(["pde", "ic"])
    assert isinstance(state, WeightingState)
    np.testing.assert_array_equal([state.weights["pde"], state.weights["ic"]], 1.0)
    target = {"pde": jnp.asarray(2.0), "ic": jnp.asarray(11.0)}

    @jax.jit
    def step(state, i):
        return update_weighting(state, i, lambda: target, every=3, momentum=0.9)

    expected = {"pde": 1.0, "ic": 1.0}
    n_updates = 0
    for i in range(7):  # updates at 0, 3, 6
        state = step(state, jnp.asarray(i))
        if i % 3 == 0:
            n_updates += 1
            expected = {k: 0.9 * v + 0.1 * float(target[k]) for k, v in expected.items()}
        for k in expected:
            np.testing.assert_allclose(state.weights[k], expected[k], rtol=1e-14)
        assert int(state.n_updates) == n_updates
    assert state.weights["pde"].dtype == jnp.float64
    assert step._cache_size() == 1  # one trace for every step


def test_maybe_update_runs_the_update_only_on_its_steps():
    calls = []

    def update(v):
        jax.debug.callback(lambda: calls.append(1))
        return v + 1.0

    f = jax.jit(lambda i, v: maybe_update(i, 4, update, v))
    v = jnp.asarray(0.0)
    for i in range(9):
        v = f(jnp.asarray(i), v)
    jax.effects_barrier()
    assert float(v) == 3.0 and len(calls) == 3  # steps 0, 4, 8


def test_weighted_sum_holds_weights_constant():
    losses = {"a": jnp.asarray(2.0), "b": jnp.asarray(3.0)}
    np.testing.assert_allclose(weighted_sum(losses, {"a": 0.5, "b": 2.0}), 7.0)

    def f(w):
        return weighted_sum(losses, {"a": w, "b": 1.0})

    assert float(jax.grad(f)(1.0)) == 0.0


# --- causal weighting ---------------------------------------------------------------------------


def test_causal_weights_formula():
    losses = np.array([0.5, 0.2, 1.0, 0.0, 0.3])
    eps = 1.7
    w = np.asarray(causal_weights(jnp.asarray(losses), eps))
    expected = [np.exp(-eps * losses[:k].sum()) for k in range(5)]
    np.testing.assert_allclose(w, expected, rtol=1e-14)
    assert w[0] == 1.0 and np.all(np.diff(w) <= 0)
    np.testing.assert_array_equal(causal_weights(jnp.asarray(losses), 0.0), 1.0)
    # the weights are constants for differentiation
    g = jax.grad(lambda x: jnp.sum(causal_weights(x, eps)))(jnp.asarray(losses))
    np.testing.assert_array_equal(g, 0.0)


def _causal_problem():
    rng = np.random.default_rng(2)
    n = 24
    times = rng.uniform(0.0, 1.0, n)  # unsorted
    feats = rng.normal(size=(n, 3))
    return times, feats


def _residuals(theta, feats, times):
    # a residual that grows with t, so the weights are far from 1
    return jnp.asarray(feats) @ theta + 3.0 * jnp.asarray(times) ** 2


def test_causal_loss_value_and_gradient_under_jit():
    times, feats = _causal_problem()
    theta = jnp.array([0.4, -0.3, 0.8])
    n_chunks, eps = 4, 2.0

    @jax.jit
    def loss_fn(theta):
        return causal_loss(_residuals(theta, feats, times), jnp.asarray(times), n_chunks, eps)

    loss, info = loss_fn(theta)
    # numpy oracle: sort by t, chunks of 6 consecutive points
    order = np.argsort(times)
    r = np.asarray(_residuals(theta, feats, times))[order]
    chunk = np.mean(r.reshape(n_chunks, -1) ** 2, axis=1)
    w = np.exp(-eps * (np.cumsum(chunk) - chunk))
    np.testing.assert_allclose(info["chunk_losses"], chunk, rtol=1e-13)
    np.testing.assert_allclose(info["causal_weights"], w, rtol=1e-13)
    np.testing.assert_allclose(info["causal_min_weight"], w.min(), rtol=1e-13)
    np.testing.assert_allclose(loss, np.mean(w * chunk), rtol=1e-13)
    assert w[0] == 1.0 and w.min() < 0.5  # the test exercises the weighting

    # gradient = (1/M) Σ_k w_k ∇L_k with w held at its value
    grad = jax.grad(lambda th: loss_fn(th)[0])(theta)
    sorted_feats = feats[order].reshape(n_chunks, -1, 3)
    grad_chunks = [2 * np.mean(r_k[:, None] * f_k, axis=0) for r_k, f_k in
                   zip(r.reshape(n_chunks, -1), sorted_feats)]  # fmt: skip
    hand = sum(w_k * g_k for w_k, g_k in zip(w, grad_chunks)) / n_chunks
    np.testing.assert_allclose(grad, hand, rtol=1e-12)

    # and it is not the gradient through the weights
    def through(th):
        rr = _residuals(th, feats, times)[order].reshape(n_chunks, -1)
        lk = jnp.mean(rr**2, axis=1)
        return jnp.mean(jnp.exp(-eps * (jnp.cumsum(lk) - lk)) * lk)

    np.testing.assert_allclose(through(theta), loss, rtol=1e-13)
    assert not np.allclose(jax.grad(through)(theta), grad, rtol=1e-6)


def test_causal_loss_vector_residuals_and_single_chunk():
    times, feats = _causal_problem()
    r = jnp.stack([jnp.asarray(feats[:, 0]), 2 * jnp.asarray(feats[:, 1])], axis=1)  # (N, 2)
    loss, info = causal_loss(r, jnp.asarray(times), 3, 0.5)
    rs = np.asarray(r)[np.argsort(times)]
    chunk = np.mean(rs.reshape(3, -1) ** 2, axis=1)  # mean over points and components
    np.testing.assert_allclose(info["chunk_losses"], chunk, rtol=1e-13)
    # one chunk: the plain mean squared residual
    loss, _ = causal_loss(r, jnp.asarray(times), 1, 10.0)
    np.testing.assert_allclose(loss, np.mean(np.asarray(r) ** 2), rtol=1e-13)


def test_traced_epsilon_is_checked_at_run_time():
    times, feats = _causal_problem()
    r = jnp.asarray(feats[:, 0])
    f = eqx.filter_jit(lambda eps: causal_loss(r, jnp.asarray(times), 4, eps)[0])
    assert np.isfinite(float(f(jnp.asarray(1.0))))
    with pytest.raises(eqx.EquinoxRuntimeError, match="epsilon must be >= 0"):
        f(jnp.asarray(-1.0))


# --- errors -----------------------------------------------------------------------------------


def test_errors():
    times = jnp.linspace(0, 1, 12)
    r = jnp.ones(12)
    with pytest.raises(ValueError, match="epsilon must be >= 0, got -0.5"):
        causal_loss(r, times, 4, -0.5)
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        causal_weights(jnp.ones(3), -1.0)
    for bad in (5, 0, 13, 24, 2.0):
        with pytest.raises(
            ValueError, match=r"n_chunks must be a divisor of the number of points N = 12"
        ):
            causal_loss(r, times, bad, 1.0)
    with pytest.raises(
        ValueError,
        match=r"residuals must have shape \(N, \.\.\.\) with N = len\(times\) = 12, got \(10,\)",
    ):
        causal_loss(jnp.ones(10), times, 2, 1.0)
    with pytest.raises(ValueError, match=r"times must have shape \(N,\), got \(12, 1\)"):
        causal_loss(r, times[:, None], 2, 1.0)
    with pytest.raises(ValueError, match=r"chunk_losses must have shape \(M,\)"):
        causal_weights(jnp.ones((2, 2)), 1.0)
    with pytest.raises(
        ValueError, match="unknown normalization 'median'; allowed: mean, sum, unit_mean"
    ):
        balanced_weights({"a": 1.0}, normalization="median")
    with pytest.raises(ValueError, match="magnitude 'a' must be a scalar"):
        balanced_weights({"a": jnp.ones(2)})
    with pytest.raises(ValueError, match="non-empty dict"):
        balanced_weights({})
    with pytest.raises(ValueError, match=r"residual 'r' must have shape \(N,\)"):
        ntk_traces(lambda p: {"r": flat(p).reshape(5, 1)}, split(THETA))
    with pytest.raises(ValueError, match="name different terms"):
        ema_weights({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\], got 1.5"):
        ema_weights({"a": 1.0}, {"a": 1.0}, momentum=1.5)
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        maybe_update(0, 0, lambda v: v, jnp.zeros(()))
    with pytest.raises(ValueError, match="weights name"):
        weighted_sum({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="distinct term names"):
        init_weighting(["a", "a"])
    with pytest.raises(ValueError, match="compute\\(\\) returned terms"):
        update_weighting(init_weighting(["a"]), 0, lambda: {"b": 1.0})
