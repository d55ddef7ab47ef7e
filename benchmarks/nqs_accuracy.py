"""NQS accuracy over seeds: the shipped configs (and model variants) against the exact energies.

Each variant is one CLI run of a `configs/nqs_*.yaml` with overrides (a fresh
process each, one after the other); the script collects the evaluated energy,
its Monte Carlo error, `rel_error` against the exact ground state, the
variance, split-R-hat, and the CPU and training seconds of each run. The seed
redraws the initialisation and every Markov chain.

    python benchmarks/nqs_accuracy.py [--jobs 2]            # every variant, seeds 0-2
    python benchmarks/nqs_accuracy.py --only tfim_rbm --seeds 0
    python benchmarks/nqs_accuracy.py --steps 100           # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import sciml_version, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

VARIANTS = {  # name -> (config, overrides)
    "tfim_rbm": ("nqs_tfim_chain", []),
    "tfim_symmetric": ("nqs_tfim_chain", ["model.kind=symmetric_rbm", "model.alpha=4"]),
    "heisenberg_rbm": ("nqs_heisenberg_chain", []),
    "heisenberg_symmetric": ("nqs_heisenberg_chain", ["model.kind=symmetric_rbm", "model.alpha=4"]),
    "j1j2_rbm": ("nqs_j1j2_chain", []),
    "tfim_square_rbm": ("nqs_tfim_square", []),
}


# the final evaluation's sample count: its Monte Carlo resolution energy_error/|E0| is
# 1-2e-5 on these problems, below the errors it has to resolve
EVAL_SAMPLES = 65536


def run(variant: str, seed: int, steps: int | None, measure_cpu: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config, overrides = VARIANTS[variant]
        args = [
            f"output.dir={tmp}/run",
            f"train.seed={seed}",
            "train.progress=false",
            f"problem.eval_samples={EVAL_SAMPLES}",
        ]
        if steps is not None:
            args += [f"train.steps={steps}", f"train.eval_every={steps}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [
            sys.executable,
            "-m",
            "sciml.train",
            str(CONFIGS / f"{config}.yaml"),
            *overrides,
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} seed {seed} failed:\n{proc.stderr[-3000:]}")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    keep = (
        "energy",
        "energy_error",
        "exact_energy",
        "rel_error",
        "variance",
        "r_hat",
        "tau_corr",
        "acceptance",
        "train_time_s",
        "wall_time_s",
    )
    cpu = cpu if measure_cpu else None  # concurrent runs: the children's CPU time is shared
    out = {"variant": variant, "seed": seed, "cpu_s": cpu, **{k: summary[k] for k in keep}}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/nqs_accuracy.json")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (>1: training times share the cores)"
    )
    args = parser.parse_args()
    seeds = [0, 1, 2] if args.seeds is None else args.seeds
    todo = [(variant, seed) for variant in args.only for seed in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda vs: run(*vs, args.steps, args.jobs == 1), todo))
    write_result(
        args.out,
        {
            "variants": VARIANTS,
            "eval_samples": EVAL_SAMPLES,
            "jobs": args.jobs,
            "runs": rows,
            **sciml_version(),
        },
    )


if __name__ == "__main__":
    main()
