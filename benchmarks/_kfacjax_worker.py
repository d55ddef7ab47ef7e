"""The kfac-jax side of benchmarks/kfac_vs_kfacjax.py, run in kfac-jax's own venv.

kfac-jax 0.0.8 needs jax 0.8.x (with newer jax its `tag_graph_matcher`
fails), so it cannot share sciml's venv: this worker is a long-lived
subprocess in `/work/kfacjax_venv` (benchmarks/requirements-kfacjax.txt) that
answers the driver's requests, one JSON object per stdin line, one JSON reply
per stdout line; the first line printed is the versions:

    {"cmd": "setup", "name": NAME, "config": {...}}  -> {"first_step_s", "step_s", "init_s"}
    {"cmd": "train", "name": NAME, "steps": N}       -> {"s_per_step", "losses", "final_loss", ...}
    {"cmd": "first_update", "name": NAME}            -> {"params": [[W, b], ...]} after one step
    {"cmd": "drop", "name": NAME}
    {"cmd": "quit"}

    python benchmarks/_kfacjax_worker.py DATA.npz

DATA.npz (written by the driver): `x` (1797, 64) float64, the digits / 16, and
`w0, b0, w1, b1, ...` the initial layers in sciml's orientation (`w` is
out x in, `y = W x + b`). Here the network is plain JAX on a batch,
`h @ W.T + b` written as `h @ V + b` with `V = W.T` (in x out), the form
kfac-jax's graph matcher tags as a dense layer: tanh on every hidden layer
except the code (the narrowest), linear output.

Loss: `0.5 * mean_n ||f(x_n) - x_n||^2`, registered as
`register_squared_error_loss(pred, x, weight=0.5)`: kfac-jax's squared error
is `weight * sum ||pred - target||^2 / batch` (a Gaussian of variance 1/2,
curvature `2 * weight / batch` per example), so `weight=0.5` gives the value
and the curvature of the loss above -- sciml's residuals
`(f(x_n) - x_n) / sqrt(N)` with `1/2 sum r^2`.

kfac-jax owns (donates) the parameter arrays passed to `init`/`step`, so
every run starts from fresh device copies of the numpy parameters.
"""

from __future__ import annotations

import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def forward(params, x):
    """The autoencoder on a batch `x` (n, 64); `params` = [(V, b), ...] with V in x out."""
    widths = [v.shape[1] for v, _ in params[:-1]]
    code = int(np.argmin(widths))
    h = x
    for i, (v, b) in enumerate(params):
        h = h @ v + b
        if i != code and i != len(params) - 1:
            h = jnp.tanh(h)
    return h


def make_loss(kfac_jax):
    def loss_fn(params, batch):
        pred = forward(params, batch)
        kfac_jax.register_squared_error_loss(pred, batch, weight=0.5)
        return 0.5 * jnp.mean(jnp.sum((pred - batch) ** 2, axis=1))

    return loss_fn


def make_optimizer(kfac_jax, loss_fn, cfg: dict):
    """kfac-jax's optimizer for a driver config (see kfac_vs_kfacjax.CONFIGS)."""
    lr, damping = float(cfg["lr"]), float(cfg["damping"])
    adaptive = bool(cfg["adaptive"])
    kw = {}
    if not adaptive:
        kw = dict(
            learning_rate_schedule=lambda step: lr,
            momentum_schedule=lambda step: 0.0,
        )
    return kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(loss_fn),
        l2_reg=0.0,
        use_adaptive_learning_rate=adaptive,
        use_adaptive_momentum=adaptive,
        use_adaptive_damping=False,
        damping_schedule=lambda step: damping,
        estimation_mode=cfg["estimation_mode"],
        curvature_ema=float(cfg["ema"]),
        curvature_update_period=1,
        inverse_update_period=1,
        use_exact_inverses=cfg["damping_kind"] == "exact",
        num_burnin_steps=0,
        multi_device=False,
        include_norms_in_stats=False,
        **kw,
    )


class Run:
    """One configuration: its optimizer (compiled once) and the initial parameters (numpy)."""

    def __init__(self, kfac_jax, cfg: dict, params_np, x):
        self.cfg, self.params_np, self.x = cfg, params_np, x
        self.loss_fn = make_loss(kfac_jax)
        self.opt = make_optimizer(kfac_jax, self.loss_fn, cfg)
        self.eval_loss = jax.jit(self.loss_fn)
        self.seed = int(cfg.get("seed", 0))

    def fresh(self):
        """New device copies of the initial parameters (kfac-jax donates what it is given)."""
        return [(jnp.array(v), jnp.array(b)) for v, b in self.params_np]

    def _start(self):
        params = self.fresh()
        rng = jax.random.key(self.seed)
        state = self.opt.init(params, rng, self.x)
        jax.block_until_ready(state)
        return params, state, rng

    def _step(self, params, state, rng, i):
        rng, sub = jax.random.split(rng)
        params, state, stats = self.opt.step(params, state, sub, batch=self.x, global_step_int=i)
        return params, state, rng, stats["loss"]

    def warmup(self) -> dict:
        t0 = time.perf_counter()
        params, state, rng = self._start()
        init_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        params, state, rng, loss = self._step(params, state, rng, 0)
        jax.block_until_ready((params, loss))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        params, state, rng, loss = self._step(params, state, rng, 1)
        jax.block_until_ready((params, loss))
        again = time.perf_counter() - t0
        return {"init_s": init_s, "first_step_s": first, "step_s": again}

    def train(self, steps: int) -> dict:
        params, state, rng = self._start()
        losses = []
        t0 = time.perf_counter()
        for i in range(steps):
            params, state, rng, loss = self._step(params, state, rng, i)
            losses.append(loss)
        jax.block_until_ready((params, losses))
        train_s = time.perf_counter() - t0
        final = float(self.eval_loss(params, self.x))
        losses = [float(v) for v in losses] + [final]  # losses[k]: after k steps
        return {
            "s_per_step": train_s / steps,
            "train_s": train_s,
            "steps": steps,
            "losses": losses,
            "final_loss": final,
            "finite": bool(np.all(np.isfinite(losses))),
        }

    def first_update(self) -> dict:
        params, state, rng = self._start()
        params, *_ = self._step(params, state, rng, 0)
        return {"params": [[np.asarray(v).T.tolist(), np.asarray(b).tolist()] for v, b in params]}


def load(path: str):
    with np.load(path) as z:
        x = np.asarray(z["x"], np.float64)
        n = sum(1 for k in z.files if k.startswith("w"))
        # sciml's W is out x in; here V = W.T (in x out)
        params = [(np.asarray(z[f"w{i}"]).T.copy(), np.asarray(z[f"b{i}"])) for i in range(n)]
    return x, params


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("kfac-jax", "jax", "jaxlib", "optax", "chex", "numpy")}


def serve(path: str) -> None:
    import kfac_jax

    x_np, params_np = load(path)
    x = jnp.asarray(x_np)
    runs: dict[str, Run] = {}
    print(json.dumps(_versions() | {"platform": jax.devices()[0].platform}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "setup":
                run = runs[req["name"]] = Run(kfac_jax, req["config"], params_np, x)
                reply = run.warmup()
            elif cmd == "train":
                reply = runs[req["name"]].train(req["steps"])
            elif cmd == "first_update":
                reply = runs[req["name"]].first_update()
            elif cmd == "drop":
                runs.pop(req["name"], None)
                reply = {}
            else:
                reply = {"error": f"unknown cmd {cmd!r}"}
        except Exception as e:  # noqa: BLE001 -- the driver reports it
            reply = {"error": repr(e)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: _kfacjax_worker.py DATA.npz")
    serve(sys.argv[1])
