"""VMC against exact references: local energies from the dense Hamiltonian, the full-sum energy
and gradient, Monte Carlo energies within their error bars, and stochastic reconfiguration
against the exact natural-gradient direction."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.nqs import (
    RBM,
    ExactSampler,
    Heisenberg,
    Ising,
    MetropolisLocal,
    PauliStrings,
    SpinHilbert,
    chain,
    exact_energy,
    local_energies,
    log_amplitude_jacobian,
    statistics,
    stochastic_reconfiguration,
    vmc_loss,
)


def _perturbed_rbm(n, dtype, key, scale=0.3):
    rbm = RBM(n, 1, param_dtype=dtype, key=key)
    params, static = eqx.partition(rbm, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    new = []
    for leaf, k in zip(leaves, keys):
        noise = jax.random.normal(k, leaf.shape, jnp.real(leaf).dtype)
        if jnp.iscomplexobj(leaf):
            noise = noise + 1j * jax.random.normal(jax.random.fold_in(k, 1), leaf.shape)
        new.append(leaf + scale * noise.astype(leaf.dtype))
    return eqx.combine(jax.tree.unflatten(tree, new), static)


OPERATORS = {
    "ising": (lambda h, lat: Ising(h, lat, h=0.7, J=1.1), None, "float64"),
    "heisenberg_sector": (lambda h, lat: Heisenberg(h, lat, J=1.0), 0, "float64"),
    "pauli_complex": (
        lambda h, lat: PauliStrings(
            h, ["XYIIII", "ZZIIIZ", "IIYYII", "XIIIIX"], [0.5, -0.3, 0.8, 1.2]
        ),
        None,
        "complex128",
    ),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_local_energies_equal_h_psi_over_psi(name, x64):
    build, magnetization, dtype = OPERATORS[name]
    hilbert = SpinHilbert(6, magnetization)
    op = build(hilbert, chain(6))
    model = _perturbed_rbm(6, dtype, jax.random.key(0))
    states = jnp.asarray(hilbert.all_states())
    psi = np.exp(np.asarray(jax.vmap(model)(states), np.complex128))
    h_psi = np.asarray(op.to_dense()) @ psi
    e_loc = np.asarray(jax.jit(lambda m: local_energies(op, m, states))(model))
    np.testing.assert_allclose(e_loc, h_psi / psi, rtol=1e-10, atol=1e-10)
    chunked = np.asarray(local_energies(op, model, states, chunk=7))
    np.testing.assert_allclose(chunked, e_loc, rtol=1e-12, atol=1e-12)


def test_full_sum_energy_and_gradient(x64):
    hilbert = SpinHilbert(6)
    op = Ising(hilbert, chain(6), h=0.9)
    model = _perturbed_rbm(6, "float64", jax.random.key(1))
    states = jnp.asarray(hilbert.all_states())
    psi = np.exp(np.asarray(jax.vmap(model)(states)))
    dense = np.asarray(op.to_dense())
    expected = psi @ dense @ psi / (psi @ psi)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def energy(v):
        return exact_energy(op, eqx.combine(unravel(v), static), states)

    np.testing.assert_allclose(energy(flat), expected, rtol=1e-12)
    grad = jax.grad(energy)(flat)
    v = jax.random.normal(jax.random.key(2), flat.shape)
    eps = 1e-5
    fd = (energy(flat + eps * v) - energy(flat - eps * v)) / (2 * eps)
    np.testing.assert_allclose(grad @ v, fd, rtol=1e-6)
    # the VMC surrogate with the exact weights has the exact gradient: sum_s p(s) (...) = mean
    # over "samples" repeated in proportion to p is what Monte Carlo estimates


def test_monte_carlo_energy_and_gradient_within_their_errors(x64):
    hilbert = SpinHilbert(8)
    op = Ising(hilbert, chain(8), h=1.0)
    model = _perturbed_rbm(8, "float64", jax.random.key(3), scale=0.2)
    states = jnp.asarray(hilbert.all_states())
    exact = float(exact_energy(op, model, states))
    sampler = MetropolisLocal(hilbert, n_chains=16)
    state = sampler.init(jax.random.key(4))
    samples, state = sampler.sample(model, state, jax.random.key(5), 16 * 500, n_discard=50)
    e_loc = local_energies(op, model, samples)
    stats = statistics(e_loc)
    assert abs(float(stats.mean) - exact) < 5 * float(stats.error_of_mean)
    assert float(stats.r_hat) < 1.05
    # the gradient estimator against the exact gradient, component-wise within 5 sigma
    flat_samples = samples.reshape(-1, 8)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    e_flat = e_loc.reshape(-1)
    mc = jax.grad(
        lambda v: vmc_loss(
            lambda m, s: m(s), eqx.combine(unravel(v), static), flat_samples, e_flat
        )[0]
    )(flat)
    true = jax.grad(lambda v: exact_energy(op, eqx.combine(unravel(v), static), states))(flat)
    # per-sample contributions give a (correlation-inflated) error bar for each component
    o = jax.jacfwd(lambda v: jax.vmap(eqx.combine(unravel(v), static))(flat_samples))(flat)
    contrib = 2 * (o - o.mean(0)) * (e_flat - e_flat.mean())[:, None]
    se = np.asarray(contrib.std(0)) * np.sqrt(float(stats.tau_corr) / flat_samples.shape[0])
    assert np.all(np.abs(np.asarray(mc - true)) < 5 * se + 1e-8)
    assert np.linalg.norm(true) > 10 * np.median(se)  # a test that could fail


def _sr_update(transform, model, per_sample, grads):
    params = eqx.filter(model, eqx.is_inexact_array)
    state = transform.init(params)
    update = jax.jit(lambda g, st, p: transform.update(g, st, p, per_sample_fn=per_sample)[0])
    return jax.flatten_util.ravel_pytree(update(grads, state, params))[0]


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_sr_with_the_full_sum_state_is_the_exact_natural_gradient(dtype, x64):
    hilbert = SpinHilbert(6)
    op = Ising(hilbert, chain(6), h=0.8)
    model = _perturbed_rbm(6, dtype, jax.random.key(8))
    sampler = ExactSampler(hilbert)
    states, p = sampler.probabilities(model)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def per_sample(prm):
        m = eqx.combine(prm, static)
        return {
            "log_amplitudes": jax.vmap(m)(states),
            "local_energies": local_energies(op, m, states),
            "weights": p,
        }

    # the trainer hands over the gradient with complex leaves conjugated
    grads = jax.grad(lambda prm: exact_energy(op, eqx.combine(prm, static), states))(params)
    grads = jax.tree.map(jnp.conj, grads)
    lam = 1e-3
    dense = _sr_update(
        stochastic_reconfiguration(1.0, lam, solver="dense"), model, per_sample, grads
    )
    minsr = _sr_update(
        stochastic_reconfiguration(1.0, lam, solver="minsr"), model, per_sample, grads
    )

    # independent: real coordinates r (real and imaginary parts), O_r = d log psi / d r by
    # finite differences, S = Re <dO* dO>_p, F = 1/2 dE/dr
    flat_r, unflatten = _real_coordinates(params)

    @jax.jit
    def log_psi_r(r):
        return jax.vmap(eqx.combine(unflatten(r), static))(states)

    eps = 1e-6
    cols = []
    for k in range(flat_r.size):
        e_k = jnp.zeros_like(flat_r).at[k].set(eps)
        cols.append((log_psi_r(flat_r + e_k) - log_psi_r(flat_r - e_k)) / (2 * eps))
    o = np.stack([np.asarray(c, np.complex128) for c in cols], 1)
    p_np = np.asarray(p)
    do = o - p_np @ o
    s = np.real(do.conj().T @ (p_np[:, None] * do))
    f = 0.5 * np.asarray(
        jax.grad(lambda r: exact_energy(op, eqx.combine(unflatten(r), static), states))(flat_r)
    )
    expected = -np.linalg.solve(s + lam * np.eye(s.shape[0]), f)
    got = np.asarray(_real_coordinates(unflatten_like(dense, params))[0])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(minsr, dense, rtol=1e-7, atol=1e-9)  # push-through identity

    # the per-sample Jacobian by reverse passes: the finite-difference one, and the same SR step
    jac = log_amplitude_jacobian(model, states)
    np.testing.assert_allclose(np.asarray(jac), o, rtol=1e-6, atol=1e-8)

    def with_jacobian(prm):
        return {
            **per_sample(prm),
            "log_amplitude_jacobian": log_amplitude_jacobian(eqx.combine(prm, static), states),
        }

    for solver in ("dense", "minsr"):
        fast = _sr_update(
            stochastic_reconfiguration(1.0, lam, solver=solver), model, with_jacobian, grads
        )
        np.testing.assert_allclose(fast, dense, rtol=1e-7, atol=1e-9)


def unflatten_like(vec, params):
    return jax.flatten_util.ravel_pytree(params)[1](vec)


def _real_coordinates(tree):
    from sciml.nqs._vmc import _real_flat

    return _real_flat(tree)


def test_sr_in_optax_chain_and_errors():
    with pytest.raises(ValueError, match="diag_shift"):
        stochastic_reconfiguration(0.1, 0.0)
    with pytest.raises(ValueError, match="momentum"):
        stochastic_reconfiguration(0.1, 0.01, momentum=1.0)
    with pytest.raises(ValueError, match="unknown solver 'qr'"):
        stochastic_reconfiguration(0.1, 0.01, solver="qr")
    hilbert = SpinHilbert(4)
    model = RBM(4, 1, key=jax.random.key(0))
    states = jnp.asarray(hilbert.all_states(), jnp.float32)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def per_sample(prm):
        return {"log_amplitudes": jax.vmap(eqx.combine(prm, static))(states)}

    with pytest.raises(ValueError, match=r"must have shape \(n, N\), got \(4,\)"):
        log_amplitude_jacobian(model, states[0])

    def wrong_jacobian(prm):
        return {**per_sample(prm), "log_amplitude_jacobian": jnp.zeros((states.shape[0], 3))}

    dense = stochastic_reconfiguration(0.1, 0.01, solver="dense")
    with pytest.raises(
        ValueError, match=r"\(n_samples, n_real_parameters\) = \(16, 24\), got \(16, 3\)"
    ):
        dense.update(params, dense.init(params), params, per_sample_fn=wrong_jacobian)
    sr = stochastic_reconfiguration(0.1, 0.01, solver="minsr")
    with pytest.raises(ValueError, match="local_energies"):
        sr.update(params, sr.init(params), params, per_sample_fn=per_sample)
    chained = optax.chain(optax.clip_by_global_norm(1.0), stochastic_reconfiguration(0.1, 0.01))
    state = chained.init(params)
    updates, _ = chained.update(params, state, params, per_sample_fn=per_sample)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_the_psd_solve_falls_back_to_an_eigen_solve_when_cholesky_fails(x64):
    from sciml.nqs._vmc import _solve_psd

    v = jnp.array([[1.0], [2.0], [2.0]]) / 3.0
    singular = v @ v.T  # rank 1: Cholesky breaks down
    b = jnp.array([1.0, -1.0, 0.5])
    np.testing.assert_allclose(_solve_psd(singular, b), np.linalg.pinv(singular) @ b, atol=1e-12)
    spd = singular + 0.5 * jnp.eye(3)
    np.testing.assert_allclose(_solve_psd(spd, b), np.linalg.solve(spd, b), rtol=1e-12)
