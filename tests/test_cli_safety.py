"""Nothing lost: `--overwrite` deletes only a provable sciml run; resume survives damaged or missing checkpoints."""

import json
import shutil
import subprocess
import time

import yaml

from helpers import PYTHON, REPO
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


def test_overwrite_replaces_a_real_run_but_not_one_holding_user_files(tmp_path):
    run = tmp_path / "run"
    r = cli(SPIRAL, f"output.dir={run}", *SMALL)
    assert r.returncode == 0, r.stderr
    assert (run / ".sciml-run").is_file()
    # it says what it does before the (silent) compilation
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"sciml: training neural_ode_spiral into {run} (adam, 20 steps, float32, 1 cpu")
    assert lines[2].startswith("compiling the training step") and lines[3].startswith("compiled in ")
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


def test_resume_of_a_finished_run_changes_nothing_and_fewer_steps_is_an_error(tmp_path):
    run = tmp_path / "run"
    assert cli(SPIRAL, f"output.dir={run}", *SMALL).returncode == 0
    before = snapshot(run)
    r = cli("--resume", run)
    assert r.returncode == 0 and "already finished at step 20" in r.stdout
    r = cli("--resume", run, "train.steps=10")
    assert r.returncode == 2 and "train.steps: 10 is below step 20" in r.stderr
    assert snapshot(run) == before
    json.loads((run / "summary.json").read_text())  # strict JSON


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(tmp_path):
    run = tmp_path / "run"
    assert cli(SPIRAL, f"output.dir={run}", *SMALL).returncode == 0
    reference = (run / "checkpoints" / "step_000000020.eqx").read_bytes()
    shutil.rmtree(run / "checkpoints")
    (run / "summary.json").unlink()
    r = cli("--resume", run)
    assert r.returncode == 0, r.stderr
    assert (run / "checkpoints" / "step_000000020.eqx").read_bytes() == reference


def test_load_run_and_resume_fall_back_past_a_damaged_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert cli(SPIRAL, f"output.dir={run}", *SMALL, "train.checkpoint_every=10").returncode == 0
    reference = (run / "checkpoints" / "step_000000020.eqx").read_bytes()
    (run / "checkpoints" / "step_000000020.eqx").write_bytes(b"")  # zero bytes: a full disk
    loaded = load_run(run)
    assert loaded.step == 10
    r = cli("--resume", run)
    assert r.returncode == 0, r.stderr
    assert "warning: skipped step_000000020.eqx" in r.stderr and "empty" in r.stderr
    assert "Traceback" not in r.stderr
    assert (run / "checkpoints" / "step_000000020.eqx").read_bytes() == reference


def test_a_diverged_run_is_continued_from_its_last_good_checkpoint_with_a_lower_lr(tmp_path):
    run = tmp_path / "run"
    r = cli(REPO / "tests/data/diverging_spiral.yaml", f"output.dir={run}")
    assert r.returncode == 3, r.stderr
    assert f"--init-from {run} --from-step" in r.stderr  # the way out is spelled out
    good = int(r.stderr.split("--from-step ")[1].split()[0])
    new = tmp_path / "run-2"
    r = cli(run / "config.yaml", f"output.dir={new}", "optimizer.lr=0.003", "train.steps=600",
            "optimizer.schedule.warmup_steps=500",
            "--init-from", run, "--from-step", good)
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
        deadline = time.time() + 120
        while not (run / "checkpoints").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert busy.poll() is None, "the first run ended too early"
        before = (run / "config.yaml").read_bytes()
        r = cli("--resume", run)  # resuming skips the "already holds a run" check: the lock stops it
        assert r.returncode == 2 and "is in use: another sciml process is training into it" in r.stderr
        assert (run / "config.yaml").read_bytes() == before
    finally:
        busy.kill()
        busy.wait()
    reached = max(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.eqx"))
    r = cli("--resume", run, f"train.steps={reached + 100}")  # the lock went with the killed process
    assert r.returncode == 0, r.stderr
