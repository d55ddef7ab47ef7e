"""The NQS problems: Markov chains split over several devices (`train.devices`), and the full-sum control."""

import equinox as eqx
import jax
import numpy as np
import pytest

from sciml.config import TrainConfig
from sciml.nqs import stochastic_reconfiguration
from sciml.problems import build_problem
from sciml.trainer import fit

SMALL = {
    "n_sites": 6,
    "n_chains": 8,
    "n_samples": 64,
    "n_discard": 1,
    "n_thermalise": 5,
    "eval_samples": 256,
}


def _fit(problem, devices, steps=4):
    cfg = TrainConfig(
        steps=steps,
        log_every=steps,
        eval_every=None,
        checkpoint_every=None,
        progress=False,
        devices=devices,
        seed=3,
    )
    return fit(problem, stochastic_reconfiguration(0.05, 0.01), cfg)


@pytest.mark.filterwarnings("ignore::sciml.nqs.ConvergenceWarning")
def test_chains_on_four_devices_match_one_device(x64):
    """Each device moves its own chains; the samples, and so SR's steps, are those of one device."""
    assert len(jax.devices()) >= 4, "tests/conftest.py provides 4 CPU devices"
    problem = build_problem("nqs_tfim_chain", SMALL, {"kind": "rbm", "alpha": 1})
    one, four = _fit(problem, 1), _fit(problem, 4)
    assert four.summary["devices"] == 4
    for a, b in zip(
        jax.tree.leaves(eqx.filter(one.model, eqx.is_array)),
        jax.tree.leaves(eqx.filter(four.model, eqx.is_array)),
    ):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    assert four.summary["energy"] == pytest.approx(one.summary["energy"], rel=1e-9)


def test_chains_that_do_not_divide_over_the_devices_are_refused(x64):
    problem = build_problem(
        "nqs_tfim_chain", {**SMALL, "n_chains": 6, "n_samples": 60}, {"kind": "rbm"}
    )
    with pytest.raises(ValueError, match=r"n_chains = 6 does not divide over train.devices = 4"):
        _fit(problem, 4, steps=1)


def test_full_sum_control_is_the_exact_expectation_and_gradient(x64):
    """`full_sum`: the loss is <psi|H|psi>/<psi|psi> from the dense matrix, its gradient the exact
    one (central differences), and SR with the exact weights trains without noise."""
    from sciml.problems import build_problem

    problem = build_problem("nqs_tfim_chain", {"n_sites": 6, "h": 0.7, "full_sum": True}, {})
    model, state = problem.init(jax.random.key(0))
    assert state is None
    psi = np.exp(np.asarray(jax.vmap(model)(problem.states)))
    h = np.asarray(problem.operator.to_dense())
    expected = psi @ h @ psi / (psi @ psi)
    loss, _ = problem.loss(model, state, None)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    grad = jax.grad(lambda p: problem.loss(eqx.combine(p, static), None, None)[0])(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grad)[0]
    for k in (0, 7, flat.size - 1):
        e = np.zeros(flat.size)
        e[k] = 1e-6
        f = lambda v: problem.loss(eqx.combine(unravel(v), static), None, None)[0]  # noqa: E731
        np.testing.assert_allclose(g[k], (f(flat + e) - f(flat - e)) / 2e-6, rtol=1e-6, atol=1e-9)
    out = problem.evaluate(model, state, None)
    assert out["energy"] == pytest.approx(float(expected), rel=1e-12) and out["energy_error"] == 0
    cfg = TrainConfig(
        steps=60, log_every=60, eval_every=None, checkpoint_every=None, progress=False
    )
    trained = fit(problem, stochastic_reconfiguration(0.05, 1e-3), cfg)
    assert trained.summary["rel_error"] < 1e-4, trained.summary["rel_error"]
