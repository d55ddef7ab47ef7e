"""Load test of the run directory: many CLI runs at once, and two into the same directory.

Starts `--runs` training runs of a small spiral concurrently, each into its
own directory, plus `--same` runs into one shared directory at the same
moment, then checks every directory:

- the process exited 0, `summary.json` is strict JSON with status
  `completed`, `metrics.jsonl` parses line by line with increasing steps,
  every checkpoint is intact and `load_run` reads the newest, and no
  temporary file is left;
- of the runs into the shared directory exactly one trained; every other one
  exited 2 with a one-line refusal ("in use" or "already holds a run") and
  no traceback, and the shared directory is a single consistent run.

    python benchmarks/stress_runs.py [--runs 8] [--same 2] [--steps 300]

Prints a table and writes `benchmarks/results/stress_runs.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import sciml_version, write_result

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "stress_runs.json"


def launch(run_dir: Path, steps: int, seed: int) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "sciml.train", str(REPO / "configs" / "neural_ode_spiral.yaml"),
        f"output.dir={run_dir}", f"train.steps={steps}", "train.log_every=50",
        "train.checkpoint_every=100", "train.progress=false", f"train.seed={seed}",
        "train.eval_every=null",
        "problem.n_points=200", "problem.t_end=5.0", "problem.batch_size=4",
        "problem.batch_time=5", "model.width=8",
    ]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_run(run_dir: Path, steps: int) -> list[str]:
    """Problems found in a finished run directory (empty when it is sound)."""
    from sciml.checkpoint import CheckpointDamaged, list_checkpoints, read_checkpoint_header
    from sciml.train import load_run

    problems = []
    try:
        summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
        if summary.get("status") != "completed" or summary.get("steps") != steps:
            problems.append(f"summary: status {summary.get('status')}, steps {summary.get('steps')}")
    except Exception as e:
        problems.append(f"summary.json: {type(e).__name__}: {e}")
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        recs = [json.loads(x) for x in lines]
        train_steps = [r["step"] for r in recs if "loss" in r]
        if train_steps != sorted(set(train_steps)) or train_steps[-1] != steps:
            problems.append(f"metrics.jsonl steps {train_steps}")
    except Exception as e:
        problems.append(f"metrics.jsonl: {type(e).__name__}: {e}")
    for _, path in list_checkpoints(run_dir / "checkpoints"):
        try:
            read_checkpoint_header(path)
        except CheckpointDamaged as e:
            problems.append(str(e))
    try:
        if load_run(run_dir).step != steps:
            problems.append("load_run: not at the final step")
    except Exception as e:
        problems.append(f"load_run: {type(e).__name__}: {e}")
    leftovers = [p.name for p in run_dir.rglob("*.tmp")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    return problems


def main(runs: int, same: int, steps: int, out: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix="sciml_stress_"))
    t0 = time.perf_counter()
    separate = [(root / f"run{i}", launch(root / f"run{i}", steps, i)) for i in range(runs)]
    shared_dir = root / "shared"
    shared = [launch(shared_dir, steps, 100 + i) for i in range(same)]
    outcomes = []
    for run_dir, proc in separate:
        _, err = proc.communicate(timeout=1800)
        found = check_run(run_dir, steps) if proc.returncode == 0 else [f"exit {proc.returncode}: {err[-300:]}"]
        outcomes.append({"dir": run_dir.name, "exit": proc.returncode, "problems": found})
    shared_out = []
    for proc in shared:
        _, err = proc.communicate(timeout=1800)
        shared_out.append({"exit": proc.returncode, "stderr_tail": err.strip().splitlines()[-1:] if err else []})
    wall = time.perf_counter() - t0
    winners = [o for o in shared_out if o["exit"] == 0]
    refused = [o for o in shared_out if o["exit"] == 2]
    refusals_clean = all(
        o["stderr_tail"] and ("in use" in o["stderr_tail"][0] or "already holds a run" in o["stderr_tail"][0])
        for o in refused
    )
    shared_problems = check_run(shared_dir, steps) if len(winners) == 1 else ["not exactly one winner"]
    ok_separate = sum(1 for o in outcomes if o["exit"] == 0 and not o["problems"])
    print(f"{runs} concurrent runs into separate directories: {ok_separate}/{runs} sound")
    for o in outcomes:
        if o["problems"]:
            print(f"  {o['dir']}: {o['problems']}")
    print(f"{same} runs into one directory at once: {len(winners)} trained, {len(refused)} refused "
          f"({'one-line refusals' if refusals_clean else 'UNCLEAN refusals'}); shared directory "
          f"{'sound' if not shared_problems else shared_problems}")
    for o in refused:
        print(f"  refused: {o['stderr_tail'][0] if o['stderr_tail'] else '(no message)'}")
    print(f"wall time {wall:.1f} s")
    result = {
        "benchmark": "stress_runs", **sciml_version(), "runs": runs, "same_dir_runs": same,
        "steps": steps, "wall_s": wall, "separate": outcomes, "shared": shared_out,
        "separate_sound": ok_separate, "shared_winners": len(winners), "shared_refused": len(refused),
        "shared_refusals_clean": refusals_clean, "shared_problems": shared_problems,
    }
    write_result(out, result)
    ok = ok_separate == runs and len(winners) == 1 and len(refused) == same - 1 and refusals_clean and not shared_problems
    print("RESULT:", "PASS" if ok else "FAIL")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8, help="concurrent runs into separate directories")
    ap.add_argument("--same", type=int, default=2, help="concurrent runs into one shared directory")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    main(a.runs, a.same, a.steps, a.out)
