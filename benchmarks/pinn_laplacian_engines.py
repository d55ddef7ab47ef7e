"""Laplacian of a tanh MLP by every derivative engine of `sciml.pinn.operators`.

For each input dimension d (`--dims`) the field is `u(x) = mlp(x)[0]` with
`sciml.nn.MLP(d, 1, width=--width, depth=--depth, activation=tanh)` in float64,
on `--batch` uniform points in [-1, 1]^d. Two jit-compiled programs per engine:

* **laplacian**: `vmap(laplacian(u, x, engine=...))` over the batch;
* **train grad**: `grad_θ mean_x (Δu_θ(x))²`, the gradient w.r.t. the network
  parameters that a PINN optimiser step needs.

Engines: every exact one (`reverse`, `forward`, `forward_over_reverse`,
`taylor`, `forward_laplacian`), and the randomised ones with a stated sample
count: `hutchinson` with `--probes` Rademacher probes, `sdgd` and `stde` with
`min(--probes, d)` sampled dimensions (one key per point). Programs are
compiled ahead of time (compile seconds reported), then timed interleaved
(every engine once per round, `--repeats` rounds after one warm-up round);
the table shows medians in ms per batch and the ratio to `reverse`. The exact
engines' Laplacians are checked against `reverse` (max relative difference);
for the randomised ones the column is the relative error of the batch mean.

Output: a markdown table on stdout, JSON in
`benchmarks/results/pinn_laplacian_engines.json`.

    python benchmarks/pinn_laplacian_engines.py [--dims 2 10 100] [--batch 512] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from statistics import median

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import sciml_version, write_result

from sciml.nn import MLP
from sciml.pinn.operators import EXACT_ENGINES, RANDOMISED_ENGINES, laplacian

RESULTS = Path(__file__).resolve().parent / "results" / "pinn_laplacian_engines.json"
SEED = 0


def build_programs(d, width, depth, batch, probes):
    """AOT-compiled (laplacian, train grad) programs per engine, their inputs and compile times."""
    mkey, xkey, pkey = jax.random.split(jax.random.key(SEED + d), 3)
    mlp = MLP(d, 1, width=width, depth=depth, activation=jnp.tanh, dtype=jnp.float64, key=mkey)
    params, static = eqx.partition(mlp, eqx.is_array)
    points = jax.random.uniform(xkey, (batch, d), jnp.float64, -1.0, 1.0)
    keys = jax.random.split(pkey, batch)
    options = {"num_probes": probes, "num_dims": probes}

    def laplacians(p, xs, ks, engine):
        model = eqx.combine(p, static)
        u = lambda x: model(x)[0]  # noqa: E731
        extra = options if engine in RANDOMISED_ENGINES else {}
        return jax.vmap(lambda x, k: laplacian(u, x, engine=engine, key=k, **extra))(xs, ks)

    def train_loss(p, xs, ks, engine):
        return jnp.mean(laplacians(p, xs, ks, engine) ** 2)

    programs, compile_s = {}, {}
    for engine in EXACT_ENGINES + RANDOMISED_ENGINES:
        t0 = time.perf_counter()
        lap = jax.jit(laplacians, static_argnums=3).lower(params, points, keys, engine).compile()
        t1 = time.perf_counter()
        grad = (
            jax.jit(jax.grad(train_loss), static_argnums=3)
            .lower(params, points, keys, engine)
            .compile()
        )
        t2 = time.perf_counter()
        programs[engine] = (lap, grad)
        compile_s[engine] = {"laplacian": t1 - t0, "train_grad": t2 - t1}
    return programs, compile_s, (params, points, keys)


def timed(fn, args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def run_dim(d, width, depth, batch, probes, repeats):
    programs, compile_s, args = build_programs(d, width, depth, batch, probes)
    engines = list(programs)
    ref = np.asarray(programs["reverse"][0](*args))
    accuracy = {}
    for engine, (lap, _) in programs.items():
        got = np.asarray(lap(*args))
        if engine in RANDOMISED_ENGINES:
            accuracy[engine] = float(abs(got.mean() - ref.mean()) / abs(ref.mean()))
        else:
            accuracy[engine] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
    raw = {e: {"laplacian": [], "train_grad": []} for e in engines}
    for r in range(repeats + 1):  # round 0 is a warm-up
        for engine in engines:  # interleaved: every engine once per round
            lap, grad = programs[engine]
            t_lap, t_grad = timed(lap, args), timed(grad, args)
            if r:
                raw[engine]["laplacian"].append(t_lap)
                raw[engine]["train_grad"].append(t_grad)
    med = {e: {k: median(v) for k, v in raw[e].items()} for e in engines}
    rows = []
    for e in engines:
        rows.append(
            {
                "engine": e,
                "laplacian_ms": 1e3 * med[e]["laplacian"],
                "train_grad_ms": 1e3 * med[e]["train_grad"],
                "laplacian_ratio": med[e]["laplacian"] / med["reverse"]["laplacian"],
                "train_grad_ratio": med[e]["train_grad"] / med["reverse"]["train_grad"],
                "compile_s": compile_s[e],
                "accuracy_vs_reverse": accuracy[e],
                "samples": (probes if e == "hutchinson" else min(probes, d))
                if e in RANDOMISED_ENGINES
                else None,
            }
        )
    return {"d": d, "rows": rows, "raw_s": raw}


def main(dims, batch, repeats, width, depth, probes, out=RESULTS):
    jax.config.update("jax_enable_x64", True)  # the PINN pillar's default precision
    dev = jax.devices()[0]
    results = []
    for d in dims:
        t0 = time.perf_counter()
        results.append(run_dim(d, width, depth, batch, probes, repeats))
        print(f"d={d}: done in {time.perf_counter() - t0:.1f}s", flush=True)

    print(
        f"\ntanh MLP width={width} depth={depth}, float64, batch={batch}, repeats={repeats} "
        f"(median), jax={jax.__version__} {dev.platform} ({dev.device_kind})\n"
        f"randomised: hutchinson {probes} Rademacher probes; sdgd/stde min({probes}, d) dims\n"
    )
    print(
        "| d | engine | Laplacian ms/batch | vs reverse | grad_θ mean(Δu)² ms/batch | vs reverse "
        "| compile s (lap + grad) | accuracy vs reverse |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for res in results:
        for row in res["rows"]:
            c = row["compile_s"]
            name = row["engine"] + (f" ({row['samples']})" if row["samples"] else "")
            acc = row["accuracy_vs_reverse"]
            acc_s = f"{acc:.1e}" + (" (mean)" if row["samples"] else "")
            print(
                f"| {res['d']} | {name} | {row['laplacian_ms']:.2f} | {row['laplacian_ratio']:.2f} "
                f"| {row['train_grad_ms']:.2f} | {row['train_grad_ratio']:.2f} "
                f"| {c['laplacian']:.1f} + {c['train_grad']:.1f} | {acc_s} |"
            )
    result = {
        "benchmark": "pinn_laplacian_engines",
        "field": "u(x) = MLP(d, 1, tanh)(x)[0]",
        "jax_version": jax.__version__,
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        **sciml_version(),
        "width": width,
        "depth": depth,
        "batch": batch,
        "repeats": repeats,
        "probes": probes,
        "dtype": "float64",
        "results": results,
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 10, 100], help="input dimensions d")
    ap.add_argument("--batch", type=int, default=512, help="collocation points per batch")
    ap.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds (median)")
    ap.add_argument("--width", type=int, default=64, help="hidden width of the MLP")
    ap.add_argument("--depth", type=int, default=3, help="hidden layers of the MLP")
    ap.add_argument(
        "--probes",
        type=int,
        default=8,
        help="hutchinson probes; sdgd/stde sampled dimensions (at most d)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    a = ap.parse_args()
    main(a.dims, a.batch, a.repeats, a.width, a.depth, a.probes, a.out)
