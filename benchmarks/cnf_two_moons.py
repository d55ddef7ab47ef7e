"""FFJORD on two moons: exact vs Hutchinson trace, with and without the RNODE regularisers, over seeds.

Each variant is one CLI run of `configs/cnf_two_moons.yaml` with overrides (a
fresh process each, one after the other); the script collects `test_nll`
(exact trace, tight tolerance), the gap to the exact density's NLL, the
vector-field evaluations per density solve (`nfe`), the Hutchinson NLL on the
same test points and the CPU seconds of each run.

    python benchmarks/cnf_two_moons.py                # all variants (~40 CPU minutes)
    python benchmarks/cnf_two_moons.py --only default --seeds 0 1 2
    python benchmarks/cnf_two_moons.py --steps 300    # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import sciml_version, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cnf_two_moons.yaml"

VARIANTS = {
    "default": [],  # exact trace, RNODE weights 0.01
    "hutchinson": ["model.trace=hutchinson"],
    "no_regulariser": ["model.kinetic=0.0", "model.jacobian=0.0"],
}


def run(variant: str, seed: int, steps: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"output.dir={tmp}/run", f"train.seed={seed}", f"problem.data_seed={seed}"]
        if steps is not None:
            args += [f"train.steps={steps}", f"train.eval_every={steps}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [sys.executable, "-m", "sciml.train", str(CONFIG), *VARIANTS[variant], *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} seed {seed} failed:\n{proc.stderr[-3000:]}")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    keep = (
        "test_nll",
        "oracle_nll",
        "gap_to_oracle",
        "nfe",
        "test_nll_hutchinson",
        "test_nll_hutchinson_se",
        "train_time_s",
        "wall_time_s",
    )
    out = {"variant": variant, "seed": seed, "cpu_s": cpu, **{k: summary[k] for k in keep}}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cnf_two_moons.json")
    args = parser.parse_args()
    rows = []
    for variant in args.only:
        seeds = (
            args.seeds if args.seeds is not None else ([0, 1, 2] if variant == "default" else [0])
        )
        rows += [run(variant, seed, args.steps) for seed in seeds]
    write_result(
        args.out, {"config": str(CONFIG.relative_to(ROOT)), "runs": rows, **sciml_version()}
    )


if __name__ == "__main__":
    main()
