"""Peak memory and time of one stochastic-reconfiguration update: dense SR against minSR/NTK.

`sciml.nqs.stochastic_reconfiguration(solver="dense" | "minsr")` on the
`nqs_tfim_chain` problem (N = 20, 1008 samples in 16 chains, float64) with
an RBM of density α (`--alphas`, default 1 4 16: P = N + αN + αN² = 440,
1700, 6740 parameters, crossing the sample count n = 1008). Dense SR forms
and solves the P × P matrix `S + λI`; minSR the n × n matrix `X̃X̃ᵀ + λI`;
both first build the n × P Jacobian of log ψ (the problem's `per_sample`
hook: one reverse pass per sample).

One update = what the trainer's step does after sampling: the VMC gradient
(`problem.loss`) and `optimizer.update(..., per_sample_fn=problem.per_sample)`,
jitted as one program, on the problem's thermalised samples. Each
configuration runs in a fresh subprocess (pinned to one core) that reports:

* XLA's `compiled.memory_analysis()` of that program: `temp_size_in_bytes`
  (scratch buffers XLA allocates while it runs: the Jacobian, `S` or the
  kernel, the factorisation) and arguments + outputs;
* `ru_maxrss` (peak resident memory of the process) after the run, and
  minus that of a baseline subprocess that imports and builds the same
  problem, model and samples but compiles and runs no update. The peak of
  a process also counts compilation (LLVM), which dominates at small P; the
  XLA figure is the program's own;
* seconds per update: median of `--repeats` calls after a first (compiling)
  call.

A configuration whose XLA temp size exceeds `--max-temp-gb` is compiled
(that number is reported) but not run, to keep a shared machine safe.

Output: markdown on stdout, JSON in `benchmarks/results/nqs_sr_memory.json`
(`--quick`: α = 1, 4, one repeat, a temporary file).

    python benchmarks/nqs_sr_memory.py [--alphas 1 4 16] [--repeats 3] [--max-temp-gb 8]
        [--cpu N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "nqs_sr_memory.json"
SOLVERS = ("dense", "minsr")
MB = 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- child: one configuration -----------------------------------------------------------------


def child(a) -> dict:
    """Build, (compile, run) one configuration; a JSON line on stdout."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx

    import sciml.nqs.problems  # noqa: F401 -- registers the NQS problems
    from sciml.nqs import stochastic_reconfiguration
    from sciml.problems import build_problem

    settings = {"n_samples": a.n_samples, "n_chains": a.n_chains}
    problem = build_problem("nqs_tfim_chain", settings, {"kind": "rbm", "alpha": a.alpha})
    model, state = problem.init(jax.random.key(0))
    jax.block_until_ready(state)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    n_params = int(sum(x.size for x in jax.tree.leaves(params)))
    n_samples = int(state["samples"].shape[0] * state["samples"].shape[1])
    out = {"alpha": a.alpha, "solver": a.solver, "params": n_params, "samples": n_samples}
    if a.solver == "baseline":
        return out | {"maxrss_mb": _maxrss_mb()}

    opt = stochastic_reconfiguration(a.lr, a.diag_shift, solver=a.solver)
    opt_state = opt.init(params)
    key = jax.random.key(1)

    def update(params, opt_state, state):
        def loss(p):
            return problem.loss(eqx.combine(p, static), state, key)[0]

        def per_sample(p):
            return problem.per_sample(eqx.combine(p, static), state, key)

        grads = jax.grad(loss)(params)
        return opt.update(grads, opt_state, params, per_sample_fn=per_sample)

    t0 = time.perf_counter()
    compiled = jax.jit(update).lower(params, opt_state, state).compile()
    out["compile_s"] = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    out["xla_temp_mb"] = mem.temp_size_in_bytes / MB
    out["xla_args_out_mb"] = (mem.argument_size_in_bytes + mem.output_size_in_bytes) / MB
    out["maxrss_after_compile_mb"] = _maxrss_mb()
    if mem.temp_size_in_bytes > a.max_temp_gb * 2**30:
        return out | {"skipped": f"XLA temp size above --max-temp-gb {a.max_temp_gb}"}
    t0 = time.perf_counter()
    res = jax.block_until_ready(compiled(params, opt_state, state))
    out["first_call_s"] = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        res = jax.block_until_ready(compiled(params, opt_state, state))
        times.append(time.perf_counter() - t0)
    finite = all(bool(jax.numpy.all(jax.numpy.isfinite(x))) for x in jax.tree.leaves(res[0]))
    return out | {
        "s_per_update": median(times),
        "times": times,
        "maxrss_mb": _maxrss_mb(),
        "update_finite": finite,
        "update_norm": float(
            sum(float(jax.numpy.sum(x**2)) for x in jax.tree.leaves(res[0])) ** 0.5
        ),
    }


# --- parent -----------------------------------------------------------------------------------


def run_child(a, alpha: int, solver: str, cpu: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--alpha",
        str(alpha),
        "--solver",
        solver,
        "--repeats",
        str(a.repeats),
        "--max-temp-gb",
        str(a.max_temp_gb),
        "--n-samples",
        str(a.n_samples),
        "--n-chains",
        str(a.n_chains),
        "--cpu",
        str(cpu),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"alpha": alpha, "solver": solver, "error": f"timeout after {a.timeout} s"}
    if proc.returncode != 0:
        return {
            "alpha": alpha,
            "solver": solver,
            "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}",
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(a) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import sciml_version, write_result

    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if a.cpu is None else a.cpu
    load_before = os.getloadavg()
    rows = []
    for alpha in a.alphas:
        base = run_child(a, alpha, "baseline", cpu)
        print(json.dumps(base), flush=True)
        for solver in SOLVERS:
            r = run_child(a, alpha, solver, cpu)
            if "maxrss_mb" in r and "maxrss_mb" in base:
                r["maxrss_minus_baseline_mb"] = r["maxrss_mb"] - base["maxrss_mb"]
            r["baseline_maxrss_mb"] = base.get("maxrss_mb")
            print(json.dumps(r), flush=True)
            rows.append(r)

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    print(
        f"\nOne SR update (VMC gradient + SR), TFIM chain N = 20, {a.n_samples} samples, "
        f"RBM α, float64, 1 core (cpu {cpu}); memory in MiB\n"
    )
    print(
        "| α | params | solver | XLA temp | XLA args+out | peak RSS | RSS - baseline "
        "| s / update | compile (s) |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        note = r.get("skipped") or r.get("error", "")
        print(
            f"| {r['alpha']} | {r.get('params', '')} | {r['solver']} | "
            f"{f(r.get('xla_temp_mb'), '.1f')} | {f(r.get('xla_args_out_mb'), '.1f')} | "
            f"{f(r.get('maxrss_mb'), '.0f')} | {f(r.get('maxrss_minus_baseline_mb'), '.0f')} | "
            f"{f(r.get('s_per_update'), '.3g')} | {f(r.get('compile_s'), '.1f')} |"
            + (f" {note[:80]}" if note else "")
        )
    result = {
        "benchmark": "nqs_sr_memory",
        "problem": "nqs_tfim_chain (N=20)",
        "n_samples": a.n_samples,
        "n_chains": a.n_chains,
        "alphas": a.alphas,
        "repeats": a.repeats,
        "max_temp_gb": a.max_temp_gb,
        "dtype": "float64",
        "cpu_pinned": cpu,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **sciml_version(),
        "rows": rows,
        "quick": a.quick,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(a.out, result)
    return result


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alphas", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    ap.add_argument("--max-temp-gb", type=float, default=8.0, help="run only below this XLA temp")
    ap.add_argument("--n-samples", type=int, default=1008)
    ap.add_argument("--n-chains", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--diag-shift", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last)")
    ap.add_argument("--quick", action="store_true", help="smoke test: alpha 1 and 4, 1 repeat")
    ap.add_argument("--out", type=Path, default=None)
    # internal: one configuration in this process
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--alpha", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument(
        "--solver", choices=["baseline", *SOLVERS], default="dense", help=argparse.SUPPRESS
    )
    a = ap.parse_args(argv)
    if a.quick:
        a.alphas, a.repeats = [1, 4], 1
        a.out = a.out or Path(tempfile.gettempdir()) / "nqs_sr_memory_quick.json"
    a.out = a.out or RESULTS
    return a


if __name__ == "__main__":
    args = parse()
    if args.child:
        os.sched_setaffinity(
            0, {args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))}
        )
        print(json.dumps(child(args)), flush=True)
    else:
        main(args)
    sys.exit(0)
