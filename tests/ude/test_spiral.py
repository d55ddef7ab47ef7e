"""The neural_ode_spiral problem: data, loss, and the accuracy target of the default config."""

import json
import re
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import PYTHON, REPO, rk4
from sciml.config import TrainConfig
from sciml.problems import build_problem
from sciml.schema import ConfigError
from sciml.trainer import TrainingDiverged, fit
from sciml.ude import CubicMLPField, spiral_dynamics


def test_reference_trajectory_matches_rk4(x64):
    problem = build_problem("neural_ode_spiral", {"n_points": 200, "t_end": 10.0}, {})
    a = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    expected = rk4(lambda y: (y**3) @ a, [2.0, 0.0], np.asarray(problem.ts))
    np.testing.assert_allclose(problem.ys, expected, atol=1e-6)
    np.testing.assert_allclose(spiral_dynamics(0.0, jnp.array([1.0, 2.0])), np.array([1.0, 8.0]) @ a)


def test_loss_is_zero_for_the_true_field_and_trajectory_is_tracked(x64):
    problem = build_problem("neural_ode_spiral", {"n_points": 300, "t_end": 5.0, "rtol": 1e-8, "atol": 1e-10}, {})
    truth = spiral_dynamics  # any callable (t, y, args) -> dy/dt is a valid model
    loss, (_, metrics) = problem.loss(truth, None, jax.random.PRNGKey(0))
    assert float(loss) < 1e-7 and float(metrics["mse"]) < 1e-13
    assert problem.evaluate(truth, None, None)["mse"] < 1e-12


def test_untrained_model_is_far_from_the_truth():
    problem = build_problem("neural_ode_spiral", {}, {})
    model, _ = problem.init(jax.random.PRNGKey(0))
    assert isinstance(model, CubicMLPField)
    assert problem.evaluate(model, None, None)["mse"] > 0.1


def test_invalid_settings():
    from sciml.ude import NeuralODESpiral

    with pytest.raises(ConfigError, match="batch_time"):
        NeuralODESpiral(n_points=10, batch_time=10)
    with pytest.raises(ConfigError, match="problem.loss: must be 'l1' or 'mse', got 'huber'"):
        NeuralODESpiral(loss_kind="huber")
    with pytest.raises(ConfigError, match="model.activation"):
        NeuralODESpiral(activation="tan")
    with pytest.raises(ConfigError, match="unknown setting 'n_point'; allowed: activation, adjoint"):
        NeuralODESpiral(n_point=10)
    with pytest.raises(TypeError, match="not both"):
        NeuralODESpiral(loss="mse", loss_kind="l1")


def test_settings_are_the_config_sections():
    import diffrax as dfx

    from sciml.problems import get_problem_spec
    from sciml.ude import NeuralODESpiral
    from sciml.ude.problems import MLPModel, SpiralParams

    spec = get_problem_spec("neural_ode_spiral")
    assert (spec.params, spec.model) == (SpiralParams, MLPModel) == (
        NeuralODESpiral.Settings, NeuralODESpiral.ModelSettings)
    # keywords go to whichever section declares them; `loss_kind` is the older name of `loss`
    p = NeuralODESpiral(n_points=50, width=4, loss_kind="mse", adjoint="backsolve", rtol=1e-5)
    assert p.settings == SpiralParams(n_points=50, loss="mse", adjoint="backsolve", rtol=1e-5)
    assert p.model_settings == MLPModel(width=4)
    assert p.adjoint_override is None
    assert isinstance(p.adjoint, dfx.BacksolveAdjoint)
    assert p.adjoint.kwargs["stepsize_controller"].rtol == 1e-5  # the backward solve's tolerance
    built = build_problem("neural_ode_spiral", {"n_points": 50, "loss": "mse", "adjoint": "backsolve",
                                                "rtol": 1e-5}, {"width": 4})
    assert (built.settings, built.model_settings) == (p.settings, p.model_settings)
    np.testing.assert_array_equal(built.ys, p.ys)
    assert isinstance(NeuralODESpiral(n_points=50).adjoint, dfx.RecursiveCheckpointAdjoint)
    # an adjoint object no name covers is kept as an override
    custom = dfx.BacksolveAdjoint(solver=dfx.Dopri5())
    q = NeuralODESpiral(n_points=50, adjoint=custom)
    assert q.adjoint is custom and q.adjoint_override is custom
    assert q.settings.adjoint == "recursive_checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_config_reaches_target_mse(tmp_path, seed):
    """The README's first command: the default config must reach mse < 1e-2 (target: < 3 min)."""
    r = subprocess.run(
        [PYTHON, "-m", "sciml.train", str(REPO / "configs/neural_ode_spiral.yaml"),
         f"output.dir={tmp_path}/run", "train.progress=false", f"train.seed={seed}"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["mse"] < 1e-2
    assert summary["wall_time_s"] < 180


def test_failed_solve_in_training_names_the_window_and_time(tmp_path):
    # A step budget too small for some windows: the trainer stops at step 0
    # and the problem's diagnosis says which window failed, where, and why.
    problem = build_problem(
        "neural_ode_spiral", {"n_points": 200, "batch_size": 8, "max_steps": 3}, {"width": 8}
    )
    train = TrainConfig(steps=5, log_every=5, progress=False)
    with pytest.raises(TrainingDiverged) as info:
        fit(problem, optax.adam(1e-3), train, run_dir=tmp_path)
    reason = info.value.reason
    assert info.value.step == 0
    assert "the loss is" in reason
    assert re.search(r"the solve \(max_steps=3\) failed for training window \d+ \(samples \d+\.\.\d+, "
                     r"starting at t = [\d.]+", reason), reason
    assert "maximum number of solver steps" in reason and "larger max_steps" in reason
    assert "last saved time reached" in reason
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == reason


def test_joint_batch_solve_gives_the_same_loss_and_gradient_as_vmap(x64):
    # Joint (shared steps) and vmapped (own steps) solves agree to the solver tolerance.
    import equinox as eqx

    grads = {}
    for mode, adjoint in (("vmap", "recursive_checkpoint"), ("joint", "backsolve")):
        problem = build_problem(
            "neural_ode_spiral",
            {"n_points": 200, "rtol": 1e-8, "atol": 1e-8, "batch_solve": mode, "adjoint": adjoint},
            {"width": 8},
        )
        model, state = problem.init(jax.random.PRNGKey(0))
        def loss(m, problem=problem, state=state):
            return problem.loss(m, state, jax.random.PRNGKey(1))[0]

        grads[mode] = eqx.filter_jit(eqx.filter_value_and_grad(loss))(model)
    (l_v, g_v), (l_j, g_j) = grads["vmap"], grads["joint"]
    np.testing.assert_allclose(l_j, l_v, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_j), jax.tree.leaves(g_v), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("adjoint, batch_solve, expected", [
    ("backsolve", "auto", "joint"),
    ("recursive_checkpoint", "auto", "vmap"),
    ("direct", "auto", "vmap"),
    ("backsolve", "vmap", "vmap"),  # an explicit choice is kept
    ("recursive_checkpoint", "joint", "joint"),
])
def test_batch_solve_auto_picks_joint_for_backsolve_only(adjoint, batch_solve, expected, monkeypatch):
    import equinox as eqx

    import sciml.ude._spiral as spiral

    problem = build_problem("neural_ode_spiral", {"n_points": 50, "adjoint": adjoint,
                                                  "batch_solve": batch_solve}, {"width": 4})
    assert problem.batch_mode == expected
    # the loss solves the batch in that mode (traced only, nothing compiled)
    modes, real = [], spiral._solve
    monkeypatch.setattr(spiral, "_solve", lambda *a: modes.append(a[7]) or real(*a))
    model, _ = problem.init(jax.random.PRNGKey(0))
    eqx.filter_eval_shape(lambda m: problem.loss(m, None, jax.random.PRNGKey(1))[0], model)
    assert modes == [expected]


def test_batch_solve_auto_is_the_default_and_follows_an_adjoint_object():
    import diffrax as dfx

    from sciml.ude import NeuralODESpiral
    from sciml.ude._spiral import batch_mode_for

    default = NeuralODESpiral(n_points=50)
    assert default.settings.batch_solve == "auto" and default.batch_mode == "vmap"  # as before auto
    custom = NeuralODESpiral(n_points=50, adjoint=dfx.BacksolveAdjoint(solver=dfx.Dopri5()))
    assert custom.batch_mode == "joint"
    assert batch_mode_for(dfx.RecursiveCheckpointAdjoint(checkpoints=8)) == "vmap"


def test_diagnose_follows_the_automatic_batch_mode():
    problem = build_problem("neural_ode_spiral", {"n_points": 200, "batch_size": 8, "max_steps": 3,
                                                  "adjoint": "backsolve"}, {"width": 8})
    model, _ = problem.init(jax.random.PRNGKey(0))
    reason = problem.diagnose(model, None, jax.random.PRNGKey(1))
    assert "the joint solve of all 8 windows (max_steps=3), windows starting at t = " in reason, reason
