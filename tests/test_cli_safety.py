"""`--overwrite` deletes only what is provably a sciml run: a marker written at run creation and only known names."""

import subprocess

from helpers import PYTHON, REPO

SPIRAL = REPO / "configs" / "neural_ode_spiral.yaml"
SMALL = [
    "problem.n_points=200", "problem.t_end=5.0", "problem.batch_size=4", "problem.batch_time=5",
    "model.width=8", "train.steps=20", "train.log_every=10", "train.progress=false",
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
