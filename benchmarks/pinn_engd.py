"""ENGD against Adam and Adam -> L-BFGS on `pinn_poisson2d` and `pinn_heat1d`, equal wall-clock budgets.

The issue's targets (2-64-1 tanh network, float64): relative L2 error
<= 1e-6 on Poisson with ENGD in under 2 minutes, <= 1e-5 on heat.
Published (Müller & Zeinhofer 2023, 1000 s on a GPU): Poisson ENGD 6.2e-8,
Adam 9.4e-5, L-BFGS 1.8e-4; heat ENGD 3.0e-8, Adam 1.2e-4.

Each problem is built from its config (`configs/pinn_poisson2d.yaml`,
`configs/pinn_heat1d.yaml`: points, network, initialisation, the ENGD
settings) and trained with `sciml.trainer.fit` by three methods:

* `engd`: the config's optimizer section (chunks of 10 steps);
* `adam`: lr 1e-3, decayed by 0.9 every 2000 steps down to 1e-5 (chunks of
  1000 steps);
* `adam_lbfgs`: Adam (lr 1e-3, constant) for 10⁴ steps, then L-BFGS
  (memory 100, zoom line search of up to 20 steps; `sequence`; chunks of 500
  steps).

Every run gets the same budget of `--budget` seconds of training, counted
from the end of compilation (a callback stops `fit` after the first chunk
that ends past the budget, so a run may overshoot by one chunk: the wall
time reported is what it used). After each chunk the callback measures
rel_l2 on the config's evaluation grid (its time is excluded from the
budget), which gives the time and step at which each method first reached
1e-4, 1e-5, 1e-6. The methods are interleaved (for each seed and problem,
one run of each) so that load drift on a shared machine hits them alike.
Reported per run: final rel_l2, steps, training wall and CPU seconds
(`os.times`, this process), compile seconds; per problem and method: the
median and range over the seeds.

The script sets `OPENBLAS_NUM_THREADS=1` unless it is set: JAX's CPU
eigen-decomposition calls scipy's OpenBLAS LAPACK, and with its default
threads on a small loaded machine one 257 x 257 `eigh` took 0.1-0.3 s instead
of 5 ms; a 200-step ENGD run took 93 s instead of 24 s (measured here).

    python benchmarks/pinn_engd.py [--budget 120] [--seeds 0,1,2] [--problems poisson2d,heat1d]
    python benchmarks/pinn_engd.py --quick     # 10 s budget, one seed: a smoke test

Output: a markdown table on stdout and JSON in
`benchmarks/results/pinn_engd.json` (`--quick`: `pinn_engd_quick.json`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/scipy load OpenBLAS

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import median  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import yaml  # noqa: E402
from _common import sciml_version, write_result  # noqa: E402

import sciml.pinn.problems  # noqa: E402, F401  (registers the PINN problems and engd)
from sciml.config import validate_config  # noqa: E402
from sciml.optim import make_optimizer  # noqa: E402
from sciml.problems import build_problem  # noqa: E402
from sciml.trainer import Callback, TrainConfig, fit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "pinn_engd.json"
TARGETS = {"poisson2d": 1e-6, "heat1d": 1e-5}
THRESHOLDS = (1e-4, 1e-5, 1e-6)
ADAM_STEPS_BEFORE_LBFGS = 10_000
MAX_STEPS = 100_000_000  # the budget callback stops long before

METHODS = {
    "engd": None,  # the config's own optimizer section
    "adam": {
        "name": "adam",
        "lr": 1e-3,
        "schedule": {
            "name": "exponential",
            "decay_rate": 0.9,
            "transition_steps": 2000,
            "final_lr_ratio": 0.01,
        },
    },
    "adam_lbfgs": {
        "name": "sequence",
        "phases": [
            {"name": "adam", "lr": 1e-3},
            {"name": "lbfgs", "memory_size": 100, "max_linesearch_steps": 20},
        ],
        "boundaries": [ADAM_STEPS_BEFORE_LBFGS],
    },
}
CHUNK = {"engd": 10, "adam": 1000, "adam_lbfgs": 500}


class Budget(Callback):
    """Stop `fit` once `seconds` of training have passed; record rel_l2 after every chunk."""

    def __init__(self, seconds, rel_l2):
        self.seconds, self.rel_l2 = seconds, rel_l2
        self.curve = []  # (train seconds, step, rel_l2)
        self.eval_s = 0.0

    def on_start(self, run, ts):
        self.t0, self.c0 = time.perf_counter(), _cpu()

    def on_chunk(self, run, record, ts):
        t = time.perf_counter()
        rel = float(self.rel_l2(run.model(ts)))
        self.eval_s += time.perf_counter() - t
        self.wall = time.perf_counter() - self.t0 - self.eval_s
        self.cpu = _cpu() - self.c0  # includes the (small) evaluations
        self.curve.append((self.wall, int(record["step"]), rel))
        return self.wall >= self.seconds or not jnp.isfinite(rel)


def _cpu():
    t = os.times()
    return t.user + t.system


def load_config(problem: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"pinn_{problem}.yaml").read_text())


def run_one(problem_name, method, seed, budget):
    raw = load_config(problem_name)
    section = raw["optimizer"] if METHODS[method] is None else METHODS[method]
    raw = {**raw, "optimizer": section, "output": {"dir": None}}
    cfg = validate_config(raw)
    problem = build_problem(cfg.problem_name, cfg.problem.model_dump(), cfg.model.model_dump())
    train = TrainConfig(
        steps=MAX_STEPS,
        seed=seed,
        log_every=CHUNK[method],
        eval_every=None,
        checkpoint_every=None,
        progress=False,
        dtype="float64",
    )
    points, values = problem.reference

    @eqx.filter_jit
    def rel_l2(model):
        pred = jax.vmap(lambda x: problem.solution(model, x))(points)
        return jnp.linalg.norm(pred - values) / jnp.linalg.norm(values)

    budget_cb = Budget(budget, rel_l2)
    optimizer = make_optimizer(cfg.optimizer, MAX_STEPS)
    t0 = time.perf_counter()
    result = fit(problem, optimizer, train, callbacks=[budget_cb])
    total_wall = time.perf_counter() - t0
    curve = budget_cb.curve
    reached = {}
    for th in THRESHOLDS:
        hit = next(((t, s) for t, s, r in curve if r <= th), None)
        reached[f"{th:.0e}"] = None if hit is None else {"train_s": hit[0], "step": hit[1]}
    return {
        "problem": problem_name,
        "method": method,
        "seed": seed,
        "rel_l2": float(result.final_eval["rel_l2"]),
        "final_loss": float(result.summary.get("final_loss", float("nan"))),
        "steps": int(curve[-1][1]) if curve else 0,
        "train_wall_s": budget_cb.wall,
        "train_cpu_s": budget_cb.cpu,
        "compile_s": float(result.summary.get("compile_time_s", float("nan"))),
        "total_wall_s": total_wall,
        "reached": reached,
        "curve": curve,
    }


def summarise(runs):
    rows = {}
    for r in runs:
        rows.setdefault((r["problem"], r["method"]), []).append(r)
    out = []
    for (prob, method), rs in rows.items():
        rels = [r["rel_l2"] for r in rs]

        def med(key, rs=rs):
            return median(r[key] for r in rs)

        times = [
            r["reached"][f"{TARGETS[prob]:.0e}"]["train_s"]
            for r in rs
            if r["reached"][f"{TARGETS[prob]:.0e}"] is not None
        ]
        out.append(
            {
                "problem": prob,
                "method": method,
                "seeds": [r["seed"] for r in rs],
                "rel_l2": rels,
                "rel_l2_median": median(rels),
                "rel_l2_min": min(rels),
                "rel_l2_max": max(rels),
                "steps_median": med("steps"),
                "train_wall_s_median": med("train_wall_s"),
                "train_cpu_s_median": med("train_cpu_s"),
                "compile_s_median": med("compile_s"),
                "target": TARGETS[prob],
                "runs_reaching_target": len(times),
                "time_to_target_s_median": median(times) if times else None,
            }
        )
    return out


def print_table(summary, budget):
    print(f"\nbudget {budget:g} s of training per run (after compiling); medians over seeds\n")
    print(
        "| problem | method | rel_l2 median [min, max] | steps | train wall (s) | train CPU (s) "
        "| compile (s) | reached target | time to target (s) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for s in summary:
        ttt = s["time_to_target_s_median"]
        print(
            f"| {s['problem']} | {s['method']} | {s['rel_l2_median']:.2e} "
            f"[{s['rel_l2_min']:.1e}, {s['rel_l2_max']:.1e}] | {s['steps_median']:.0f} "
            f"| {s['train_wall_s_median']:.1f} | {s['train_cpu_s_median']:.1f} "
            f"| {s['compile_s_median']:.1f} | {s['runs_reaching_target']}/{len(s['seeds'])} "
            f"(≤ {s['target']:.0e}) | {'-' if ttt is None else f'{ttt:.1f}'} |"
        )


def main(budget, seeds, problems, out):
    jax.config.update("jax_enable_x64", True)
    load_start = os.getloadavg()
    runs = []
    for seed in seeds:
        for prob in problems:
            for method in METHODS:
                r = run_one(prob, method, seed, budget)
                runs.append(r)
                print(
                    f"{prob} {method} seed {seed}: rel_l2 {r['rel_l2']:.2e} after {r['steps']} "
                    f"steps, {r['train_wall_s']:.1f} s wall, {r['train_cpu_s']:.1f} s CPU "
                    f"(compile {r['compile_s']:.1f} s)",
                    flush=True,
                )
    summary = summarise(runs)
    print_table(summary, budget)
    dev = jax.devices()[0]
    result = {
        "benchmark": "pinn_engd",
        "budget_s": budget,
        "seeds": seeds,
        "problems": problems,
        "methods": {k: (v or "config's optimizer section") for k, v in METHODS.items()},
        "configs": {p: load_config(p) for p in problems},
        "targets": TARGETS,
        "jax_version": jax.__version__,
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        **sciml_version(),
        "summary": summary,
        "runs": runs,
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per run")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values")
    ap.add_argument("--problems", default="poisson2d,heat1d", help="poisson2d and/or heat1d")
    ap.add_argument("--quick", action="store_true", help="10 s budget, seed 0 (smoke test)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    problems = [p.strip() for p in a.problems.split(",") if p.strip()]
    unknown = sorted(set(problems) - set(TARGETS))
    if unknown:
        ap.error(f"unknown problem(s) {unknown}; allowed: {', '.join(TARGETS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.quick:
        budget, seeds = 10.0, seeds[:1]
        out = a.out or RESULTS.with_name("pinn_engd_quick.json")
    else:
        budget, out = a.budget, a.out or RESULTS
    main(budget, seeds, problems, out)
