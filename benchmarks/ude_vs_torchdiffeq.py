"""sciml's neural-ODE spiral training iteration against torchdiffeq (and diffrax by hand).

The problem is torchdiffeq's `examples/ode_demo.py` as in `sciml.ude._spiral`:
true dynamics dy/dt = (y**3) @ A solved accurately (Tsit5, rtol = atol = 1e-8)
at 1000 points on [0, 25]; the model is an MLP 2-50-2 tanh applied to y**3;
one training iteration = a batch of 20 random windows of 10 consecutive
points, each solved from its true first point, L1 loss, gradient, one Adam
(lr 1e-3) update. float32 on both sides, the same data, the same initial
weights (sciml's init, copied into torch) and the same window starts (drawn
here with numpy and handed to both sides), so both sides do the same training.

Sides and modes (all with rtol=1e-3, atol=1e-4 on both sides, adjoint
solves backwards with the same tolerances):

* sciml: `sciml.ude.solve_batch(field, y0s, ts, mode=..., stepsize_controller=
  PIDController(rtol, atol), adjoint=...)`, Tsit5 (sciml's default), one
  jitted step per iteration (compiled ahead of time; compile time reported),
  in two batch modes: "sciml" vmaps one solve per window (own step sizes),
  "sciml joint" solves the 20 windows as one (20, 2) system with shared
  steps, which is what torchdiffeq does with a batched state.
* diffrax by hand / diffrax by hand joint: the same two losses written with
  `diffrax.diffeqsolve` directly.
* torchdiffeq: `odeint` / `odeint_adjoint`, method dopri5, the batch of 20
  windows solved as one (20, 2) state, in `.venv-torchdiffeq` (or the python
  given by `--torch-python`) via `benchmarks/_torchdiffeq_worker.py` (a
  long-lived subprocess).

The spiral problem's default `batch_solve: auto` picks the batching from the
adjoint (`sciml.ude._spiral.batch_mode_for`: joint with BacksolveAdjoint, vmap
otherwise); the script reports which side that is per mode ("sciml auto") and
checks that it is the faster of "sciml" and "sciml joint" (per-round median
ratio to the faster one <= 1.05).

Modes: "backprop" = differentiate through the solver's operations (diffrax
`RecursiveCheckpointAdjoint()`, torchdiffeq `odeint`); "adjoint" = continuous
adjoint (diffrax `BacksolveAdjoint()`, torchdiffeq `odeint_adjoint`).

torchdiffeq runs once per value of `--threads` (torch.set_num_threads; default
1 and the number of cores XLA's CPU pool uses); the target checks use the first.

Each timed run trains `--iters` iterations from the initial weights; all
(side, mode) runs are interleaved in a shuffled order within each of
`--rounds` rounds; the table gives median seconds per iteration and ratios of
medians (and the median of per-round ratios). Step counts differ between the
libraries (adaptive steps, torchdiffeq's shared step over the batch vs one
step size per vmapped window in diffrax), so function evaluations are reported.
Output: markdown on stdout, JSON in `benchmarks/results/ude_vs_torchdiffeq.json`.

    python benchmarks/ude_vs_torchdiffeq.py [--iters 200] [--rounds 5] [--threads 1 2] [--quick]
                                            [--torch-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import sciml_version, write_result

from sciml.ude import solve_batch as sciml_solve_batch
from sciml.ude._spiral import NeuralODESpiral, batch_mode_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ude_vs_torchdiffeq.json"
VENV_PY = ROOT / ".venv-torchdiffeq" / "bin" / "python"
WORKER = ROOT / "benchmarks" / "_torchdiffeq_worker.py"
BATCH_SIZE, BATCH_TIME, LR = 20, 10, 1e-3
RTOL, ATOL, MAX_STEPS = 1e-3, 1e-4, 4096
TARGETS = {"backprop": 4.0, "adjoint": 7.0}  # torchdiffeq / sciml, from the issue
BY_HAND_MEASURED = {"backprop": 4.0, "adjoint": 7.5}  # diffrax by hand, as reported in the issue
ADJOINTS = {"backprop": dfx.RecursiveCheckpointAdjoint, "adjoint": dfx.BacksolveAdjoint}


def solve_sciml(field, y0s, t, adjoint, mode):
    return sciml_solve_batch(field, y0s, t, mode=mode,
                             stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                             adjoint=adjoint, max_steps=MAX_STEPS, throw=False)


class BatchField(eqx.Module):
    """By hand: the per-window field applied to the (batch, 2) state."""

    field: eqx.Module

    def __call__(self, t, y, args):
        return jax.vmap(self.field, (None, 0, None))(t, y, args)


def solve_by_hand(field, y0s, t, adjoint, mode):
    def one(f, y0):
        return dfx.diffeqsolve(dfx.ODETerm(f), dfx.Tsit5(), t[0], t[-1], None, y0,
                               saveat=dfx.SaveAt(ts=t),
                               stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                               adjoint=adjoint, max_steps=MAX_STEPS, throw=False)

    if mode == "vmap":
        return jax.vmap(lambda y0: one(field, y0))(y0s)
    sol = one(BatchField(field), y0s)
    return eqx.tree_at(lambda s: s.ys, sol, jnp.swapaxes(sol.ys, 0, 1))


# side -> (solve, how the batch of windows is solved); see sciml.ude.solve_batch
JAX_SIDES = {
    "sciml": (solve_sciml, "vmap"),
    "sciml joint": (solve_sciml, "joint"),
    "diffrax by hand": (solve_by_hand, "vmap"),
    "diffrax by hand joint": (solve_by_hand, "joint"),
}
BY_HAND = {"sciml": "diffrax by hand", "sciml joint": "diffrax by hand joint"}
SCIML_BY_BATCH_MODE = {"vmap": "sciml", "joint": "sciml joint"}


def auto_side(mode: str) -> str:
    """The sciml side that `batch_solve: auto` runs for benchmark mode `mode`."""
    return SCIML_BY_BATCH_MODE[batch_mode_for(ADJOINTS[mode]())]


def normalized_hlo(text: str) -> str:
    """The optimized HLO without source locations (file names, lines, stack frames)."""
    text = re.sub(r', metadata=\{[^}]*\}', '', text)
    text = re.sub(r'(?m)^\d+ (\{file_name_id=.*\}|".*"|\{file_location_id=.*\})$\n?', '', text)
    return re.sub(r',? ?stack_frame_id=\d+', '', text)


class JaxSide:
    """One AOT-compiled training step (loss, grad, Adam) per (side, mode)."""

    def __init__(self, solve_fn, batch_mode, adjoint, model, ts, ys):
        params, static = eqx.partition(model, eqx.is_array)
        self.params0, self.ts, self.ys = params, ts, ys
        opt = optax.adam(LR)
        self.opt_init = opt.init

        def loss_fn(params, ts, ys, starts):
            field = eqx.combine(params, static)
            windows = ys[starts[:, None] + jnp.arange(BATCH_TIME)]
            sol = solve_fn(field, windows[:, 0], ts[:BATCH_TIME], adjoint, batch_mode)
            nsteps = jnp.broadcast_to(sol.stats["num_steps"], (BATCH_SIZE,))
            return jnp.mean(jnp.abs(sol.ys - windows)), nsteps

        def step(params, opt_state, ts, ys, starts):
            (loss, nsteps), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, ts, ys, starts)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, nsteps

        t0 = time.perf_counter()
        self.step = (jax.jit(step, donate_argnums=(0, 1))
                     .lower(params, opt.init(params), ts, ys, jnp.zeros(BATCH_SIZE, jnp.int32))
                     .compile())
        self.compile_s = time.perf_counter() - t0
        self.hlo = normalized_hlo(self.step.as_text())

    def run(self, starts: np.ndarray) -> dict:
        params = jax.tree.map(jnp.copy, self.params0)  # fresh buffers: the step donates them
        opt_state = self.opt_init(params)
        starts_dev = [jnp.asarray(s) for s in starts]  # transfers outside the timed loop
        jax.block_until_ready((params, opt_state, starts_dev))
        nsteps = []
        t0 = time.perf_counter()
        for s in starts_dev:
            params, opt_state, loss, ns = self.step(params, opt_state, self.ts, self.ys, s)
            nsteps.append(ns)
        loss = float(loss)  # blocks on the last step
        seconds = time.perf_counter() - t0
        ns = np.asarray(jax.device_get(nsteps))  # (iters, batch)
        return {"seconds": seconds, "final_loss": loss,
                "steps_mean": float(ns.mean()),  # per window
                "steps_max": float(ns.max(axis=1).mean())}  # per iteration: what the vmapped loop runs


class TorchSide:
    """The long-lived worker in the torchdiffeq venv."""

    def __init__(self, python: Path, data_path: Path, threads: int):
        self.proc = subprocess.Popen([str(python), str(WORKER), str(data_path), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, mode: str, iters: int) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": "run", "mode": mode, "iters": iters}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("torchdiffeq worker died (see its stderr above)")
        return json.loads(line)

    def close(self):
        self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def torch_name(n: int) -> str:
    return f"torchdiffeq ({n} thread{'s' if n > 1 else ''})"



def main(iters: int, rounds: int, threads: list[int], out: Path, seed: int = 0,
         torch_python: Path = VENV_PY) -> dict:
    problem = NeuralODESpiral()  # 1000 points on [0, 25], true solve at rtol = atol = 1e-8, float32
    ts, ys = problem.ts, problem.ys
    assert ys.dtype == jnp.float32, ys.dtype
    model, _ = problem.init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    # Window starts 0 .. n - batch_time (as sciml's spiral loss draws them), one row per iteration.
    starts = rng.integers(0, ts.shape[0] - BATCH_TIME + 1, size=(iters, BATCH_SIZE)).astype(np.int32)

    runners: dict[tuple[str, str], object] = {}
    compile_s = {}
    for side, (fn, batch_mode) in JAX_SIDES.items():
        for mode, adj in ADJOINTS.items():
            r = JaxSide(fn, batch_mode, adj(), model, ts, ys)
            runners[(side, mode)] = r
            compile_s[f"{side}/{mode}"] = r.compile_s
            print(f"compiled {side}/{mode} in {r.compile_s:.2f}s", flush=True)

    # sciml.ude.solve only adds trace-time checks: its compiled step should be diffrax's, op for op.
    same_program = {f"{side}/{mode}": runners[(side, mode)].hlo == runners[(hand, mode)].hlo
                    for side, hand in BY_HAND.items() for mode in ADJOINTS}
    for r in runners.values():
        del r.hlo
    print(f"sciml and diffrax-by-hand compile to the same optimized HLO (source locations stripped): "
          f"{same_program}", flush=True)

    torch_sides, torch_skip = {}, None
    tmpdir = tempfile.TemporaryDirectory()
    if not torch_python.exists():
        torch_skip = (f"{torch_python} not found: create it (see benchmarks/README.md) or pass "
                      "--torch-python; torchdiffeq side skipped")
    else:
        layers = model.mlp.layers
        data = Path(tmpdir.name) / "spiral.npz"
        np.savez(data, ts=np.asarray(ts), ys=np.asarray(ys), starts=starts,
                 w1=np.asarray(layers[0].weight), b1=np.asarray(layers[0].bias),
                 w2=np.asarray(layers[1].weight), b2=np.asarray(layers[1].bias),
                 batch_time=BATCH_TIME, rtol=RTOL, atol=ATOL, lr=LR)
        try:
            for n in threads:
                torch_sides[torch_name(n)] = TorchSide(torch_python, data, n)
                for mode in ADJOINTS:
                    runners[(torch_name(n), mode)] = mode
        except Exception as e:  # noqa: BLE001 -- report and go on with the JAX sides
            torch_skip = f"torchdiffeq worker failed to start ({e!r}); torchdiffeq side skipped"
    if torch_skip:
        print("WARNING:", torch_skip, flush=True)

    def run(key, n):
        side, mode = key
        if side in torch_sides:
            return torch_sides[side].run(mode, n)
        return runners[key].run(starts[:n])

    # Warm-up (first executions, torch's allocator and autograd caches).
    for key in runners:
        run(key, min(5, iters))

    raw = {f"{s}/{m}": [] for s, m in runners}
    order_rng = random.Random(seed)
    for r in range(rounds):
        keys = list(runners)
        order_rng.shuffle(keys)
        for key in keys:
            raw[f"{key[0]}/{key[1]}"].append(run(key, iters))
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {1e3 * v[-1]['seconds'] / iters:.2f}" for k, v in raw.items()) + " ms/iter", flush=True)
    for ts_ in torch_sides.values():
        ts_.close()
    tmpdir.cleanup()

    per_iter = {k: median(x["seconds"] for x in v) / iters for k, v in raw.items()}
    paired = {}  # median over rounds of the within-round ratio
    for mode in ADJOINTS:
        base = raw[f"sciml/{mode}"]
        for side in (*JAX_SIDES, *torch_sides):
            k = f"{side}/{mode}"
            if k in raw and side != "sciml":
                paired[f"{k} / sciml/{mode}"] = median(
                    o["seconds"] / b["seconds"] for o, b in zip(raw[k], base, strict=True))

    dev = jax.devices()[0]
    print(f"\nproblem: spiral neural ODE, MLP 2-50-2 tanh on y**3, batch {BATCH_SIZE} windows x "
          f"{BATCH_TIME} points, L1 loss, Adam(lr={LR}), {iters} iterations per run, {rounds} "
          f"interleaved rounds, medians")
    print(f"solvers: JAX Tsit5 + PIDController(rtol={RTOL}, atol={ATOL}), vmapped over windows or "
          f"('joint') one solve of the (20, 2) batch; "
          f"torchdiffeq dopri5 (rtol={RTOL}, atol={ATOL}) on the (20, 2) batch state; adjoint solves "
          f"use the same tolerances; dtype float32")
    info = next(iter(torch_sides.values())).info if torch_sides else None
    print(f"threads: XLA CPU (jax {jax.__version__}, {dev.platform}) default pool over "
          f"{len(os.sched_getaffinity(0))} cores; torchdiffeq runs with torch.set_num_threads(n) for n in "
          f"{threads}, interop threads 1"
          + (f" (torch {info['torch']}, torchdiffeq {info['torchdiffeq']})" if info else ""))
    print("shared 2-core machine: other processes were running\n")
    print("| mode | side | ms / iteration | ratio to sciml | per-round ratio | compile (s) | "
          "solver steps / window (mean) | steps / iteration (max over batch) | f-evals / iteration fwd | f-evals bwd | final loss |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for mode in ADJOINTS:
        for side in (*JAX_SIDES, *torch_sides):
            k = f"{side}/{mode}"
            if k not in raw:
                continue
            v = raw[k]
            ratio = per_iter[k] / per_iter[f"sciml/{mode}"]
            pr = paired.get(f"{k} / sciml/{mode}")
            last = v[-1]
            if side in torch_sides:
                nfe_f, nfe_b = last["nfe_forward"], last["nfe_backward"]
                steps_mean = steps_max = (nfe_f - 2) / 6  # dopri5: 2 evals to start, 6 per step (FSAL)
                comp = ""
            else:
                steps_mean, steps_max = last["steps_mean"], last["steps_max"]
                nfe_f, nfe_b = 6 * steps_max + 2, None  # Tsit5: 2 evals to start, 6 per step (FSAL)
                comp = f"{compile_s[k]:.2f}"
            summary[k] = {"s_per_iter": per_iter[k], "ratio_to_sciml": ratio, "paired_ratio": pr,
                          "steps_per_window_mean": steps_mean, "steps_per_iter_max": steps_max,
                          "fevals_forward": nfe_f, "fevals_backward": nfe_b,
                          "final_loss": last["final_loss"], "compile_s": compile_s.get(k)}
            print(f"| {mode} | {side} | {1e3 * per_iter[k]:.2f} | {ratio:.2f} | "
                  f"{'' if pr is None else f'{pr:.2f}'} | {comp} | {steps_mean:.1f} | {steps_max:.1f} | "
                  f"{nfe_f:.0f} | {'' if nfe_b is None else f'{nfe_b:.0f}'} | {last['final_loss']:.4f} |")
    print("\nf-evals: torchdiffeq counts calls of the vector field (each on the whole (20, 2) batch; "
          "bwd = calls during the adjoint solve). JAX: 6 * steps + 2 calls of the vmapped field "
          "(Tsit5, FSAL) with steps = the batch's largest step count (sol.stats['num_steps']), the "
          "forward solve only; BacksolveAdjoint's backward solve is not counted. torchdiffeq steps "
          "= (f-evals - 2) / 6, one step size shared by the whole batch.\n")

    checks = {}
    for mode in ADJOINTS:
        k_t = f"{torch_name(threads[0])}/{mode}"
        for side, hand in BY_HAND.items():
            k_s, k_h = f"{side}/{mode}", f"{hand}/{mode}"
            oh = per_iter[k_s] / per_iter[k_h]
            paired_oh = median(a["seconds"] / b["seconds"] for a, b in zip(raw[k_s], raw[k_h], strict=True))
            # judged on the per-round ratio: both sides ran back to back in each round
            checks[f"{side}/{hand} overhead ({mode})"] = {
                "value": paired_oh, "ratio_of_medians": oh, "target": "<= 1.05", "ok": paired_oh <= 1.05}
            print(f"{mode}: {side} / {hand} = {paired_oh:.3f} per-round median ({oh:.3f} ratio of medians; "
                  f"target <= 1.05: {'OK' if paired_oh <= 1.05 else 'ABOVE'}); identical compiled HLO: "
                  f"{same_program[k_s]}")
            if k_t in per_iter:
                sp = per_iter[k_t] / per_iter[k_s]
                tgt = TARGETS[mode]
                checks[f"speedup vs torchdiffeq ({side}, {mode})"] = {
                    "value": sp, "target": f">= {tgt}", "ok": sp >= tgt}
                print(f"{mode}: {k_t} / {side} = {sp:.2f}x (target >= {tgt}x: "
                      f"{'OK' if sp >= tgt else 'BELOW'}; the issue's diffrax-by-hand figure: "
                      f"{BY_HAND_MEASURED[mode]}x); {hand}: {per_iter[k_t] / per_iter[k_h]:.2f}x")
    # batch_solve: auto must pick the faster batching for each adjoint
    auto = {}
    for mode in ADJOINTS:
        picked = auto_side(mode)
        other = next(side for side in SCIML_BY_BATCH_MODE.values() if side != picked)
        vs_other = median(a["seconds"] / b["seconds"]
                          for a, b in zip(raw[f"{picked}/{mode}"], raw[f"{other}/{mode}"], strict=True))
        ok = vs_other <= 1.05  # the faster, or the same within noise
        auto[mode] = {"adjoint": ADJOINTS[mode].__name__, "batch_mode": batch_mode_for(ADJOINTS[mode]()),
                      "side": picked, "ms_per_iter": 1e3 * per_iter[f"{picked}/{mode}"],
                      "other_side": other, "other_ms_per_iter": 1e3 * per_iter[f"{other}/{mode}"]}
        checks[f"auto picks the faster batching ({mode})"] = {
            "value": vs_other, "picked": picked, "target": f"{picked} / {other} per-round median <= 1.05",
            "ok": ok}
        print(f"{mode}: batch_solve auto -> {picked}: {picked} / {other} = {vs_other:.3f} per-round median "
              f"(target <= 1.05: {'OK' if ok else 'ABOVE'})")
        k_t = f"{torch_name(threads[0])}/{mode}"
        if k_t in per_iter:
            sp = per_iter[k_t] / per_iter[f"{picked}/{mode}"]
            tgt = TARGETS[mode]
            checks[f"speedup vs torchdiffeq (sciml auto = {picked}, {mode})"] = {
                "value": sp, "target": f">= {tgt}", "ok": sp >= tgt}
            print(f"{mode}: {k_t} / sciml auto ({picked}) = {sp:.2f}x (target >= {tgt}x: "
                  f"{'OK' if sp >= tgt else 'BELOW'})")
    if torch_skip:
        print("\nNOTE:", torch_skip)

    result = {
        "benchmark": "ude_vs_torchdiffeq", "problem": "spiral neural ODE (torchdiffeq ode_demo)",
        "model": "MLP 2-50-2 tanh on y**3", "batch": [BATCH_SIZE, BATCH_TIME], "loss": "L1",
        "optimizer": f"adam({LR})", "dtype": "float32",
        "solver": {"jax": "Tsit5 + PIDController, vmapped over windows / joint (20, 2) state",
                   "torchdiffeq": "dopri5 on the (20, 2) batch"},
        "rtol": RTOL, "atol": ATOL, "max_steps": MAX_STEPS,
        "iters": iters, "rounds": rounds, "torch_threads": threads,
        "jax_version": jax.__version__, "platform": dev.platform, "device_kind": dev.device_kind,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "torch": info, "torch_skipped": torch_skip,
        **sciml_version(), "shared_machine": True,
        "compile_s": compile_s, "same_compiled_hlo_sciml_vs_by_hand": same_program, "raw": raw, "summary": summary,
        "batch_solve_auto": auto, "checks": checks,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200, help="training iterations per timed run")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, len(os.sched_getaffinity(0))],
                    help="torch.set_num_threads values, one torchdiffeq side each (default: 1 and the "
                         "number of cores XLA's CPU thread pool uses); the ratio checks use the first")
    ap.add_argument("--quick", action="store_true", help="smoke test: 10 iterations x 2 rounds")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--torch-python", type=Path, default=VENV_PY,
                    help="python of the venv with torch and torchdiffeq (default: .venv-torchdiffeq/bin/python)")
    a = ap.parse_args()
    if a.quick:
        a.iters, a.rounds = 10, 2
        a.out = a.out or RESULTS.with_name("ude_vs_torchdiffeq_quick.json")
    sys.exit(0 if main(a.iters, a.rounds, a.threads, a.out or RESULTS, torch_python=a.torch_python) else 1)
