"""Nothing lost: `--overwrite` deletes only a provable sciml run; resume survives damaged or missing checkpoints.

Every `python -m sciml.train` that trains pays for its own start and compilation,
so the tests that start from a finished run share one (`finished_run`, trained
once) and work on copies of it.
"""

import json
import os
import shutil
import subprocess
import time

import equinox as eqx
import jax
import numpy as np
import pytest
import yaml

from helpers import PYTHON, REPO
from sciml.checkpoint import latest_checkpoint
from sciml.run_dir import lock_run_dir
from sciml.train import load_run

SPIRAL = REPO / "configs" / "neural_ode_spiral.yaml"
SMALL = [
    "problem.n_points=200", "problem.t_end=5.0", "problem.batch_size=4", "problem.batch_time=5",
    "model.width=8", "train.steps=20", "train.log_every=10", "train.progress=false",
    "optimizer.schedule.warmup_steps=0", "train.eval_every=null",
]


def cli(*args):
    return subprocess.run([PYTHON, "-m", "sciml.train", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished SMALL run (checkpoints at steps 10 and 20) and its stderr, trained once."""
    run = tmp_path_factory.mktemp("finished") / "run"
    r = cli(SPIRAL, f"output.dir={run}", *SMALL, "train.checkpoint_every=10")
    assert r.returncode == 0, r.stderr
    return run, r.stderr


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of `finished_run` of this test's own (resuming uses the directory it is given)."""
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    return run


def test_overwrite_leaves_a_user_folder_with_a_stray_config_untouched(tmp_path):
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "config.yaml").write_text("my own config\n")
    (folder / "notes.txt").write_text("precious notes\n")
    (folder / "src" / "model.py").write_text("print('mine')\n")
    before = snapshot(folder)
    r = cli(SPIRAL, f"output.dir={folder}", "--overwrite", *SMALL)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds files sciml did not write" in r.stderr and "nothing was deleted" in r.stderr
    for name in ("(no .sciml-run marker)", "notes.txt", "src/"):
        assert name in r.stderr
    assert snapshot(folder) == before


def test_overwrite_replaces_a_real_run_but_not_one_holding_user_files(finished_run, run_copy):
    first, stderr = finished_run
    assert (first / ".sciml-run").is_file()
    # it says what it does before the (silent) compilation
    lines = stderr.splitlines()
    assert lines[0].startswith(f"sciml: training neural_ode_spiral into {first} (adam, 20 steps, float32, 1 cpu")
    assert lines[2].startswith("compiling the training step") and lines[3].startswith("compiled in ")
    run = run_copy
    # a temp file left by a killed atomic write is sciml's too
    (run / ".summary.json.x1y2.tmp").write_bytes(b"partial")
    r = cli(SPIRAL, f"output.dir={run}", "--overwrite", *SMALL, "train.seed=1")
    assert r.returncode == 0, r.stderr
    assert "seed: 1" in (run / "config.yaml").read_text()
    assert not (run / ".summary.json.x1y2.tmp").exists()
    # the user's analysis dropped into the run makes it foreign
    (run / "figures" / "my_plot.pdf").write_bytes(b"%PDF mine")
    (run / "analysis.ipynb").write_text("{}")
    before = snapshot(run)
    r = cli(SPIRAL, f"output.dir={run}", "--overwrite", *SMALL)
    assert r.returncode == 2
    assert "analysis.ipynb" in r.stderr and "figures/my_plot.pdf" in r.stderr
    assert snapshot(run) == before


def test_resume_of_a_finished_run_changes_nothing_and_fewer_steps_is_an_error(run_copy):
    run = run_copy
    before = snapshot(run)
    r = cli("--resume", run)
    assert r.returncode == 0 and "already finished at step 20" in r.stdout
    r = cli("--resume", run, "train.steps=10")
    assert r.returncode == 2 and "train.steps: 10 is below step 20" in r.stderr
    assert snapshot(run) == before
    json.loads((run / "summary.json").read_text())  # strict JSON


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(run_copy):
    run = run_copy
    reference = (run / "checkpoints" / "step_000000020.eqx").read_bytes()
    shutil.rmtree(run / "checkpoints")
    (run / "summary.json").unlink()
    r = cli("--resume", run)
    assert r.returncode == 0, r.stderr
    assert (run / "checkpoints" / "step_000000020.eqx").read_bytes() == reference


def test_load_run_and_resume_fall_back_past_a_damaged_checkpoint(run_copy):
    run = run_copy
    reference = (run / "checkpoints" / "step_000000020.eqx").read_bytes()
    (run / "checkpoints" / "step_000000020.eqx").write_bytes(b"")  # zero bytes: a full disk
    loaded = load_run(run)
    assert loaded.step == 10
    r = cli("--resume", run)
    assert r.returncode == 0, r.stderr
    assert "warning: skipped step_000000020.eqx" in r.stderr and "empty" in r.stderr
    assert "Traceback" not in r.stderr
    assert (run / "checkpoints" / "step_000000020.eqx").read_bytes() == reference


def test_a_diverged_run_exits_3_and_is_continued_from_its_last_good_checkpoint_with_a_lower_lr(tmp_path):
    run = tmp_path / "run"
    r = cli(REPO / "tests/data/diverging_spiral.yaml", f"output.dir={run}")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert "training diverged" in r.stderr and "NaN/Inf at step" in r.stderr
    bad_step = int(r.stderr.split("at step ")[1].split(":")[0])
    # the newest checkpoint is intact, finite, before the bad step, and named in the message
    step, path = latest_checkpoint(run / "checkpoints")
    assert str(path) in r.stderr and 0 < step < bad_step
    loaded = load_run(run)
    assert loaded.step == step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(eqx.filter(loaded.model, eqx.is_array)))
    loss, _ = loaded.problem.loss(loaded.model, loaded.state, jax.random.PRNGKey(0))
    assert np.isfinite(loss)
    assert f"--init-from {run} --from-step" in r.stderr  # the way out is spelled out
    good = int(r.stderr.split("--from-step ")[1].split()[0])
    assert good == step
    new = tmp_path / "run-2"
    r = cli(run / "config.yaml", f"output.dir={new}", "optimizer={name: adam, lr: 0.003}",
            "train.steps=600", "--init-from", run, "--from-step", good)
    assert r.returncode == 0, r.stderr
    saved = yaml.safe_load((new / "config.yaml").read_text())
    assert saved["train"]["init_from"] == str(run / "checkpoints" / f"step_{good:09d}.eqx")
    assert saved["optimizer"]["lr"] == 0.003
    steps = [json.loads(x)["step"] for x in (new / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == good + 50 and steps[-1] == 600  # it went on from the good step
    summary = json.loads((new / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_loss"] < 1.0
    # the diverged run is left as it was
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    r = cli(SPIRAL, f"output.dir={tmp_path}/x", "--init-from", tmp_path / "nothing")
    assert r.returncode == 2 and "no config.yaml there" in r.stderr


def test_a_run_directory_in_use_is_refused_without_a_write(tmp_path):
    run = tmp_path / "run"
    args = [PYTHON, "-m", "sciml.train", str(SPIRAL), f"output.dir={run}", *SMALL, "train.steps=200000"]
    busy = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # config.yaml is written (atomically) once the run holds its lock, before it compiles
        deadline = time.time() + 120
        while not (run / "config.yaml").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert busy.poll() is None, "the first run ended too early"
        before = (run / "config.yaml").read_bytes()
        r = cli("--resume", run)  # resuming skips the "already holds a run" check: the lock stops it
        assert busy.poll() is None, "the first run ended before the second was refused"
        assert r.returncode == 2 and "is in use: another sciml process is training into it" in r.stderr
        assert (run / "config.yaml").read_bytes() == before
    finally:
        busy.kill()
        busy.wait()
    # the lock went with the killed process: the next run takes it (`run_config`'s own call)
    os.close(lock_run_dir(run))
