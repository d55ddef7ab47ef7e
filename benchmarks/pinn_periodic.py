"""The recipes of the periodic evolution PINNs (convection, Allen-Cahn, KdV) over seeds.

Each problem's recipe is its default config (`configs/pinn_convection.yaml`,
`configs/pinn_allen_cahn.yaml`, `configs/pinn_kdv.yaml`): exact periodic
embedding of x, hard initial condition, time marching over the config's
`problem.windows` windows (`sciml.pinn._periodic.time_marching`: each window
starts from the previous window's end state, handed over as grid values, and
from its parameters), with the config's optimizer (Adam then L-BFGS) and
`train.steps` per window. The config is validated and built as
`python -m sciml.train` does (`validate_config`, the problem spec's `build`,
`make_optimizer`), then marched once per seed (`train.seed`; the seed draws
the network and the collocation points).

Per run: the relative L2 error of the marched solution on the problem's
reference grid over the whole interval (`rel_l2`; exact solution for
convection, Fourier ETDRK4 for Allen-Cahn and KdV), its max error, each
window's `rel_l2`, the wall time, the process CPU time (user + system; the
machine is shared, so wall time is inflated by other load while CPU time is
not), and the time inside the compiled training chunks and compiling
(summed over the windows). Summary per problem: median, min and max over the
seeds.

`--engines` (KdV, third order) times one loss-and-gradient evaluation of
the KdV recipe's first window (its network and collocation points) per
derivative engine (`reverse`, `forward_over_reverse`, `taylor`), jitted,
median of `--repeats` interleaved rounds, and checks that the engines'
losses agree.

Output: markdown on stdout, JSON in `benchmarks/results/pinn_periodic.json`.

    python benchmarks/pinn_periodic.py [--problems convection allen_cahn kdv] [--seeds 0 1 2]
        [--engines] [--set problem.windows=4 ...] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from statistics import median

import jax
from _common import sciml_version, write_result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pinn_periodic.json"
PROBLEMS = {
    "convection": "pinn_convection",
    "allen_cahn": "pinn_allen_cahn",
    "kdv": "pinn_kdv",
}
ENGINES = ("reverse", "forward_over_reverse", "taylor", "forward_laplacian")


def load(name: str, overrides: list[str], seed: int):
    """The validated config of `configs/<name>.yaml` with `overrides`, for `seed`."""
    from sciml.cli_config import apply_overrides, load_yaml
    from sciml.config import validate_config

    path = ROOT / "configs" / f"{name}.yaml"
    data = apply_overrides(load_yaml(path.read_text(), str(path)), list(overrides))
    data.setdefault("train", {})
    data["train"].update(seed=seed, progress=False, checkpoint_every=None, eval_every=None)
    return validate_config(data)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def run_once(name: str, overrides: list[str], seed: int) -> dict:
    """March one recipe for one seed; the figures of one row."""
    from sciml.optim import make_optimizer
    from sciml.pinn._periodic import time_marching
    from sciml.problems import get_problem_spec

    cfg = load(name, overrides, seed)
    jax.config.update("jax_enable_x64", cfg.train.dtype == "float64")
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    problem = get_problem_spec(cfg.problem_name).build(cfg.problem, cfg.model)
    optimizer = make_optimizer(cfg.optimizer, cfg.train.steps)
    out = time_marching(problem, optimizer, cfg.train)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    return {
        "seed": seed,
        "rel_l2": out.rel_l2,
        "max_abs_error": out.max_abs_error,
        "window_rel_l2": out.window_rel_l2,
        "window_final_loss": [f.summary["final_loss"] for f in out.fits],
        "wall_s": wall,
        "cpu_s": cpu,
        "train_time_s": sum(f.summary["train_time_s"] for f in out.fits),
        "compile_time_s": sum(f.summary["compile_time_s"] for f in out.fits),
        "steps": cfg.train.steps * problem.settings.windows,
    }


def summarise(rows: list[dict]) -> dict:
    out = {}
    for key in ("rel_l2", "max_abs_error", "wall_s", "cpu_s"):
        values = [r[key] for r in rows]
        out[key] = {"median": median(values), "min": min(values), "max": max(values)}
    return out


def engine_timing(overrides: list[str], repeats: int) -> dict:
    """Loss-and-gradient time of the KdV recipe's first window per derivative engine."""
    from sciml.problems import get_problem_spec
    from sciml.trainer import make_loss_and_grad, split_model

    cfg = load("pinn_kdv", overrides, 0)
    jax.config.update("jax_enable_x64", True)
    spec = get_problem_spec(cfg.problem_name)
    programs, losses = {}, {}
    for engine in ENGINES:
        settings = type(cfg.problem).model_validate({**cfg.problem.model_dump(), "engine": engine})
        problem = spec.build(settings, cfg.model)
        model, state = problem.init(jax.random.PRNGKey(0))
        call = make_loss_and_grad(problem, model)
        params = split_model(model)[0]
        key = jax.random.PRNGKey(1)
        t0 = time.perf_counter()
        (loss, _), grads = call(params, state, key)
        jax.block_until_ready(grads)
        programs[engine] = (call, params, state, key, time.perf_counter() - t0)
        losses[engine] = float(loss)
    times = {e: [] for e in ENGINES}
    for _ in range(repeats):
        for engine in ENGINES:
            call, params, state, key, _ = programs[engine]
            t0 = time.perf_counter()
            jax.block_until_ready(call(params, state, key))
            times[engine].append(time.perf_counter() - t0)
    ref = losses["reverse"]
    return {
        "n_interior": cfg.problem.n_interior,
        "network": cfg.model.model_dump(),
        "repeats": repeats,
        "rows": [
            {
                "engine": e,
                "loss_and_grad_ms": 1e3 * median(times[e]),
                "ratio_to_reverse": median(times[e]) / median(times["reverse"]),
                "first_call_s": programs[e][4],
                "loss_rel_diff_vs_reverse": abs(losses[e] - ref) / abs(ref),
            }
            for e in ENGINES
        ],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides applied to every recipe",
    )
    parser.add_argument("--engines", action="store_true", help="also time KdV's engines")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 windows of 20 steps, one seed"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = list(args.set)
    seeds = args.seeds
    if args.quick:
        overrides += ["problem.windows=2", "train.steps=20", "train.log_every=10"]
        seeds = seeds[:1]
    out_path = args.out or (
        RESULTS.with_name("pinn_periodic_quick.json") if args.quick else RESULTS
    )

    result = {
        "benchmark": "pinn_periodic",
        "jax_version": jax.__version__,
        "platform": jax.devices()[0].platform,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_start": os.getloadavg(),
        **sciml_version(),
        "overrides": overrides,
        "problems": {},
    }
    for short in args.problems:
        name = PROBLEMS[short]
        rows = []
        for seed in seeds:
            row = run_once(name, overrides, seed)
            rows.append(row)
            print(
                f"{name} seed {seed}: rel_l2 {row['rel_l2']:.3e}  max {row['max_abs_error']:.2e}  "
                f"wall {row['wall_s']:.0f} s  cpu {row['cpu_s']:.0f} s",
                flush=True,
            )
        cfg = load(name, overrides, seeds[0])
        result["problems"][name] = {
            "config": cfg.to_dict(),
            "runs": rows,
            "summary": summarise(rows),
        }
        write_result(out_path, result)  # after each problem: long runs keep what they have
    if args.engines:
        result["kdv_engines"] = engine_timing(overrides, args.repeats)
    result["load_average_end"] = os.getloadavg()
    write_result(out_path, result)

    print("\n| problem | seeds | rel_l2 median [min, max] | CPU s median | wall s median |")
    print("|---|---|---|---|---|")
    for name, p in result["problems"].items():
        s = p["summary"]
        r = s["rel_l2"]
        print(
            f"| {name} | {len(p['runs'])} | {r['median']:.2e} [{r['min']:.2e}, {r['max']:.2e}] "
            f"| {s['cpu_s']['median']:.0f} | {s['wall_s']['median']:.0f} |"
        )
    if args.engines:
        print("\n| KdV engine | loss+grad ms | ratio to reverse | loss rel. diff |")
        print("|---|---|---|---|")
        for row in result["kdv_engines"]["rows"]:
            print(
                f"| {row['engine']} | {row['loss_and_grad_ms']:.1f} | "
                f"{row['ratio_to_reverse']:.2f} | {row['loss_rel_diff_vs_reverse']:.1e} |"
            )


if __name__ == "__main__":
    main()
