"""Energy natural gradient descent: least-squares oracles, the two solve forms, errors, a Poisson run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import sciml.pinn as pinn
import sciml.pinn.problems  # noqa: F401  (registers `engd` and the PINN problems)
from sciml.config import validate_config
from sciml.optim import make_optimizer
from sciml.pinn._engd import scale_by_engd
from sciml.schema import ConfigError
from sciml.trainer import TrainConfig, fit


def _params(theta):
    # a two-leaf pytree, so that the flattening order matters
    return {"a": theta[:2], "b": theta[2:]}


def _residual_fns(kind, A, b):
    """`per_sample_fn` and `value_fn` (loss ½|r|²) of a residual family.

    `linear`: r(θ) = Aθ − b. `curved`: r_n(θ) = tanh(a_n·θ) + 0.3 (a_n·θ)² − b_n, where the
    full Gauss-Newton step can fail, so damped and accelerated trials matter.
    """

    def per_sample_fn(p):
        z = A @ ravel_pytree(p)[0]
        r = z - b if kind == "linear" else jnp.tanh(z) + 0.3 * z**2 - b
        return {"residuals": r}

    def value_fn(p):
        return 0.5 * jnp.sum(per_sample_fn(p)["residuals"] ** 2)

    return per_sample_fn, value_fn


@functools.cache
def _runner(kind, **options):
    """A jitted ENGD update for residual family `kind` (compiled once per shape and options)."""
    transform = scale_by_engd(**options)

    @jax.jit
    def run(theta, A, b, state):
        per_sample_fn, value_fn = _residual_fns(kind, A, b)
        params = _params(theta)
        step, state = transform.update(
            None, state, params, per_sample_fn=per_sample_fn, value_fn=value_fn
        )
        return theta - ravel_pytree(step)[0], state

    return transform, run


def _step(theta, A, b, state=None, kind="linear", **options):
    """One ENGD update from θ on r = Aθ − b (or the curved family); returns θ − s and the state."""
    transform, run = _runner(kind, **options)
    theta = jnp.asarray(theta, jnp.float64)
    if state is None:
        state = transform.init(_params(theta))
    theta1, state = run(theta, jnp.asarray(A), jnp.asarray(b), state)
    return np.asarray(theta1), state


def test_one_step_solves_a_full_rank_linear_least_squares_problem():
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(30, 7)), rng.normal(size=30)
    theta0 = rng.normal(size=7)
    expected = np.linalg.lstsq(A, b, rcond=None)[0]
    for form in ("parameters", "samples"):
        theta1, state = _step(theta0, A, b, form=form)
        np.testing.assert_allclose(theta1, expected, rtol=1e-9, atol=1e-11)
        assert int(state.rank) == 7
        assert float(state.step_size) == 1.0 and float(state.damping) == 0.0
        residual = A @ expected - b
        assert float(state.loss_after) == pytest.approx(0.5 * residual @ residual, rel=1e-10)
        assert float(state.loss_before) == pytest.approx(
            0.5 * np.sum((A @ theta0 - b) ** 2), rel=1e-12
        )


def test_a_rank_deficient_problem_gives_the_pseudo_inverse_step():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 5))
    # columns 5 and 6 repeat combinations of the others: rank 5, a 2-dimensional null space
    A = np.column_stack([base, base[:, 0] + base[:, 1], 2.0 * base[:, 2]])
    b = rng.normal(size=30)
    pinv = np.linalg.pinv(A)
    # from zero: the minimum-norm least-squares solution
    theta1, state = _step(np.zeros(7), A, b, form="parameters")
    np.testing.assert_allclose(theta1, pinv @ b, rtol=1e-9, atol=1e-11)
    assert int(state.rank) == 5
    # from θ0: θ0 − A⁺(Aθ0 − b), the solution closest to θ0 (θ0's null-space part is kept)
    theta0 = rng.normal(size=7)
    theta1, _ = _step(theta0, A, b, form="parameters")
    expected = pinv @ b + (np.eye(7) - pinv @ A) @ theta0
    np.testing.assert_allclose(theta1, expected, rtol=1e-9, atol=1e-11)
    assert np.linalg.norm(A @ theta1 - b) == pytest.approx(np.linalg.norm(A @ pinv @ b - b))


def test_samples_and_parameters_forms_take_the_same_steps():
    # fewer residuals than parameters (the N x N kernel is the cheap form), curved
    # residuals, three steps from a point where the full Gauss-Newton step fails:
    # damped, momentum-carrying and accelerated trials, the same in both forms
    rng = np.random.default_rng(2)
    A, b = rng.normal(size=(5, 12)), rng.normal(size=5)
    theta0 = 2.0 * rng.normal(size=12) / np.sqrt(12)
    runs = {}
    for form in ("parameters", "samples"):
        current, state, trace = theta0, None, []
        for _ in range(3):
            current, state = _step(current, A, 0.5 * b, state, kind="curved", form=form)
            trace.append((current, state))
        runs[form] = trace
    for (tp, sp), (ts, ss) in zip(runs["parameters"], runs["samples"], strict=True):
        np.testing.assert_allclose(tp, ts, rtol=1e-7, atol=1e-9)
        assert float(sp.damping) == pytest.approx(float(ss.damping), rel=1e-6)
        assert bool(sp.accelerated) == bool(ss.accelerated)
        np.testing.assert_allclose(sp.momentum, ss.momentum, rtol=1e-7, atol=1e-9)
        assert float(sp.loss_after) < float(sp.loss_before)
    # the problem is curved enough that at least one step was a damped one
    assert any(float(s.damping) > 0 for _, s in runs["parameters"])


def test_no_step_when_nothing_decreases_the_loss_and_the_damping_window_moves_up():
    # at the exact solution (r = 0): every trial is the zero step
    A = np.random.default_rng(3).normal(size=(30, 7))
    theta1, state = _step(np.zeros(7), A, np.zeros(30), form="parameters")
    np.testing.assert_array_equal(theta1, np.zeros(7))
    assert float(state.step_size) == 0.0
    # default window: 2 decades around 1e-3; after a failed step it jumps past its top
    assert float(state.log_damping) == pytest.approx(-3.0 + 2 + 1)
    np.testing.assert_array_equal(state.momentum, np.zeros(7))


def test_engd_errors_name_what_is_missing_or_wrong():
    per_sample_fn, value_fn = _residual_fns("linear", jnp.eye(3), jnp.ones(3))
    transform = scale_by_engd()
    params = _params(jnp.zeros(3))
    state = transform.init(params)
    with pytest.raises(ValueError, match="per_sample_fn"):
        transform.update(None, state, params, value_fn=value_fn)
    with pytest.raises(ValueError, match="value_fn"):
        transform.update(None, state, params, per_sample_fn=per_sample_fn)
    with pytest.raises(ValueError, match="residuals"):
        transform.update(
            None, state, params, per_sample_fn=lambda p: {"r": p["a"]}, value_fn=value_fn
        )
    with pytest.raises(ValueError, match="real parameters"):
        transform.init({"a": jnp.zeros(2, jnp.complex128)})


@pytest.mark.parametrize(
    "option, value",
    [
        ("rcond", 1.5),
        ("damping", -1.0),
        ("line_search_steps", 0),
        ("form", "cholesky"),
        ("momentum", 1.0),
        ("damping_window", -1),
        ("damping_per_decade", 0),
        ("initial_damping", 0.0),
    ],
)
def test_bad_options_are_rejected(option, value):
    with pytest.raises(ValueError, match=option):
        pinn.engd(**{option: value})
    section = {"problem": {"name": "pinn_poisson2d"}, "optimizer": {"name": "engd", option: value}}
    with pytest.raises(ConfigError, match=option):
        validate_config(section)


def test_config_section_builds_the_optimizer():
    opt = make_optimizer({"name": "engd", "momentum": 0.5, "geodesic": False}, 10)
    assert "per_sample_fn" in opt.extra_args


# -- a quick Poisson run: the "reach 1e-4 quickly" check -------------------


def _small_poisson():
    return pinn.Poisson2D(
        n_interior=144, n_boundary=48, eval_grid=31, width=16, depth=1, init="uniform"
    )


def _train(optimizer, steps):
    train = TrainConfig(
        steps=steps, seed=0, log_every=steps, checkpoint_every=None, progress=False,
        dtype="float64",
    )
    return fit(_small_poisson(), optimizer, train).final_eval["rel_l2"]


@pytest.mark.slow  # accuracy run (benchmarks/pinn_engd.py measures ENGD at full size)
def test_engd_solves_a_small_poisson_problem_to_1e_4_where_adam_does_not():
    steps = 80
    assert _train(pinn.engd(), steps) <= 1e-4
    # the same budget of Adam steps stays far away: the check can fail
    assert _train(optax.adam(1e-3), steps) > 1e-2
