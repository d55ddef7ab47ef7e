"""sciml.flows against flowjax 19.1.2 on two moons: time per training step, compile, NLL, throughput.

Both sides fit the same data with the same architecture, loss, optimizer,
minibatches and float32, and are timed by the same code
(`_flowjax_worker.Harness`; flowjax runs in its own venv, a long-lived
subprocess `benchmarks/_flowjax_worker.py`):

* data: scikit-learn `make_moons(noise=0.1)` as sciml's `flow_two_moons`
  draws it (`sciml.flows._data.two_moons`, 10 000 training points with
  seed 0, 100 000 fresh test points with seed 1), float32, handed to the
  worker in an .npz; both flows end in a trainable affine map set to the
  training set's mean and std (+1e-6), as `flow_two_moons` does
  (`standardise: true`).
* flows (`--flows`): `maf` = 8 affine MADE layers (hidden 64 x 2, tanh),
  order flipped between layers (sciml `maf(2, layers=8)`, flowjax
  `masked_autoregressive_flow(flow_layers=8)`); `nsf` = 8 rational-quadratic
  spline couplings with 8 bins on [-4, 4], conditioner 64 x 2 tanh (sciml
  `neural_spline_flow(2, layers=4)`: 4 blocks of 2 couplings; flowjax
  `coupling_flow(flow_layers=8, transformer=RationalQuadraticSpline(knots=7,
  interval=4))`: 7 inner knots = 8 bins). Standard normal base. Parameter
  counts are reported (flowjax's splines have 2 more parameters per spline:
  its boundary derivatives are free; flowjax's last conditioner layer is not
  zero-initialised).
* training: optax.adam(`--lr`), batch `--batch` drawn with replacement by
  `jax.random.randint` with the step's key (the same keys on both sides),
  `--chunk` steps per jitted `lax.scan` chunk; the loss is
  `sciml.flows.maximum_likelihood_loss` / flowjax's `MaximumLikelihoodLoss`.
  Seconds per step: wall time of `--steps` steps (all chunks, compiled
  beforehand) / steps; each repeat trains from the initial flow again.
  Compile: first call of the chunk minus a later call.
* test NLL: mean -log q on the 100 000 test points after the `--steps`
  steps, beside the exact density's NLL on them (the oracle).
* throughput: jitted `log_prob` of `--n-throughput` points and jitted
  sampling of as many (the initial flow; MAF sampling is 2 sequential
  passes per layer on both sides).

The process pins itself to one core (`--cpu`, default: the last core it may
use) before JAX starts; the worker inherits the affinity. Sides run one at a
time, interleaved in a shuffled order in each of `--repeats` rounds; the
table gives medians, the ratio of medians sciml / flowjax (target: <= 1 s
per step) and the median of the per-round ratios.

Output: markdown on stdout, JSON in `benchmarks/results/flows_vs_flowjax.json`.

    python benchmarks/flows_vs_flowjax.py [--steps 2000] [--repeats 3] [--flows maf nsf]
        [--flowjax-python PATH] [--cpu N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import PeerWorker, sciml_version, write_result
from _flowjax_worker import Harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "flows_vs_flowjax.json"
VENV_PY = Path("/work/flowjax_venv/bin/python")
WORKER = ROOT / "benchmarks" / "_flowjax_worker.py"
FLOWJAX = "flowjax"
SCIML = "sciml"
TARGET = 1.0  # sciml / flowjax seconds per step (the issue)
ARCH = {"width": 64, "depth": 2, "knots": 8, "interval": 4.0}
# maf: 8 MADE layers; nsf: 4 blocks of 2 couplings = 8 couplings (flowjax flow_layers=8)
LAYERS = {"maf": 8, "nsf": 4}


def default_python() -> Path:
    env = os.environ.get("FLOWJAX_PYTHON")
    return Path(env) if env else VENV_PY


# --- data -------------------------------------------------------------------------------------


def make_data(n_train: int, n_test: int, seed: int, noise: float = 0.1) -> dict:
    """Two moons as `flow_two_moons` draws them, float32, with the standardising loc / scale."""
    from sciml.flows._data import two_moons, two_moons_log_density

    train, _ = two_moons(n_train, seed=seed, noise=noise)
    test, _ = two_moons(n_test, seed=seed + 1, noise=noise)
    train32 = train.astype(np.float32)
    loc = train32.mean(0)
    scale = train32.std(0) + np.float32(1e-6)
    oracle = -float(np.mean(two_moons_log_density(test, noise=noise, nodes=200)))
    return {
        "train": train32,
        "test": test.astype(np.float32),
        "loc": loc.astype(np.float32),
        "scale": scale.astype(np.float32),
        "oracle_nll": oracle,
    }


# --- sciml side -------------------------------------------------------------------------------


def build_sciml(spec: dict, loc, scale):
    """sciml's flow of a `setup` spec (see `_flowjax_worker.build_flowjax` for flowjax's)."""
    from sciml.flows import maf, neural_spline_flow

    key = jax.random.key(spec["seed"])
    loc, scale = jnp.asarray(loc, jnp.float32), jnp.asarray(scale, jnp.float32)
    kw = dict(layers=spec["layers"], width=spec["width"], depth=spec["depth"], loc=loc, scale=scale)
    if spec["flow"] == "maf":
        # layers: MADE layers (each followed by a reversal), as flowjax's flow_layers
        return maf(2, key=key, **kw)
    if spec["flow"] == "nsf":
        # layers: blocks of 2 couplings; flowjax gets flow_layers = 2 * layers
        return neural_spline_flow(
            2, key=key, kind="coupling", knots=spec["knots"], interval=spec["interval"], **kw
        )
    raise ValueError(f"unknown flow {spec['flow']!r}; allowed: maf, nsf")


def sciml_loss(params, static, x):
    from sciml.flows import maximum_likelihood_loss

    return maximum_likelihood_loss(eqx.combine(params, static), x)


def sciml_log_prob(flow, x):
    return jax.vmap(flow.log_prob)(x)


def sciml_sample(flow, key, n):
    return jax.vmap(flow.sample)(jax.random.split(key, n))


def sciml_harness(spec: dict, data: dict, build=build_sciml) -> Harness:
    flow = build(spec, data["loc"], data["scale"])
    return Harness(
        flow,
        sciml_loss,
        sciml_log_prob,
        sciml_sample,
        data["train"],
        data["test"],
        batch=spec["batch"],
        lr=spec["lr"],
        chunk=spec["chunk"],
        seed=spec["seed"],
    )


# --- profiling variants of the sciml side (local experiments; sciml itself is not changed) --------


def build_uninverted(spec: dict, loc, scale):
    """sciml's spline coupling flow with `invert=False`: the density direction then runs the
    spline's quadratic-root inverse (what sciml did before `invert=True` became the default)."""
    from sciml.flows import neural_spline_flow

    if spec["flow"] != "nsf":
        return build_sciml(spec, loc, scale)
    key = jax.random.key(spec["seed"])
    loc, scale = jnp.asarray(loc, jnp.float32), jnp.asarray(scale, jnp.float32)
    return neural_spline_flow(
        2,
        key=key,
        kind="coupling",
        knots=spec["knots"],
        interval=spec["interval"],
        layers=spec["layers"],
        width=spec["width"],
        depth=spec["depth"],
        loc=loc,
        scale=scale,
        invert=False,
    )


def _bin_values_gather(edges, v, *tables):
    """`_spline._bin_values` with an index (gather) instead of a one-hot dot product."""
    k = jnp.sum(edges[1:-1] <= v)
    out = []
    for t in tables:
        out += [t[k], t[k + 1]]
    return out


def _log_derivative_one_log(xi, s, d0, d1):
    """`_spline._log_derivative` with one log instead of three (the same value)."""
    om = xi * (1 - xi)
    den = s + (d1 + d0 - 2 * s) * om
    num = d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2
    return jnp.log(s * s * num / (den * den))


def _bin_values_mulsum(edges, v, *tables):
    """`_spline._bin_values` with `sum(onehot * t)` instead of `dot(onehot, t)`: no dot_general
    (under vmap a dot of length K becomes a batched matrix product of tiny matrices)."""
    k = jnp.sum(edges[1:-1] <= v)
    onehot = (jnp.arange(edges.shape[-1] - 1) == k).astype(edges.dtype)
    out = []
    for t in tables:
        out += [jnp.sum(onehot * t[:-1], -1), jnp.sum(onehot * t[1:], -1)]
    return out


def _cumulative_knots_mulsum(raw, interval):
    """`_spline._cumulative_knots` with the triangular product as multiply + sum (no dot_general)."""
    from sciml.flows._spline import MIN_BIN

    k = raw.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * k) * jax.nn.softmax(raw, axis=-1)
    upper = jnp.triu(jnp.ones((k, k - 1), raw.dtype))
    inner = -interval + 2 * interval * jnp.sum(sizes[..., :, None] * upper, -2)
    lo = jnp.full(raw.shape[:-1] + (1,), -interval, raw.dtype)
    hi = jnp.full(raw.shape[:-1] + (1,), interval, raw.dtype)
    return jnp.concatenate([lo, inner, hi], axis=-1)


@contextlib.contextmanager
def patched_spline(gather: bool = False, one_log: bool = False, mulsum: bool = False):
    """Temporarily replace helpers of `sciml.flows._spline` (read at trace time)."""
    from sciml.flows import _spline

    saved = _spline._bin_values, _spline._log_derivative, _spline._cumulative_knots
    if gather:
        _spline._bin_values = _bin_values_gather
    if one_log:
        _spline._log_derivative = _log_derivative_one_log
    if mulsum:
        _spline._bin_values = _bin_values_mulsum
        _spline._cumulative_knots = _cumulative_knots_mulsum
    try:
        yield
    finally:
        _spline._bin_values, _spline._log_derivative, _spline._cumulative_knots = saved


VARIANTS = {
    # name: (build, patch kwargs or None)
    "sciml-uninverted": (build_uninverted, None),
    "sciml+1log": (build_sciml, {"gather": False, "one_log": True}),
    "sciml+gather": (build_sciml, {"gather": True, "one_log": False}),
    "sciml+mulsum": (build_sciml, {"mulsum": True}),
}


class ScimlSide:
    """sciml in this process, with the worker's request interface."""

    def __init__(self, data: dict, build=build_sciml, patch: dict | None = None):
        self.data, self.build, self.h, self.patch = data, build, {}, patch
        self.info = {"jax": jax.__version__, **sciml_version()}

    def request(self, req: dict) -> dict:
        if self.patch is None:
            return self._request(req)
        with patched_spline(**self.patch):
            return self._request(req)

    def _request(self, req: dict) -> dict:
        cmd, name = req["cmd"], req.get("name")
        if cmd == "setup":
            h = self.h[name] = sciml_harness(req, self.data, self.build)
            out = {"params": h.params()}
            return out | (h.warmup() if req.get("warmup", True) else {})
        if cmd == "train":
            return self.h[name].train(req["steps"])
        if cmd == "throughput":
            return self.h[name].throughput(req["n"], req["repeats"])
        if cmd == "compile":
            return self.h[name].compile_times(req["n"])
        if cmd == "drop":
            self.h.pop(name, None)
            return {}
        raise ValueError(f"unknown cmd {cmd!r}")

    def close(self):
        pass


class FlowjaxSide(PeerWorker):
    """The long-lived worker in the flowjax venv."""

    name = "flowjax"

    def __init__(self, python: Path, data_file: Path):
        super().__init__(python, WORKER, data_file)


def start_sides(data: dict, tmp: Path, python: Path, variants=()) -> tuple[dict, list[str]]:
    """The sciml side and, if its venv exists, the flowjax worker; notes on what is missing."""
    data_file = tmp / "two_moons.npz"
    np.savez(data_file, **{k: v for k, v in data.items() if isinstance(v, np.ndarray)})
    sides, notes = {SCIML: ScimlSide(data)}, []
    for v in variants:
        build, patch = VARIANTS[v]
        sides[v] = ScimlSide(data, build, patch)
    if not python.exists():
        notes.append(
            f"{python} not found: create the flowjax venv (benchmarks/README.md) or pass "
            "--flowjax-python; flowjax side skipped"
        )
    else:
        try:
            sides[FLOWJAX] = FlowjaxSide(python, data_file)
        except Exception as e:  # noqa: BLE001 -- report, go on with sciml alone
            notes.append(f"flowjax worker failed to start ({e!r}); flowjax side skipped")
    return sides, notes


def pin_to_one_core(cpu: int | None) -> int:
    """Restrict this process (and its children) to one core; returns it."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


# --- driver -----------------------------------------------------------------------------------


def run_flow(flow: str, sides: dict, a, order: random.Random) -> dict:
    sides = {k: v for k, v in sides.items() if k in (SCIML, FLOWJAX) or flow in a.variant_flows}
    spec = {
        "cmd": "setup",
        "name": flow,
        "flow": flow,
        "layers": LAYERS[flow],
        **ARCH,
        "lr": a.lr,
        "batch": a.batch,
        "chunk": a.chunk,
        "seed": a.seed,
    }
    setup = {name: side.request(spec) for name, side in sides.items()}
    for name, s in setup.items():
        print(
            f"{flow} {name}: {s['params']} parameters, chunk compile {s['compile_chunk_s']:.2f} s",
            flush=True,
        )
    raw = {name: [] for name in sides}
    for r in range(a.repeats):
        names = list(sides)
        order.shuffle(names)
        for name in names:
            raw[name].append(sides[name].request({"cmd": "train", "name": flow, "steps": a.steps}))
        done = ", ".join(
            f"{k} {1e3 * v[-1]['s_per_step']:.3f} ms/step NLL {v[-1]['test_nll']:.4f}"
            for k, v in raw.items()
        )
        print(f"{flow} round {r + 1}/{a.repeats}: {done}", flush=True)
    thr = {}
    names = list(sides)
    order.shuffle(names)
    for name in names:
        thr[name] = sides[name].request(
            {"cmd": "throughput", "name": flow, "n": a.n_throughput, "repeats": a.tp_repeats}
        )
    for side in sides.values():
        side.request({"cmd": "drop", "name": flow})
    return {"setup": setup, "raw": raw, "throughput": thr}


def summarise(res: dict, oracle: float) -> dict:
    """Per side: medians; per non-flowjax side (flowjax present): ratios side / flowjax."""
    sides = {}
    for name, runs in res["raw"].items():
        t = res["throughput"][name]
        sides[name] = {
            "s_per_step": median(r["s_per_step"] for r in runs),
            "s_per_step_all": [r["s_per_step"] for r in runs],
            "test_nll": median(r["test_nll"] for r in runs),
            "test_nll_all": [r["test_nll"] for r in runs],
            "gap_to_oracle": median(r["test_nll"] for r in runs) - oracle,
            "final_train_loss": median(r["final_train_loss"] for r in runs),
            "params": res["setup"][name]["params"],
            "compile_chunk_s": res["setup"][name]["compile_chunk_s"],
            "log_prob_per_s": t["log_prob"]["per_s"],
            "sample_per_s": t["sample"]["per_s"],
            "log_prob_compile_s": t["log_prob"]["compile_s"],
            "sample_compile_s": t["sample"]["compile_s"],
        }
    out = {"sides": sides}
    if FLOWJAX in sides:
        f = sides[FLOWJAX]
        for name, s in sides.items():
            if name == FLOWJAX:
                continue
            s["over_flowjax"] = {
                "s_per_step": s["s_per_step"] / f["s_per_step"],
                "s_per_step_paired": median(
                    a["s_per_step"] / b["s_per_step"]
                    for a, b in zip(res["raw"][name], res["raw"][FLOWJAX], strict=True)
                ),
                "compile_chunk_s": s["compile_chunk_s"] / f["compile_chunk_s"],
                "log_prob_per_s": s["log_prob_per_s"] / f["log_prob_per_s"],
                "sample_per_s": s["sample_per_s"] / f["sample_per_s"],
                "params": s["params"] / f["params"],
                "test_nll_diff": s["test_nll"] - f["test_nll"],
            }
    return out


def main(a) -> dict:
    load_before = os.getloadavg()
    cpu = pin_to_one_core(a.cpu)
    data = make_data(a.n_train, a.n_test, a.data_seed)
    tmp = tempfile.TemporaryDirectory()
    variants = a.variants if a.variant_flows else []
    sides, notes = start_sides(data, Path(tmp.name), a.flowjax_python, variants)
    for n in notes:
        print("WARNING:", n, flush=True)
    order = random.Random(a.seed)
    t0 = time.perf_counter()
    per_flow = {flow: run_flow(flow, sides, a, order) for flow in a.flows}
    wall = time.perf_counter() - t0
    info = sides[FLOWJAX].info if FLOWJAX in sides else None
    for side in sides.values():
        side.close()
    tmp.cleanup()
    summary = {flow: summarise(r, data["oracle_nll"]) for flow, r in per_flow.items()}

    print(
        f"\ntwo moons (noise 0.1), {a.n_train} train / {a.n_test} test points, float32, "
        f"adam({a.lr}), batch {a.batch}, {a.steps} steps ({a.chunk} per jitted chunk) x "
        f"{a.repeats} interleaved rounds, medians, 1 core (cpu {cpu}); oracle NLL "
        f"{data['oracle_nll']:.4f}"
    )
    fj = f"flowjax {info['flowjax']} (jax {info['jax']})" if info else "flowjax: -"
    print(f"sciml: jax {jax.__version__}; {fj}\n")
    print(
        "| flow | side | params | ms / step | sciml / flowjax | per-round | test NLL | compile (s) "
        "| log_prob / s | samples / s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    checks = {}
    for flow, sm in summary.items():
        for name, v in sm["sides"].items():
            rat = v.get("over_flowjax")
            r1 = f"{rat['s_per_step']:.2f}" if rat else ""
            r2 = f"{rat['s_per_step_paired']:.2f}" if rat else ""
            print(
                f"| {flow} | {name} | {v['params']} | {1e3 * v['s_per_step']:.3f} | {r1} | {r2} | "
                f"{v['test_nll']:.4f} | {v['compile_chunk_s']:.2f} | {v['log_prob_per_s']:.3g} | "
                f"{v['sample_per_s']:.3g} |"
            )
        rat = sm["sides"][SCIML].get("over_flowjax")
        if rat:
            ok_t = rat["s_per_step_paired"] <= TARGET
            ok_n = rat["test_nll_diff"] <= 0.01
            checks[f"{flow}: s/step sciml/flowjax <= {TARGET}"] = {
                "value": rat["s_per_step_paired"],
                "ratio_of_medians": rat["s_per_step"],
                "ok": ok_t,
            }
            checks[f"{flow}: test NLL sciml <= flowjax + 0.01"] = {
                "value": rat["test_nll_diff"],
                "ok": ok_n,
            }
    print()
    for flow, sm in summary.items():
        for name, v in sm["sides"].items():
            rat = v.get("over_flowjax")
            if rat:
                print(
                    f"{flow} {name}/flowjax: s/step {rat['s_per_step_paired']:.2f} (per-round "
                    f"median; {rat['s_per_step']:.2f} ratio of medians); NLL diff "
                    f"{rat['test_nll_diff']:+.4f}; compile {rat['compile_chunk_s']:.2f}x; "
                    f"log_prob/s {rat['log_prob_per_s']:.2f}x; samples/s {rat['sample_per_s']:.2f}x"
                )
    for name, c in checks.items():
        print(f"check {name}: {c['value']:.3f} {'OK' if c['ok'] else 'NOT MET'}")
    result = {
        "benchmark": "flows_vs_flowjax",
        "data": {
            "name": "two moons (sklearn make_moons, noise 0.1)",
            "n_train": a.n_train,
            "n_test": a.n_test,
            "data_seed": a.data_seed,
            "oracle_nll": data["oracle_nll"],
            "standardise": "final trainable affine (loc = mean, scale = std + 1e-6 of train)",
        },
        "architecture": ARCH
        | {
            "maf": "8 affine MADE layers (64 x 2 tanh), flip between",
            "nsf": "8 RQ-spline couplings, 8 bins on [-4, 4], conditioner 64 x 2 tanh",
        },
        "optimizer": f"adam({a.lr})",
        "batch": a.batch,
        "steps": a.steps,
        "chunk": a.chunk,
        "repeats": a.repeats,
        "n_throughput": a.n_throughput,
        "dtype": "float32",
        "cpu_pinned": cpu,
        "flowjax": info,
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": wall,
        **sciml_version(),
        "shared_machine": True,
        "notes": notes,
        "per_flow": per_flow,
        "summary": summary,
        "checks": checks,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(a.out, result)
    return result


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps per timed run")
    ap.add_argument("--chunk", type=int, default=250, help="steps per jitted lax.scan chunk")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--flows", nargs="+", choices=["maf", "nsf"], default=["maf", "nsf"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0, help="flow initialisation, minibatches, order")
    ap.add_argument("--data-seed", type=int, default=0, help="train seed; test uses seed + 1")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=100_000, help="a multiple of 10 000")
    ap.add_argument("--n-throughput", type=int, default=100_000)
    ap.add_argument("--tp-repeats", type=int, default=3)
    ap.add_argument(
        "--variants",
        nargs="*",
        choices=sorted(VARIANTS),
        default=sorted(VARIANTS),
        help="profiling variants of the sciml side (local monkeypatches, see VARIANTS)",
    )
    ap.add_argument(
        "--variant-flows",
        nargs="*",
        choices=["maf", "nsf"],
        default=["nsf"],
        help="flows on which the variants run (none: no variants)",
    )
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last)")
    ap.add_argument("--flowjax-python", type=Path, default=default_python())
    ap.add_argument("--quick", action="store_true", help="smoke test: 250 steps x 1 round")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.chunk, a.repeats, a.n_test, a.n_throughput, a.tp_repeats = (
            250,
            250,
            1,
            20_000,
            20_000,
            1,
        )
        a.out = a.out or Path(tempfile.gettempdir()) / "flows_vs_flowjax_quick.json"
    a.out = a.out or RESULTS
    if a.steps % a.chunk:
        ap.error(f"--steps ({a.steps}) must be a multiple of --chunk ({a.chunk})")
    if a.n_test % 10_000:
        ap.error(f"--n-test must be a multiple of 10000, got {a.n_test}")
    return a


if __name__ == "__main__":
    main(parse())
    sys.exit(0)
