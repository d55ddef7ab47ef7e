"""Sensitivities and solvers users of the Julia SciML stack expect, against closed forms and FD.

Forward-mode sensitivities (`ForwardMode` + `jax.jacfwd`), dense output inside a loss
(`SaveAt(dense=True)`, `sol.evaluate`), and training through an implicit solver
(`Kvaerno5`) on Robertson's stiff kinetics.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.ude import ROBERTSON_RATES, robertson_rhs, solve

TIGHT = dfx.PIDController(rtol=1e-10, atol=1e-12)


def central_fd(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


def test_forward_mode_sensitivities_match_reverse_mode_and_the_closed_form(x64):
    # dy/dt = -k y: y(t) = y0 exp(-k t), dy/dk = -t y, dy/dy0 = exp(-k t)
    ts = jnp.linspace(0.0, 2.0, 6)

    def trajectory(p, adjoint):
        k, y0 = p[0], p[1:]
        sol = solve(lambda t, y, k: -k * y, y0, ts, args=k, adjoint=adjoint,
                    stepsize_controller=TIGHT)
        return sol.ys[:, 0]

    p = jnp.array([0.7, 1.3])
    forward = jax.jit(jax.jacfwd(lambda p: trajectory(p, dfx.ForwardMode())))(p)
    reverse = jax.jit(jax.jacrev(lambda p: trajectory(p, dfx.RecursiveCheckpointAdjoint())))(p)
    t = np.asarray(ts)
    decay = np.exp(-0.7 * t)
    exact = np.stack([-t * 1.3 * decay, decay], axis=1)
    np.testing.assert_allclose(forward, exact, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(reverse, forward, rtol=1e-9, atol=1e-12)


def damped(t, y, theta):
    w2, c = theta
    return jnp.stack([y[1], -w2 * y[0] - c * y[1]])


T_OFF_GRID = jnp.array([0.13, 0.58, 1.21, 1.77, 2.9])  # no solver step is placed at these


def dense_solution(theta):
    # only t0 and t1: the dense interpolant replaces save times
    return solve(damped, jnp.array([1.0, 0.0]), t0=0.0, t1=3.0, args=theta,
                 saveat=dfx.SaveAt(dense=True), stepsize_controller=TIGHT)


def test_dense_output_in_a_loss_matches_closed_form_and_finite_differences(x64):
    predict = jax.jit(lambda theta: jax.vmap(dense_solution(theta).evaluate)(T_OFF_GRID))
    # undamped, w = 2: y = (cos 2t, -2 sin 2t)
    t = np.asarray(T_OFF_GRID)
    exact = np.stack([np.cos(2 * t), -2 * np.sin(2 * t)], 1)
    np.testing.assert_allclose(predict(jnp.array([4.0, 0.0])), exact, atol=1e-8)

    data = jnp.array([[0.9, -0.2], [0.4, -1.1], [-0.5, -0.8], [-0.6, 0.5], [0.3, 0.6]])

    def loss(theta):
        pred = jax.vmap(dense_solution(theta).evaluate)(T_OFF_GRID)
        return jnp.sum((pred - data) ** 2)

    theta = jnp.array([4.0, 0.3])
    grad = jax.jit(jax.grad(loss))(theta)
    assert np.abs(grad).min() > 0.1  # both parameters matter
    fd = central_fd(lambda th: jnp.sum((predict(th) - data) ** 2), theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


# --- training through an implicit solver on a stiff system ---------------------------------

# numpy (float64) at import; jax arrays are made inside the tests, under x64
TRUE_LOG_K = np.log(ROBERTSON_RATES)
ROBERTSON_TS = np.concatenate([np.zeros(1), np.logspace(-4, 0, 8)])


def robertson_fit(p, data, rtol, atol, adjoint):
    """Robertson's kinetics with log k3 = p unknown; scaled least squares against `data`."""
    sol = solve(robertson_rhs, jnp.array([1.0, 0.0, 0.0]), jnp.asarray(ROBERTSON_TS),
                args=jnp.asarray(TRUE_LOG_K).at[2].set(p), solver=dfx.Kvaerno5(), adjoint=adjoint,
                stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol))
    scale = jnp.max(jnp.abs(data), axis=0)  # y2 peaks at 3.6e-5: scale each species
    return jnp.mean(((sol.ys - data) / scale) ** 2), sol.ys


@pytest.mark.slow  # accuracy run
def test_stiff_robertson_rate_is_learned_through_kvaerno5_with_optax(x64):
    """k3 = 1e4 from a start e times too large, forward-mode gradients, L-BFGS directions.

    One parameter: forward mode (one tangent) is the cheap sensitivity, as in the Julia
    stack's default for few parameters. The data comes from the true rates solved 100x
    tighter, so the fit sees the solver's error only. Measured: |k3 / k3_true - 1| =
    1.6e-8 after 9 iterations (loss 0.002 -> 1.6e-16); ~10 s, most of it compilation.
    """

    @jax.jit
    def value_grad_and_ys(p, data, rtol, atol):
        f = lambda p: robertson_fit(p, data, rtol, atol, dfx.ForwardMode())  # noqa: E731
        (loss, ys), (dloss, _) = jax.jvp(f, (p,), (jnp.ones_like(p),))
        return loss, dloss, ys

    # the same compiled function gives the data: rtol, atol are traced, not static
    dummy = jnp.ones((ROBERTSON_TS.size, 3))
    _, _, data = value_grad_and_ys(jnp.asarray(TRUE_LOG_K[2]), dummy, 1e-9, 1e-13)
    opt = optax.chain(optax.scale_by_lbfgs(), optax.scale(-1.0))
    p = jnp.asarray(TRUE_LOG_K[2] + 1.0)
    state = opt.init(p)
    first = None
    for _ in range(15):
        loss, grad, _ = value_grad_and_ys(p, data, 1e-7, 1e-11)
        first = loss if first is None else first
        updates, state = opt.update(grad, state, p)
        p = optax.apply_updates(p, updates)
    assert float(first) > 1e-3
    assert float(loss) < 1e-12
    assert abs(np.exp(float(p) - TRUE_LOG_K[2]) - 1.0) < 1e-6


@pytest.mark.slow
def test_stiff_robertson_rate_is_learned_by_reverse_mode_and_adam(x64):
    """The same fit through reverse mode (RecursiveCheckpointAdjoint) and Adam.

    25-40 s (a reverse-mode Kvaerno5 step compiles slowly). Measured: |k3 / k3_true - 1| =
    5e-5 after 150 steps.
    """
    data = jax.jit(robertson_fit, static_argnums=4)(
        jnp.asarray(TRUE_LOG_K[2]), jnp.ones((ROBERTSON_TS.size, 3)), 1e-9, 1e-13,
        dfx.RecursiveCheckpointAdjoint())[1]
    opt = optax.adam(0.1)

    @jax.jit
    def step(p, state):
        grad = jax.grad(lambda p: robertson_fit(p, data, 1e-7, 1e-11,
                                                dfx.RecursiveCheckpointAdjoint())[0])(p)
        updates, state = opt.update(grad, state, p)
        return optax.apply_updates(p, updates), state

    p = jnp.asarray(TRUE_LOG_K[2] + 1.0)
    state = opt.init(p)
    for _ in range(150):
        p, state = step(p, state)
    assert abs(np.exp(float(p) - TRUE_LOG_K[2]) - 1.0) < 1e-3
