"""Optimizer settings change the updates as their formulas say (values computed by hand).

Every expected value below is written out with numpy from the textbook update
rule, not obtained by calling optax again with the same arguments.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.config import ConfigError
from sciml.optim import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LBFGSConfig,
    SequenceConfig,
    SGDConfig,
    make_optimizer,
    make_schedule,
)

G1 = np.array([1.0, -2.0, 0.5])
G2 = np.array([0.5, 3.0, -4.0])
P0 = np.array([2.0, -3.0, 0.25])


def run(opt, grads, params=P0):
    """Feed `grads` one per step (params stay fixed); return each step's update as numpy."""
    params = jnp.asarray(params)
    state = opt.init(params)
    out = []
    for g in grads:
        u, state = opt.update(jnp.asarray(g), state, params)
        out.append(np.asarray(u))
    return out


def lrs(opt, n):
    """The effective learning rate at steps 0..n-1: the update of plain SGD for gradient 1."""
    return np.array([-u[0] for u in run(opt, [np.ones(1)] * n, params=np.zeros(1))])


# --- SGD ---------------------------------------------------------------------------------


def test_sgd_momentum_accumulates_velocity(x64):
    lr, m = 0.1, 0.9
    u1, u2 = run(make_optimizer(SGDConfig(name="sgd", lr=lr, momentum=m), 10), [G1, G2])
    v1 = G1
    v2 = m * v1 + G2
    np.testing.assert_allclose(u1, -lr * v1, rtol=1e-12)
    np.testing.assert_allclose(u2, -lr * v2, rtol=1e-12)
    # the momentum value matters: without it the second step would be -lr * G2
    assert not np.allclose(u2, -lr * G2)


def test_sgd_nesterov_looks_ahead(x64):
    lr, m = 0.1, 0.5
    cfg = SGDConfig(name="sgd", lr=lr, momentum=m, nesterov=True)
    u1, u2 = run(make_optimizer(cfg, 10), [G1, G2])
    v1 = G1
    v2 = m * v1 + G2
    np.testing.assert_allclose(u1, -lr * (G1 + m * v1), rtol=1e-12)
    np.testing.assert_allclose(u2, -lr * (G2 + m * v2), rtol=1e-12)
    # differs from heavy-ball momentum with the same settings
    (_, heavy) = run(make_optimizer(SGDConfig(name="sgd", lr=lr, momentum=m), 10), [G1, G2])
    assert not np.allclose(u2, heavy)


def test_plain_sgd_with_zero_momentum_has_no_memory(x64):
    lr = 0.25
    u1, u2, u3 = run(make_optimizer(SGDConfig(name="sgd", lr=lr, momentum=0.0), 10), [G1, G2, G1])
    np.testing.assert_allclose(u1, -lr * G1, rtol=1e-12)
    np.testing.assert_allclose(u2, -lr * G2, rtol=1e-12)
    np.testing.assert_allclose(u3, -lr * G1, rtol=1e-12)


def test_clip_norm_scales_large_gradients_by_their_global_norm(x64):
    opt = make_optimizer(SGDConfig(name="sgd", lr=1.0, momentum=0.0, clip_norm=1.0), 10)
    params = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
    state = opt.init(params)
    # global norm 5 over two leaves: both scaled by 1/5 (per-leaf clipping would give 1 and 1)
    big = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
    u, state = opt.update(big, state, params)
    np.testing.assert_allclose(u["a"], [-0.6], rtol=1e-12)
    np.testing.assert_allclose(u["b"], [-0.8], rtol=1e-12)
    # norm 0.5 < 1: left as it is
    small = {"a": jnp.array([0.3]), "b": jnp.array([0.4])}
    u, state = opt.update(small, state, params)
    np.testing.assert_allclose(u["a"], [-0.3], rtol=1e-12)
    np.testing.assert_allclose(u["b"], [-0.4], rtol=1e-12)
    # without clip_norm the large gradient goes through unchanged
    plain = make_optimizer(SGDConfig(name="sgd", lr=1.0, momentum=0.0), 10)
    u, _ = plain.update(big, plain.init(params), params)
    np.testing.assert_allclose(u["a"], [-3.0], rtol=1e-12)


# --- Adam and AdamW ------------------------------------------------------------------------


def adam_by_hand(grads, lr, b1, b2, eps):
    m = np.zeros_like(grads[0])
    v = np.zeros_like(grads[0])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        out.append(-lr * m_hat / (np.sqrt(v_hat) + eps))
    return out


def test_adam_first_step_is_bias_corrected_sign_like(x64):
    lr, eps = 0.01, 1e-8
    g = np.array([1.0, -2.0, 1e-8, 0.0])
    (u1,) = run(make_optimizer(AdamConfig(name="adam", lr=lr, eps=eps), 10), [g], np.zeros(4))
    # m_hat = g and v_hat = g^2 after bias correction: -lr * g / (|g| + eps)
    np.testing.assert_allclose(u1, -lr * g / (np.abs(g) + eps), rtol=1e-12)
    # so roughly -lr * sign(g), and eps matters for tiny gradients: 1e-8 / 2e-8 = 0.5
    np.testing.assert_allclose(u1, [-lr, lr, -0.5 * lr, 0.0], rtol=1e-7)


@pytest.mark.parametrize("b1,b2,eps", [(0.9, 0.999, 1e-8), (0.5, 0.8, 0.1)])
def test_adam_second_step_by_hand(x64, b1, b2, eps):
    lr = 0.03
    cfg = AdamConfig(name="adam", lr=lr, b1=b1, b2=b2, eps=eps)
    u1, u2 = run(make_optimizer(cfg, 10), [G1, G2])
    e1, e2 = adam_by_hand([G1, G2], lr, b1, b2, eps)
    np.testing.assert_allclose(u1, e1, rtol=1e-12)
    np.testing.assert_allclose(u2, e2, rtol=1e-12)
    # written out for the first component, default betas:
    if (b1, b2, eps) == (0.9, 0.999, 1e-8):
        m2 = 0.9 * 0.1 * 1.0 + 0.1 * 0.5
        v2 = 0.999 * 0.001 * 1.0 + 0.001 * 0.25
        expected = -lr * (m2 / (1 - 0.9**2)) / (math.sqrt(v2 / (1 - 0.999**2)) + 1e-8)
        assert u2[0] == pytest.approx(expected, rel=1e-12)


def test_adamw_adds_decoupled_weight_decay(x64):
    lr, wd = 0.01, 0.1
    cfg = AdamWConfig(name="adamw", lr=lr, weight_decay=wd)
    u1, u2 = run(make_optimizer(cfg, 10), [G1, G2], P0)
    a1, a2 = adam_by_hand([G1, G2], lr, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(u1, a1 - lr * wd * P0, rtol=1e-12)
    np.testing.assert_allclose(u2, a2 - lr * wd * P0, rtol=1e-12)
    # zero gradient: the update is the decay alone, -lr * wd * params
    # (an L2 penalty added to the gradient would instead give about -lr * sign(params))
    (u0,) = run(make_optimizer(cfg, 10), [np.zeros(3)], P0)
    np.testing.assert_allclose(u0, -lr * wd * P0, rtol=1e-12)
    # weight_decay=0 is Adam
    (plain,) = run(make_optimizer(AdamWConfig(name="adamw", lr=lr, weight_decay=0.0), 10), [G1])
    np.testing.assert_allclose(plain, a1, rtol=1e-12)


# --- schedules, seen in the size of SGD's update ----------------------------------------------


def sgd_with(schedule, lr=1.0):
    return SGDConfig(name="sgd", lr=lr, momentum=0.0, schedule=schedule)


def test_constant_schedule_with_linear_warmup(x64):
    opt = make_optimizer(sgd_with(ConstantSchedule(warmup_steps=4), lr=0.5), 100)
    np.testing.assert_allclose(lrs(opt, 7), [0.0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5], atol=1e-12)
    opt = make_optimizer(sgd_with(ConstantSchedule(), lr=0.5), 100)
    np.testing.assert_allclose(lrs(opt, 3), [0.5, 0.5, 0.5], atol=1e-12)


def test_cosine_schedule_half_way_and_floor(x64):
    cfg = CosineSchedule(name="cosine", decay_steps=10, final_lr_ratio=0.2)
    got = lrs(make_optimizer(sgd_with(cfg, lr=2.0), 100), 13)
    expected = [2.0 * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * k / 10))) for k in range(10)]
    np.testing.assert_allclose(got, expected + [0.4] * 3, atol=1e-12)
    assert got[0] == pytest.approx(2.0) and got[5] == pytest.approx(2.0 * 0.6)  # half way


def test_cosine_schedule_null_decay_spans_the_run_after_warmup(x64):
    # 20 steps, 4 of warmup: decays over 16, half way at step 4 + 8
    cfg = CosineSchedule(name="cosine", warmup_steps=4, final_lr_ratio=0.0)
    got = lrs(make_optimizer(sgd_with(cfg), 20), 21)
    np.testing.assert_allclose(got[:5], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-12)
    assert got[12] == pytest.approx(0.5, abs=1e-12)
    assert got[20] == pytest.approx(0.0, abs=1e-12)
    # make_schedule itself, with the same resolution
    sched = make_schedule(1.0, cfg, 20)
    assert float(sched(12)) == pytest.approx(0.5, abs=1e-12)


def test_exponential_schedule_staircase_and_floor(x64):
    cfg = ExponentialSchedule(
        name="exponential", decay_rate=0.5, transition_steps=4, staircase=True, final_lr_ratio=0.2
    )
    got = lrs(make_optimizer(sgd_with(cfg, lr=3.0), 100), 16)
    # 1 for steps 0-3, 0.5 for 4-7, 0.25 for 8-11, then 0.125 floored at 0.2
    expected = 3.0 * np.array([1.0] * 4 + [0.5] * 4 + [0.25] * 4 + [0.2] * 4)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    smooth = ExponentialSchedule(name="exponential", decay_rate=0.5, transition_steps=4)
    got = lrs(make_optimizer(sgd_with(smooth, lr=3.0), 100), 16)
    np.testing.assert_allclose(got, 3.0 * 0.5 ** (np.arange(16) / 4), atol=1e-12)


def test_exponential_schedule_with_warmup_starts_decaying_after_it(x64):
    cfg = ExponentialSchedule(
        name="exponential", warmup_steps=2, decay_rate=0.5, transition_steps=1
    )
    got = lrs(make_optimizer(sgd_with(cfg), 100), 5)
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.5, 0.25], atol=1e-12)


# --- sequences -------------------------------------------------------------------------------


def test_sequence_switches_phase_at_the_boundary_with_fresh_state(x64):
    cfg = SequenceConfig(
        name="sequence",
        phases=[
            SGDConfig(name="sgd", lr=0.1, momentum=0.0),
            SGDConfig(name="sgd", lr=1.0, momentum=0.5),
        ],
        boundaries=[3],
    )
    got = lrs(make_optimizer(cfg, 10), 6)
    # phase 0 for steps 0-2; phase 1 from step 3 with its own momentum, starting at 0:
    # velocity 1, then 0.5 * 1 + 1, then 0.5 * 1.5 + 1
    np.testing.assert_allclose(got, [0.1, 0.1, 0.1, 1.0, 1.5, 1.75], atol=1e-12)


def test_sequence_phase_schedules_span_their_own_steps(x64):
    cfg = SequenceConfig(
        name="sequence",
        phases=[
            {"name": "sgd", "lr": 1.0, "momentum": 0.0, "schedule": {"name": "cosine"}},
            {"name": "sgd", "lr": 2.0, "momentum": 0.0, "schedule": {"name": "cosine"}},
        ],
        boundaries=[4],
    )
    # 12 steps: phase 0 decays over steps 0-3, phase 1 over its 8 steps 4-11
    got = lrs(make_optimizer(cfg, 12), 12)
    np.testing.assert_allclose(got[:4], [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])
    np.testing.assert_allclose(
        got[4:], [2.0 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)], atol=1e-12
    )
    assert got[4] == pytest.approx(2.0) and got[8] == pytest.approx(1.0)  # restart, half way


def lbfgs_iterates(cfg, steps):
    """Errors to the minimiser of a 2-d quadratic after each L-BFGS step."""
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    b = jnp.array([1.0, -1.0])

    def f(x):
        return 0.5 * x @ a @ x - b @ x

    opt = make_optimizer(cfg, 20)

    @jax.jit  # one compiled step, as in the trainer (run eagerly, each step re-traces the line search)
    def step(x, state):
        value, grad = jax.value_and_grad(f)(x)
        u, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return x + u, state

    x = jnp.zeros(2)
    state = opt.init(x)
    errors = []
    for _ in range(steps):
        x, state = step(x, state)
        errors.append(float(np.max(np.abs(np.asarray(x) - np.array([0.6, -0.8])))))
    return errors


def test_lbfgs_reaches_the_minimiser_of_a_quadratic(x64):
    errors = lbfgs_iterates(LBFGSConfig(name="lbfgs"), 40)
    assert errors[0] > 1e-2 and errors[-1] < 1e-8, errors


def test_lbfgs_converges_superlinearly_on_a_quadratic(x64):
    # The zoom line search must try the unit quasi-Newton step first
    # (initial_guess_strategy="one", optax.lbfgs's own default); reusing the
    # last step length ("keep") halves the error per step instead.
    # optax.lbfgs() is exact to 1e-15 after 4 steps here.
    errors = lbfgs_iterates(LBFGSConfig(name="lbfgs"), 5)
    assert errors[-1] < 1e-10, errors


# --- raw mappings --------------------------------------------------------------------------


def test_make_optimizer_accepts_a_raw_mapping(x64):
    u1, u2 = run(make_optimizer({"name": "sgd", "lr": 0.1}, 10), [G1, G2])
    # unspecified settings take their defaults: momentum 0.9
    np.testing.assert_allclose(u1, -0.1 * G1, rtol=1e-12)
    np.testing.assert_allclose(u2, -0.1 * (0.9 * G1 + G2), rtol=1e-12)
    with pytest.raises(ConfigError, match="optimizer.lr"):
        make_optimizer({"name": "sgd", "lr": -1.0}, 10)
    with pytest.raises(ConfigError, match="unknown choice 'sdg'"):
        make_optimizer({"name": "sdg"}, 10)
