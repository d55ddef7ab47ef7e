"""K-FAC against exact curvature: the Kronecker identity for one example, the exact Gauss-Newton
blocks where the theory makes them exact, damping and π by hand, Newton's step on least squares,
and the transformation's contract (optax.chain, jit without recompiling, clear errors)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.kfac import curvature_factors, describe, kfac, kfac_layers, precondition
from sciml.nn import MLP, Dense, batch_apply


def _data(key, n, d_in, d_out):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, d_in)), jax.random.normal(ky, (n, d_out))


def _residual_fn(static, x, y):
    """`params -> {"residuals": (f(x_n) - y_n)/sqrt(n)}`: the loss is the mean of ½‖f - y‖²."""

    def per_sample(params):
        model = eqx.combine(params, static)
        f = batch_apply(model, x)
        return {"residuals": (f - y) / jnp.sqrt(x.shape[0])}

    return per_sample


def _exact_ggn(per_sample, params):
    """JᵀJ of the residuals in the flattened parameters, by jacfwd."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jacfwd(lambda v: per_sample(unravel(v))["residuals"].ravel())(flat)
    return np.asarray(jac.T @ jac), unravel


def _block(ggn, params, unravel, layer):
    """The exact GGN block of one Dense layer in K-FAC's order: vec of [W b] (column-stacking)."""
    leaves = jax.tree.leaves(params)
    sizes = [leaf.size for leaf in leaves]
    offsets = np.cumsum([0, *sizes])
    out, inn = layer.out_size, layer.in_size
    # flat index of W[i, j] and b[i] in ravel_pytree's order (leaves in tree order, row-major)
    idx = []
    for j in range(inn + (layer.bias is not None)):
        for i in range(out):
            if j < inn:
                idx.append(offsets[layer.weight] + i * inn + j)
            else:
                idx.append(offsets[layer.bias] + i)
    idx = np.asarray(idx)
    return ggn[np.ix_(idx, idx)]


@pytest.mark.parametrize("n", [1, 7])
def test_single_dense_layer_factors_are_the_exact_gauss_newton_matrix(n, x64, getkey):
    """½‖Wx + b − y‖²: the GGN is (mean āāᵀ) ⊗ I exactly, for any number of examples."""
    layer = Dense(3, 2, key=getkey())
    x, y = _data(getkey(), n, 3, 2)
    params, static = eqx.partition(layer, eqx.is_inexact_array)
    per_sample = _residual_fn(static, x, y)
    (lay,), (a,), (g,) = curvature_factors(per_sample, params)
    ggn, unravel = _exact_ggn(per_sample, params)
    np.testing.assert_allclose(np.kron(a, g), _block(ggn, params, unravel, lay), atol=1e-12)
    np.testing.assert_allclose(g, np.eye(2), atol=1e-14)


def test_two_layer_blocks_are_exact_where_the_theory_says(x64, getkey):
    """One example: every block is exactly A ⊗ G. Several: the output layer's still is (its g do
    not depend on the example under squared error); the hidden layer's is an approximation."""
    net = MLP(3, 2, width=4, depth=1, activation=jnp.tanh, key=getkey())
    params, static = eqx.partition(net, eqx.is_inexact_array)
    layers = kfac_layers(params)
    assert len(layers) == 2
    for n, exact in ((1, True), (6, False)):
        x, y = _data(getkey(), n, 3, 2)
        per_sample = _residual_fn(static, x, y)
        _, a, g = curvature_factors(per_sample, params)
        ggn, unravel = _exact_ggn(per_sample, params)
        for lay, fa, fg in zip(layers, a, g):
            block = _block(ggn, params, unravel, lay)
            err = np.abs(np.kron(fa, fg) - block).max() / np.abs(block).max()
            if exact or lay is layers[-1]:
                assert err < 1e-12, (n, lay.name, err)
            else:
                assert err > 1e-3, (n, lay.name, err)  # the Kronecker approximation, not exact


def test_precondition_matches_the_damped_kronecker_solve(x64, getkey):
    ka, kg, kv = jax.random.split(getkey(), 3)
    ma, mg = jax.random.normal(ka, (4, 4)), jax.random.normal(kg, (3, 3))
    a, g = ma @ ma.T / 4, mg @ mg.T / 3 + 0.1 * jnp.eye(3)
    v = jax.random.normal(kv, (3, 4))
    lam = 0.05
    a_eig, g_eig = jnp.linalg.eigh(a), jnp.linalg.eigh(g)
    pi = np.sqrt((np.trace(a) / 4) / (np.trace(g) / 3))
    vec = lambda m: np.asarray(m).T.ravel()  # noqa: E731  column-stacking
    exact = np.linalg.solve(np.kron(a, g) + lam * np.eye(12), vec(v))
    np.testing.assert_allclose(vec(precondition(v, a_eig, g_eig, pi, lam, "exact")), exact, rtol=1e-10)
    gamma = np.sqrt(lam)
    damped = np.kron(np.asarray(a) + pi * gamma * np.eye(4), np.asarray(g) + gamma / pi * np.eye(3))
    factored = np.linalg.solve(damped, vec(v))
    np.testing.assert_allclose(vec(precondition(v, a_eig, g_eig, pi, lam)), factored, rtol=1e-10)
    # the refresh computes the same π (and the eigendecompositions) from the factors
    from sciml.kfac._kfac import _eigens

    (a_e,), (g_e,), (pi_k,) = _eigens((a,), (g,))
    assert float(pi_k) == pytest.approx(pi, rel=1e-12)
    np.testing.assert_allclose(a_e[0], a_eig[0], rtol=1e-10, atol=1e-14)


def test_sampled_fisher_averages_to_the_exact_categorical_fisher(x64, getkey):
    """For softmax outputs the GGN is the categorical Fisher; the sampled-target factor G is an
    unbiased estimate of it (within 5 standard errors over 400 draws)."""
    layer = Dense(5, 4, key=getkey())
    x = jax.random.normal(getkey(), (12, 5))
    labels = jax.random.randint(getkey(), (12,), 0, 4)
    params, static = eqx.partition(layer, eqx.is_inexact_array)

    def per_sample(p):
        return {"logits": batch_apply(eqx.combine(p, static), x), "labels": labels}

    _, _, (g_ggn,) = curvature_factors(per_sample, params, "ggn")
    draws = jax.jit(jax.vmap(lambda k: curvature_factors(per_sample, params, "fisher", k)[2][0]))(
        jax.random.split(getkey(), 400)
    )
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(400)
    assert np.all(np.abs(mean - g_ggn) <= 5 * se + 1e-12)
    assert np.abs(g_ggn).max() > 20 * se.max()  # a comparison that could fail
    _, _, (g_emp,) = curvature_factors(per_sample, params, "empirical")
    p = jax.nn.softmax(batch_apply(layer, x))
    d = (p - jax.nn.one_hot(labels, 4)) / np.sqrt(12)
    np.testing.assert_allclose(g_emp, d.T @ d, atol=1e-14)


def _least_squares_problem(n=300):
    from sciml.problems import build_problem

    return build_problem("kfac_digits_least_squares", {"n_images": n}, {})


def test_one_step_is_newtons_step_onto_the_least_squares_minimum(x64):
    """Problem 1: exact factors and exact (tiny) damping: one step with learning rate 1 lands on
    numpy's least-squares optimum."""
    from sciml.config import TrainConfig
    from sciml.trainer import fit

    problem = _least_squares_problem()
    cfg = TrainConfig(steps=1, log_every=1, eval_every=None, checkpoint_every=None, progress=False)
    result = fit(problem, kfac(1.0, 1e-10, damping_kind="exact", ema=0.0), cfg)
    assert result.summary["gap"] < 1e-10 * problem.optimum, result.summary
    assert result.history[0]["loss"] > 5 * problem.optimum  # the loss before the step: far away


def test_kfac_in_a_chain_under_jit_compiles_once_and_refuses_what_it_cannot_see(x64, getkey):
    from sciml.optim import chain

    problem = _least_squares_problem(100)
    model, state = problem.init(getkey())
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = chain(optax.clip_by_global_norm(10.0), kfac(0.5, 1e-3, momentum=0.5, norm_constraint=1.0))
    traces = []

    @jax.jit
    def step(params, opt_state):
        traces.append(1)

        def per_sample(p):
            return problem.per_sample(eqx.combine(p, static), state, None)

        grads = jax.grad(lambda p: problem.loss(eqx.combine(p, static), state, None)[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params, per_sample_fn=per_sample)
        return optax.apply_updates(params, updates), opt_state

    opt_state = opt.init(params)
    losses = []
    for _ in range(4):
        params, opt_state = step(params, opt_state)
        losses.append(float(problem.loss(eqx.combine(params, static), state, None)[0]))
    assert len(traces) == 1
    assert losses[-1] < losses[0]
    # errors: nothing K-FAC can see; bad settings name the value and what is allowed
    with pytest.raises(ValueError, match="no sciml.nn.Dense layers"):
        kfac(1.0).init(eqx.filter(eqx.nn.Linear(3, 2, key=getkey()), eqx.is_inexact_array))
    with pytest.raises(ValueError, match=r"curvature must be one of ggn, fisher, empirical, got 'hessian'"):
        kfac(1.0, curvature="hessian")
    with pytest.raises(ValueError, match=r"damping must be > 0, got 0"):
        kfac(1.0, 0.0)
    with pytest.raises(ValueError, match=r"inverse_every must be an integer >= 1, got 0"):
        kfac(1.0, inverse_every=0)


def test_parameters_outside_the_blocks_are_reported(x64, getkey):
    class Scaled(eqx.Module):
        dense: Dense
        scale: jax.Array
        hidden: Dense

        def __call__(self, x):
            return self.scale * self.dense(x)

    model = Scaled(Dense(3, 2, key=getkey()), jnp.ones(()), Dense(2, 2, key=getkey()))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    text = describe(params)
    assert ".dense: weight 2x3 + bias" in text and ".scale" in text.split("fallback")[1]
    x, y = _data(getkey(), 4, 3, 2)
    per_sample = _residual_fn(static, x, y)
    with pytest.warns(Warning, match=r"never run inside sciml.nn.batch_apply.*\.hidden"):
        curvature_factors(per_sample, params)


def test_quadratic_model_and_levenberg_marquardt_on_a_quadratic_loss(x64):
    """Least squares is its own quadratic model: the model's predicted decrease equals the real
    one (ρ = 1, so λ shrinks by ω), and the adaptive step is Newton's step (α = 1)."""
    problem = _least_squares_problem(200)
    model, state = problem.init(jax.random.key(3))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def value_fn(p):
        return problem.loss(eqx.combine(p, static), state, None)[0]

    def per_sample(p):
        return problem.per_sample(eqx.combine(p, static), state, None)

    lam = 1e-9
    opt = kfac(1.0, lam, damping_kind="exact", ema=0.0, adaptive=True, adapt_damping=True,
               damping_every=1, min_damping=1e-12)
    opt_state = opt.init(params)
    grads = jax.grad(value_fn)(params)
    updates, new_state = jax.jit(
        lambda g, st, p: opt.update(g, st, p, per_sample_fn=per_sample, value=value_fn(p),
                                    value_fn=value_fn)
    )(grads, opt_state, params)
    assert float(new_state.rho) == pytest.approx(1.0, abs=1e-6)
    assert float(new_state.damping) == pytest.approx(lam * (19 / 20), rel=1e-12)
    after = value_fn(optax.apply_updates(params, updates))
    assert float(after) == pytest.approx(problem.optimum, rel=1e-8)  # Newton: α = 1
    # on a loss that is not quadratic, a step far beyond the model's reach (learning rate 30)
    # has ρ < 1/4, and λ grows by 1/ω
    from sciml.problems import build_problem

    softmax = build_problem("kfac_digits_softmax", {"n_images": 40}, {})
    model, _ = softmax.init(jax.random.key(3))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def softmax_value(p):
        return softmax.loss(eqx.combine(p, static), None, None)[0]

    def softmax_per_sample(p):
        return softmax.per_sample(eqx.combine(p, static), None, None)

    opt = kfac(30.0, 1e-3, ema=0.0, adapt_damping=True, damping_every=1)
    _, bad = jax.jit(
        lambda p: opt.update(jax.grad(softmax_value)(p), opt.init(p), p, per_sample_fn=softmax_per_sample,
                             value=softmax_value(p), value_fn=softmax_value)
    )(params)
    assert float(bad.rho) < 0.25 and float(bad.damping) == pytest.approx(1e-3 * 20 / 19)


def test_taylor_mode_channels_give_the_exact_per_example_gradient(x64, getkey):
    """The forward Laplacian through `affine` is a weight-sharing layer: the captured channel inputs
    z_s (homogeneous coordinate 1 for the value, 0 for the derivatives) and output gradients g_s
    rebuild the exact per-example gradient, ∂r/∂[W b] = Σ_s g_s z̄_sᵀ, for every layer."""
    from sciml.kfac._capture import discover, forward_with_probes, zero_probes
    from sciml.kfac._taylor import mlp_laplacian

    net = MLP(2, 1, width=5, depth=2, activation=jnp.tanh, key=getkey())
    x = jax.random.uniform(getkey(), (2,))
    value, grad, lap = mlp_laplacian(net, x)
    f = lambda z: net(z)[0]  # noqa: E731
    np.testing.assert_allclose(value[0], f(x), rtol=1e-14)
    np.testing.assert_allclose(grad[0], jax.grad(f)(x), rtol=1e-12)
    np.testing.assert_allclose(lap[0], jnp.trace(jax.hessian(f)(x)), rtol=1e-12)

    params, static = eqx.partition(net, eqx.is_inexact_array)

    def per_sample(p):
        m = eqx.combine(p, static)
        return {"residuals": batch_apply(lambda z: mlp_laplacian(m, z)[2], x[None])}

    calls, sizes, _ = discover(per_sample, params)
    assert [len(c) for c in calls] == [3 * 4]  # 3 layers x (value + 2 gradient + Laplacian)
    probes = zero_probes(calls, sizes, x.dtype)
    out, vjp, (_, inputs) = jax.vjp(
        lambda pr: (lambda o: (o[0]["residuals"], o))(forward_with_probes(per_sample, params, calls, pr)),
        probes, has_aux=True,
    )
    (g,) = vjp(jnp.ones_like(out))
    exact = jax.grad(lambda p: per_sample(p)["residuals"].sum())(params)
    for lay in kfac_layers(params):
        rebuilt = 0
        for c, z, gs in zip(calls[0], inputs[0], g[0]):
            if c.weight == lay.weight:
                zbar = jnp.concatenate([z[0], jnp.array([1.0 if c.bias is not None else 0.0])])
                rebuilt = rebuilt + jnp.outer(gs[0], zbar)
        leaves = jax.tree.leaves(exact)
        np.testing.assert_allclose(rebuilt[:, :-1], leaves[lay.weight], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(rebuilt[:, -1], leaves[lay.bias], rtol=1e-10, atol=1e-13)


def test_rbm_block_is_the_log_amplitude_outer_product_for_one_sample(x64, getkey):
    """VMC: the RBM's affine map declares a block; for one configuration A ⊗ G is exactly
    O Oᵀ, O = ∂ log ψ/∂[W b] (the uncentred metric); the visible bias falls back."""
    from sciml.nqs import RBM

    rbm = RBM(5, 2, param_dtype="float64", key=getkey())
    s = jnp.where(jax.random.bernoulli(getkey(), 0.5, (1, 5)), 1.0, -1.0)
    params, static = eqx.partition(rbm, eqx.is_inexact_array)
    (lay,) = kfac_layers(params)
    assert "visible_bias" in describe(params).split("fallback")[1]

    def per_sample(p):
        return {"log_amplitudes": batch_apply(eqx.combine(p, static), s)}

    _, (a,), (g,) = curvature_factors(per_sample, params)
    o = jax.grad(lambda p: eqx.combine(p, static)(s[0]))(params)
    leaves = jax.tree.leaves(o)
    vec = jnp.concatenate([leaves[lay.weight], leaves[lay.bias][:, None]], axis=1).T.ravel()
    np.testing.assert_allclose(np.kron(a, g), np.outer(vec, vec), atol=1e-13)


def test_the_digits_optima_are_the_issues_reference_values(x64):
    """The optima the problems report, computed independently: least squares (lstsq), softmax
    regression (Newton with the exact Hessian; the default's value is cached, so recompute it)
    and the PCA baseline (SVD), against the published digits references."""
    from sciml.kfac._problems import _newton_softmax
    from sciml.problems import build_problem

    assert build_problem("kfac_digits_least_squares", {}, {}).optimum == pytest.approx(0.1540112138, abs=1e-10)
    assert _newton_softmax(None, 1e-3) == pytest.approx(0.2618645472, abs=1e-10)
    assert build_problem("kfac_digits_softmax", {}, {}).optimum == pytest.approx(0.2618645472, abs=1e-10)
    assert build_problem("kfac_digits_autoencoder", {}, {}).optimum == pytest.approx(0.35339786, abs=1e-8)


def test_adaptive_kfac_converges_with_another_weight_decay_when_told_its_curvature(x64):
    """Softmax regression with λ = 1e-2 (the config says 1e-3): with `l2=λ` the quadratic model
    knows the penalty's curvature and K-FAC reaches Newton's optimum (the same settings without
    `l2` and with damping 1e-3 diverged on all images)."""
    from sciml.config import TrainConfig
    from sciml.problems import build_problem
    from sciml.trainer import fit

    problem = build_problem("kfac_digits_softmax", {"n_images": 100, "weight_decay": 1e-2}, {})
    cfg = TrainConfig(steps=100, log_every=100, eval_every=None, checkpoint_every=None, progress=False)
    result = fit(problem, kfac(1.0, 1e-6, ema=0.0, adaptive=True, l2=1e-2), cfg)
    assert result.summary["gap"] < 1e-8, result.summary
