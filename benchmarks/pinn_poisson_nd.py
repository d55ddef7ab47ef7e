"""`pinn_poisson_nd` by dimension and Laplacian engine: seconds per step and the error reached.

For each dimension d (default 5 and 100) and each engine, train the problem
of `configs/pinn_poisson_nd.yaml` (−Δu = π² Σ cos πx_i on [0,1]^d) with Adam
for a fixed number of steps from the same initialisation, interleaving the
engines over repeats, and report the median training time per step (compile
excluded: the trainer's `train_time_s`), its ratio to the exact forward
Laplacian, and the final `rel_l2`. The exact engines give the same training
trajectory up to round-off; the randomised ones (hutchinson, sdgd) trade an
unbiased but noisy Laplacian for O(probes) instead of O(d) cost.

    python benchmarks/pinn_poisson_nd.py                       # d = 5 and 100 (~10 min on 2 cores)
    python benchmarks/pinn_poisson_nd.py --dims 5 --steps 200 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).resolve().parent / "results"
EXACT = ("forward_laplacian", "reverse", "forward_over_reverse", "taylor")
RANDOMISED = ("sdgd", "hutchinson")


def run_one(dim: int, engine: str, steps: int, probes: int, seed: int) -> dict:
    import optax

    from sciml.problems import build_problem
    from sciml.trainer import TrainConfig, fit

    problem = build_problem(
        "pinn_poisson_nd",
        {
            "dim": dim,
            "engine": engine,
            "num_probes": min(probes, dim),
            "n_interior": 1000,
            "n_boundary": 500,
            "n_eval": 5000,
        },
        {"width": 64, "depth": 2},
    )
    train = TrainConfig(
        steps=steps,
        seed=seed,
        log_every=steps,
        checkpoint_every=None,
        progress=False,
        compilation_cache=False,
    )
    t0 = time.perf_counter()
    result = fit(problem, optax.adam(1e-3), train)
    return {
        "dim": dim,
        "engine": engine,
        "probes": min(probes, dim) if engine in RANDOMISED else None,
        "ms_per_step": 1e3 * result.summary["train_time_s"] / steps,
        "compile_s": result.summary["compile_time_s"],
        "wall_s": time.perf_counter() - t0,
        "rel_l2": result.final_eval["rel_l2"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[5, 100])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--engines", nargs="+", default=[*EXACT, *RANDOMISED])
    parser.add_argument("--out", type=Path, default=RESULTS / "pinn_poisson_nd.json")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    runs = []
    for rep in range(args.repeats):
        for dim in args.dims:
            engines = list(args.engines)
            if rep % 2:
                engines.reverse()  # interleave: no engine always runs first
            for engine in engines:
                r = run_one(dim, engine, args.steps, args.probes, seed=0)
                r["repeat"] = rep
                runs.append(r)
                print(json.dumps(r), flush=True)

    table = []
    for dim in args.dims:
        rows = {e: [r for r in runs if r["dim"] == dim and r["engine"] == e] for e in args.engines}
        base = (
            statistics.median(r["ms_per_step"] for r in rows["forward_laplacian"])
            if rows.get("forward_laplacian")
            else None
        )
        for engine, rs in rows.items():
            ms = statistics.median(r["ms_per_step"] for r in rs)
            table.append(
                {
                    "dim": dim,
                    "engine": engine,
                    "probes": rs[0]["probes"],
                    "ms_per_step": ms,
                    "vs_forward_laplacian": ms / base if base else None,
                    "rel_l2": statistics.median(r["rel_l2"] for r in rs),
                    "compile_s": statistics.median(r["compile_s"] for r in rs),
                }
            )
    print(
        f"\n| d | engine | ms/step (Adam, {args.steps} steps) | vs forward_laplacian | rel_l2 | compile s |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for t in table:
        name = t["engine"] + (f" ({t['probes']})" if t["probes"] else "")
        ratio = f"{t['vs_forward_laplacian']:.2f}" if t["vs_forward_laplacian"] else "-"
        print(
            f"| {t['dim']} | {name} | {t['ms_per_step']:.2f} | {ratio} | {t['rel_l2']:.3g} | "
            f"{t['compile_s']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(
            {"args": vars(args) | {"out": str(args.out)}, "runs": runs, "table": table}, indent=1
        )
    )
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
