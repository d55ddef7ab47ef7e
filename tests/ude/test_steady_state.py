"""Steady states: `steady_state` against closed forms, t1=inf with events, the zero-error trap."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.ude import SolveFailed, solve, steady_state


def relax(t, y, theta):
    """dy/dt = theta - y: y* = theta, dy*/dtheta = 1."""
    return theta - y


def test_scalar_steady_state_value_and_derivatives(x64):
    theta = jnp.array(0.76)
    y0 = jnp.array(0.0)

    @jax.jit
    def all_of_it(theta):
        return (
            steady_state(relax, y0, theta),
            jax.grad(lambda th: steady_state(relax, y0, th))(theta),
            jax.jacfwd(lambda th: steady_state(relax, y0, th))(theta),
        )

    y, g_rev, g_fwd = all_of_it(theta)
    assert abs(float(y) - 0.76) < 1e-12  # measured 0 (Newton is exact on a linear field)
    assert abs(float(g_rev) - 1.0) < 1e-12  # measured 0
    assert abs(float(g_fwd) - 1.0) < 1e-12


def test_sgd_on_the_steady_state_follows_the_analytic_iterates(x64):
    # minimise (y*(theta) - 0.76)^2 from theta = 0; analytically the gradient is 2 (theta - 0.76)
    opt = optax.sgd(1e-2, momentum=0.7, nesterov=True)

    def iterates(grad_fn, steps=100):
        def step(carry, _):
            theta, state = carry
            updates, state = opt.update(grad_fn(theta), state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, state), theta

        theta = jnp.array(0.0)
        return jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)[1]

    loss = lambda th: (steady_state(relax, jnp.array(0.0), th) - 0.76) ** 2  # noqa: E731
    numeric = np.asarray(jax.jit(lambda: iterates(jax.grad(loss)))())
    analytic = np.asarray(jax.jit(lambda: iterates(lambda th: 2 * (th - 0.76)))())
    np.testing.assert_allclose(numeric, analytic, rtol=0, atol=1e-12)  # measured 5.6e-17
    assert abs(analytic[-1] - 0.76) < 1e-3 and abs(analytic[0]) > 0  # it did move, and converge


def test_linear_system_steady_state_and_jacobian(x64):
    # dy/dt = b - A y, A non-symmetric with eigenvalues of positive real part:
    # y* = A^{-1} b and dy*/db = A^{-1} (not its transpose: catches a transposed implicit solve)
    a = jnp.array([[3.0, 1.0, 0.0], [-1.0, 2.0, 0.5], [0.3, 0.0, 1.0]])
    b = jnp.array([1.0, -2.0, 0.5])
    assert np.all(np.linalg.eigvals(np.asarray(a)).real > 0)

    def field(t, y, b):
        return b - a @ y

    f = jax.jit(lambda b: steady_state(field, jnp.zeros(3), b))
    np.testing.assert_allclose(f(b), np.linalg.solve(a, b), rtol=1e-12, atol=1e-12)
    jac = jax.jit(jax.jacrev(lambda b: steady_state(field, jnp.zeros(3), b)))(b)
    np.testing.assert_allclose(jac, np.linalg.inv(a), rtol=1e-10, atol=1e-12)


def test_steady_state_failures_explain_themselves():
    # an undamped oscillator never settles
    def oscillator(t, y, args):
        return jnp.array([y[1], -y[0]])

    match = r"no steady state .* within max_steps=300 .*stopped at t = .*oscillation"
    with pytest.raises(SolveFailed, match=match) as info:
        steady_state(oscillator, jnp.array([1.0, 0.0]), None, max_steps=300)
    assert info.value.t_reached > 10.0

    # exchange between two pools: y0 + y1 is conserved, every y0 = y1 is an equilibrium, and
    # df/dy is singular, so the equilibrium is not isolated and has no implicit derivative
    def exchange(t, y, k):
        return k * jnp.array([y[1] - y[0], y[0] - y[1]])

    with pytest.raises(SolveFailed, match="Newton refinement .* singular .* conservation law"):
        steady_state(exchange, jnp.array([1.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match=r"steady_state: rtol=1e-09 is below .* float32"):
        steady_state(relax, jnp.array(0.0, jnp.float32), 0.5, rtol=1e-9)


# --- solve with t1 = inf and a steady-state event ---------------------------------------


def test_solve_to_infinity_with_a_steady_state_event_and_the_implicit_adjoint(x64):
    event = dfx.Event(dfx.steady_state_event(rtol=1e-8, atol=1e-10))

    def y_inf(theta):
        sol = solve(relax, jnp.array(0.0), t0=0.0, t1=jnp.inf, args=theta, event=event,
                    adjoint=dfx.ImplicitAdjoint())
        return sol.ys[-1], sol.ts[-1]

    (y, t_event), g = jax.jit(lambda th: (y_inf(th), jax.grad(lambda th: y_inf(th)[0])(th)))(0.76)
    assert abs(float(y) - 0.76) < 1e-8  # to the event's tolerance
    assert 15.0 < float(t_event) < 40.0  # |y - 0.76| = 0.76 exp(-t) < 1e-10 + 1e-8 * 0.76
    assert abs(float(g) - 1.0) < 1e-12


def test_infinite_t1_is_refused_without_an_event_or_with_saves():
    event = dfx.Event(dfx.steady_state_event())
    with pytest.raises(ValueError, match="t1=inf needs an event that stops the solve"):
        solve(relax, jnp.array(0.0), t0=0.0, t1=jnp.inf, args=0.5)
    with pytest.raises(ValueError, match=r"t1=inf only the final state can be saved"):
        solve(relax, jnp.array(0.0), t0=0.0, t1=jnp.inf, args=0.5, event=event,
              saveat=dfx.SaveAt(dense=True))
    with pytest.raises(ValueError, match="ts must be finite"):
        solve(relax, jnp.array(0.0), jnp.array([0.0, 1.0, jnp.inf]), args=0.5, event=event)
    with pytest.raises(ValueError, match="t1=inf needs a finite max_steps"):
        solve(relax, jnp.array(0.0), t0=0.0, t1=jnp.inf, args=0.5, event=event, max_steps=None)


# --- the zero-error-estimate trap -----------------------------------------------------------


def test_zero_error_estimate_trap_is_closed_by_solves_default_controller(x64):
    """Start on the equilibrium of dy/dt = theta - y, differentiate y(100) in theta: truth 1.

    The error estimate is zero, so a plain PID controller grows every step tenfold, out of
    Tsit5's stability interval (3.5): the solution is still exact but the derivative is
    multiplied by R(-h) per step. solve's default controller caps h at 0.8 x 3.5 / |df/dy|.
    """
    y0 = jnp.array(0.76)

    def by_hand(theta, y0):  # diffrax's solve with solve's old defaults
        sol = dfx.diffeqsolve(dfx.ODETerm(relax), dfx.Tsit5(), 0.0, 100.0, None, y0, args=theta,
                              stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-6),
                              max_steps=4096)
        return sol.ys[-1]

    def with_solve(theta, y0):
        return solve(relax, y0, t0=0.0, t1=100.0, args=theta).ys[-1]

    open_trap = jax.jit(jax.grad(by_hand))
    closed = jax.jit(jax.grad(with_solve))
    assert abs(float(open_trap(0.76, y0))) > 1e6  # measured -1.9e11 (5 steps)
    assert abs(float(closed(0.76, y0)) - 1.0) < 1e-6  # measured 1 - 1e-16 (39 steps)
    # 1e8 ulps off the equilibrium the estimate is tiny but not zero: still trapped by hand
    near = y0 * (1 + 1e8 * jnp.finfo(y0.dtype).eps)
    assert abs(float(open_trap(0.76, near))) > 1e3  # measured -1.4e4
    assert abs(float(closed(0.76, near)) - 1.0) < 1e-6
