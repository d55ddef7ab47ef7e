"""The problem hooks and optimizer extras of the trainer, each against an exact answer.

- integer leaves stay static and survive checkpoints; complex leaves train;
- `advance` (state outside differentiation): variational Monte Carlo of the
  harmonic oscillator reaches the exact ground state (a = 1/2, E = 1/2,
  zero variance), its walkers resume bitwise, a line search never re-runs it;
- `per_sample` + `request_extra_args`: a Gauss-Newton step equals
  `numpy.linalg.lstsq`, a damped step equals a dense solve built with
  `jax.jacfwd`, and stochastic reconfiguration trains the VMC problem.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.checkpoint import latest_checkpoint, load_checkpoint
from sciml.optim import (
    GaussNewtonConfig,
    LBFGSConfig,
    gauss_newton,
    make_optimizer,
    request_extra_args,
)
from sciml.problems import AbstractProblem
from sciml.trainer import TrainConfig, TrainingDiverged, fit, init_train_state, split_model


def quiet(**kw):
    return TrainConfig(progress=False, compilation_cache=False, **{"checkpoint_every": None, **kw})


# --- leaves of every kind ------------------------------------------------------------


class Permuted(eqx.Module):
    w: jax.Array
    perm: jax.Array  # int32: must stay static for differentiation
    mask: jax.Array  # bool


class PermutedFit(AbstractProblem):
    """mean((w[perm] * mask - target[order])^2): w must learn target un-permuted.

    `order` is an integer array held by the problem (not the model): it goes
    into the compiled step as an argument and is never differentiated.
    """

    target: jax.Array
    order: jax.Array
    metric_names: ClassVar[tuple[str, ...]] = ("error",)

    def init(self, key):
        n = self.target.shape[0]
        perm = jax.random.permutation(key, n).astype(jnp.int32)
        return Permuted(jnp.zeros(n), perm, jnp.ones(n, bool)), None

    def loss(self, model, state, key):
        pred = jnp.where(model.mask, model.w[model.perm], 0.0)
        return jnp.mean((pred[self.order] - self.target[self.order]) ** 2), (state, {})

    def evaluate(self, model, state, key):
        return {"error": float(jnp.max(jnp.abs(model.w[model.perm] - self.target)))}


def test_integer_and_boolean_leaves_are_carried_not_trained(tmp_path):
    problem = PermutedFit(jnp.arange(1.0, 7.0), jnp.array([5, 0, 3, 1, 4, 2], jnp.int32))
    train = quiet(steps=400, log_every=200, checkpoint_every=200)
    result = fit(problem, optax.adam(0.05), train, run_dir=tmp_path)
    assert result.summary["error"] < 1e-3
    start, _ = problem.init(jax.random.split(jax.random.PRNGKey(0), 3)[0])
    np.testing.assert_array_equal(result.model.perm, start.perm)  # the init key's permutation
    assert result.model.perm.dtype == jnp.int32 and result.model.mask.dtype == jnp.bool_
    # the checkpoint holds the integer leaves, unchanged
    template, _ = init_train_state(problem, optax.adam(0.05), 0)
    saved = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints")[1], template)
    np.testing.assert_array_equal(saved.buffers.perm, start.perm)
    params, buffers, _ = split_model(result.model)
    assert params.perm is None and buffers.w is None and buffers.perm is not None


class ComplexTarget(AbstractProblem):
    """|z - c|^2 summed, for complex parameters z; minimiser z = c."""

    c: jax.Array
    metric_names: ClassVar[tuple[str, ...]] = ("distance",)

    def init(self, key):
        return {"z": jnp.zeros_like(self.c)}, None

    def loss(self, model, state, key):
        return jnp.sum(jnp.abs(model["z"] - self.c) ** 2), (state, {})

    def evaluate(self, model, state, key):
        return {"distance": float(jnp.max(jnp.abs(model["z"] - self.c)))}


@pytest.mark.parametrize(
    "optimizer, steps",
    [
        (optax.sgd(0.1), 200),
        (optax.adam(0.05), 600),
        (make_optimizer({"name": "adamw", "lr": 0.05, "weight_decay": 0.0}, 600), 600),
        (make_optimizer({"name": "lbfgs"}, 20), 20),
    ],
    ids=["sgd", "adam", "adamw", "lbfgs"],
)
def test_complex_parameters_descend(optimizer, steps, x64):
    problem = ComplexTarget(jnp.array([1 + 2j, -0.5 + 0.25j]))
    result = fit(problem, optimizer, quiet(steps=steps, log_every=steps))
    assert result.summary["distance"] < 1e-6
    # raw jax.grad is the conjugate of the descent direction: one SGD step by
    # hand with it moves away from c, the trainer's step moves towards it
    z0 = {"z": jnp.zeros(2, jnp.complex128)}
    g = jax.grad(lambda m: problem.loss(m, None, None)[0])(z0)
    wrong = jnp.abs(z0["z"] - 0.1 * g["z"] - problem.c)
    right = jnp.abs(fit(problem, optax.sgd(0.1), quiet(steps=1, log_every=1)).model["z"] - problem.c)
    assert jnp.all(right < jnp.abs(problem.c)) and not jnp.all(wrong < jnp.abs(problem.c))


# --- advance: variational Monte Carlo of the harmonic oscillator ---------------------


class HarmonicVMC(AbstractProblem):
    """H = -1/2 d^2/dx^2 + 1/2 x^2 with psi_a(x) = exp(-a x^2): E(a) = a/2 + 1/(8a), minimum 1/2 at a = 1/2.

    The walkers (the problem state) are moved by `advance` with Metropolis
    steps on |psi|^2; the loss's value is the mean local energy and its
    gradient the covariance estimator 2 <(E_L - E) d log psi / da>.
    """

    n_walkers: int = eqx.field(static=True, default=512)
    sweeps: int = eqx.field(static=True, default=5)
    step_size: float = eqx.field(static=True, default=1.0)
    a0: float = eqx.field(static=True, default=1.2)
    metric_names: ClassVar[tuple[str, ...]] = ("a", "energy", "energy_variance", "x_variance")

    def init(self, key):
        x = jax.random.normal(key, (self.n_walkers,)) / jnp.sqrt(4 * self.a0)
        return {"a": jnp.array(self.a0)}, {"x": x, "accepted": jnp.zeros((), x.dtype)}

    @staticmethod
    def log_psi(a, x):
        return -a * x**2

    def advance(self, model, state, key):
        a = model["a"]

        def sweep(carry, k):
            x, acc = carry
            k1, k2 = jax.random.split(k)
            y = x + self.step_size * jax.random.normal(k1, x.shape)
            log_ratio = 2 * (self.log_psi(a, y) - self.log_psi(a, x))
            accept = jnp.log(jax.random.uniform(k2, x.shape)) < log_ratio
            return (jnp.where(accept, y, x), acc + jnp.mean(accept, dtype=x.dtype)), None

        init = (state["x"], jnp.zeros((), state["x"].dtype))
        (x, acc), _ = jax.lax.scan(sweep, init, jax.random.split(key, self.sweeps))
        return {"x": x, "accepted": acc / self.sweeps}

    def local_energy(self, a, x):
        return a + x**2 * (0.5 - 2 * a**2)

    def loss(self, model, state, key):
        x = state["x"]
        e_loc = jax.lax.stop_gradient(self.local_energy(model["a"], x))
        energy = jnp.mean(e_loc)
        surrogate = 2 * jnp.mean((e_loc - energy) * self.log_psi(model["a"], x))
        loss = energy + surrogate - jax.lax.stop_gradient(surrogate)
        return loss, (state, {"acceptance": state["accepted"]})

    def per_sample(self, model, state, key):
        return {"log_amplitudes": self.log_psi(model["a"], state["x"])}

    def evaluate(self, model, state, key):
        e = self.local_energy(model["a"], state["x"])
        return {
            "a": float(model["a"]),
            "energy": float(jnp.mean(e)),
            "energy_variance": float(jnp.var(e)),
            "x_variance": float(jnp.var(state["x"])),  # 1 / (4a) under |psi_a|^2
        }


def check_ground_state(summary):
    assert abs(summary["a"] - 0.5) < 1e-4, summary
    assert abs(summary["energy"] - 0.5) < 1e-6, summary  # zero-variance principle
    assert summary["energy_variance"] < 1e-10, summary
    # the walkers sample |psi|^2 at a = 1/2 (variance 1/2; they started at 1/4.8):
    # 512 walkers give a standard error of about 0.03
    assert abs(summary["x_variance"] - 0.5) < 0.15, summary


@pytest.mark.parametrize("seed", [0, 1])
def test_vmc_harmonic_oscillator_reaches_the_exact_ground_state(seed, x64):
    result = fit(HarmonicVMC(), optax.sgd(0.05), quiet(steps=600, log_every=200, seed=seed))
    check_ground_state(result.summary)
    assert 0.3 < result.history[0]["acceptance"] < 0.9  # the walkers really moved


def stochastic_reconfiguration(lr: float, diag_shift: float = 1e-4):
    """(S + eps I)^-1 g with S the covariance of d log psi / d theta over the walkers.

    Written outside the core from the per-sample log-amplitudes, as a
    neural-quantum-state pillar would.
    """

    def init(params):
        return optax.EmptyState()

    def update(grads, state, params=None, *, per_sample_fn, **extra):
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        jac = jax.jacfwd(lambda v: per_sample_fn(unravel(v))["log_amplitudes"])(flat)
        centred = jac - jac.mean(axis=0)
        s = centred.T @ centred / jac.shape[0]
        g = jax.flatten_util.ravel_pytree(grads)[0]
        step = jnp.linalg.solve(s + diag_shift * jnp.eye(flat.size), g)
        return unravel(-lr * step), state

    return request_extra_args(optax.GradientTransformationExtraArgs(init, update), "per_sample_fn")


def test_vmc_with_stochastic_reconfiguration(x64):
    result = fit(HarmonicVMC(), stochastic_reconfiguration(0.1), quiet(steps=150, log_every=150))
    check_ground_state(result.summary)


def test_advance_state_resumes_bitwise_and_is_checkpointed(tmp_path, x64):
    problem = HarmonicVMC(n_walkers=64)
    full = fit(problem, optax.sgd(0.05), quiet(steps=40, log_every=10))
    fit(problem, optax.sgd(0.05), quiet(steps=20, log_every=10, checkpoint_every=20), run_dir=tmp_path)
    resumed = fit(problem, optax.sgd(0.05), quiet(steps=40, log_every=10), run_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(full.state["x"], resumed.state["x"])
    np.testing.assert_array_equal(full.model["a"], resumed.model["a"])
    template, _ = init_train_state(problem, optax.sgd(0.05), 0)
    at_20 = load_checkpoint(tmp_path / "checkpoints" / "step_000000020.eqx", template)
    assert not np.array_equal(at_20.problem_state["x"], template.problem_state["x"])


class CountingQuadratic(AbstractProblem):
    """A deterministic quadratic whose state counts the calls of `advance`."""

    metric_names: ClassVar[tuple[str, ...]] = ("advances",)

    def init(self, key):
        return jnp.array([3.0, -2.0]), {"advances": jnp.zeros((), jnp.int32)}

    def advance(self, model, state, key):
        return {"advances": state["advances"] + 1}

    def loss(self, w, state, key):
        return jnp.sum((w - 1.0) ** 4 + w**2), (state, {})

    def evaluate(self, w, state, key):
        return {"advances": int(state["advances"])}


def test_line_search_never_reruns_advance(x64):
    result = fit(CountingQuadratic(), make_optimizer(LBFGSConfig(name="lbfgs"), 15), quiet(steps=15, log_every=15))
    assert result.summary["advances"] == 15


class NaNWalkers(AbstractProblem):
    """`advance` produces NaN walkers from step 3 on; the loss stays finite (it ignores them)."""

    metric_names: ClassVar[tuple[str, ...]] = ()

    def init(self, key):
        return jnp.array(1.0), {"x": jnp.zeros(4), "n": jnp.zeros((), jnp.int32)}

    def advance(self, w, state, key):
        n = state["n"] + 1
        return {"x": jnp.where(n >= 3, jnp.nan, state["x"]), "n": n}

    def loss(self, w, state, key):
        return w**2, (state, {})

    def evaluate(self, w, state, key):
        return {}


def test_non_finite_advanced_state_stops_the_run():
    with pytest.raises(TrainingDiverged) as info:
        fit(NaNWalkers(), optax.sgd(0.1), quiet(steps=10, log_every=10))
    assert info.value.step == 2  # the third advance (step index 2) made the NaN
    assert "state after advance is not finite, in ['x']" in info.value.reason


# --- per-sample information: Gauss-Newton and damped natural gradient ---------------


class LinearLeastSquares(AbstractProblem):
    """0.5 * mean((A w - b)^2), with residuals (A w - b) / sqrt(N) so that loss = 0.5 * sum(r^2)."""

    a: jax.Array
    b: jax.Array
    metric_names: ClassVar[tuple[str, ...]] = ()

    def init(self, key):
        return {"w": jnp.zeros(self.a.shape[1])}, None

    def per_sample(self, model, state, key):
        return {"residuals": (self.a @ model["w"] - self.b) / jnp.sqrt(self.b.shape[0])}

    def loss(self, model, state, key):
        r = self.per_sample(model, state, key)["residuals"]
        return 0.5 * jnp.sum(r**2), (state, {})

    def evaluate(self, model, state, key):
        return {}


def test_gauss_newton_step_lands_on_lstsq(x64):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=40)
    cfg = GaussNewtonConfig(name="gauss_newton")
    result = fit(LinearLeastSquares(jnp.asarray(a), jnp.asarray(b)), make_optimizer(cfg, 1), quiet(steps=1, log_every=1))
    np.testing.assert_allclose(result.model["w"], np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-10, atol=1e-12)


class ExpDecay(AbstractProblem):
    """Residuals theta0 * exp(theta1 * t) + theta2 - y (nonlinear least squares)."""

    t: jax.Array
    y: jax.Array
    metric_names: ClassVar[tuple[str, ...]] = ()

    def init(self, key):
        return jnp.array([1.0, -0.5, 0.1]), None

    def per_sample(self, theta, state, key):
        return {"residuals": theta[0] * jnp.exp(theta[1] * self.t) + theta[2] - self.y}

    def loss(self, theta, state, key):
        return 0.5 * jnp.sum(self.per_sample(theta, state, key)["residuals"] ** 2), (state, {})

    def evaluate(self, theta, state, key):
        return {}


def test_damped_natural_gradient_step_equals_dense_solve(x64):
    t = jnp.linspace(0.0, 3.0, 25)
    y = 2.0 * jnp.exp(-1.3 * t) + 0.4 + 0.01 * jnp.sin(7 * t)
    problem, lam = ExpDecay(t, y), 0.3
    result = fit(problem, gauss_newton(1.0, damping=lam), quiet(steps=1, log_every=1))

    def residuals(theta):  # written independently of the problem
        return theta[0] * jnp.exp(theta[1] * t) + theta[2] - y

    theta0 = jnp.array([1.0, -0.5, 0.1])
    j = jax.jacfwd(residuals)(theta0)
    expected = theta0 - jnp.linalg.solve(j.T @ j + lam * jnp.eye(3), j.T @ residuals(theta0))
    np.testing.assert_allclose(result.model, expected, rtol=1e-10, atol=1e-12)


class ComplexResiduals(ComplexTarget):
    def per_sample(self, model, state, key):
        return {"residuals": model["z"] - self.c}


def test_gauss_newton_refuses_complex_parameters():
    with pytest.raises(ValueError, match="gauss_newton supports real parameters only"):
        fit(ComplexResiduals(jnp.array([1 + 2j])), gauss_newton(), quiet(steps=1, log_every=1))


def test_optimizer_needing_per_sample_on_a_problem_without_it():
    with pytest.raises(ValueError, match="defines no `per_sample"):
        fit(CountingQuadratic(), gauss_newton(), quiet(steps=1, log_every=1))
