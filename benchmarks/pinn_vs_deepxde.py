"""sciml's Burgers PINN (`pinn_burgers`) against DeepXDE 1.15 (PyTorch backend).

The problem of DeepXDE's Burgers example: u_t + u u_x = nu u_xx, nu = 0.01/pi,
x in [-1, 1], t in [0, `--t-final`] (DeepXDE's example stops at 0.99; 1.0
here by default), u(x, 0) = -sin(pi x), u(+-1, t) = 0. Both sides train the
same network, 2-[20]x3-1 tanh, Glorot-normal weights, from the same initial
weights (sciml's initialisation, copied into DeepXDE's `torch.nn.Linear`
layers, and checked by comparing the two initial functions on the grid),
on the same fixed collocation points (2540 interior, 80 boundary, 160
initial; uniform random, drawn here with numpy and handed to both sides),
with the same loss (mean squared PDE residual over the interior points +
mean squared boundary error + mean squared initial error) and Adam (lr 1e-3,
b1 0.9, b2 0.999, eps 1e-8) for `--iters` iterations.

* sciml: the registered problem `pinn_burgers` with `problem.points_file`
  (the fixed points), built and trained as `python -m sciml.train` does
  (`validate_config`, the problem spec's `build`, `make_optimizer`, `fit`
  with `run_dir=None`), `train.log_every` = DeepXDE's `display_every`
  (1000). One side per derivative engine in `--engines` (`problem.engine`;
  default `reverse`, sciml's default). Time per iteration: `fit`'s
  `train_time_s` (time inside the compiled chunks, compile time excluded) /
  steps. u on the grid: the problem's `solution(model, x)`, vmapped.
* DeepXDE: `benchmarks/_deepxde_worker.py` in the DeepXDE venv (a long-lived
  subprocess per dtype; see its docstring for how the points enter
  `dde.data.TimePDE`), `model.train(iterations=N, display_every=1000)`,
  `torch.set_num_threads(--threads)` (default 1: with 2 threads torch slowed
  down 10-40x on the shared 2-core VM whenever other jobs ran). Time per
  iteration: the clock read by a callback after iteration min(100, N/10)
  and after the last, divided by the iterations between.

Both sides run in float32 and float64 (`--dtypes`; sciml's `train.dtype`,
DeepXDE's `dde.config.set_default_float`). Within a dtype the sides are
interleaved in a shuffled order in each of `--repeats` rounds (after one
short warm-up run each); the table gives medians, the ratio of medians and the
median of the per-round ratios (target: DeepXDE / sciml >= 5 per iteration
in float32), and the relative L2 error ||u - u_ref|| / ||u_ref|| of each
side's trained network on a 256 x 100 (x, t) grid against the Cole-Hopf
solution (`sciml.pinn.reference.burgers_cole_hopf`). Same start, points,
loss and optimizer: after 2000 iterations the sides' losses and errors
agree to 2-3 digits (the trajectories part only through round-off), which
checks the set-up.

Output: markdown on stdout, JSON in `benchmarks/results/pinn_vs_deepxde.json`.

    python benchmarks/pinn_vs_deepxde.py [--iters 5000] [--repeats 3] [--dtypes float32 float64]
        [--engines reverse taylor] [--deepxde-python PATH] [--threads 1]
        [--formulation pointset|example] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import equinox as eqx
import jax
import numpy as np
from _common import sciml_version, write_result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pinn_vs_deepxde.json"
VENV_PY = ROOT / ".venv-deepxde" / "bin" / "python"
WORKER = ROOT / "benchmarks" / "_deepxde_worker.py"
PROBLEM = "pinn_burgers"
DEEPXDE = "deepxde"
NU = 0.01 / np.pi
WIDTH, DEPTH = 20, 3
N_INTERIOR, N_BOUNDARY, N_INITIAL = 2540, 80, 160  # DeepXDE's Burgers example
LR = 1e-3
GRID_X, GRID_T = 256, 100
DISPLAY_EVERY = 1000  # DeepXDE's default; sciml's log_every is set to the same
TARGET = 5.0  # DeepXDE / sciml seconds per iteration, float32 (the issue)
DEEPXDE_MEASURED = 9.3e-3  # s per iteration, as reported in the issue


# --- points and reference -------------------------------------------------------------------


def make_points(seed: int, t_final: float) -> dict[str, np.ndarray]:
    """The fixed collocation points, columns (x, t): uniform random, seeded.

    Boundary points: the first half at x = -1, the rest at x = +1, t uniform on
    [0, t_final]; initial points: t = 0, x uniform on [-1, 1].
    """
    rng = np.random.default_rng(seed)
    interior = np.column_stack(
        [rng.uniform(-1.0, 1.0, N_INTERIOR), rng.uniform(0.0, t_final, N_INTERIOR)]
    )
    half = N_BOUNDARY // 2
    xb = np.where(np.arange(N_BOUNDARY) < half, -1.0, 1.0)
    boundary = np.column_stack([xb, rng.uniform(0.0, t_final, N_BOUNDARY)])
    initial = np.column_stack([rng.uniform(-1.0, 1.0, N_INITIAL), np.zeros(N_INITIAL)])
    return {"interior": interior, "boundary": boundary, "initial": initial}


def reference(t_final: float) -> tuple[np.ndarray, np.ndarray, str]:
    """The (x, t) grid (GRID_X x GRID_T points, as (M, 2)), u there, and which solver gave it."""
    from sciml.pinn.reference import burgers_cole_hopf

    x, t = np.linspace(-1.0, 1.0, GRID_X), np.linspace(0.0, t_final, GRID_T)
    xx, tt = np.meshgrid(x, t, indexing="ij")
    grid = np.column_stack([xx.ravel(), tt.ravel()])
    u = np.asarray(burgers_cole_hopf(grid[:, 0], grid[:, 1], nu=NU), np.float64)
    return grid, u, "sciml.pinn.reference.burgers_cole_hopf"


def rel_l2(u: np.ndarray, u_ref: np.ndarray) -> float:
    u, u_ref = np.asarray(u, np.float64).ravel(), np.asarray(u_ref, np.float64).ravel()
    return float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref))


# --- sciml side -----------------------------------------------------------------------------


@eqx.filter_jit
def _solution_on(problem, model, xt):
    """`problem.solution(model, x)` for every row of `xt`."""
    return jax.vmap(lambda x: problem.solution(model, x))(xt)


class ScimlSide:
    """`pinn_burgers` on the fixed points, trained with `fit` as the CLI does."""

    def __init__(self, dtype: str, points_file: Path, t_final: float, seed: int, engine: str):
        from sciml.config import validate_config
        from sciml.optim import make_optimizer
        from sciml.problems import get_problem_spec

        # what `python -m sciml.train` does for train.dtype, per run; float32 must switch back
        jax.config.update("jax_enable_x64", dtype == "float64")
        self.dtype = dtype
        spec = get_problem_spec(PROBLEM)  # KeyError: not registered
        problem = {
            "nu": NU,
            "t_final": t_final,
            "n_interior": N_INTERIOR,
            "n_boundary": N_BOUNDARY,
            "n_initial": N_INITIAL,
            "points_file": str(points_file),
            "engine": engine,
        }
        if "resample" in spec.params.model_fields:  # fixed points: no resampling
            default = spec.params.model_fields["resample"].default
            problem["resample"] = "none" if isinstance(default, str) else {"method": "none"}
        self.cfg = validate_config(
            {
                "problem": {"name": PROBLEM, **problem},
                "model": {
                    "width": WIDTH,
                    "depth": DEPTH,
                    "activation": "tanh",
                    "init": "glorot_normal",
                },
                "optimizer": {"name": "adam", "lr": LR},
                "train": {
                    "steps": DISPLAY_EVERY,
                    "seed": seed,
                    "dtype": dtype,
                    "log_every": DISPLAY_EVERY,
                    "eval_every": None,
                    "checkpoint_every": None,
                    "progress": False,
                },
            }
        )
        self.problem = spec.build(self.cfg.problem, self.cfg.model)
        self.optimizer = make_optimizer(self.cfg.optimizer, self.cfg.train.steps)

    def initial_model(self):
        """The model `fit` starts from (the same keys as the trainer)."""
        from sciml.trainer import init_train_state, join_model

        ts, static = init_train_state(self.problem, self.optimizer, self.cfg.train.seed)
        return join_model(ts.params, ts.buffers, static)

    def predict(self, model, grid: np.ndarray) -> np.ndarray:
        """u on the (M, 2) grid (the problem's `solution(model, x)`, vmapped)."""
        xt = jax.numpy.asarray(grid, "float64" if self.dtype == "float64" else "float32")
        return np.asarray(_solution_on(self.problem, model, xt), np.float64).reshape(len(grid))

    def initial_weights(self) -> dict[str, np.ndarray] | None:
        """The initial Dense layers as `w{i}, b{i}` ((out, in) and (out,)), if the network is the
        plain 2-[WIDTH]*DEPTH-1 MLP; else None (DeepXDE then uses its own initialisation)."""

        from sciml.nn import Dense

        model = self.initial_model()
        layers = [
            leaf
            for leaf in jax.tree.leaves(model, is_leaf=lambda n: isinstance(n, Dense))
            if isinstance(leaf, Dense)
        ]
        sizes = [2] + [WIDTH] * DEPTH + [1]
        want = [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
        if [tuple(layer.weight.shape) for layer in layers] != want or any(
            layer.bias is None for layer in layers
        ):
            return None
        out = {}
        for i, layer in enumerate(layers):
            out[f"w{i}"] = np.asarray(layer.weight)
            out[f"b{i}"] = np.asarray(layer.bias)
        return out

    def run(self, iters: int, grid: np.ndarray, u_ref: np.ndarray) -> dict:
        from sciml.trainer import fit

        train = self.cfg.train.model_copy(
            update={"steps": iters, "log_every": min(DISPLAY_EVERY, iters)}
        )
        t0 = time.perf_counter()
        res = fit(self.problem, self.optimizer, train, run_dir=None)
        wall = time.perf_counter() - t0
        s = res.summary
        return {
            "s_per_iter": s["train_time_s"] / s["steps"],
            "train_time_s": s["train_time_s"],
            "compile_s": s["compile_time_s"],
            "wall_minus_compile_s": wall - s["compile_time_s"],
            "iters": s["steps"],
            "final_loss": s["final_loss"],
            "rel_l2": rel_l2(self.predict(res.model, grid), u_ref),
            "rel_l2_evaluate": s.get("rel_l2"),  # the problem's own grid
        }


# --- DeepXDE side ---------------------------------------------------------------------------


class DeepXDESide:
    """The long-lived worker in the DeepXDE venv, for one dtype."""

    def __init__(self, python: Path, data: Path, dtype: str, threads: int | None, formulation: str):
        cmd = [str(python), str(WORKER), str(data), "--dtype", dtype, "--formulation", formulation]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"DeepXDE worker did not start (exit {self.proc.wait()}; see its stderr above)"
            )
        self.info = json.loads(line)

    def run(self, iters: int) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": "run", "iters": iters}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("DeepXDE worker died (see its stderr above)")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


# --- driver ---------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every dtype's runs share."""

    iters: int
    repeats: int
    seed: int
    t_final: float
    points_file: Path
    grid: np.ndarray
    u_ref: np.ndarray
    tmp: Path
    python: Path
    threads: int | None
    formulation: str
    engines: list[str]
    order_rng: random.Random


def sciml_name(engine: str) -> str:
    return f"sciml ({engine})"


def run_dtype(dtype: str, su: Setup) -> dict:
    """Warm-up and `su.repeats` interleaved rounds of every side in one dtype."""
    notes = []
    scimls = {}
    for engine in su.engines:
        try:
            scimls[sciml_name(engine)] = ScimlSide(
                dtype, su.points_file, su.t_final, su.seed, engine
            )
        except KeyError as e:
            notes.append(f"sciml side skipped: {e.args[0] if e.args else e}")
            break
    first = next(iter(scimls.values()), None)
    data = {
        "grid": su.grid,
        "u_ref": su.u_ref,
        "nu": NU,
        "t_final": su.t_final,
        "lr": LR,
        "width": WIDTH,
        "depth": DEPTH,
        "seed": su.seed,
        **dict(np.load(su.points_file)),
    }
    # every engine starts from the same model (same seed and model section)
    weights = first.initial_weights() if first else None
    if weights is not None:
        data.update(weights)
        data["u_init"] = first.predict(first.initial_model(), su.grid)
    elif first is not None:
        notes.append(
            "sciml's network is not a plain MLP of Dense layers: DeepXDE uses its own "
            "Glorot-normal initialisation"
        )
    data_file = su.tmp / f"deepxde_{dtype}.npz"
    np.savez(data_file, **data)

    dde = None
    if not su.python.exists():
        notes.append(
            f"{su.python} not found: create the DeepXDE venv (benchmarks/README.md) or pass "
            "--deepxde-python; DeepXDE side skipped"
        )
    else:
        try:
            dde = DeepXDESide(su.python, data_file, dtype, su.threads, su.formulation)
        except Exception as e:  # noqa: BLE001 -- report and go on with the sciml side
            notes.append(f"DeepXDE worker failed to start ({e!r}); DeepXDE side skipped")
    for n in notes:
        print(f"WARNING ({dtype}):", n, flush=True)
    sides = {
        name: (lambda n, side=side: side.run(n, su.grid, su.u_ref)) for name, side in scimls.items()
    }
    if dde:
        sides[DEEPXDE] = dde.run

    warm = min(200, su.iters)
    warmup = {name: fn(warm) for name, fn in sides.items()}  # compilation cache, torch allocator
    raw = {name: [] for name in sides}
    for r in range(su.repeats):
        names = list(sides)
        su.order_rng.shuffle(names)
        for name in names:
            raw[name].append(sides[name](su.iters))
        done = ", ".join(
            f"{k} {1e3 * v[-1]['s_per_iter']:.3f} ms/iter rel_l2 {v[-1]['rel_l2']:.3g}"
            for k, v in raw.items()
        )
        print(f"{dtype} round {r + 1}/{su.repeats}: {done}", flush=True)
    info = dde.info if dde else None
    if dde:
        dde.close()
    return {
        "raw": raw,
        "warmup": warmup,
        "deepxde_info": info,
        "notes": notes,
        "initial_weights_copied": weights is not None,
    }


def summarise(res: dict) -> dict:
    """Per side: medians; per sciml side with DeepXDE present: DeepXDE / sciml time ratios."""
    raw = res["raw"]
    out = {}
    for name, runs in raw.items():
        v = out[name] = {
            "s_per_iter": median(r["s_per_iter"] for r in runs),
            "rel_l2": median(r["rel_l2"] for r in runs),
            "rel_l2_all": [r["rel_l2"] for r in runs],
            "final_loss": median(r["final_loss"] for r in runs),
        }
        if name == DEEPXDE:
            v["startup_s"] = median(r["startup_s"] for r in runs)
            v["init_max_abs_diff"] = runs[-1]["init_max_abs_diff"]
        else:
            v["compile_s"] = median(r["compile_s"] for r in runs)
            v["rel_l2_evaluate"] = runs[-1].get("rel_l2_evaluate")
    if DEEPXDE in raw:
        for name in raw:
            if name != DEEPXDE:
                out[name]["ratio"] = out[DEEPXDE]["s_per_iter"] / out[name]["s_per_iter"]
                out[name]["paired_ratio"] = median(
                    d["s_per_iter"] / s["s_per_iter"]
                    for d, s in zip(raw[DEEPXDE], raw[name], strict=True)
                )
    return out


def main(
    iters: int,
    repeats: int,
    dtypes: list[str],
    out: Path,
    *,
    seed: int = 0,
    t_final: float = 1.0,
    python: Path = VENV_PY,
    threads: int | None = 1,
    formulation: str = "pointset",
    engines: tuple[str, ...] = ("reverse",),
) -> dict:
    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory()
    points_file = Path(tmp.name) / "points.npz"
    np.savez(points_file, **make_points(seed, t_final))
    grid, u_ref, ref_name = reference(t_final)
    su = Setup(
        iters,
        repeats,
        seed,
        t_final,
        points_file,
        grid,
        u_ref,
        Path(tmp.name),
        python,
        threads,
        formulation,
        list(engines),
        random.Random(seed),
    )
    per_dtype = {dtype: run_dtype(dtype, su) for dtype in dtypes}
    summary = {dtype: summarise(r) for dtype, r in per_dtype.items()}
    tmp.cleanup()

    info = next((r["deepxde_info"] for r in per_dtype.values() if r["deepxde_info"]), None)
    dev = jax.devices()[0]
    print(
        f"\nproblem: Burgers, nu = 0.01/pi, t in [0, {t_final}], MLP 2-[{WIDTH}]x{DEPTH}-1 tanh "
        f"(Glorot normal), fixed points {N_INTERIOR} interior + {N_BOUNDARY} boundary + "
        f"{N_INITIAL} initial, Adam(lr={LR}), {iters} iterations x {repeats} interleaved rounds, "
        "medians"
    )
    dde_text = (
        f"DeepXDE {info['deepxde']} (torch {info['torch']}, {info['threads']} thread(s), "
        f"formulation {info['formulation']}), display_every {DISPLAY_EVERY}"
        if info
        else "DeepXDE: -"
    )
    print(
        f"sciml: jax {jax.__version__} ({dev.platform}), fit's train_time_s / steps, log_every "
        f"{DISPLAY_EVERY}; {dde_text}; reference: {ref_name}, {GRID_X} x {GRID_T} grid\n"
    )
    print(
        "| dtype | side | ms / iteration | DeepXDE / sciml | per-round ratio | rel L2 | final loss "
        "| compile / start-up (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for dtype, sm in summary.items():
        for name, v in sm.items():
            ratio = f"{v['ratio']:.2f}" if "ratio" in v else ""
            paired = f"{v['paired_ratio']:.2f}" if "ratio" in v else ""
            start = v.get("compile_s", v.get("startup_s"))
            print(
                f"| {dtype} | {name} | {1e3 * v['s_per_iter']:.3f} | {ratio} | {paired} | "
                f"{v['rel_l2']:.3e} | {v['final_loss']:.3e} | {start:.2f} |"
            )
    checks = {}
    for dtype, sm in summary.items():
        for name, v in sm.items():
            if "ratio" not in v:
                continue
            line = (
                f"{dtype}: DeepXDE / {name} = {v['paired_ratio']:.2f}x per-round median "
                f"({v['ratio']:.2f}x ratio of medians)"
            )
            if dtype == "float32":
                ok = v["paired_ratio"] >= TARGET
                checks[f"speedup float32, {name}"] = {
                    "value": v["paired_ratio"],
                    "ratio_of_medians": v["ratio"],
                    "target": f">= {TARGET}",
                    "ok": ok,
                }
                line += f"; target >= {TARGET}x: {'OK' if ok else 'BELOW'}"
            print(line)
    if DEEPXDE in summary.get("float32", {}):
        ms = 1e3 * summary["float32"][DEEPXDE]["s_per_iter"]
        print(
            f"DeepXDE float32: {ms:.2f} ms/iteration here (the issue measured "
            f"{1e3 * DEEPXDE_MEASURED:.1f} ms)"
        )
    for dtype, r in per_dtype.items():
        for n in r["notes"]:
            print(f"NOTE ({dtype}): {n}")

    result = {
        "benchmark": "pinn_vs_deepxde",
        "problem": PROBLEM,
        "nu": NU,
        "t_final": t_final,
        "network": f"MLP 2-[{WIDTH}]x{DEPTH}-1 tanh, glorot normal",
        "points": {
            "interior": N_INTERIOR,
            "boundary": N_BOUNDARY,
            "initial": N_INITIAL,
            "sampler": "uniform random (numpy default_rng)",
            "seed": seed,
        },
        "optimizer": f"adam({LR})",
        "iters": iters,
        "repeats": repeats,
        "dtypes": dtypes,
        "log_every": DISPLAY_EVERY,
        "reference": ref_name,
        "grid": [GRID_X, GRID_T],
        "deepxde": info,
        "deepxde_formulation": formulation,
        "torch_threads": threads,
        "sciml_engines": list(engines),
        "jax_version": jax.__version__,
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **sciml_version(),
        "shared_machine": True,
        "per_dtype": per_dtype,
        "summary": summary,
        "checks": checks,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=5000, help="Adam iterations per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds per dtype")
    ap.add_argument(
        "--dtypes", nargs="+", choices=["float32", "float64"], default=["float32", "float64"]
    )
    ap.add_argument("--seed", type=int, default=0, help="points, sciml's init (train.seed)")
    ap.add_argument("--t-final", type=float, default=1.0, help="end of the time interval")
    ap.add_argument(
        "--deepxde-python",
        type=Path,
        default=VENV_PY,
        help="python of the venv with deepxde and torch (default: .venv-deepxde/bin/python)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for DeepXDE (default 1: on the shared 2-core VM, 2 threads "
        "made DeepXDE 10-40x slower whenever other jobs ran; 0: torch's own choice)",
    )
    ap.add_argument(
        "--formulation",
        choices=["pointset", "example"],
        default="pointset",
        help="how DeepXDE gets the points (see _deepxde_worker.py)",
    )
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["reverse"],
        help="sciml derivative engines (problem.engine), one sciml side each; default: reverse "
        "(sciml's default); e.g. reverse taylor forward_over_reverse",
    )
    ap.add_argument("--quick", action="store_true", help="smoke test: 300 iterations x 1 round")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.quick:
        a.iters, a.repeats = 300, 1
        a.out = a.out or RESULTS.with_name("pinn_vs_deepxde_quick.json")
    if a.iters < 10:
        ap.error(f"--iters must be at least 10, got {a.iters}")
    main(
        a.iters,
        a.repeats,
        a.dtypes,
        a.out or RESULTS,
        seed=a.seed,
        t_final=a.t_final,
        python=a.deepxde_python,
        threads=a.threads or None,
        formulation=a.formulation,
        engines=tuple(a.engines),
    )
    sys.exit(0)
