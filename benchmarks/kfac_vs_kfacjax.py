"""sciml.kfac against kfac-jax 0.0.8 on the digits autoencoder: seconds per step and loss.

Both sides train the same plain MLP from the same initial parameters with
matched K-FAC settings, float64, full batch, one step per jitted call:

* data: scikit-learn `load_digits` / 16, all 1797 images (float64), the
  64-128-64-16-64-128-64 autoencoder of `kfac_digits_autoencoder` (tanh
  hidden layers, linear code and output); loss `0.5 * mean_n ||f(x_n) - x_n||^2`.
* initial parameters: sciml's `Autoencoder` (glorot normal, `--seed`), sent
  to the worker as an .npz (sciml's `W` is out x in; the worker uses `W.T`).
* sciml: `sciml.kfac.kfac` driven by a jitted step (value_and_grad, then
  `update(grads, state, params, per_sample_fn=..., value=..., value_fn=...)`,
  params and state donated), `per_sample` = the problem's residuals
  `(f(x_n) - x_n) / sqrt(N)` through `sciml.nn.batch_apply`.
* kfac-jax: `kfac_jax.Optimizer.step` (its own jit, donating params and
  state) in its own venv (`benchmarks/_kfacjax_worker.py`, a long-lived
  subprocess), the output registered with
  `register_squared_error_loss(pred, x, weight=0.5)` (kfac-jax's squared error
  is `weight * sum ||.||^2 / batch`, a Gaussian of variance 1/2: weight 0.5
  gives the same value and the same curvature as sciml's `1/2 sum r^2`).

Configurations (`--configs`; sciml <-> kfac-jax). Common to all: no factor
averaging (`ema=0` <-> `curvature_ema=0`: full batch, every step's factors
are the batch's; both take the first step's estimate whole), π-adjusted
factored Tikhonov damping (`damping_kind="factored"` <->
`use_exact_inverses=False`; both `(A + π√λ I) ⊗ (G + √λ/π I)` with
`π² = (tr A / dim A) / (tr G / dim G)`), inverse every step
(`inverse_every=1` <-> `inverse_update_period=1`), fixed damping
(`use_adaptive_damping=False, damping_schedule=lambda s: λ`), no norm
constraint, no L2, `num_burnin_steps=0`.

* `exact`: exact GGN factors (`curvature="ggn"` <-> `estimation_mode=
  "ggn_exact"`: every output unit back-propagated, 64 passes per step on both
  sides), learning rate `--lr` (0.1), momentum 0 (`learning_rate_schedule`,
  `momentum_schedule`), damping 1e-3; at most 20 steps (~0.4 s each). Both
  sides are deterministic and the same algorithm: the parameters after one
  step are compared (max abs difference), and the losses must agree.
* `fixed`: the same with the sampled Fisher, one draw per image
  (`curvature="fisher"`, `ε ~ N(0, I)` <-> `"fisher_gradients"`, targets
  sampled from the model's Gaussian): one back-propagation, the cost of the
  shipped `kfac_digits_autoencoder` config. The draws differ (different
  random streams), so the trajectories agree only statistically.
  (kfac-jax's `ggn_curvature_prop` is also a one-pass estimate, with
  Rademacher signs, not the exact GGN.)
* `adaptive`: the sampled Fisher, damping 1e-2, and learning rate and momentum
  from the exact quadratic model (`adaptive=True`, learning rate 1 <->
  `use_adaptive_learning_rate=True, use_adaptive_momentum=True`).

Seconds per step: wall time of `--steps` steps (compiled beforehand) / steps,
each repeat from the initial parameters again; sides alternate in a shuffled
order in each of `--repeats` rounds; medians, the ratio of medians sciml /
kfac-jax (target <= 1.0) and the median of the per-round ratios. Losses after
10, 100 and `--steps` steps (from the last round; every round repeats the same
run: fixed seeds).
The process pins itself to one core (`--cpu`, default 0) before JAX starts;
the worker inherits it.

    python benchmarks/kfac_vs_kfacjax.py [--steps 300] [--repeats 3] [--configs fixed adaptive]
        [--kfacjax-python PATH] [--cpu 0] [--quick]

Output: markdown on stdout, JSON in `benchmarks/results/kfac_vs_kfacjax.json`
(`kfac_vs_kfacjax_quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VENV_PY = Path("/work/kfacjax_venv/bin/python")
WORKER = ROOT / "benchmarks" / "_kfacjax_worker.py"
SCIML, KFACJAX = "sciml", "kfac-jax"
TARGET = 1.0  # sciml / kfac-jax seconds per step (the issue)
WIDTHS = (128, 64, 16, 64, 128)
FISHER = {"curvature": "fisher", "estimation_mode": "fisher_gradients"}
CONFIGS = {
    # exact GGN: deterministic on both sides (the first update must agree to rounding); 64
    # back-propagations per step on both sides, so at most `max_steps` steps
    "exact": {"curvature": "ggn", "estimation_mode": "ggn_exact", "adaptive": False, "lr": 0.1}
    | {"damping": 1e-3, "max_steps": 20},
    "fixed": FISHER | {"adaptive": False, "lr": 0.1, "damping": 1e-3},
    "adaptive": FISHER | {"adaptive": True, "lr": 1.0, "damping": 1e-2},
}
COMMON = {"ema": 0.0, "damping_kind": "factored"}


def pin_to_one_core(cpu: int) -> int:
    os.sched_setaffinity(0, {cpu})
    return cpu


# --- sciml side ---------------------------------------------------------------------------------


class ScimlSide:
    """sciml.kfac in this process, with the worker's request interface."""

    def __init__(self, x, model):
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.eqx = jax, jnp, eqx
        self.x = jnp.asarray(x)
        self.params0, self.static = eqx.partition(model, eqx.is_inexact_array)
        self.runs = {}
        self.info = {"jax": jax.__version__, **_sciml_version()}

    def _make(self, cfg: dict):
        import optax

        from sciml.kfac import kfac
        from sciml.nn import batch_apply

        jax, jnp, eqx, static = self.jax, self.jnp, self.eqx, self.static
        opt = kfac(
            cfg["lr"],
            cfg["damping"],
            curvature=cfg["curvature"],
            damping_kind=cfg["damping_kind"],
            ema=cfg["ema"],
            inverse_every=1,
            momentum=0.0,
            adaptive=cfg["adaptive"],
        )

        def residuals(params, x):
            model = eqx.combine(params, static)
            return (batch_apply(model, x) - x) / jnp.sqrt(x.shape[0])

        def loss_fn(params, x):
            return 0.5 * jnp.sum(residuals(params, x) ** 2)

        base = jax.random.key(cfg["seed"])

        def step(params, state, x):
            value, grads = jax.value_and_grad(loss_fn)(params, x)
            updates, state = opt.update(
                grads,
                state,
                params,
                per_sample_fn=lambda p: {"residuals": residuals(p, x)},
                key=jax.random.fold_in(base, state.count),
                value=value,
                value_fn=lambda p: loss_fn(p, x),
            )
            return optax.apply_updates(params, updates), state, value

        return opt, jax.jit(step, donate_argnums=(0, 1)), jax.jit(loss_fn)

    def fresh(self):
        return self.jax.tree.map(self.jnp.array, self.params0)  # copies: the step donates them

    def request(self, req: dict) -> dict:
        jax = self.jax
        cmd, name = req["cmd"], req.get("name")
        if cmd == "setup":
            opt, step, loss = self.runs[name] = self._make(req["config"])
            t0 = time.perf_counter()
            params = self.fresh()
            state = opt.init(params)
            jax.block_until_ready(state)
            init_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            params, state, v = jax.block_until_ready(step(params, state, self.x))
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            jax.block_until_ready(step(params, state, self.x))
            again = time.perf_counter() - t0
            return {"init_s": init_s, "first_step_s": first, "step_s": again}
        if cmd == "train":
            opt, step, loss = self.runs[name]
            params = self.fresh()
            state = jax.block_until_ready(opt.init(params))
            losses = []
            t0 = time.perf_counter()
            for _ in range(steps := req["steps"]):
                params, state, v = step(params, state, self.x)
                losses.append(v)
            jax.block_until_ready((params, losses))
            train_s = time.perf_counter() - t0
            final = float(loss(params, self.x))
            losses = [float(v) for v in losses] + [final]
            return {
                "s_per_step": train_s / steps,
                "train_s": train_s,
                "steps": steps,
                "losses": losses,
                "final_loss": final,
                "finite": all(map(_finite, losses)),
            }
        if cmd == "first_update":
            opt, step, _ = self.runs[name]
            params = self.fresh()
            params, _, _ = step(params, opt.init(params), self.x)
            layers = params.layers
            return {"params": [[layer.weight.tolist(), layer.bias.tolist()] for layer in layers]}
        if cmd == "drop":
            self.runs.pop(name, None)
            return {}
        raise ValueError(f"unknown cmd {cmd!r}")

    def close(self):
        pass


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


from _common import PeerWorker  # noqa: E402  (the script's folder is on sys.path)


def _sciml_version() -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import sciml_version

    return sciml_version()


class KfacjaxSide(PeerWorker):
    """The long-lived worker in kfac-jax's venv."""

    name = "kfac-jax"

    def __init__(self, python: Path, data_file: Path):
        super().__init__(python, WORKER, data_file)


# --- driver ---------------------------------------------------------------------------------------


def initial_model(seed: int):
    import jax

    from sciml.kfac._problems import Autoencoder

    return Autoencoder(64, WIDTHS, "tanh", key=jax.random.key(seed))


def run_config(name: str, sides: dict, a, order: random.Random) -> dict:
    import numpy as np

    cfg = COMMON | CONFIGS[name] | {"seed": a.seed}
    if name == "fixed" and a.lr is not None:
        cfg["lr"] = a.lr
    setup = {k: s.request({"cmd": "setup", "name": name, "config": cfg}) for k, s in sides.items()}
    for k, s in setup.items():
        print(
            f"{name} {k}: init {s['init_s']:.2f} s, first step {s['first_step_s']:.2f} s, "
            f"then {1e3 * s['step_s']:.1f} ms",
            flush=True,
        )
    first_diff = None
    if len(sides) == 2:
        first = {k: s.request({"cmd": "first_update", "name": name}) for k, s in sides.items()}
        first_diff = max(
            float(np.max(np.abs(np.asarray(p) - np.asarray(q))))
            for ls, lk in zip(first[SCIML]["params"], first[KFACJAX]["params"])
            for p, q in zip(ls, lk)
        )
        print(f"{name}: max |sciml - kfac-jax| of the parameters after one step {first_diff:.3g}")
    raw = {k: [] for k in sides}
    steps = min(a.steps, cfg.get("max_steps", a.steps))
    for r in range(a.repeats):
        names = list(sides)
        order.shuffle(names)
        for k in names:
            raw[k].append(sides[k].request({"cmd": "train", "name": name, "steps": steps}))
        done = ", ".join(
            f"{k} {1e3 * v[-1]['s_per_step']:.2f} ms/step loss {v[-1]['final_loss']:.6f}"
            for k, v in raw.items()
        )
        print(f"{name} round {r + 1}/{a.repeats}: {done}", flush=True)
    for s in sides.values():
        s.request({"cmd": "drop", "name": name})
    return {"config": cfg, "setup": setup, "raw": raw, "first_step_max_abs_diff": first_diff}


def summarise(res: dict, checkpoints: list[int]) -> dict:
    raw = res["raw"]
    out = {"config": res["config"], "first_step_max_abs_diff": res["first_step_max_abs_diff"]}
    for k, runs in raw.items():
        last = runs[-1]["losses"]
        out[k] = {
            "steps": runs[-1]["steps"],
            "s_per_step": median(r["s_per_step"] for r in runs),
            "s_per_step_all": [r["s_per_step"] for r in runs],
            "first_step_s": res["setup"][k]["first_step_s"],
            "loss": {str(c): last[c] for c in checkpoints if c < len(last)},
            "final_loss": last[-1],
            "finite": all(r["finite"] for r in runs),
        }
    if SCIML in raw and KFACJAX in raw:
        out["ratio"] = out[SCIML]["s_per_step"] / out[KFACJAX]["s_per_step"]
        out["ratio_per_round_median"] = median(
            a["s_per_step"] / b["s_per_step"] for a, b in zip(raw[SCIML], raw[KFACJAX])
        )
    return out


def print_table(summary: dict, checkpoints: list[int]) -> None:
    cols = " | ".join(f"loss @ {c}" for c in checkpoints)
    print(f"\n| config | side | ms / step | first call s | {cols} | final loss (steps) |")
    print("|---|---|---:|---:|" + "---:|" * (len(checkpoints) + 1))
    for name, s in summary.items():
        for k in (SCIML, KFACJAX):
            if k not in s:
                continue
            losses = " | ".join(
                f"{s[k]['loss'][str(c)]:.6f}" if str(c) in s[k]["loss"] else "-"
                for c in checkpoints
            )
            print(
                f"| {name} | {k} | {1e3 * s[k]['s_per_step']:.2f} | "
                f"{s[k]['first_step_s']:.2f} | {losses} | {s[k]['final_loss']:.6f} ({s[k]['steps']}) |"
            )
    print("\n| config | sciml / kfac-jax s per step (ratio of medians) | median per-round ratio |")
    print("|---|---:|---:|")
    for name, s in summary.items():
        if "ratio" in s:
            ok = "ok" if s["ratio"] <= TARGET else f"above the target {TARGET}"
            print(f"| {name} | {s['ratio']:.3f} ({ok}) | {s['ratio_per_round_median']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--lr", type=float, default=None, help="learning rate of `fixed`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--kfacjax-python", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="20 steps, 1 round: a smoke test")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.repeats = 20, 1
    cpu = pin_to_one_core(a.cpu)

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from sciml.kfac._problems import digits

    python = a.kfacjax_python or Path(os.environ.get("KFACJAX_PYTHON", VENV_PY))
    x, _ = digits()
    model = initial_model(a.seed)
    order = random.Random(a.seed)
    checkpoints = sorted({c for c in (10, 100, a.steps) if c <= a.steps})
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "digits_autoencoder.npz"
        arrays = {"x": np.asarray(x, np.float64)}
        for i, layer in enumerate(model.layers):
            arrays[f"w{i}"] = np.asarray(layer.weight)
            arrays[f"b{i}"] = np.asarray(layer.bias)
        np.savez(data_file, **arrays)
        sides = {SCIML: ScimlSide(x, model)}
        if python.exists():
            sides[KFACJAX] = KfacjaxSide(python, data_file)
        else:
            notes.append(f"{python} not found (benchmarks/requirements-kfacjax.txt): sciml only")
            print(notes[-1])
        try:
            results = {name: run_config(name, sides, a, order) for name in a.configs}
        finally:
            for s in sides.values():
                s.close()
    summary = {name: summarise(r, checkpoints) for name, r in results.items()}
    print_table(summary, checkpoints)
    out = RESULTS / ("kfac_vs_kfacjax_quick.json" if a.quick else "kfac_vs_kfacjax.json")
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import write_result

    write_result(
        out,
        {
            "summary": summary,
            "raw": {k: r["raw"] for k, r in results.items()},
            "steps": a.steps,
            "repeats": a.repeats,
            "seed": a.seed,
            "cpu": cpu,
            "versions": {k: s.info for k, s in sides.items()},
            "machine": platform.platform(),
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
