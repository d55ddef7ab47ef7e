"""Multiple shooting with learnable nodes: the loss, its gradients, errors, and the spiral fit."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sciml.ude import (
    MultipleShooting,
    finish_single_shooting,
    horizon_curriculum,
    sample_windows,
    shooting_loss,
    single_shooting_loss,
    solve,
    spiral_dynamics,
)

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
# The true matrix with its rotation terms scaled by 0.3: too slow a spiral.
A_BAD = np.array([[-0.1, 0.6], [-0.6, -0.1]])
TIGHT = dfx.PIDController(rtol=1e-10, atol=1e-10)
CTRL = dfx.PIDController(rtol=1e-6, atol=1e-8)


class CubicLinear(eqx.Module):
    """dy/dt = (y**3) @ A with a learnable A: the spiral's parametric model."""

    A: jax.Array

    def __call__(self, t, y, args=None):
        return (y**3) @ self.A


def spiral_truth(t_end=10.0, n=101):
    ts = jnp.linspace(0.0, t_end, n)
    ys = solve(spiral_dynamics, jnp.array([2.0, 0.0]), ts, stepsize_controller=TIGHT, max_steps=None).ys
    return ts, ys


def _adam_loop(loss_fn, params, steps, weight_fn):
    """`steps` Adam steps (cosine-decayed rate) on `loss_fn(params, weight)`."""
    opt = optax.adam(optax.cosine_decay_schedule(5e-2, steps, alpha=0.05))
    state = opt.init(params)

    @jax.jit
    def step(params, state, w):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, w)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    for i in range(steps):
        params, state, _ = step(params, state, weight_fn(i))
    return params


@pytest.mark.parametrize(
    "seed", [pytest.param(s, marks=pytest.mark.slow) for s in (0, 1, 2)]  # accuracy runs
)
def test_multiple_shooting_fits_spiral_where_single_shooting_is_stuck(x64, seed):
    """Acceptance: the loss gap between multiple and single shooting on a long spiral segment.

    Model (y**3) @ A_hat, A_hat initialised with 0.3x the true rotation rate,
    101 noisy samples (1 %) on t in [0, 10] (about three turns). Both methods
    get the same Adam schedule and step count; single shooting also learns y0.
    Multiple shooting (50 segments) raises the continuity weight from 1 to 100
    over training, then is judged by one single-shooting solve from s_0.
    """
    steps = 400
    ts, ys = spiral_truth()
    data = ys + 0.01 * jax.random.normal(jax.random.PRNGKey(seed), ys.shape)
    model = CubicLinear(jnp.asarray(A_BAD))

    def ss_loss(params, w):
        m, y0 = params
        return single_shooting_loss(m, y0, ts, data, stepsize_controller=CTRL, throw=False)

    ss_model, ss_y0 = _adam_loop(ss_loss, (model, data[0]), steps, lambda i: 0.0)
    ss_mse = float(ss_loss((ss_model, ss_y0), 0.0)[0])

    ms = MultipleShooting.init(model, ts, data, 50, stepsize_controller=CTRL)

    def ms_loss(ms, w):
        return shooting_loss(ms, ts, data, continuity_weight=w, stepsize_controller=CTRL, throw=False)

    ramp = lambda i: 100.0 ** min(1.0, i / (0.7 * steps))  # noqa: E731
    ms = _adam_loop(ms_loss, ms, steps, ramp)
    _, final = finish_single_shooting(ms, ts, data, stepsize_controller=CTRL)
    ms_mse = float(final["data_mse"])

    assert ss_mse > 0.1  # stuck: a damped, wrongly phased spiral
    assert ms_mse < 1e-3  # noise level is 1e-4
    assert ss_mse > 10 * ms_mse
    np.testing.assert_allclose(ms.model.A, A_TRUE, atol=0.05)
    np.testing.assert_allclose(ms.nodes[0], ys[0], atol=0.05)


def test_loss_vanishes_when_nodes_lie_on_the_true_trajectory(x64):
    ts, ys = spiral_truth(t_end=2.0, n=41)
    model = CubicLinear(jnp.asarray(A_TRUE))
    ms = MultipleShooting.init(model, ts, ys, 8, nodes=ys[::5][:8])
    assert ms.segment_length == 5 and ms.nodes.shape == (8, 2)
    loss, metrics = shooting_loss(ms, ts, ys, stepsize_controller=TIGHT, max_steps=None)
    assert float(metrics["continuity_mse"]) < 1e-16
    assert float(metrics["data_mse"]) < 1e-16
    assert float(loss) < 1e-14
    # Moving the last node off the trajectory opens exactly one defect (its
    # segment's end is not constrained).
    moved = eqx.tree_at(lambda m: m.nodes, ms, ms.nodes.at[7, 1].add(0.1))
    _, metrics = shooting_loss(moved, ts, ys, stepsize_controller=TIGHT, max_steps=None)
    sigma = ms.state_scale[1]
    np.testing.assert_allclose(metrics["continuity_mse"], (0.1 / sigma) ** 2 / (7 * 2), rtol=1e-8)
    # The single-shooting check reproduces the truth.
    traj, final = finish_single_shooting(ms, ts, ys, stepsize_controller=TIGHT, max_steps=None)
    np.testing.assert_allclose(traj, ys, atol=1e-8)
    assert float(final["data_mse"]) < 1e-16


def test_gradients_match_central_finite_differences(x64):
    ts, ys = spiral_truth(t_end=1.0, n=13)
    data = ys[:, :1] + 0.05
    model = CubicLinear(jnp.asarray(A_BAD))
    ms = MultipleShooting.init(model, ts, data, 3, observed=[0], n_states=2, stepsize_controller=TIGHT)

    @eqx.filter_jit
    def f(ms):
        return shooting_loss(ms, ts, data, continuity_weight=3.0, stepsize_controller=TIGHT)[0]

    grads = jax.grad(f)(ms)
    params, static = eqx.partition(ms, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    g_flat, _ = ravel_pytree(eqx.filter(grads, eqx.is_inexact_array))
    h = 1e-6
    fd = []
    for i in range(flat.size):
        e = jnp.zeros_like(flat).at[i].set(h)
        plus = f(eqx.combine(unravel(flat + e), static))
        minus = f(eqx.combine(unravel(flat - e), static))
        fd.append((plus - minus) / (2 * h))
    fd = np.array(fd)
    assert flat.size == 4 + 3 * 2  # A and the nodes
    assert np.abs(g_flat).max() > 1e-3
    np.testing.assert_allclose(g_flat, fd, rtol=1e-5, atol=1e-8)


def test_single_shooting_loss_is_zero_for_the_truth(x64):
    ts, ys = spiral_truth(t_end=2.0, n=21)
    loss, metrics = single_shooting_loss(spiral_dynamics, ys[0], ts, ys[:, 1], observed=[1], stepsize_controller=TIGHT, max_steps=None)
    assert float(loss) < 1e-16 and float(metrics["data_mse"]) == float(loss)


def test_clear_errors():
    ts = jnp.linspace(0.0, 1.0, 11)
    data = jnp.ones((11, 2))
    model = CubicLinear(jnp.asarray(A_TRUE, dtype=jnp.float32))
    with pytest.raises(ValueError, match=r"len\(ts\) - 1 = 10 .*n_segments = 3"):
        MultipleShooting.init(model, ts, data, 3)
    with pytest.raises(ValueError, match=r"data must have shape .*\(11, 2\).*\(10, 2\)"):
        MultipleShooting.init(model, ts, data[:10], 5)
    with pytest.raises(ValueError, match=r"observed indices \[0, 2\] out of range .*dimension 2"):
        MultipleShooting.init(model, ts, data, 5, observed=[0, 2], n_states=2)
    with pytest.raises(ValueError, match="n_states"):
        MultipleShooting.init(model, ts, data[:, :1], 5, observed=[0])
    ms = MultipleShooting.init(model, ts, data, 5)
    with pytest.raises(ValueError, match=r"data must have shape"):
        shooting_loss(ms, ts, data[:, :1])
    with pytest.raises(ValueError, match=r"len\(ts\) - 1 = 9 intervals must be a multiple of the segment length 2"):
        shooting_loss(ms, ts[:10], data[:10])
    with pytest.raises(ValueError, match="out of range"):
        shooting_loss(ms, ts, data, observed=[5])
    with pytest.raises(ValueError, match="out of range"):
        single_shooting_loss(model, data[0], ts, data[:, :1], observed=[-1])


@pytest.mark.slow
def test_prefix_of_the_grid_uses_the_first_segments(x64):
    ts, ys = spiral_truth(t_end=2.0, n=41)
    model = CubicLinear(jnp.asarray(A_BAD))
    ms = MultipleShooting.init(model, ts, ys, 8)
    loss, grads = jax.value_and_grad(lambda m: shooting_loss(m, ts[:21], ys[:21])[0])(ms)
    assert np.isfinite(float(loss))
    # Only the first four nodes are used.
    assert np.all(np.asarray(grads.nodes[4:]) == 0.0)
    assert np.any(np.asarray(grads.nodes[:4]) != 0.0)


def test_node_initialisation_from_data_and_forward_simulation(x64):
    ts, ys = spiral_truth(t_end=2.0, n=41)
    model = CubicLinear(jnp.asarray(A_TRUE))
    # Fully observed, no smoothing: nodes are the data at node times.
    ms = MultipleShooting.init(model, ts, ys, 4, smoothing=1)
    np.testing.assert_allclose(ms.nodes, ys[::10][:4])
    # Only y1 observed: y2 comes from simulating the (here exact) model from the first node.
    ms = MultipleShooting.init(model, ts, ys[:, :1], 4, observed=[0], n_states=2, smoothing=1, stepsize_controller=TIGHT, max_steps=None)
    np.testing.assert_allclose(ms.nodes, ys[::10][:4], atol=1e-7)
    assert ms.observed == (0,)
    # Smoothing is a moving average.
    noisy = ys + 0.1 * jax.random.normal(jax.random.PRNGKey(0), ys.shape)
    ms = MultipleShooting.init(model, ts, noisy, 4, smoothing=3)
    np.testing.assert_allclose(ms.nodes[1], noisy[9:12].mean(0))
    np.testing.assert_allclose(ms.nodes[0], noisy[0:2].mean(0))


@pytest.mark.slow
def test_partially_observed_unobserved_node_components_are_fitted(x64):
    """Only y1 observed; y2 at the nodes starts off the truth and continuity pulls it back."""
    ts, ys = spiral_truth(t_end=1.0, n=21)
    data = ys[:, :1]
    truth = ys[::5][:4]
    nodes0 = truth.at[:, 1].add(jnp.array([0.3, -0.3, 0.3, -0.3]))
    ms = MultipleShooting.init(CubicLinear(jnp.asarray(A_TRUE)), ts, data, 4, observed=[0], nodes=nodes0)

    def loss(nodes):
        return shooting_loss(eqx.tree_at(lambda m: m.nodes, ms, nodes), ts, data, stepsize_controller=CTRL)[0]

    # L-BFGS: the continuity-weighted problem is too ill-conditioned for a short Adam run.
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def step(nodes, state):
        value, grad = value_and_grad(nodes, state=state)
        updates, state = opt.update(grad, state, nodes, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(nodes, updates), state

    nodes, state = nodes0, opt.init(nodes0)
    for _ in range(40):
        nodes, state = step(nodes, state)
    assert float(jnp.max(jnp.abs(nodes[:, 1] - truth[:, 1]))) < 0.02
    assert float(loss(nodes)) < 1e-4 * float(loss(nodes0))


def test_horizon_curriculum():
    ts = jnp.linspace(0.0, 1.0, 101)
    ends = horizon_curriculum(ts, 4)
    assert ends == (26, 51, 76, 101)
    ends = horizon_curriculum(ts, 3, multiple_of=20)
    assert ends[-1] == 101 and all((e - 1) % 20 == 0 for e in ends)
    assert list(ends) == sorted(set(ends))
    assert horizon_curriculum(ts, 1) == (101,)
    assert horizon_curriculum(jnp.arange(3.0), 5) == (2, 3)
    with pytest.raises(ValueError, match="multiple_of"):
        horizon_curriculum(ts, 3, multiple_of=7)


def test_sample_windows(getkey):
    starts = sample_windows(getkey(), 50, 200, 10)
    assert starts.shape == (200,)
    assert int(starts.min()) >= 0 and int(starts.max()) <= 40
    assert len(np.unique(np.asarray(starts))) > 20
    starts = sample_windows(getkey(), 41, 100, 11, stride=10)
    assert set(np.asarray(starts).tolist()) <= {0, 10, 20, 30}
    with pytest.raises(ValueError, match="length"):
        sample_windows(getkey(), 5, 3, 6)
