"""K-FAC against Adam and SGD on the 2-D Poisson PINN (`kfac_pinn_poisson2d`) at equal wall-clock.

K-FAC runs the shipped config (`configs/kfac_pinn_poisson2d.yaml`: weight-sharing
K-FAC through the forward Laplacian, exact Gauss-Newton quadratic model). Adam
(`--adam-lr`, default 1e-3) and SGD with momentum 0.9 (`--sgd-lr`, default 1e-2,
the better of 1e-3 and 1e-2 on seed 0) then run, on the same seed, for as many
steps as fit in K-FAC's training time (its seconds per step measured by a short timed
run first). Both are `sciml.trainer.fit` in this process, float64, pinned to
one core; the seed redraws the initialisation (the collocation points are a
fixed grid). Reported: the relative L2 error against sin(πx) sin(πy) on a
101 x 101 grid, its trajectory, and the time K-FAC first reached `--target`.

    python benchmarks/kfac_pinn_poisson.py [--seeds 0 1 2] [--steps N] [--quick]

Output: markdown on stdout, JSON in `benchmarks/results/kfac_pinn_poisson.json`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, default=None, help="K-FAC steps (default: the config's)"
    )
    parser.add_argument("--adam-lr", type=float, default=1e-3)
    parser.add_argument("--sgd-lr", type=float, default=1e-2, help="SGD with momentum 0.9")
    parser.add_argument("--target", type=float, default=1e-5)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})

    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import sciml_version, write_result

    from sciml.cli_config import load_config
    from sciml.config import TrainConfig
    from sciml.optim import make_optimizer
    from sciml.problems import build_problem
    from sciml.trainer import fit

    cfg = load_config(ROOT / "configs" / "kfac_pinn_poisson2d.yaml", [])
    steps = args.steps or (500 if args.quick else cfg.train.steps)
    problem = build_problem("kfac_pinn_poisson2d", cfg.problem.model_dump(), cfg.model.model_dump())
    every = max(steps // 20, 1)

    def train(optimizer, n, seed):
        tc = TrainConfig(
            steps=n,
            log_every=every,
            eval_every=every,
            checkpoint_every=None,
            progress=False,
            seed=seed,
            dtype="float64",
        )
        r = fit(problem, optimizer, tc)
        times = {h["step"]: h["time_s"] for h in r.history if "time_s" in h}
        curve = [
            (h["step"], times.get(h["step"]), h["eval/l2_rel"])
            for h in r.history
            if "eval/l2_rel" in h
        ]
        return r.summary, curve

    baselines = {
        "adam": (lambda: optax.adam(args.adam_lr), args.adam_lr),
        "sgd": (lambda: optax.sgd(args.sgd_lr, momentum=0.9), args.sgd_lr),
    }
    rows = []
    for seed in args.seeds:
        summary, curve = train(make_optimizer(cfg.optimizer, steps), steps, seed)
        t_kfac = summary["train_time_s"]
        hit = next((t for _, t, e in curve if e <= args.target and t is not None), None)
        row = {
            "seed": seed,
            "kfac_steps": steps,
            "kfac_s": t_kfac,
            "kfac_l2": summary["l2_rel"],
            "kfac_time_to_target_s": hit,
            "kfac_curve": curve,
        }
        for name, (make, lr) in baselines.items():
            probe, _ = train(make(), 2000, seed)
            n = max(int(t_kfac / (probe["train_time_s"] / 2000)), 1)
            b_summary, b_curve = train(make(), n, seed)
            row.update(
                {
                    f"{name}_lr": lr,
                    f"{name}_steps": n,
                    f"{name}_s": b_summary["train_time_s"],
                    f"{name}_l2": b_summary["l2_rel"],
                    f"{name}_curve": b_curve,
                }
            )
        rows.append(row)
        print(
            f"seed {seed}: K-FAC {steps} steps {t_kfac:.0f} s L2 {summary['l2_rel']:.2e} "
            f"(<= {args.target:g} after {hit} s); Adam {row['adam_steps']} steps L2 "
            f"{row['adam_l2']:.2e}; SGD {row['sgd_steps']} steps L2 {row['sgd_l2']:.2e}",
            flush=True,
        )
    print(
        "\n| seed | K-FAC steps | K-FAC s | K-FAC rel. L2 | s to reach target | Adam steps "
        "(same time) | Adam rel. L2 | SGD-momentum steps | SGD rel. L2 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        hit = "-" if r["kfac_time_to_target_s"] is None else f"{r['kfac_time_to_target_s']:.0f}"
        print(
            f"| {r['seed']} | {r['kfac_steps']} | {r['kfac_s']:.0f} | {r['kfac_l2']:.2e} | {hit} | "
            f"{r['adam_steps']} | {r['adam_l2']:.2e} | {r['sgd_steps']} | {r['sgd_l2']:.2e} |"
        )
    name = "kfac_pinn_poisson_quick.json" if args.quick else "kfac_pinn_poisson.json"
    write_result(
        ROOT / "benchmarks" / "results" / name,
        {"rows": rows, "target": args.target, "cpu": cpu, **sciml_version()},
    )


if __name__ == "__main__":
    main()
