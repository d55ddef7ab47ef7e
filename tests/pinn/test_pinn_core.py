"""AbstractPINN's machinery, the conditions, and the float64 default of PINN configs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sciml.pinn as pinn
from sciml.config import validate_config
from sciml.pinn import conditions
from sciml.schema import ConfigError

SMALL = {"width": 6, "depth": 1}


def _cfg(name, **train):
    return {"problem": {"name": name}, "train": train} if train else {"problem": {"name": name}}


def test_pinn_configs_default_to_float64_and_others_keep_float32():
    assert validate_config(_cfg("pinn_poisson2d")).train.dtype == "float64"
    assert validate_config(_cfg("pinn_poisson2d", dtype="float32")).train.dtype == "float32"
    assert validate_config(_cfg("neural_ode_spiral")).train.dtype == "float32"
    assert validate_config(_cfg("pinn_heat1d", steps=5)).train.dtype == "float64"


def test_a_float32_run_says_so_in_its_summary():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        problem = pinn.Poisson2D(n_interior=8, n_boundary=4, eval_grid=5, **SMALL)
        model, state = problem.init(jax.random.PRNGKey(0))
        assert problem.evaluate(model, state, None)["precision"] == "float32"
    finally:
        jax.config.update("jax_enable_x64", previous)


# -- conditions on known fields ------------------------------------------------


def _field(x):
    return jnp.sin(x[0]) * jnp.exp(x[1])


def test_neumann_and_robin_residuals_use_the_outward_normal_derivative():
    x = jnp.array([0.3, -0.2])
    n = jnp.array([0.6, 0.8])
    du_dn = jnp.cos(0.3) * jnp.exp(-0.2) * 0.6 + jnp.sin(0.3) * jnp.exp(-0.2) * 0.8
    assert conditions.neumann_residual(_field, x, n, 1.5) == pytest.approx(float(du_dn) - 1.5)
    r = conditions.robin_residual(_field, x, n, 2.0, -3.0, lambda y: y[0])
    expected = 2.0 * float(_field(x)) - 3.0 * float(du_dn) - 0.3
    assert float(r) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="normal must have"):
        conditions.neumann_residual(_field, x, jnp.ones(3))


def test_periodic_residual_vanishes_for_a_periodic_field_and_not_otherwise():
    f = lambda x: jnp.sin(2 * jnp.pi * x[0]) * x[1] ** 2  # noqa: E731
    left, right = jnp.array([0.0, 0.7]), jnp.array([1.0, 0.7])
    r = conditions.periodic_residual(f, left, right, axis=0, derivatives=2)
    assert r.shape == (3,) and jnp.max(jnp.abs(r)) < 1e-12
    g = lambda x: x[0] ** 2  # noqa: E731
    r = conditions.periodic_residual(g, left, right, axis=0, derivatives=1)
    np.testing.assert_allclose(r, [-1.0, -2.0])


def test_data_and_initial_residuals():
    row = jnp.array([0.3, -0.2, 5.0])
    assert conditions.data_residual(_field, row, 2) == pytest.approx(float(_field(row[:2])) - 5.0)
    with pytest.raises(ValueError, match="cannot hold"):
        conditions.data_residual(_field, row, 3)
    x = jnp.array([0.4, 0.0])
    r = conditions.initial_residual(_field, x, lambda xs: jnp.sin(xs[0]))
    assert abs(float(r)) < 1e-15
    with pytest.raises(ValueError, match="one point"):
        conditions.dirichlet_residual(_field, jnp.ones((2, 2)))


def test_hard_constraints_hold_for_any_parameters():
    problem = pinn.Burgers(hard_constraints=True, n_interior=8, eval_nx=5, eval_nt=3, **SMALL)
    u = jax.vmap(problem.solution, in_axes=(None, 0))
    xs, ts = jnp.linspace(-1, 1, 7), jnp.linspace(0, 1, 5)
    for seed in range(3):
        model, _ = problem.init(jax.random.PRNGKey(seed))
        at_t0 = u(model, jnp.stack([xs, jnp.zeros_like(xs)], axis=1))
        np.testing.assert_allclose(at_t0, -jnp.sin(jnp.pi * xs), atol=1e-15)
        for wall in (-1.0, 1.0):
            at_wall = u(model, jnp.stack([jnp.full_like(ts, wall), ts], axis=1))
            np.testing.assert_allclose(at_wall, 0.0, atol=1e-15)


# -- causal weights, resampling, adaptive weights -------------------------------


@pytest.fixture(scope="module")
def heat_causal():
    problem = pinn.Heat1D(
        n_interior=24, n_boundary=4, n_initial=4, eval_grid=5,
        causal={"chunks": 4, "epsilon": 5.0}, **SMALL,
    )
    model, state = problem.init(jax.random.PRNGKey(3))
    return problem, model, state


def test_causal_weights_follow_the_chunk_losses_in_time_order(heat_causal):
    problem, model, state = heat_causal
    t = state.points["pde"][:, 1]
    assert jnp.all(jnp.diff(t) >= 0)  # sorted by time, so chunks are slices
    r = jax.vmap(problem.terms(model)["pde"])(state.points["pde"])
    chunk = (r**2).reshape(4, -1).mean(axis=1)
    expected = jnp.exp(-5.0 * jnp.concatenate([jnp.zeros(1), jnp.cumsum(chunk)[:-1]]))
    np.testing.assert_allclose(state.causal, expected, rtol=1e-12)
    advanced = eqx.filter_jit(problem.advance)(model, state, jax.random.PRNGKey(0))
    np.testing.assert_allclose(advanced.causal, expected, rtol=1e-12)
    # the loss is the causally weighted mean of the chunks
    loss = problem.loss(model, state, None)[1][1]["loss_pde"]
    assert float(loss) == pytest.approx(float(jnp.mean(expected * chunk)), rel=1e-12)


def test_the_causal_loss_is_a_function_of_the_parameters(heat_causal):
    """Weights live in the state, so autodiff agrees with finite differences."""

    problem, model, state = heat_causal
    params, rest = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    def f(v):
        return problem.loss(eqx.combine(unravel(v), rest), state, None)[0]

    v = jax.random.normal(jax.random.PRNGKey(1), flat.shape)
    fd = (f(flat + 1e-6 * v) - f(flat - 1e-6 * v)) / 2e-6
    assert float(jax.grad(f)(flat) @ v) == pytest.approx(float(fd), rel=1e-6)


def test_rad_resampling_moves_points_to_large_residuals():
    problem = pinn.Poisson2D(
        n_interior=64, n_boundary=8, eval_grid=5, hard_bc=True,
        resample={"method": "rad", "every": 1, "n_candidates": 2000, "k": 2.0, "c": 0.0},
        **SMALL,
    )
    model, state = problem.init(jax.random.PRNGKey(0))
    new = eqx.filter_jit(problem.advance)(model, state, jax.random.PRNGKey(1))
    assert new.points["pde"].shape == state.points["pde"].shape and int(new.step) == 1
    fn = jax.vmap(problem.terms(model)["pde"])
    before = jnp.mean(fn(state.points["pde"]) ** 2)
    after = jnp.mean(fn(new.points["pde"]) ** 2)
    assert after > 1.5 * before  # p ∝ r²: the new set sits where the residual is large


def test_rar_keeps_the_set_size_and_replaces_the_smallest_residuals():
    problem = pinn.Poisson2D(
        n_interior=40, n_boundary=8, eval_grid=5, hard_bc=True,
        resample={"method": "rar", "every": 1, "n_candidates": 500, "fraction": 0.25}, **SMALL,
    )
    model, state = problem.init(jax.random.PRNGKey(0))
    new = eqx.filter_jit(problem.advance)(model, state, jax.random.PRNGKey(1))
    fn = jax.vmap(problem.terms(model)["pde"])
    r_old, r_new = jnp.abs(fn(state.points["pde"])), jnp.abs(fn(new.points["pde"]))
    kept = jnp.sort(r_old)[10:]  # the 30 largest survive
    assert new.points["pde"].shape == (40, 2)
    assert jnp.min(jnp.sort(r_new)[-10:]) >= jnp.max(kept) - 1e-12 or jnp.sum(r_new) > jnp.sum(r_old)


def test_resampling_stops_at_until():
    problem = pinn.Poisson2D(
        n_interior=16, n_boundary=8, eval_grid=5,
        resample={"method": "rad", "every": 1, "until": 2, "n_candidates": 64}, **SMALL,
    )
    model, state = problem.init(jax.random.PRNGKey(0))
    advance = eqx.filter_jit(problem.advance)
    s1 = advance(model, state, jax.random.PRNGKey(1))
    s2 = advance(model, s1, jax.random.PRNGKey(2))
    assert not jnp.array_equal(s1.points["pde"], state.points["pde"])
    np.testing.assert_array_equal(s2.points["pde"], s1.points["pde"])  # step 2 = until


def test_grad_norm_weighting_balances_the_terms():
    problem = pinn.Poisson2D(
        n_interior=16, n_boundary=8, eval_grid=5,
        weighting={"method": "grad_norm", "every": 1, "momentum": 0.0}, **SMALL,
    )
    model, state = problem.init(jax.random.PRNGKey(0))
    new = eqx.filter_jit(problem.advance)(model, state, jax.random.PRNGKey(1))

    params, rest = eqx.partition(model, eqx.is_inexact_array)

    def term_grad_norm(name):
        def f(p):
            return problem.loss(eqx.combine(p, rest), state, None)[1][1][f"loss_{name}"]

        g = jax.grad(f)(params)
        return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g)))

    # after balancing, every weighted term has the same gradient norm
    a = new.weights["pde"] * term_grad_norm("pde")
    b = new.weights["boundary"] * term_grad_norm("boundary")
    assert float(a) == pytest.approx(float(b), rel=1e-10)


def test_unknown_term_weight_is_refused():
    # a name no term of the problem has: refused with the settings (as a config error)
    with pytest.raises(ConfigError, match=r"weights\.bc: must be 'pde' or 'boundary', got 'bc'"):
        pinn.Poisson2D(n_interior=8, n_boundary=4, eval_grid=5, weights={"bc": 2.0}, **SMALL)
    # a term the settings switched off (hard boundary conditions): refused when built
    problem = pinn.Poisson2D(
        n_interior=8, eval_grid=5, hard_bc=True, weights={"boundary": 2.0}, **SMALL
    )
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['boundary'\]"):
        problem.init(jax.random.PRNGKey(0))


def test_inverse_problem_data_rows_carry_the_observations():
    problem = pinn.BurgersInverse(
        n_interior=8, n_boundary=4, n_initial=4, n_data=50, noise=0.0, eval_nx=5, eval_nt=3,
        **SMALL,
    )
    rows = np.asarray(problem.data)
    exact = pinn.reference.burgers_cole_hopf(rows[:, 0], rows[:, 1], nu=problem.settings.nu)
    np.testing.assert_allclose(rows[:, 2], exact, atol=1e-14)
    model, _ = problem.init(jax.random.PRNGKey(0))
    assert float(model.nu) == pytest.approx(problem.settings.nu_guess)
    out = problem.extra_metrics(model)
    assert out["nu_rel_error"] == pytest.approx(abs(problem.settings.nu_guess / problem.settings.nu - 1))
    assert out["nu_oracle_rel_error"] < 1e-6  # noise-free data: the exact family fits exactly
    noisy = pinn.BurgersInverse(
        n_interior=8, n_boundary=4, n_initial=4, n_data=50, noise=0.05, eval_nx=5, eval_nt=3, **SMALL
    )
    assert 1e-6 < noisy.extra_metrics(model)["nu_oracle_rel_error"] < 0.5


def test_randomised_laplacian_is_consistent_within_a_step():
    problem = pinn.PoissonND(
        dim=6, n_interior=8, n_boundary=4, n_eval=10, engine="hutchinson", num_probes=2, **SMALL
    )
    model, state = problem.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    loss = problem.loss(model, state, key)[0]
    r = problem.per_sample(model, state, key)["residuals"]
    assert float(loss) == pytest.approx(0.5 * float(jnp.sum(r**2)), rel=1e-12)
    other = problem.loss(model, state, jax.random.PRNGKey(6))[0]
    assert float(other) != float(loss)  # a new step draws new probes


def test_the_custom_pde_example_in_the_docs_runs_and_converges():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "pinn.md").read_text()
    block = re.search(r"<!-- test: custom-pde -->\n```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block.replace("print(", "_ = ("), "docs/pinn.md", "exec"), namespace)
    assert namespace["result"].final_eval["rel_l2"] < 1e-3
