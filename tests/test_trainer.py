"""The generic trainer: compile-once chunks, logging, checkpoints, resume, divergence, devices."""

import json
import os
import signal
import subprocess
import time
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import PROBLEMS, PYTHON, REPO
from sciml.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from sciml.config import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LBFGSConfig,
    SGDConfig,
    TrainConfig,
)
from sciml.optim import make_optimizer, make_schedule
from sciml.problems import AbstractProblem, build_problem
from sciml.trainer import TrainingDiverged, fit, init_train_state, make_loss_and_grad

SPIRAL = REPO / "configs" / "neural_ode_spiral.yaml"


def small_spiral():
    params, model = PROBLEMS["neural_ode_spiral"]
    return build_problem("neural_ode_spiral", params, model)


class LeastSquares(AbstractProblem):
    """0.5 * mean((A w - b)^2): a convex toy with a closed-form minimiser."""

    a: jax.Array
    b: jax.Array
    metric_names: ClassVar[tuple[str, ...]] = ("distance_to_lstsq",)

    def init(self, key):
        return jnp.zeros(self.a.shape[1]), None

    def loss(self, w, state, key):
        r = self.a @ w - self.b
        return 0.5 * jnp.mean(r**2), (state, {"max_residual": jnp.max(jnp.abs(r))})

    def evaluate(self, w, state, key):
        w_star = jnp.linalg.lstsq(self.a, self.b)[0]
        return {"distance_to_lstsq": float(jnp.linalg.norm(w - w_star))}


def least_squares(key):
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (40, 5)) + 2.0 * jnp.eye(40, 5)
    return LeastSquares(a, jax.random.normal(kb, (40,)))


def quiet(**kw):
    return TrainConfig(progress=False, **{"checkpoint_every": None, **kw})


def array_leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


# --- compile once, logging, run directory -----------------------------------------


def test_one_trace_for_a_whole_run_with_uneven_chunks(tmp_path):
    # eval/checkpoint intervals that are not multiples of log_every, and a
    # short final chunk: every chunk still reuses the one compiled program.
    train = quiet(steps=250, log_every=100, eval_every=60, checkpoint_every=70, keep_checkpoints=None)
    result = fit(small_spiral(), optax.adam(1e-3), train, run_dir=tmp_path)
    assert result.traces == 1
    assert result.step == 250
    logged = [r["step"] for r in result.history if "loss" in r]
    assert logged == [60, 70, 100, 120, 140, 180, 200, 210, 240, 250]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [0, 70, 140, 210, 250]
    evals = [r["step"] for r in result.history if "eval/mse" in r]
    assert evals == [60, 120, 180, 240, 250]  # the last one is the final evaluation


def test_run_directory_contents(tmp_path):
    # adam(1e-2) in 30-step chunks: the program of the chunk and resume tests below
    result = fit(small_spiral(), optax.adam(1e-2), quiet(steps=120, log_every=30), run_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("final_loss", "mse", "wall_time_s", "compile_time_s", "steps_per_s", "peak_host_memory_mb"):
        assert key in summary, key
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["compile_time_s"] > 0 and summary["steps_per_s"] > 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [30, 60, 90, 120]
    assert all(np.isfinite(r["loss"]) and "mse" in r for r in records if "loss" in r)
    assert (tmp_path / "figures" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "trajectory.png").stat().st_size > 1000


def test_chunk_length_does_not_change_the_result():
    problem = small_spiral()
    a = fit(problem, optax.adam(1e-2), quiet(steps=60, log_every=30))  # 2 chunks of 30
    b = fit(problem, optax.adam(1e-2), quiet(steps=60, log_every=7))  # 8 of 7 and one of 4
    for x, y in zip(array_leaves(a.model), array_leaves(b.model)):
        np.testing.assert_array_equal(x, y)


def test_in_process_resume_matches_uninterrupted(tmp_path):
    problem = small_spiral()
    full = fit(problem, optax.adam(1e-2), quiet(steps=90, log_every=30))
    fit(problem, optax.adam(1e-2), quiet(steps=60, log_every=30, checkpoint_every=30), run_dir=tmp_path)
    resumed = fit(
        problem, optax.adam(1e-2), quiet(steps=90, log_every=30), run_dir=tmp_path, resume=True
    )
    assert resumed.step == 90
    for x, y in zip(array_leaves(full.model), array_leaves(resumed.model)):
        np.testing.assert_array_equal(x, y)
    # a run killed before its first checkpoint resumes from step 0
    fresh = fit(problem, optax.adam(1e-2), quiet(steps=30, log_every=30))
    from_nothing = fit(problem, optax.adam(1e-2), quiet(steps=30, log_every=30), run_dir=tmp_path / "empty", resume=True)
    for x, y in zip(array_leaves(fresh.model), array_leaves(from_nothing.model)):
        np.testing.assert_array_equal(x, y)


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, caplog):
    problem = small_spiral()
    full = fit(problem, optax.adam(1e-2), quiet(steps=90, log_every=30))
    fit(problem, optax.adam(1e-2), quiet(steps=60, log_every=30, checkpoint_every=30), run_dir=tmp_path)
    newest = tmp_path / "checkpoints" / "step_000000060.eqx"
    newest.write_bytes(newest.read_bytes()[:100])  # a disk that filled up
    with caplog.at_level("WARNING", logger="sciml"):
        resumed = fit(problem, optax.adam(1e-2), quiet(steps=90, log_every=30), run_dir=tmp_path, resume=True)
    assert "skipped step_000000060.eqx" in caplog.text and "cut short" in caplog.text
    for x, y in zip(array_leaves(full.model), array_leaves(resumed.model)):
        np.testing.assert_array_equal(x, y)  # went on from step 30: same result
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [30, 60, 90]  # the records past step 30 were redone, not duplicated


# --- optimizers and schedules ------------------------------------------------------


@pytest.mark.parametrize(
    "opt_cfg, steps",
    [
        (AdamConfig(name="adam", lr=0.05, schedule=CosineSchedule(name="cosine")), 1500),
        (AdamWConfig(name="adamw", lr=0.05, weight_decay=0.0, schedule=ExponentialSchedule(name="exponential", decay_rate=0.5, transition_steps=100)), 1500),
        (SGDConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True, clip_norm=10.0), 1500),
        (LBFGSConfig(name="lbfgs"), 30),
    ],
    ids=["adam", "adamw", "sgd", "lbfgs"],
)
def test_optimizers_reach_the_least_squares_minimiser(opt_cfg, steps, x64, getkey):
    problem = least_squares(getkey())
    result = fit(problem, make_optimizer(opt_cfg, steps), quiet(steps=steps, log_every=steps))
    assert result.summary["distance_to_lstsq"] < 1e-6


def test_schedules():
    warm = make_schedule(1.0, ConstantSchedule(warmup_steps=10), 100)
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(0.5) and float(warm(50)) == 1.0
    cos = make_schedule(2.0, CosineSchedule(name="cosine", warmup_steps=10, final_lr_ratio=0.1), 110)
    assert float(cos(10)) == pytest.approx(2.0)
    assert float(cos(60)) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half-way down
    assert float(cos(110)) == pytest.approx(0.2)
    exp = make_schedule(1.0, ExponentialSchedule(name="exponential", decay_rate=0.5, transition_steps=10), 100)
    assert float(exp(20)) == pytest.approx(0.25)
    floor = ExponentialSchedule(name="exponential", decay_rate=0.5, transition_steps=1, final_lr_ratio=0.1)
    assert float(make_schedule(1.0, floor, 100)(50)) == pytest.approx(0.1)


def test_clip_norm_bounds_the_update():
    opt = make_optimizer(SGDConfig(name="sgd", lr=1.0, momentum=0.0, clip_norm=0.5), 10)
    g = {"w": jnp.array([30.0, 40.0])}
    upd, _ = opt.update(g, opt.init(g), g)
    assert float(optax.tree.norm(upd)) == pytest.approx(0.5)


# --- divergence ----------------------------------------------------------------------


class Exploding(AbstractProblem):
    """Loss is finite for w < 3 and NaN beyond; w grows by 1 per SGD step."""

    metric_names: ClassVar[tuple[str, ...]] = ()

    def init(self, key):
        return jnp.array(0.0), None

    def loss(self, w, state, key):
        return jnp.where(w < 2.5, -w, jnp.nan), (state, {})

    def evaluate(self, w, state, key):
        return {}


def test_nan_stops_the_run_and_keeps_the_last_good_state(tmp_path):
    train = quiet(steps=10, log_every=5, checkpoint_every=2, keep_checkpoints=None)
    with pytest.raises(TrainingDiverged) as info:
        fit(Exploding(), optax.sgd(1.0), train, run_dir=tmp_path)
    err = info.value
    assert err.step == 3  # w = 3 after three steps, so the loss at step 3 is NaN
    assert err.checkpoint == tmp_path / "checkpoints" / "step_000000002.eqx"
    assert "step 3" in str(err) and str(err.checkpoint) in str(err)
    template, _ = init_train_state(Exploding(), optax.sgd(1.0), 0)
    w = load_checkpoint(err.checkpoint, template).params
    assert float(w) == 2.0
    assert latest_checkpoint(tmp_path / "checkpoints")[0] == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 3


class SqrtToZero(AbstractProblem):
    """loss = w + 0 sqrt(w), so w = 5 - step under SGD(1); at step 5 the loss is 0, its gradient NaN."""

    metric_names: ClassVar[tuple[str, ...]] = ()

    def init(self, key):
        return {"w": jnp.array(5.0)}, None

    def loss(self, model, state, key):
        return model["w"] + 0.0 * jnp.sqrt(model["w"]), (state, {})

    def evaluate(self, model, state, key):
        return {}

    def diagnose(self, model, state, key):
        return f"diagnose saw w = {float(model['w'])}"


def test_divergence_is_explained_at_the_failing_step(tmp_path):
    # The run diverges mid-chunk (step 5 of a 100-step chunk): the trainer
    # replays the chunk to step 5, finds the loss finite but the gradient
    # not, names the leaf, and passes step 5's parameters to `diagnose`.
    train = quiet(steps=50, log_every=100, checkpoint_every=None)
    with pytest.raises(TrainingDiverged) as info:
        fit(SqrtToZero(), optax.sgd(1.0), train, run_dir=tmp_path)
    err = info.value
    assert err.step == 5
    assert "the loss is finite (0) but the gradient is not, in ['w']" in err.reason
    assert "diagnose saw w = 0.0" in err.reason
    assert err.reason.rstrip(".") in str(err)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reason"] == err.reason


def test_non_finite_loss_is_named_in_the_reason(tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        fit(Exploding(), optax.sgd(1.0), quiet(steps=10, log_every=10))
    assert info.value.reason == "the loss is nan"


# --- kill and resume (the real thing: SIGKILL mid-run, resume from the CLI) ----------


def _train_cli(*args):
    return [PYTHON, "-m", "sciml.train", str(SPIRAL), *args]


@pytest.mark.slow  # kills a live run; the default suite resumes runs cut short (test_cli_safety, test_multihost)
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    common = [
        "train.steps=2000", "train.log_every=100", "train.checkpoint_every=500",
        "train.keep_checkpoints=null", "train.progress=false",
    ]
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(_train_cli(*common, f"output.dir={killed_dir}"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = latest_checkpoint(killed_dir / "checkpoints")
        if found and found[0] >= 500:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = latest_checkpoint(killed_dir / "checkpoints")[0]
    assert 500 <= killed_at < 2000
    # A write cut short leaves only a temporary file, which must be ignored.
    (killed_dir / "checkpoints" / f".step_{killed_at + 500:09d}.eqx.x.tmp").write_bytes(b"partial")

    # --resume reads the config from the run directory, so a config file is an error
    r = subprocess.run(_train_cli("--resume", str(killed_dir)), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "give only KEY=VALUE overrides" in r.stderr
    r = subprocess.run([PYTHON, "-m", "sciml.train", "--resume", str(killed_dir)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(_train_cli(*common, f"output.dir={full_dir}"), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    a = (killed_dir / "checkpoints" / "step_000002000.eqx").read_bytes()
    b = (full_dir / "checkpoints" / "step_000002000.eqx").read_bytes()
    assert a == b  # bitwise: parameters, optimizer state, key and step
    steps = [json.loads(x)["step"] for x in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [s for s in steps[:-1]]  # the last record is the final evaluation
    assert logged == list(range(100, 2001, 100))


# --- several devices ------------------------------------------------------------------


@pytest.mark.slow  # tests/test_multihost.py checks the same on 4 global devices
def test_four_devices_match_one_device(x64, getkey):
    assert len(jax.devices()) >= 4, "conftest should provide 4 CPU devices"
    problem = small_spiral()
    model, state = problem.init(getkey())
    params = eqx.filter(model, eqx.is_array)
    key = getkey()
    (l1, _), g1 = make_loss_and_grad(problem, model, devices=1)(params, state, key)
    (l4, _), g4 = make_loss_and_grad(problem, model, devices=4)(params, state, key)
    assert l1.dtype == jnp.float64
    np.testing.assert_allclose(l4, l1, rtol=1e-10, atol=0)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
    # the gradient really was computed on 4 devices
    assert len(jax.tree.leaves(g4)[0].sharding.device_set) == 4


@pytest.mark.slow  # default suite: tests/test_multihost.py (2x2 vs 1x4) and tests/nqs/test_problems.py
def test_fit_on_all_devices_matches_one_device(x64):
    problem = small_spiral()
    one = fit(problem, optax.adam(1e-3), quiet(steps=20, log_every=10, devices=1))
    four = fit(problem, optax.adam(1e-3), quiet(steps=20, log_every=10, devices="all"))
    assert four.summary["devices"] == len(jax.devices())
    for a, b in zip(array_leaves(one.model), array_leaves(four.model)):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_batch_that_does_not_divide_over_devices_is_rejected():
    problem = build_problem("neural_ode_spiral", {"n_points": 100, "batch_size": 3}, {"width": 4})
    model, state = problem.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="does not divide over 4 devices"):
        make_loss_and_grad(problem, model, devices=4)(eqx.filter(model, eqx.is_array), state, jax.random.PRNGKey(1))


def test_sequence_switches_phase_at_the_boundary():
    from sciml.optim import sequence

    opt = sequence([optax.sgd(1.0), optax.sgd(10.0)], [3])
    params = jnp.zeros(())
    state = opt.init(params)
    steps = []
    for _ in range(5):
        upd, state = opt.update(jnp.array(1.0), state, params)
        steps.append(float(upd))
    assert steps == [-1.0, -1.0, -1.0, -10.0, -10.0]
    with pytest.raises(ValueError, match="need 1 boundaries for 2 phases"):
        sequence([optax.sgd(1.0), optax.sgd(1.0)], [])
    with pytest.raises(ValueError, match="increasing"):
        sequence([optax.sgd(1.0)] * 3, [5, 5])


def test_adam_then_lbfgs_from_config_reaches_the_minimiser(x64, getkey):
    from sciml.config import SequenceConfig

    cfg = SequenceConfig(
        name="sequence",
        phases=[AdamConfig(name="adam", lr=0.01), LBFGSConfig(name="lbfgs")],
        boundaries=[50],
    )
    problem = least_squares(getkey())
    after_adam = fit(problem, make_optimizer(cfg, 80), quiet(steps=50, log_every=50))
    assert after_adam.summary["distance_to_lstsq"] > 1e-2  # Adam alone is far
    result = fit(problem, make_optimizer(cfg, 80), quiet(steps=80, log_every=40))
    assert result.summary["distance_to_lstsq"] < 1e-8  # L-BFGS finishes the job


# --- callbacks ----------------------------------------------------------------------


def test_config_early_stopping_restores_the_best_state(tmp_path, x64, getkey):
    """Monitoring a metric that only falls with mode `max` makes the first check the best:
    the run stops `patience` checks later and ends on that first state."""
    from sciml.trainer import EarlyStoppingConfig

    problem = least_squares(getkey())
    stop = EarlyStoppingConfig(monitor="eval/distance_to_lstsq", mode="max", patience=2)
    train = quiet(steps=1000, log_every=50, eval_every=50, early_stopping=stop)
    result = fit(problem, optax.adam(0.05), train, run_dir=tmp_path)
    evals = {r["step"]: r["eval/distance_to_lstsq"] for r in result.history if "loss" in r}
    assert result.step == 150 and result.summary["status"] == "stopped"
    assert result.summary["best_step"] == 50 and evals[150] < evals[100] < evals[50]
    # the final model is the state of step 50 (its evaluation repeats step 50's value),
    # saved as the run's last checkpoint under the final step number
    np.testing.assert_allclose(result.final_eval["distance_to_lstsq"], evals[50], rtol=1e-10)
    step, path = latest_checkpoint(tmp_path / "checkpoints")
    assert step == 150
    # without restore_best the run ends on its last state
    train = quiet(
        steps=1000, log_every=50, eval_every=50,
        early_stopping=stop.model_copy(update={"restore_best": False}),
    )
    last = fit(problem, optax.adam(0.05), train)
    np.testing.assert_allclose(last.final_eval["distance_to_lstsq"], evals[150], rtol=1e-10)


def test_config_early_stopping_errors(x64, getkey):
    from sciml.trainer import EarlyStoppingConfig

    problem = least_squares(getkey())
    stop = EarlyStoppingConfig(monitor="eval/no_such_metric")
    with pytest.raises(ValueError, match="no_such_metric.*not among the logged metrics.*distance_to_lstsq"):
        fit(problem, optax.adam(0.05), quiet(steps=100, log_every=50, eval_every=50, early_stopping=stop))
    with pytest.raises(ValueError, match="eval_every is null"):
        fit(problem, optax.adam(0.05), quiet(steps=100, log_every=50, early_stopping=stop))


def test_user_callbacks_log_and_stop_early(tmp_path, x64, getkey):
    from sciml.trainer import Callback, EarlyStopping

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_start(self, run, ts):
            self.calls.append(("start", run.start_step))

        def on_chunk(self, run, record, ts):
            self.calls.append(("chunk", record["step"], int(ts.step)))

        def on_end(self, run, result):
            self.calls.append(("end", result.step))

        def close(self):
            self.calls.append(("close",))

    recorder = Recorder()
    stopper = EarlyStopping("eval/distance_to_lstsq", threshold=1e-3, patience=100)
    train = quiet(steps=5000, log_every=50, eval_every=50, checkpoint_every=1000)
    result = fit(least_squares(getkey()), optax.adam(0.05), train, run_dir=tmp_path, callbacks=[recorder, stopper])
    # stopped at the first evaluation below the threshold, well before 5000 steps
    evals = [r for r in result.history if "loss" in r]
    assert stopper.stopped_at == result.step < 5000
    assert evals[-1]["eval/distance_to_lstsq"] < 1e-3 <= evals[-2]["eval/distance_to_lstsq"]
    assert result.summary["status"] == "stopped"
    assert recorder.calls[0] == ("start", 0) and recorder.calls[-2:] == [("end", result.step), ("close",)]
    assert [c[1] for c in recorder.calls if c[0] == "chunk"] == list(range(50, result.step + 1, 50))
    assert all(c[1] == c[2] for c in recorder.calls if c[0] == "chunk")
    # the stopped state is the final checkpoint
    assert latest_checkpoint(tmp_path / "checkpoints")[0] == result.step
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped"
