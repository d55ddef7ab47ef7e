"""The contract every registered problem must meet (see tests/helpers.py).

This file holds the battery and runs it over the core and UDE problems;
`test_contract_pinn.py` and `test_contract_flows.py` run the same tests over
the PINN and flow problems, so that the parts can go to different
pytest-xdist workers (files are kept whole). Each problem is built once per file (`case`, module-scoped) and its
loss is compiled once and shared by the tests that evaluate it.
"""

import json
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import PROBLEMS
from sciml.checkpoint import load_checkpoint, save_checkpoint
from sciml.problems import AbstractProblem, build_problem, has_hook, list_problems
from sciml.trainer import TrainConfig, fit, split_model

PINN = sorted(name for name in PROBLEMS if name.startswith("pinn_"))
FLOWS = sorted(name for name in PROBLEMS if name.startswith(("flow_", "cnf_")))
NQS = sorted(name for name in PROBLEMS if name.startswith("nqs_"))
KFAC = sorted(name for name in PROBLEMS if name.startswith("kfac_"))
CORE = sorted(name for name in PROBLEMS if name not in PINN + FLOWS + NQS + KFAC)


class Case(NamedTuple):
    """A problem of the catalogue, built once, and its loss under one `eqx.filter_jit`."""

    problem: AbstractProblem
    loss: object


def make_case(name: str) -> Case:
    params, model = PROBLEMS[name]
    problem = build_problem(name, params, model)
    return Case(problem, eqx.filter_jit(problem.loss))


@pytest.fixture(scope="module", autouse=True)
def _float64():
    """The battery runs in float64 (the gradient check needs it), restored after the module."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module", params=CORE)
def case(request):
    return make_case(request.param)


def test_catalogue_lists_every_registered_problem():
    assert set(PROBLEMS) == set(list_problems())
    assert sorted(CORE + PINN + FLOWS + NQS + KFAC) == sorted(PROBLEMS)  # each runs in one battery file


def test_init_and_jitted_loss_is_finite(case, getkey):
    problem = case.problem
    model, state = problem.init(getkey())
    loss, (new_state, metrics) = case.loss(model, state, getkey())
    assert loss.shape == () and jnp.isfinite(loss)
    assert isinstance(metrics, dict)
    for name, value in metrics.items():
        assert jnp.shape(value) == (), name
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_gradient_matches_central_differences(case, getkey):
    if case.problem.surrogate_gradient:
        pytest.skip("the loss's gradient is an estimator (checked by the problem's own tests)")
    model, state = case.problem.init(getkey())
    key = getkey()
    params, buffers, static = split_model(model)  # exactly what the trainer differentiates
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    assert flat.dtype == jnp.float64

    def f(vec):
        return case.loss(eqx.combine(unravel(vec), buffers, static), state, key)[0]

    grad = jax.grad(f)(flat)
    eps = 1e-6
    for _ in range(3):
        v = jax.random.normal(getkey(), flat.shape, flat.dtype)
        v = v / jnp.linalg.norm(v)
        fd = (f(flat + eps * v) - f(flat - eps * v)) / (2 * eps)
        ad = grad @ v
        np.testing.assert_allclose(ad, fd, rtol=1e-5, atol=1e-8)


def test_evaluate_returns_documented_keys(case, getkey):
    problem = case.problem
    model, state = problem.init(getkey())
    out = problem.evaluate(model, state, getkey())
    assert problem.metric_names, "metric_names must document evaluate's keys"
    assert set(problem.metric_names) <= set(out)
    for name in problem.metric_names:
        value = out[name]
        assert isinstance(value, (float, int, str)), (name, type(value))


def test_checkpoint_round_trip(case, getkey, tmp_path):
    problem = case.problem
    model, state = problem.init(getkey())
    tree = (model, state)
    path = save_checkpoint(tmp_path, 7, tree)
    template = problem.init(getkey())  # different values, same structure
    restored = load_checkpoint(path, template)
    leaves_a, tree_a = jax.tree.flatten(eqx.filter(tree, eqx.is_array))
    leaves_b, tree_b = jax.tree.flatten(eqx.filter(restored, eqx.is_array))
    assert tree_a == tree_b
    for a, b in zip(leaves_a, leaves_b):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_short_fit_writes_a_complete_run_directory(case, tmp_path):
    problem = case.problem
    train = TrainConfig(steps=4, log_every=2, checkpoint_every=2, progress=False, compilation_cache=False)
    result = fit(problem, optax.adam(1e-3), train, run_dir=tmp_path)
    assert result.step == 4 and result.traces == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and np.isfinite(summary["final_loss"])
    assert set(problem.metric_names) <= set(summary)
    for path in problem.figures(result.model, result.state, tmp_path / "figures"):
        assert (tmp_path / "figures").samefile(Path(path).parent) and Path(path).stat().st_size > 1000
    assert (tmp_path / "figures" / "loss.png").stat().st_size > 1000


def test_diagnose_runs_on_a_healthy_step(case, getkey):
    problem = case.problem
    model, state = problem.init(getkey())
    out = problem.diagnose(model, state, getkey())
    assert out is None or isinstance(out, str)


def test_optional_hooks_keep_their_contract(case, getkey):
    problem = case.problem
    model, state = problem.init(getkey())
    key = getkey()
    if has_hook(problem, "advance"):
        advanced = eqx.filter_jit(problem.advance)(model, state, key)
        assert jax.tree.structure(advanced) == jax.tree.structure(state)
        state = advanced
    if has_hook(problem, "per_sample"):
        out = problem.per_sample(model, state, key)
        loss = case.loss(model, state, key)[0]
        if "residuals" in out:
            np.testing.assert_allclose(0.5 * jnp.sum(out["residuals"] ** 2), loss, rtol=1e-10)
