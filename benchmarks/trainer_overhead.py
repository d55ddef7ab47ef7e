"""Overhead of `sciml.trainer.fit` against a hand-written JAX training loop.

Both sides train the `neural_ode_spiral` problem (defaults: 20 windows of 10
points, vmapped Tsit5 + PIDController(rtol=1e-3, atol=1e-4), L1 loss) with
`optax.adam(1e-3)` from the same initial model, for the same number of steps,
100 steps per compiled `lax.scan` chunk, in one process.

* sciml: whole `fit(...)` calls with `run_dir=None`. Reported per call:
  `train_time_s` (time inside compiled chunks, as fit measures it) and
  `wall - compile_time_s` (everything fit does after compiling: setup, host
  logging between chunks, the final evaluation). The ratio uses the latter.
* baseline: what one writes by hand -- `eqx.partition(model, eqx.is_array)`,
  a jitted chunk that scans `value_and_grad(loss) -> adam update ->
  apply_updates` over 100 steps, the loss written out here (not
  `problem.loss`). It is compiled once; each repeat times the post-compile
  loop over steps/100 chunks, pulling every chunk's losses to the host.
  Each step's key is `fold_in(train_key, step)` as in the trainer, so both
  sides see the same batches and their losses must agree (checked).

The sides are interleaved (A B A B ...) over `--repeats` rounds; the ratio is
that of the medians (the median of the per-round ratios is printed too),
because the machine is shared and noisy. On a small CPU box, pinning to one
core (`taskset -c 1 python ...`) removes most of the noise. `fit` compiles
anew on every call; compile times are reported separately. Output: a
markdown table on stdout and JSON in `benchmarks/results/trainer_overhead.json`
(`--quick`: `trainer_overhead_quick.json`).

    python benchmarks/trainer_overhead.py [--steps 10000] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
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

from sciml.config import TrainConfig
from sciml.problems import build_problem
from sciml.trainer import fit

CHUNK = 100  # steps per compiled chunk (= fit's log_every)
SEED = 0  # TrainConfig.seed
LR = 1e-3
RESULTS = Path(__file__).resolve().parent / "results" / "trainer_overhead.json"


def spiral_loss(params, static, ts, ys, key):
    """L1 error of `batch_size` random windows of `batch_time` points, solved from their start."""
    model = eqx.combine(params, static)
    batch_size, batch_time = 20, 10
    starts = jax.random.randint(key, (batch_size,), 0, ts.shape[0] - batch_time + 1)
    windows = ys[starts[:, None] + jnp.arange(batch_time)]
    t = ts[:batch_time]

    def solve(y0):
        return dfx.diffeqsolve(
            dfx.ODETerm(model), dfx.Tsit5(), t[0], t[-1], None, y0,
            saveat=dfx.SaveAt(ts=t),
            stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-4),
            max_steps=4096, throw=False,
        ).ys

    pred = jax.vmap(solve)(windows[:, 0])
    return jnp.mean(jnp.abs(pred - windows))


class Baseline:
    """Hand-written loop: one AOT-compiled chunk of CHUNK adam steps."""

    def __init__(self, problem):
        init_key, self.train_key, _ = jax.random.split(jax.random.PRNGKey(SEED), 3)
        model, _ = problem.init(init_key)  # same keys as fit(seed=SEED)
        self.params, static = eqx.partition(model, eqx.is_array)
        self.data = (problem.ts, problem.ys)
        opt = optax.adam(LR)

        def chunk(params, opt_state, ts, ys, key, step0):
            def body(carry, i):
                params, opt_state = carry
                k = jax.random.fold_in(key, step0 + i)
                loss, grads = jax.value_and_grad(spiral_loss)(params, static, ts, ys, k)
                updates, opt_state = opt.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(CHUNK))
            return params, opt_state, losses

        self.opt_init = opt.init
        t0 = time.perf_counter()
        self.chunk = (
            jax.jit(chunk, donate_argnums=(0, 1))
            .lower(self.params, opt.init(self.params), *self.data, self.train_key, jnp.int32(0))
            .compile()
        )
        self.compile_time = time.perf_counter() - t0

    def run(self, steps):
        """Train `steps` steps from the initial model; return (seconds, per-chunk mean losses)."""
        params = jax.tree.map(jnp.copy, self.params)  # fresh buffers: the chunk donates them
        opt_state = self.opt_init(params)
        jax.block_until_ready((params, opt_state))
        means = []
        t0 = time.perf_counter()
        for step in range(0, steps, CHUNK):
            params, opt_state, losses = self.chunk(
                params, opt_state, *self.data, self.train_key, jnp.int32(step)
            )
            means.append(float(np.asarray(losses).mean()))  # host pull blocks, like a trainer's log
        return time.perf_counter() - t0, means



def run_sciml(problem, steps):
    cfg = TrainConfig(steps=steps, seed=SEED, log_every=CHUNK, eval_every=None,
                      checkpoint_every=None, progress=False)
    t0 = time.perf_counter()
    res = fit(problem, optax.adam(LR), cfg, run_dir=None)
    wall = time.perf_counter() - t0
    s = res.summary
    return {"wall_s": wall, "compile_s": s["compile_time_s"], "train_time_s": s["train_time_s"],
            "wall_minus_compile_s": wall - s["compile_time_s"], "losses": [r["loss"] for r in res.history if "loss" in r]}


def main(steps: int, repeats: int, out: Path = RESULTS) -> dict:
    if steps % CHUNK:
        raise SystemExit(f"--steps must be a multiple of {CHUNK}")
    problem = build_problem("neural_ode_spiral", {}, {})
    base = Baseline(problem)
    # Warm-up: first fit call compiles problem.evaluate's trajectory solve (cached afterwards).
    run_sciml(problem, CHUNK)
    base.run(CHUNK)

    sc, bl = [], []
    for r in range(repeats):
        sc.append(run_sciml(problem, steps))
        t, bl_losses = base.run(steps)
        bl.append(t)
        print(f"repeat {r + 1}/{repeats}: sciml {sc[-1]['wall_minus_compile_s']:.3f}s "
              f"(in-chunk {sc[-1]['train_time_s']:.3f}s), baseline {t:.3f}s", flush=True)

    sc_losses = np.asarray(sc[-1]["losses"])
    loss_diff = float(np.max(np.abs(sc_losses - np.asarray(bl_losses)) / np.abs(sc_losses)))
    med = {
        "sciml_wall_minus_compile_s": median([x["wall_minus_compile_s"] for x in sc]),
        "sciml_train_time_s": median([x["train_time_s"] for x in sc]),
        "baseline_s": median(bl),
        "sciml_compile_s": median([x["compile_s"] for x in sc]),
    }
    med["sciml_outside_chunks_s"] = median([x["wall_minus_compile_s"] - x["train_time_s"] for x in sc])
    ratio = med["sciml_wall_minus_compile_s"] / med["baseline_s"]
    # Robust to slow drifts of the machine: ratio within each A B round, then the median.
    paired = median([x["wall_minus_compile_s"] / b for x, b in zip(sc, bl, strict=True)])
    ratio_chunks = med["sciml_train_time_s"] / med["baseline_s"]
    ms = lambda s: 1e3 * s / steps  # noqa: E731
    rows = [
        ("baseline (hand-written loop)", med["baseline_s"], base.compile_time, 1.0),
        ("sciml fit: wall - compile", med["sciml_wall_minus_compile_s"], med["sciml_compile_s"], ratio),
        ("sciml fit: train_time_s (in chunks)", med["sciml_train_time_s"], med["sciml_compile_s"], ratio_chunks),
        ("sciml fit: outside chunks (setup, eval, teardown)", med["sciml_outside_chunks_s"], None, None),
    ]
    dev = jax.devices()[0]
    print(f"\nsteps={steps} repeats={repeats} jax={jax.__version__} platform={dev.platform} "
          f"({dev.device_kind}), medians over repeats\n")
    print("| side | time (s) | ms/step | compile (s) | ratio vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, t, c, q in rows:
        c, q = ("" if c is None else f"{c:.2f}"), ("" if q is None else f"{q:.3f}")
        print(f"| {name} | {t:.3f} | {ms(t):.3f} | {c} | {q} |")
    verdict = "OK" if ratio <= 1.05 else "ABOVE TARGET"
    print(f"\nratio (sciml wall - compile) / baseline = {ratio:.3f}  (target <= 1.05: {verdict}); "
          f"median of per-round ratios = {paired:.3f}")
    print(f"max relative difference of per-chunk mean losses: {loss_diff:.2e}")

    result = {
        "benchmark": "trainer_overhead", "problem": "neural_ode_spiral", "optimizer": f"adam({LR})",
        "jax_version": jax.__version__, "platform": dev.platform, "device_kind": dev.device_kind,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        **sciml_version(), "steps": steps, "repeats": repeats, "chunk": CHUNK,
        "raw": {"sciml": [{k: v for k, v in x.items() if k != "losses"} for x in sc],
                "baseline_s": bl, "baseline_compile_s": base.compile_time},
        "medians": med, "ms_per_step": {k: ms(v) for k, v in med.items() if k != "sciml_compile_s"},
        "ratio": ratio, "ratio_train_time": ratio_chunks, "paired_ratio_median": paired, "target": 1.05,
        "max_rel_loss_diff": loss_diff,
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10000, help="optimizer steps per timed run (default: the default config's run length)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (A B A B ...)")
    ap.add_argument("--quick", action="store_true", help="smoke test: steps=500, repeats=2")
    ap.add_argument("--out", type=Path, default=None, help=f"JSON output path (default {RESULTS})")
    a = ap.parse_args()
    if a.quick:  # a smoke test must not overwrite the real result
        a.steps, a.repeats = 500, 2
        a.out = a.out or RESULTS.with_name("trainer_overhead_quick.json")
    main(a.steps, a.repeats, a.out or RESULTS)
