"""LorenzSINDy: data, the recovered equations, the loss, and the config sections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.config import ConfigError, EmptyModel, validate_section
from sciml.ude import LorenzSINDy, PolynomialLibrary, lorenz_coefficients, lorenz_dynamics
from sciml.ude.problems import LorenzParams

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


@pytest.fixture(scope="module")
def lorenz():
    """The default problem and its STLSQ model, built once in float64."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        problem = LorenzSINDy()
        model, state = problem.init(jax.random.PRNGKey(0))
        yield problem, model, state
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_true_coefficients_reproduce_the_vector_field(x64, getkey):
    lib = PolynomialLibrary(3, 2)
    xi = lorenz_coefficients(lib, SIGMA, RHO, BETA)
    assert np.count_nonzero(xi) == 7
    us = 10 * jax.random.normal(getkey(), (20, 3))
    expected = jax.vmap(lambda u: lorenz_dynamics(0.0, u, (SIGMA, RHO, BETA)))(us)
    np.testing.assert_allclose(jax.vmap(lib)(us) @ xi, expected, rtol=1e-12, atol=1e-10)


def test_data_matches_an_independent_rk4(lorenz, x64):
    problem, _, _ = lorenz
    assert problem.xs.shape == (5000, 3) and problem.xs.dtype == jnp.float64
    np.testing.assert_allclose(problem.ts[jnp.array([0, 1, -1])], [0.0, 0.002, 9.998])

    def f(u):
        x, y, z = u
        return np.array([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z])

    # Fixed-step RK4 in numpy on [0, 1] (h = 2e-4): an oracle independent of diffrax.
    u, h, n = np.array([-8.0, 8.0, 27.0]), 0.002 / 10, 500
    for _ in range(n * 10):
        k1 = f(u)
        k2 = f(u + h / 2 * k1)
        k3 = f(u + h / 2 * k2)
        k4 = f(u + h * k3)
        u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    np.testing.assert_allclose(problem.xs[n], u, rtol=0, atol=1e-6)


def test_recovers_the_lorenz_equations(lorenz, x64, getkey):
    problem, model, state = lorenz
    assert model.shape == (10, 3) and state.dtype == jnp.bool_
    true = np.asarray(problem.true_coefficients)
    np.testing.assert_array_equal(np.asarray(model) != 0, true != 0)  # exactly the 7 terms
    out = problem.evaluate(model, state, getkey())
    assert set(problem.metric_names) <= set(out)
    assert out["n_active_terms"] == 7
    assert abs(out["sigma"] - SIGMA) < 1e-2
    assert abs(out["rho"] - RHO) < 1e-2
    assert abs(out["beta"] - BETA) < 1e-2
    assert out["max_coef_error"] < 1e-2
    # pysindy's README on the same data prints the same numbers
    assert (round(-out["sigma"], 3), round(out["rho"], 3), round(-out["beta"], 3)) == (
        -9.999,
        27.992,
        -2.666,
    )
    assert out["recovered_equations"] == (
        "dx/dt = -9.999 x + 9.999 y; "
        "dy/dt = 27.992 x - 0.999 y - 1.000 x z; "
        "dz/dt = -2.666 z + 1.000 x y"
    )


def test_loss_only_sees_active_terms(lorenz, x64, getkey):
    problem, model, state = lorenz
    loss_fn = jax.jit(lambda m: problem.loss(m, state, getkey()))
    loss, (new_state, metrics) = loss_fn(model)
    np.testing.assert_array_equal(new_state, state)
    assert metrics["n_active_terms"] == 7 and loss.shape == ()
    expected = jnp.mean((problem.theta @ model - problem.xdot) ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    # STLSQ's unbiased refit is the least-squares optimum on its active set
    grad = jax.grad(lambda m: loss_fn(m)[0])(model)
    assert jnp.max(jnp.abs(grad)) < 1e-8
    # An inactive coefficient neither changes the loss nor gets a gradient.
    bumped = model.at[0, 0].set(5.0)
    np.testing.assert_allclose(loss_fn(bumped)[0], loss, rtol=1e-14)
    off = model.at[1, 0].add(0.1)  # perturb an active term: the gradient is nonzero there only
    g = np.asarray(jax.grad(lambda m: loss_fn(m)[0])(off))
    assert g[1, 0] != 0 and np.all(g[~np.asarray(state)] == 0)


def test_config_sections_and_build(lorenz, x64):
    problem, _, _ = lorenz
    params = validate_section(LorenzParams, {"threshold": 0.1}, "problem")
    assert (params.dt, params.t_end, params.degree, params.noise) == (0.002, 10.0, 2, 0.0)
    built = LorenzSINDy(params, validate_section(EmptyModel, {}, "model"))
    np.testing.assert_array_equal(built.xs, problem.xs)
    assert built.settings == problem.settings == params
    # the true system is part of the section too; YAML gives x0 as a list
    moved = validate_section(LorenzParams, {"x0": [-7, 8, 26], "rho": 27.0}, "problem")
    assert moved.x0 == (-7.0, 8.0, 26.0) and hash(moved)
    assert LorenzSINDy(moved, dt=0.01, t_end=0.1).true_params == (10.0, 27.0, 8.0 / 3.0)
    with pytest.raises(ConfigError, match="problem.x0: .*3 entries"):
        validate_section(LorenzParams, {"x0": [1.0, 2.0]}, "problem")
    with pytest.raises(ConfigError, match="model.width: unknown key"):
        validate_section(EmptyModel, {"width": 8}, "model")
    with pytest.raises(ConfigError, match="problem.threshold"):
        validate_section(LorenzParams, {"threshold": -1.0}, "problem")


def test_constructor_errors():
    with pytest.raises(ValueError, match="need at least 3 samples"):
        LorenzSINDy(dt=0.5, t_end=1.0)
    with pytest.raises(ValueError, match="problem.threshold: .*got -0.1"):
        LorenzSINDy(threshold=-0.1)


def test_figures(lorenz, x64, tmp_path):
    problem, model, state = lorenz
    paths = problem.figures(model, state, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["trajectory.png"]
    # the recovered model tracks the data over the plotted window
    ts = problem.ts[:501]
    pred = problem.simulate(model, state, ts)
    np.testing.assert_allclose(pred, problem.xs[:501], atol=0.5)


def test_noisy_float32_data_still_give_the_seven_terms():
    # float32 (the trainer's default dtype) with a little measurement noise; the SVD-based
    # least squares keeps the badly scaled library (1 ... z^2 ~ 2000) usable in float32.
    problem = LorenzSINDy(noise=1e-3)
    model, state = problem.init(jax.random.PRNGKey(0))
    out = problem.evaluate(model, state, jax.random.PRNGKey(1))
    assert out["n_active_terms"] == 7, out["recovered_equations"]
    assert abs(out["sigma"] - SIGMA) < 0.1 and abs(out["rho"] - RHO) < 0.1
    assert abs(out["beta"] - BETA) < 0.1
