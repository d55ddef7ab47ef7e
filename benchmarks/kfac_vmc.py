"""K-FAC against stochastic reconfiguration on the TFIM chain (N = 20): iterations and seconds to a
relative energy error of 1e-3.

Both run the same problem, model, sampler and samples: SR with `configs/nqs_tfim_chain.yaml`'s
optimizer, K-FAC with `configs/kfac_tfim_chain.yaml`'s. Every `--every` steps `evaluate` draws
`--eval-samples` fresh samples (Monte Carlo resolution ~1e-4, well below the target); the
iteration count is the first evaluation at or below `--target`, the seconds that count times
the training seconds per step (evaluations excluded). The two alternate per seed, in one
process pinned to one core; the seed redraws initialisation and chains.

    python benchmarks/kfac_vmc.py [--seeds 0 1 2] [--steps 600] [--target 1e-3]

Output: markdown on stdout, JSON in `benchmarks/results/kfac_vmc.json`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=4096)
    parser.add_argument("--target", type=float, default=1e-3)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})

    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import sciml_version, write_result

    from sciml.cli_config import load_config
    from sciml.config import TrainConfig
    from sciml.nqs import ConvergenceWarning
    from sciml.optim import make_optimizer
    from sciml.problems import build_problem
    from sciml.trainer import fit

    warnings.simplefilter("ignore", ConvergenceWarning)  # early evaluations, before thermalising
    rows = []
    for seed in args.seeds:
        for name, config in (("sr", "nqs_tfim_chain"), ("kfac", "kfac_tfim_chain")):
            cfg = load_config(ROOT / "configs" / f"{config}.yaml", [])
            settings = {**cfg.problem.model_dump(), "eval_samples": args.eval_samples}
            problem = build_problem(cfg.problem_name, settings, cfg.model.model_dump())
            tc = TrainConfig(
                steps=args.steps,
                log_every=args.every,
                eval_every=args.every,
                checkpoint_every=None,
                progress=False,
                seed=seed,
                dtype="float64",
            )
            r = fit(problem, make_optimizer(cfg.optimizer, args.steps), tc)
            errors = [(h["step"], h["eval/rel_error"]) for h in r.history if "eval/rel_error" in h]
            hit = next((s for s, e in errors if e <= args.target), None)
            s_per_step = r.summary["train_time_s"] / args.steps
            rows.append(
                {
                    "seed": seed,
                    "optimizer": name,
                    "iterations": hit,
                    "s_per_step": s_per_step,
                    "seconds": None if hit is None else hit * s_per_step,
                    "final_rel_error": r.summary["rel_error"],
                    "curve": errors,
                }
            )
            print(
                f"seed {seed} {name}: {hit} it, {s_per_step * 1e3:.1f} ms/step, final "
                f"{r.summary['rel_error']:.2e}",
                flush=True,
            )
    print(
        f"\n| optimizer | iterations to {args.target:g} (seeds) | ms / step | seconds (median) | "
        f"rel_error after {args.steps} |"
    )
    print("|---|---|---:|---:|---|")
    for name in ("sr", "kfac"):
        sel = [r for r in rows if r["optimizer"] == name]
        secs = [r["seconds"] for r in sel if r["seconds"] is not None]
        its = ", ".join("-" if r["iterations"] is None else str(r["iterations"]) for r in sel)
        print(
            f"| {name} | {its} | {median(r['s_per_step'] for r in sel) * 1e3:.1f} | "
            f"{median(secs) if secs else float('nan'):.1f} | "
            + ", ".join(format(r["final_rel_error"], ".1e") for r in sel)
            + " |"
        )
    write_result(
        ROOT / "benchmarks" / "results" / "kfac_vmc.json",
        {"rows": rows, "target": args.target, "cpu": cpu, **sciml_version()},
    )


if __name__ == "__main__":
    main()
