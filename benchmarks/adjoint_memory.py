"""Peak memory of a neural-ODE gradient vs the number of solver steps, per diffrax adjoint.

The neural ODE: dy/dt = MLP(y) on a (64, 16) state (a batch of 64 states of
dimension 16 in one solve; MLP 16-64-64-16 tanh, `sciml.nn.MLP`, row by row),
float32, Tsit5 with `ConstantStepSize()` and N steps on [0, 1] (dt0 = 1/N,
max_steps = N), loss = sum of the final state, gradient w.r.t. the MLP
parameters, solved with `sciml.ude.solve`. For N in `--steps` and each adjoint:

* `RecursiveCheckpointAdjoint()`: diffrax's default (backprop through the
  solver with binomial checkpointing; `checkpoints=None` picks the number of
  checkpoints from max_steps);
* `RecursiveCheckpointAdjoint(checkpoints=N)`: one checkpoint per step (the
  loop state is saved after every step, each step's internals are recomputed
  once on the way back; for reference, and the gradient the others are
  compared with);
* `BacksolveAdjoint()`: continuous adjoint, solved backwards (O(1) memory in N);
* `DirectAdjoint()`: differentiates the unrolled bounded loop; memory and
  compile time grow quickly, so it is capped at `--direct-max` steps.

Memory is read from the compiled XLA program, not measured at run time:
`jax.jit(grad_fn).lower(params).compile().memory_analysis()`, reporting
peak = temp + arguments + outputs - aliased bytes. That number is
deterministic and independent of the machine's load. If the backend gives no
memory analysis, the script falls back to a fresh subprocess per configuration
measuring peak RSS (ru_maxrss) after one gradient minus the RSS before it
(noisier and includes allocator slack). Each configuration's gradient is
also evaluated once and compared with the checkpoints=N gradient.

Output: markdown tables on stdout (MB = 1e6 bytes), JSON in
`benchmarks/results/adjoint_memory.json`.

    python benchmarks/adjoint_memory.py [--steps 100 400 1600 6400 25600] [--direct-max 25600]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import write_result

from sciml.nn import MLP
from sciml.ude import solve

RESULTS = Path(__file__).resolve().parent / "results" / "adjoint_memory.json"
BATCH, DIM, WIDTH, DEPTH = 64, 16, 64, 2
ADJOINTS = ("RecursiveCheckpoint (default)", "RecursiveCheckpoint (checkpoints=N)", "Backsolve", "Direct")


def make_adjoint(name: str, n: int):
    return {
        "RecursiveCheckpoint (default)": lambda: dfx.RecursiveCheckpointAdjoint(),
        "RecursiveCheckpoint (checkpoints=N)": lambda: dfx.RecursiveCheckpointAdjoint(checkpoints=n),
        "Backsolve": lambda: dfx.BacksolveAdjoint(),
        "Direct": lambda: dfx.DirectAdjoint(),
    }[name]()


class Field(eqx.Module):
    """f(t, y) = MLP(y) row by row on a (BATCH, DIM) state; a pytree, so that
    BacksolveAdjoint sees its parameters."""

    mlp: MLP

    def __call__(self, t, y, args=None):
        return jax.vmap(self.mlp)(y)


def problem():
    """(params, static, y0): the MLP split into arrays and the rest, and the initial state."""
    field = Field(MLP(DIM, DIM, width=WIDTH, depth=DEPTH, activation=jnp.tanh, dtype=jnp.float32,
                      key=jax.random.PRNGKey(0)))
    y0 = jax.random.normal(jax.random.PRNGKey(1), (BATCH, DIM), jnp.float32)
    params, static = eqx.partition(field, eqx.is_array)
    return params, static, y0


def grad_fn(name: str, n: int, static, y0):
    adjoint = make_adjoint(name, n)

    def loss(params):
        field = eqx.combine(params, static)
        sol = solve(field, y0, t0=0.0, t1=1.0, dt0=1.0 / n,
                    stepsize_controller=dfx.ConstantStepSize(), adjoint=adjoint,
                    saveat=dfx.SaveAt(t1=True), max_steps=n)
        return jnp.sum(sol.ys)

    return jax.grad(loss)


def measure_compiled(name: str, n: int) -> dict:
    params, static, y0 = problem()
    t0 = time.perf_counter()
    compiled = jax.jit(grad_fn(name, n, static, y0)).lower(params).compile()
    compile_s = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    if ma is None:
        raise NotImplementedError("no memory_analysis on this backend")
    t0 = time.perf_counter()
    g = jax.block_until_ready(compiled(params))
    run_s = time.perf_counter() - t0
    peak = ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
    return {"peak_bytes": int(peak), "temp_bytes": int(ma.temp_size_in_bytes),
            "argument_bytes": int(ma.argument_size_in_bytes), "output_bytes": int(ma.output_size_in_bytes),
            "alias_bytes": int(ma.alias_size_in_bytes), "compile_s": compile_s, "first_run_s": run_s,
            "grad": [np.asarray(x).ravel() for x in jax.tree.leaves(g)]}


def measure_rss_child(name: str, n: int) -> None:
    """Fallback, in a fresh process: peak RSS growth of compiling and running one gradient."""
    params, static, y0 = problem()
    jax.block_until_ready(params)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = jax.block_until_ready(jax.jit(grad_fn(name, n, static, y0))(params))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_bytes": (peak - base) * 1024, "method": "ru_maxrss",
                      "grad": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(g)]}))


def measure_rss(name: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(n)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["grad"] = [np.asarray(x) for x in r["grad"]]
    return r


def main(steps: list[int], direct_max: int, out: Path) -> dict:
    method = "xla_memory_analysis"
    try:
        measure_compiled("Backsolve", 4)
    except NotImplementedError:
        method = "ru_maxrss"
        print("memory_analysis unavailable: falling back to peak RSS per subprocess", flush=True)
    measure = measure_compiled if method == "xla_memory_analysis" else measure_rss

    rows = {}
    for n in steps:
        rows[n] = {}
        for name in ADJOINTS:
            if name == "Direct" and n > direct_max:
                rows[n][name] = None
                continue
            r = measure(name, n)
            rows[n][name] = r
            print(f"N={n:5d} {name:36s} peak {r['peak_bytes'] / 1e6:9.3f} MB"
                  + (f"  (compile {r['compile_s']:.1f}s)" if "compile_s" in r else ""), flush=True)
        ref = rows[n]["RecursiveCheckpoint (checkpoints=N)"]["grad"]
        for r in rows[n].values():
            if r is not None:
                r["max_rel_grad_diff"] = max(
                    float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))
                    for a, b in zip(r.pop("grad"), ref, strict=True))
        rows[n]["RecursiveCheckpoint (checkpoints=N)"].pop("grad", None)

    n_params = sum(int(x.size) for x in jax.tree.leaves(problem()[0]))
    dev = jax.devices()[0]
    print(f"\nneural ODE: y of shape ({BATCH}, {DIM}) (a batch of {BATCH} states, one solve), MLP {DIM}-{WIDTH}-{WIDTH}-{DIM} tanh ({n_params} parameters), "
          f"float32, Tsit5, ConstantStepSize, N steps on [0, 1], grad of sum(y(1)); jax {jax.__version__} "
          f"{dev.platform}; memory: {method}")
    print("\nPeak memory of the compiled gradient (MB):\n")
    print("| N steps | " + " | ".join(ADJOINTS) + " |")
    print("|---:|" + "---:|" * len(ADJOINTS))
    for n in steps:
        cells = [("capped" if rows[n][a] is None else f"{rows[n][a]['peak_bytes'] / 1e6:.3f}") for a in ADJOINTS]
        print(f"| {n} | " + " | ".join(cells) + " |")
    if method == "xla_memory_analysis":
        print("\nCompile time (s), for context (machine shared and noisy):\n")
        print("| N steps | " + " | ".join(ADJOINTS) + " |")
        print("|---:|" + "---:|" * len(ADJOINTS))
        for n in steps:
            cells = [("" if rows[n][a] is None else f"{rows[n][a]['compile_s']:.1f}") for a in ADJOINTS]
            print(f"| {n} | " + " | ".join(cells) + " |")
    worst = max(r["max_rel_grad_diff"] for n in steps for r in rows[n].values() if r is not None)
    print(f"\nlargest relative gradient difference to checkpoints=N backprop: {worst:.2e} "
          "(float32 round-off accumulating over the steps, plus, for Backsolve, the continuous adjoint "
          "not being the exact gradient of the discrete solve)")
    if any(n > direct_max for n in steps):
        print(f"DirectAdjoint capped at N <= {direct_max} (--direct-max).")

    result = {
        "benchmark": "adjoint_memory", "method": method,
        "model": f"MLP {DIM}-{WIDTH}-{WIDTH}-{DIM} tanh on each row of y ({BATCH}, {DIM}), "
                 f"{n_params} params, float32",
        "solver": "Tsit5, ConstantStepSize, t in [0, 1], dt0 = 1/N, max_steps = N",
        "loss": "sum(y(1)); grad w.r.t. MLP parameters", "steps": steps, "direct_max": direct_max,
        "jax_version": jax.__version__, "diffrax_version": getattr(dfx, "__version__", "?"),
        "platform": dev.platform, "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": {str(n): rows[n] for n in steps}, "max_rel_grad_diff": worst,
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 400, 1600, 6400, 25600])
    ap.add_argument("--direct-max", type=int, default=25600,
                    help="largest N for DirectAdjoint (lower it if its compile time or memory explodes)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=2, metavar=("ADJOINT", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        measure_rss_child(a.child[0], int(a.child[1]))
    else:
        main(a.steps, a.direct_max, a.out)
