"""flowjax side of `flows_vs_flowjax.py` and `flows_compile_depth.py`; runs in the flowjax venv.

Needs only jax, equinox, optax, numpy and flowjax 19.1.2 (see
`requirements-flowjax.txt`); it never imports sciml. The timing code
(`Harness`) imports no flowjax either, and the sciml side of the drivers
imports it from here, so that both libraries are timed by the same code:

* a training chunk: one `eqx.filter_jit` function scanning `chunk` steps of
  `minibatch (jax.random.randint with the step's key) -> value_and_grad(loss)
  -> optax update -> apply_updates` (`lax.scan`); the trainable parameters
  are the inexact arrays of the flow (`eqx.partition(flow,
  eqx.is_inexact_array)`), the rest (masks, permutations, static fields) is
  passed through the same jit as the second argument;
* a single jitted step (the same body without the scan) for compile times;
* jitted `log_prob` of a batch and jitted sampling of `n` points.

Only the loss, the batched `log_prob` and the batched sampling differ: for
flowjax `flowjax.train.losses.MaximumLikelihoodLoss()(params, static, x)`,
`flow.log_prob(x)` and `flow.sample(key, (n,))` (flowjax vectorises and
unwraps its `paramax` parameters itself); for sciml
`maximum_likelihood_loss(eqx.combine(params, static), x)`,
`jax.vmap(flow.log_prob)(x)` and `jax.vmap(flow.sample)(jax.random.split(key, n))`.

    python benchmarks/_flowjax_worker.py DATA.npz

serves requests, one JSON object per stdin line, one JSON reply per stdout
line; the first line printed is `{"flowjax", "jax", "jaxlib", "equinox", "optax", ...}`:

    {"cmd": "setup", "name": NAME, "flow": "maf"|"nsf", "layers", "width", "depth",
     "knots", "interval", "lr", "batch", "chunk", "seed"}       -> {"params", "compile_chunk_s", ...}
    {"cmd": "train", "name": NAME, "steps": N}                    -> `Harness.train`'s dict
    {"cmd": "throughput", "name": NAME, "n": N, "repeats": R}     -> `Harness.throughput`'s dict
    {"cmd": "compile", "name": NAME, "n": N}                      -> `Harness.compile_times`'s dict
    {"cmd": "drop", "name": NAME}
    {"cmd": "quit"}

DATA.npz (written by the driver): `train` (n_train, 2) and `test` (n_test, 2)
float32 points (the driver's two moons), `loc` and `scale` (2,) (the
training set's mean and standard deviation + 1e-6: a final trainable affine
map to data space, as sciml's `flow_two_moons` does).

Architectures (`setup`), matched to sciml's factories:

* `maf`: `masked_autoregressive_flow(flow_layers=layers, nn_width=width,
  nn_depth=depth, nn_activation=tanh)` (affine transformer `softplus + 1e-2`,
  a flip after every layer), as sciml's `maf(2, layers=layers, ...)`.
* `nsf`: `coupling_flow(flow_layers=2 * layers, transformer=
  RationalQuadraticSpline(knots=knots - 1, interval=interval), ...)`: sciml's
  `neural_spline_flow(layers=L)` has L blocks of two couplings, and sciml's
  `knots` counts bins (K bins, 3K - 1 parameters) while flowjax's counts
  inner knots (K - 1 inner knots = K bins, 3K + 1 parameters).

Both: standard normal base, `invert=True` (flowjax's default: the density
direction is one pass), then the data affine map.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from statistics import median

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def _block(tree):
    jax.block_until_ready(jax.tree.leaves(tree))
    return tree


def count_params(flow) -> int:
    """Number of trainable scalars: the sizes of the flow's inexact arrays (masked weights included)."""
    return int(sum(x.size for x in jax.tree.leaves(eqx.filter(flow, eqx.is_inexact_array))))


class Harness:
    """Training, density and sampling timings of one flow, the same code for both libraries.

    Args:
        flow: the initial model (a pytree).
        loss_fn: `loss_fn(params, static, x) -> scalar` (mean NLL of the batch `x`).
        log_prob: `log_prob(flow, x) -> (n,)` for a batch `x` (n, d).
        sample: `sample(flow, key, n) -> (n, d)`.
        train, test: the data (numpy, float32).
        batch, lr, chunk, seed: minibatch size, Adam's learning rate, steps per
            compiled chunk, the key of the minibatches.
    """

    def __init__(
        self,
        flow,
        loss_fn: Callable,
        log_prob: Callable,
        sample: Callable,
        train: np.ndarray,
        test: np.ndarray,
        *,
        batch: int,
        lr: float,
        chunk: int,
        seed: int,
    ):
        self.flow0 = flow
        self.params0, self.static = eqx.partition(flow, eqx.is_inexact_array)
        self.train_x = jnp.asarray(train, jnp.float32)
        self.test_x = jnp.asarray(test, jnp.float32)
        self.batch, self.chunk, self.seed = int(batch), int(chunk), int(seed)
        self.optimizer = optax.adam(lr)
        self.log_prob_fn, self.sample_fn = log_prob, sample
        optimizer, batch = self.optimizer, self.batch

        def one_step(params, static, opt_state, key, data):
            idx = jax.random.randint(key, (batch,), 0, data.shape[0])
            loss, grads = jax.value_and_grad(loss_fn)(params, static, data[idx])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        def run_chunk(params, static, opt_state, key, data):
            def body(carry, k):
                p, s = carry
                p, s, loss = one_step(p, static, s, k, data)
                return (p, s), loss

            keys = jax.random.split(key, chunk)
            (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), keys)
            return params, opt_state, losses

        def mean_nll(flow, x):
            # 10 000 points per vectorised evaluation
            xs = x.reshape(-1, 10_000, x.shape[-1])
            return -jnp.mean(jax.lax.map(lambda b: log_prob(flow, b), xs))

        self.step = eqx.filter_jit(one_step)
        self.run_chunk = eqx.filter_jit(run_chunk)
        self.mean_nll = eqx.filter_jit(mean_nll)
        self.compile_chunk_s = None

    def params(self) -> int:
        return count_params(self.flow0)

    def _init_state(self):
        return self.params0, self.optimizer.init(self.params0)

    def warmup(self) -> dict:
        """Compile the training chunk: first call - a later call of the same chunk."""
        params, opt_state = self._init_state()
        key = jax.random.key(self.seed)
        t0 = time.perf_counter()
        _block(self.run_chunk(params, self.static, opt_state, key, self.train_x))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        _block(self.run_chunk(params, self.static, opt_state, key, self.train_x))
        again = time.perf_counter() - t0
        self.compile_chunk_s = first - again
        return {"compile_chunk_s": first - again, "first_chunk_s": first, "chunk_s": again}

    def train(self, steps: int) -> dict:
        """Train from the initial flow for `steps` (a multiple of `chunk`); test NLL at the end."""
        if steps % self.chunk:
            raise ValueError(f"steps {steps} must be a multiple of chunk {self.chunk}")
        params, opt_state = self._init_state()
        key = jax.random.key(self.seed)
        losses = []
        t0 = time.perf_counter()
        for _ in range(steps // self.chunk):
            key, sub = jax.random.split(key)
            params, opt_state, loss = self.run_chunk(
                params, self.static, opt_state, sub, self.train_x
            )
            losses.append(loss)
        _block((params, losses))
        train_s = time.perf_counter() - t0
        flow = eqx.combine(params, self.static)
        t0 = time.perf_counter()
        test_nll = float(self.mean_nll(flow, self.test_x))
        eval_s = time.perf_counter() - t0
        losses = np.concatenate([np.asarray(x) for x in losses])
        tail = losses[-max(1, len(losses) // 20) :]
        return {
            "s_per_step": train_s / steps,
            "train_s": train_s,
            "steps": steps,
            "test_nll": test_nll,
            "final_train_loss": float(np.mean(tail)),
            "loss_finite": bool(np.all(np.isfinite(losses))),
            "eval_s": eval_s,
        }

    def throughput(self, n: int, repeats: int) -> dict:
        """log_prob of `n` test points and sampling of `n` points (jitted; first call = compile)."""
        flow = self.flow0
        x = jnp.tile(self.test_x, (-(-n // self.test_x.shape[0]), 1))[:n]
        lp = eqx.filter_jit(lambda f, x: self.log_prob_fn(f, x))
        smp = eqx.filter_jit(lambda f, k: self.sample_fn(f, k, n))
        out = {"n": n}
        for name, fn, arg in (("log_prob", lp, x), ("sample", smp, jax.random.key(1))):
            t0 = time.perf_counter()
            _block(fn(flow, arg))
            first = time.perf_counter() - t0
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = _block(fn(flow, arg))
                times.append(time.perf_counter() - t0)
            out[name] = {
                "per_s": n / median(times),
                "s": median(times),
                "times": times,
                "compile_s": first - median(times),
                "finite": bool(np.all(np.isfinite(np.asarray(res)))),
            }
        return out

    def compile_times(self, n: int) -> dict:
        """First-call minus second-call time of a single jitted train step and of log_prob on `n` points."""
        params, opt_state = self._init_state()
        key = jax.random.key(self.seed)
        x = self.test_x[:n]
        lp = eqx.filter_jit(lambda f, x: self.log_prob_fn(f, x))
        out = {}
        for name, call in (
            ("step", lambda: self.step(params, self.static, opt_state, key, self.train_x)),
            ("log_prob", lambda: lp(self.flow0, x)),
        ):
            t0 = time.perf_counter()
            _block(call())
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            _block(call())
            again = time.perf_counter() - t0
            out[f"{name}_compile_s"] = first - again
            out[f"{name}_run_s"] = again
        return out


# --- flowjax ----------------------------------------------------------------------------------


def build_flowjax(spec: dict, loc: np.ndarray, scale: np.ndarray):
    """The flowjax flow of a `setup` request (see the module docstring)."""
    from flowjax.bijections import Affine, Chain, RationalQuadraticSpline
    from flowjax.distributions import StandardNormal, Transformed
    from flowjax.flows import coupling_flow, masked_autoregressive_flow

    key = jax.random.key(spec["seed"])
    base = StandardNormal((2,))
    common = dict(
        base_dist=base, nn_width=spec["width"], nn_depth=spec["depth"], nn_activation=jnp.tanh
    )
    if spec["flow"] == "maf":
        flow = masked_autoregressive_flow(key, flow_layers=spec["layers"], **common)
    elif spec["flow"] == "nsf":
        spline = RationalQuadraticSpline(knots=spec["knots"] - 1, interval=spec["interval"])
        flow = coupling_flow(key, transformer=spline, flow_layers=2 * spec["layers"], **common)
    else:
        raise ValueError(f"unknown flow {spec['flow']!r}; allowed: maf, nsf")
    affine = Affine(jnp.asarray(loc, jnp.float32), jnp.asarray(scale, jnp.float32))
    return Transformed(flow.base_dist, Chain([flow.bijection, affine]))


def flowjax_harness(spec: dict, data: dict) -> Harness:
    from flowjax.train.losses import MaximumLikelihoodLoss

    flow = build_flowjax(spec, data["loc"], data["scale"])
    return Harness(
        flow,
        MaximumLikelihoodLoss(),
        lambda f, x: f.log_prob(x),
        lambda f, k, n: f.sample(k, (n,)),
        data["train"],
        data["test"],
        batch=spec["batch"],
        lr=spec["lr"],
        chunk=spec["chunk"],
        seed=spec["seed"],
    )


def _versions() -> dict:
    from importlib.metadata import version

    return {
        p: version(p) for p in ("flowjax", "jax", "jaxlib", "equinox", "optax", "paramax", "numpy")
    }


def serve(data: dict) -> None:
    harnesses: dict[str, Harness] = {}
    info = _versions() | {"platform": jax.devices()[0].platform}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "quit":
            break
        if cmd == "setup":
            h = harnesses[req["name"]] = flowjax_harness(req, data)
            reply = {"params": h.params()}
            if req.get("warmup", True):
                reply |= h.warmup()
        elif cmd == "train":
            reply = harnesses[req["name"]].train(req["steps"])
        elif cmd == "throughput":
            reply = harnesses[req["name"]].throughput(req["n"], req["repeats"])
        elif cmd == "compile":
            reply = harnesses[req["name"]].compile_times(req["n"])
        elif cmd == "drop":
            harnesses.pop(req["name"], None)
            reply = {}
        else:
            reply = {"error": f"unknown cmd {cmd!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="the driver's .npz (train, test, loc, scale)")
    a = ap.parse_args()
    with np.load(a.data) as z:
        serve({k: z[k] for k in z.files})
