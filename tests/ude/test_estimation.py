"""Gauss-Newton / Levenberg-Marquardt wrappers: known minimisers, Jacobians through diffrax, errors."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.ude import LeastSquaresResult, gauss_newton, levenberg_marquardt, scaled_residuals

TRUE = np.array([2.0, 1.5])  # amplitude a, decay rate b


def _decay_residual(t, y):
    return lambda p, args: p[0] * jnp.exp(-p[1] * t) - y


@pytest.mark.parametrize("solver", [levenberg_marquardt, gauss_newton])
def test_recovers_exact_minimiser_of_noise_free_exponential_fit(x64, solver):
    t = jnp.linspace(0.0, 3.0, 25)
    y = TRUE[0] * jnp.exp(-TRUE[1] * t)
    fit = solver(_decay_residual(t, y), jnp.array([1.0, 1.0]))
    assert isinstance(fit, LeastSquaresResult)
    assert bool(fit.converged)
    np.testing.assert_allclose(fit.params, TRUE, rtol=1e-8)
    assert float(fit.residual_norm) < 1e-8
    assert 0 < int(fit.num_steps) < 100


def test_pytree_parameters_and_residuals(x64):
    t = jnp.linspace(0.0, 3.0, 25)
    y = TRUE[0] * jnp.exp(-TRUE[1] * t)

    def residual(p, args):
        r = p["a"] * jnp.exp(-p["b"] * t) - y
        return {"early": r[:10], "late": r[10:]}

    fit = levenberg_marquardt(residual, {"a": jnp.array(1.0), "b": jnp.array(1.0)})
    np.testing.assert_allclose([fit.params["a"], fit.params["b"]], TRUE, rtol=1e-8)


def _ode_decay(p, t, adjoint):
    """y' = -b y, y(0) = a, solved by diffrax; y at times `t`."""
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda s, y, b: -b * y),
        dfx.Tsit5(),
        0.0,
        t[-1],
        None,
        p[0],
        args=p[1],
        saveat=dfx.SaveAt(ts=t),
        stepsize_controller=dfx.PIDController(rtol=1e-12, atol=1e-12),
        adjoint=adjoint,
        max_steps=10_000,
    )
    return sol.ys


def test_lm_through_diffrax_forward_mode_recovers_ode_parameters(x64):
    t = jnp.linspace(0.1, 3.0, 20)
    data = TRUE[0] * jnp.exp(-TRUE[1] * t)  # the exact solution, not a diffrax solve
    fit = levenberg_marquardt(
        lambda p, args: _ode_decay(p, t, dfx.ForwardMode()) - data, jnp.array([1.0, 0.5])
    )
    assert bool(fit.converged)
    np.testing.assert_allclose(fit.params, TRUE, rtol=1e-8)


def test_forward_jacobian_through_solver_matches_central_differences(x64):
    t = jnp.linspace(0.1, 3.0, 12)
    p = jnp.array([1.3, 0.7])
    f = jax.jit(lambda p: _ode_decay(p, t, dfx.ForwardMode()))
    jac = jax.jacfwd(f)(p)
    eps = 1e-6
    fd = jnp.stack([(f(p + eps * e) - f(p - eps * e)) / (2 * eps) for e in jnp.eye(2)], axis=1)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-9)
    # and against the exact derivative of a exp(-b t)
    exact = jnp.stack([jnp.exp(-p[1] * t), -p[0] * t * jnp.exp(-p[1] * t)], axis=1)
    np.testing.assert_allclose(jac, exact, rtol=1e-8, atol=1e-10)


def test_throw_false_reports_non_convergence(x64):
    t = jnp.linspace(0.0, 3.0, 25)
    y = TRUE[0] * jnp.exp(-TRUE[1] * t)
    fit = levenberg_marquardt(
        _decay_residual(t, y), jnp.array([1.0, 1.0]), max_steps=2, throw=False
    )
    assert not bool(fit.converged)
    assert int(fit.num_steps) == 2


def test_wrong_inputs_raise_clear_errors(x64):
    t = jnp.linspace(0.0, 3.0, 5)
    res = _decay_residual(t, jnp.zeros(5))
    with pytest.raises(TypeError, match="p0 must be floating point"):
        levenberg_marquardt(res, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="p0 holds no arrays"):
        gauss_newton(res, {})
    with pytest.raises(TypeError, match="residual_fn must return floating arrays"):
        levenberg_marquardt(lambda p, a: jnp.round(p).astype(jnp.int32), jnp.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="must return a 1-D float array or a pytree"):
        levenberg_marquardt(lambda p, a: "residual", jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="returned empty arrays"):
        levenberg_marquardt(lambda p, a: jnp.zeros(0), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="jac must be 'fwd' or 'bwd'"):
        levenberg_marquardt(res, jnp.array([1.0, 2.0]), jac="rev")
    with pytest.raises(ValueError, match="max_steps"):
        levenberg_marquardt(res, jnp.array([1.0, 2.0]), max_steps=0)


def test_scaled_residuals_make_every_state_count():
    data = jnp.array([[1.0, 1e-5, 0.0], [0.5, 3e-5, 0.0]])
    pred = data * 1.1
    r = scaled_residuals(pred, data)
    # 10% error on each nonzero state, relative to that state's max |data|
    np.testing.assert_allclose(r[:, 0], [0.1, 0.05], rtol=1e-5)
    np.testing.assert_allclose(r[:, 1], [0.1 / 3, 0.1], rtol=1e-5)
    np.testing.assert_array_equal(r[:, 2], 0.0)  # an all-zero state keeps scale 1
    np.testing.assert_allclose(
        scaled_residuals(pred, data, jnp.array([1.0, 1.0, 1.0])), pred - data
    )
    with pytest.raises(ValueError, match=r"pred and data must both have shape"):
        scaled_residuals(pred[:, :2], data)
    with pytest.raises(ValueError, match=r"scale must have shape \(3,\)"):
        scaled_residuals(pred, data, jnp.ones(2))
