"""Compile time against depth: sciml's `maf` and `neural_spline_flow` (and flowjax's) at 4-32 layers.

sciml's factories stack identical blocks with `Stack` (`eqx.filter_vmap` at
construction, `lax.scan` when applied), so compile time should stay nearly
flat in depth; flowjax's factories scan too (`Scan`). For each flow and
`layers` in `--layers`, a fresh flow (two moons data, the architecture of
`flows_vs_flowjax.py`: MADE / conditioner 64 x 2 tanh, 8 spline bins on
[-4, 4], final affine to data space) is built and timed with the code of
`_flowjax_worker.Harness.compile_times`:

* step: the first call of a jitted single Adam training step (minibatch of
  512, value_and_grad of the mean NLL, optax update) minus a second call;
* log_prob: the first call of a jitted batched `log_prob` of 512 points
  minus a second call.

`layers` means MADE layers for `maf` (flowjax `flow_layers=layers`) and
blocks of two couplings for `nsf` (flowjax `flow_layers=2 * layers`). A
throw-away compile at the smallest depth runs first on each side (JAX's
one-off start-up). The process pins itself to one core; the flowjax side
runs in its venv (`_flowjax_worker.py`), skipped if the venv is missing
(`--no-flowjax` skips it too).

Output: markdown on stdout (with the 16-vs-8 ratios), JSON in
`benchmarks/results/flows_compile_depth.json`.

    python benchmarks/flows_compile_depth.py [--layers 4 8 16 32] [--flows maf nsf] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
from _common import sciml_version, write_result
from flows_vs_flowjax import (
    ARCH,
    FLOWJAX,
    SCIML,
    default_python,
    make_data,
    pin_to_one_core,
    start_sides,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "flows_compile_depth.json"


def measure(side, flow: str, layers: int, a) -> dict:
    name = f"{flow}{layers}"
    spec = {
        "cmd": "setup",
        "name": name,
        "flow": flow,
        "layers": layers,
        **ARCH,
        "lr": 1e-3,
        "batch": a.batch,
        "chunk": 1,
        "seed": 0,
        "warmup": False,
    }
    params = side.request(spec)["params"]
    out = side.request({"cmd": "compile", "name": name, "n": a.batch})
    side.request({"cmd": "drop", "name": name})
    return {"params": params, **out}


def main(a) -> dict:
    load_before = os.getloadavg()
    cpu = pin_to_one_core(a.cpu)
    data = make_data(2000, 10_000, 0)
    tmp = tempfile.TemporaryDirectory()
    python = a.flowjax_python if not a.no_flowjax else Path("/nonexistent")
    sides, notes = start_sides(data, Path(tmp.name), python)
    if a.no_flowjax:
        notes = ["flowjax side skipped (--no-flowjax)"]
    for n in notes:
        print("WARNING:", n, flush=True)
    res = {}
    t0 = time.perf_counter()
    for side_name, side in sides.items():
        measure(side, a.flows[0], min(a.layers), a)  # throw-away: one-off start-up
        for flow in a.flows:
            for layers in a.layers:
                r = measure(side, flow, layers, a)
                res.setdefault(flow, {}).setdefault(side_name, {})[layers] = r
                print(
                    f"{flow} {side_name} layers {layers}: step compile {r['step_compile_s']:.2f} s, "
                    f"log_prob compile {r['log_prob_compile_s']:.2f} s ({r['params']} params)",
                    flush=True,
                )
    wall = time.perf_counter() - t0
    info = sides[FLOWJAX].info if FLOWJAX in sides else None
    for side in sides.values():
        side.close()
    tmp.cleanup()

    print(f"\ncompile time (s) vs depth, float32, 1 core (cpu {cpu}), first call - second call\n")
    print("| flow | side | what | " + " | ".join(f"{n} layers" for n in a.layers) + " | 16 / 8 |")
    print("|---|---|---|" + "---:|" * (len(a.layers) + 1))
    ratios = {}
    for flow, per_side in res.items():
        for side_name in (SCIML, FLOWJAX):
            if side_name not in per_side:
                continue
            by = per_side[side_name]
            for what in ("step", "log_prob"):
                vals = [by[n][f"{what}_compile_s"] for n in a.layers]
                r = None
                if 8 in by and 16 in by:
                    r = by[16][f"{what}_compile_s"] / by[8][f"{what}_compile_s"]
                    ratios[f"{flow} {side_name} {what} 16/8"] = r
                print(
                    f"| {flow} | {side_name} | {what} | "
                    + " | ".join(f"{v:.2f}" for v in vals)
                    + f" | {'' if r is None else f'{r:.2f}'} |"
                )
    result = {
        "benchmark": "flows_compile_depth",
        "layers": a.layers,
        "flows": a.flows,
        "layers_meaning": {"maf": "MADE layers", "nsf": "blocks of 2 couplings"},
        "architecture": ARCH,
        "batch": a.batch,
        "dtype": "float32",
        "cpu_pinned": cpu,
        "flowjax": info,
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": wall,
        **sciml_version(),
        "shared_machine": True,
        "notes": notes,
        "results": res,
        "ratios_16_over_8": ratios,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(a.out, result)
    return result


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--flows", nargs="+", choices=["maf", "nsf"], default=["maf", "nsf"])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last)")
    ap.add_argument("--flowjax-python", type=Path, default=default_python())
    ap.add_argument("--no-flowjax", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 and 8 layers, maf only")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.layers, a.flows = [4, 8], ["maf"]
        a.out = a.out or Path(tempfile.gettempdir()) / "flows_compile_depth_quick.json"
    a.out = a.out or RESULTS
    return a


if __name__ == "__main__":
    main(parse())
    sys.exit(0)
