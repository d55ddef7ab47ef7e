"""`sciml.ude.solve`: accuracy, convergence order, adjoint gradients, errors; UDE/NeuralODE fields."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.nn import MLP
from sciml.ude import UDE, NeuralODE, SolveFailed, check_solution, solve, solve_batch


def decay(t, y, args):
    return -args * y


def oscillator(t, y, args):
    return jnp.array([y[1], -(args**2) * y[0]])


def test_exponential_decay_adaptive(x64):
    ts = jnp.linspace(0.0, 2.0, 21)
    sol = solve(decay, jnp.array([1.0, 3.0]), ts, args=1.5,
                stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(sol.ys, np.exp(-1.5 * np.asarray(ts))[:, None] * [1.0, 3.0], rtol=1e-9)


@pytest.mark.parametrize(
    "solver, order", [(dfx.Euler(), 1), (dfx.Heun(), 2), (dfx.Bosh3(), 3), (dfx.Tsit5(), 5)]
)
def test_observed_order_on_harmonic_oscillator(solver, order, x64):
    w, t1 = 2.0, 3.0
    exact = np.array([np.cos(w * t1), -w * np.sin(w * t1)])
    errs = []
    steps = [40, 80, 160]
    for n in steps:
        sol = solve(oscillator, jnp.array([1.0, 0.0]), t0=0.0, t1=t1, args=w, solver=solver,
                    stepsize_controller=dfx.ConstantStepSize(), dt0=t1 / n)
        errs.append(np.linalg.norm(np.asarray(sol.ys[-1]) - exact))
    observed = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # Tsit5 approaches its order from above (5.47 then 5.27): judge the finest pair
    assert abs(observed[-1] - order) < 0.3, observed


def loss_of(adjoint, max_steps=4096):
    ts = jnp.linspace(0.0, 1.0, 6)

    def field(t, y, theta):
        return jnp.array([theta[0] * y[1], -theta[1] * y[0] - theta[2] * y[1]])

    def f(theta):
        # parameters go in through args: BacksolveAdjoint cannot see closed-over values
        sol = solve(field, jnp.array([1.0, 0.5]), ts, args=theta, adjoint=adjoint, max_steps=max_steps,
                    stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10))
        return jnp.sum(sol.ys**2)

    return f


def central_fd(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


@pytest.mark.parametrize(
    "adjoint, rtol",
    [
        (dfx.RecursiveCheckpointAdjoint(), 1e-7),
        (dfx.DirectAdjoint(), 1e-7),
        (dfx.BacksolveAdjoint(stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10)), 1e-6),
    ],
    ids=["recursive_checkpoint", "direct", "backsolve"],
)
def test_reverse_adjoints_match_finite_differences(adjoint, rtol, x64):
    theta = jnp.array([1.0, 2.0, 0.3])
    f = loss_of(adjoint)
    np.testing.assert_allclose(jax.grad(f)(theta), central_fd(jax.jit(f), theta), rtol=rtol)


def test_forward_mode_matches_finite_differences(x64):
    theta = jnp.array([1.0, 2.0, 0.3])
    f = loss_of(dfx.ForwardMode())
    np.testing.assert_allclose(jax.jacfwd(f)(theta), central_fd(jax.jit(f), theta), rtol=1e-7)


def test_stiff_solver_robertson_short_time(x64):
    def rober(t, y, k):
        k1, k2, k3 = k
        return jnp.array([
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
            k2 * y[1] ** 2,
        ])

    sol = solve(rober, jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 40.0]), args=(0.04, 3e7, 1e4),
                solver=dfx.Kvaerno5(), stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-10))
    # published reference at t = 40 (Hairer & Wanner, stiff test set)
    np.testing.assert_allclose(sol.ys[-1, 0], 0.7158270687193, rtol=1e-6)
    np.testing.assert_allclose(jnp.sum(sol.ys[-1]), 1.0, rtol=1e-10)  # mass is conserved


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match=r"returns shapes \[\(1,\)\] for y0 of shapes \[\(2,\)\]"):
        solve(lambda t, y, a: y[:1], jnp.ones(2), jnp.linspace(0, 1, 3))
    mlp = MLP(2, 2, width=4, depth=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"cannot be evaluated on y0 of shape \(3,\).*expected input shape \(2,\)"):
        solve(NeuralODE(mlp), jnp.ones(3), jnp.linspace(0, 1, 3))
    with pytest.raises(TypeError, match="y0 must be floating point"):
        solve(decay, jnp.array([1, 2]), jnp.linspace(0, 1, 3), args=1.0)
    with pytest.raises(ValueError, match="ts must be 1-D"):
        solve(decay, jnp.ones(2), jnp.ones((2, 2)), args=1.0)
    with pytest.raises(ValueError, match="ConstantStepSize needs a step dt0"):
        solve(decay, jnp.ones(2), jnp.linspace(0, 1, 3), args=1.0, stepsize_controller=dfx.ConstantStepSize())


def test_failed_solve_is_reported_with_index_and_time():
    ts = jnp.linspace(0.0, 2.0, 11)
    y0s = jnp.array([[0.1], [1.0], [2.0]])  # y' = y^2 blows up at t = 1/y0
    sol = jax.vmap(lambda y0: solve(lambda t, y, a: y**2, y0, ts, max_steps=200, throw=False))(y0s)
    with pytest.raises(SolveFailed, match=r"failed for batch element 1 \(2 of 3 failed\).*max_steps") as info:
        check_solution(sol)
    assert info.value.index == 1 and 0.6 <= info.value.t_reached <= 1.0  # blow-up at t = 1
    ok = jax.vmap(lambda y0: solve(lambda t, y, a: -y, y0, ts, throw=False))(y0s)
    check_solution(ok)  # no error


def test_ude_known_plus_network_and_positive_params(x64):
    mlp = MLP(1, 1, width=4, depth=1, key=jax.random.PRNGKey(0))
    zero_net = jax.tree.map(lambda a: jnp.zeros_like(a) if isinstance(a, jax.Array) else a, mlp)
    ude = UDE(lambda t, y, k: -k * y, zero_net, jnp.array(0.7), positive=True)
    np.testing.assert_allclose(ude.physical_params(), 0.7, rtol=1e-12)
    sol = solve(ude, jnp.array([2.0]), jnp.linspace(0, 1, 5),
                stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(sol.ys[:, 0], 2.0 * np.exp(-0.7 * np.linspace(0, 1, 5)), rtol=1e-8)
    # the network adds to the known part
    ude2 = UDE(lambda t, y, k: -k * y, mlp, jnp.array(0.7))
    y = jnp.array([0.3])
    np.testing.assert_allclose(ude2(0.0, y), -0.7 * y + mlp(y), rtol=1e-12)
    # a user combination
    ude3 = UDE(lambda t, y, k: -k * y, mlp, jnp.array(0.7), combine=lambda k, n, y: k * n)
    np.testing.assert_allclose(ude3(0.0, y), (-0.7 * y) * mlp(y), rtol=1e-12)
    # gradient reaches the physical parameter, and freezing stops it
    g = eqx.filter_grad(lambda m: jnp.sum(m(0.0, y)))(ude2)
    assert float(g.raw_params) != 0.0
    frozen = UDE(lambda t, y, k: -k * y, mlp, jnp.array(0.7), learn_params=False)
    assert float(eqx.filter_grad(lambda m: jnp.sum(m(0.0, y)))(frozen).raw_params) == 0.0
    with pytest.raises(ValueError, match="positive=True needs positive"):
        UDE(lambda t, y, k: -k * y, mlp, jnp.array(-1.0), positive=True)


def test_neural_ode_time_dependent(getkey):
    net = MLP(3, 2, width=4, depth=1, key=getkey())
    field = NeuralODE(net, time_dependent=True)
    y = jnp.array([0.1, 0.2])
    np.testing.assert_allclose(field(0.5, y), net(jnp.array([0.5, 0.1, 0.2])), rtol=1e-6)


# --- solve_batch -------------------------------------------------------------------


def damped(t, y, theta):
    return jnp.array([theta[0] * y[1], -theta[1] * y[0] - theta[2] * y[1]])


Y0S = jnp.array([[1.0, 0.5], [0.2, -1.0], [2.0, 0.0]])


@pytest.mark.parametrize("mode", ["vmap", "joint"])
def test_solve_batch_matches_one_solve_per_sample(mode, x64):
    ts = jnp.linspace(0.0, 2.0, 9)
    theta = jnp.array([1.0, 2.0, 0.3])
    tight = dfx.PIDController(rtol=1e-10, atol=1e-10)
    sol = solve_batch(damped, Y0S, ts, mode=mode, args=theta, stepsize_controller=tight)
    assert sol.ys.shape == (3, 9, 2)
    for i in range(3):
        one = solve(damped, Y0S[i], ts, args=theta, stepsize_controller=tight).ys
        np.testing.assert_allclose(sol.ys[i], one, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("adjoint", ["recursive_checkpoint", "backsolve"])
def test_joint_batch_gradients_match_finite_differences(adjoint, x64):
    ts = jnp.linspace(0.0, 1.0, 6)
    tight = dfx.PIDController(rtol=1e-10, atol=1e-10)
    adj = (dfx.RecursiveCheckpointAdjoint() if adjoint == "recursive_checkpoint"
           else dfx.BacksolveAdjoint(stepsize_controller=tight))

    def f(theta):
        sol = solve_batch(damped, Y0S, ts, mode="joint", args=theta, adjoint=adj,
                          stepsize_controller=tight)
        return jnp.sum(sol.ys**2 * jnp.arange(1.0, 4.0)[:, None, None])

    theta = jnp.array([1.0, 2.0, 0.3])
    np.testing.assert_allclose(jax.grad(f)(theta), central_fd(jax.jit(f), theta), rtol=1e-6)


def test_solve_batch_rejects_bad_input():
    ts = jnp.linspace(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="mode must be 'vmap' or 'joint', got 'shared'"):
        solve_batch(decay, Y0S, ts, mode="shared", args=1.0)
    with pytest.raises(ValueError, match="leading batch axis"):
        solve_batch(decay, jnp.array(1.0), ts, args=1.0)
    with pytest.raises(ValueError, match=r"returns shapes \[\(3,\)\] for y0 of shapes \[\(2,\)\]"):
        solve_batch(lambda t, y, a: jnp.zeros(3), Y0S, ts, mode="joint")
    with pytest.raises(ValueError, match=r"different batch sizes \[2, 3\]"):
        solve_batch(lambda t, y, a: y, (Y0S, Y0S[:2]), ts)


# --- IMEX (KenCarp) ------------------------------------------------------------------


def test_kencarp_on_a_stiff_split_problem_with_a_closed_form(x64):
    # y' = lam (y - cos t) - sin t, lam = -1e4: y = cos t from y(0) = 1. The
    # stiff relaxation is implicit, the forcing explicit.
    lam = -1.0e4
    explicit = lambda t, y, a: -jnp.sin(t) * jnp.ones_like(y)  # noqa: E731
    implicit = lambda t, y, a: lam * (y - jnp.cos(t))  # noqa: E731
    ts = jnp.linspace(0.0, 2.0, 11)
    for solver in (dfx.KenCarp4(), dfx.KenCarp5()):
        sol = solve((explicit, implicit), jnp.array([1.0]), ts, solver=solver,
                    stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-8))
        np.testing.assert_allclose(sol.ys[:, 0], np.cos(np.asarray(ts)), atol=1e-5)
        # Tsit5 needs ~7000 steps here (stability-limited, h < 3.3 / |lam|); KenCarp 300-450
        assert int(sol.stats["num_steps"]) < 1000


def test_imex_solver_needs_a_split_field():
    ts = jnp.linspace(0.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"KenCarp4 is an IMEX solver: pass vector_field=\(explicit, implicit\)"):
        solve(decay, jnp.ones(2), ts, args=1.0, solver=dfx.KenCarp4())
    with pytest.raises(ValueError, match="needs an IMEX solver .* got Tsit5"):
        solve((decay, decay), jnp.ones(2), ts, args=1.0)
    with pytest.raises(ValueError, match="must be \\(explicit, implicit\\), got 3 parts"):
        solve((decay, decay, decay), jnp.ones(2), ts, args=1.0, solver=dfx.KenCarp4())
    with pytest.raises(ValueError, match=r"returns shapes \[\(3,\)\] for y0 of shapes \[\(2,\)\]"):
        solve((decay, lambda t, y, a: jnp.zeros(3)), jnp.ones(2), ts, args=1.0, solver=dfx.KenCarp4())


# --- the default controller's stability cap ------------------------------------------


def test_default_controller_caps_steps_only_where_stability_needs_it(x64):
    ts = jnp.linspace(0.0, 3.0, 7)
    y0 = jnp.array([1.0, 0.0])
    # away from equilibria error control binds first: the same steps as the plain PID
    plain = solve(oscillator, y0, ts, args=2.0,
                  stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-6))
    default = solve(oscillator, y0, ts, args=2.0)
    assert int(default.stats["num_steps"]) == int(plain.stats["num_steps"])
    np.testing.assert_array_equal(default.ys, plain.ys)
    # on an equilibrium of y' = 0.76 - y (error estimate zero) the steps stop at
    # 0.8 x 3.5 (Tsit5's stability interval) instead of growing tenfold each
    rest = solve(lambda t, y, a: 0.76 - y, jnp.array(0.76), t0=0.0, t1=100.0)
    assert 100 / (0.8 * 3.51) <= int(rest.stats["num_steps"]) <= 100 / (0.8 * 3.51) + 10
    # backwards in time, the cap evaluates the field at the true (not negated) times
    back = solve(lambda t, y, a: -t * y, jnp.array([1.0]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(back.ys[-1, 0], np.exp(0.5), rtol=1e-3)


def test_default_controller_with_a_custom_vjp_field_under_grad(x64):
    # forward-mode autodiff cannot pass a jax.custom_vjp under jax.grad: the cap's J v is
    # a finite difference, so such fields (e.g. a nested diffrax solve) still work
    @jax.custom_vjp
    def neg(y):
        return -y

    neg.defvjp(lambda y: (-y, None), lambda _, ct: (-ct,))

    def y1(theta):
        field = lambda t, y, th: th + neg(y)  # noqa: E731
        return solve(field, jnp.array(0.0), t0=0.0, t1=2.0, args=theta).ys[-1]

    # y(t) = theta (1 - exp(-t))
    np.testing.assert_allclose(jax.grad(y1)(0.5), 1 - np.exp(-2.0), rtol=1e-3)


def test_default_controller_with_a_model_as_field_and_backsolve(x64):
    # the model's parameters are traced leaves of the vector field; BacksolveAdjoint's
    # custom_vjp must not find them in the controller (it gets the plain PID controller)
    class Relax(eqx.Module):
        theta: jax.Array

        def __call__(self, t, y, args):
            return self.theta - y

    def y1(model):
        return solve(model, jnp.array(0.0), t0=0.0, t1=2.0, adjoint=dfx.BacksolveAdjoint()).ys[-1]

    grad = eqx.filter_grad(y1)(Relax(jnp.array(0.5))).theta
    np.testing.assert_allclose(grad, 1 - np.exp(-2.0), rtol=1e-3)
