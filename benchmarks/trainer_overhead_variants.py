"""Where does `fit`'s overhead over a hand-written loop come from?

Builds chunk variants that add the trainer's features one at a time to the
hand-written baseline of `trainer_overhead.py` (and removes them one at a time
from a local copy of the trainer's step), plus sciml's own chunk
(`sciml.trainer._chunk_fn(_make_step(...))`), compiles each once and times
the post-compile loop over `--steps / 100` chunks, rotating through the
variants for `--repeats` rounds. Also times fit's fixed per-call costs
(final `problem.evaluate`). Reports median ms/step and the ratio to the
baseline; JSON goes to `benchmarks/results/trainer_overhead_variants.json`.

    python benchmarks/trainer_overhead_variants.py [--steps 1000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from trainer_overhead import CHUNK, LR, SEED, spiral_loss

from sciml.parallel import make_mesh
from sciml.problems import build_problem
from sciml.trainer import TrainState, _chunk_fn, _make_step

OUT = Path(__file__).resolve().parent / "results" / "trainer_overhead_variants.json"

# name -> (problem.loss instead of the local loss, extra-args optimizer, NaN guard, lax.cond mask)
VARIANTS = {
    "baseline": (False, False, False, False),
    "+ problem.loss (mse metric)": (True, False, False, False),
    "+ extra-args optimizer": (True, True, False, False),
    "+ NaN guard (isfinite+where)": (True, True, True, False),
    "+ lax.cond mask (= trainer)": (True, True, True, True),
    "trainer - NaN guard": (True, True, False, True),
    "trainer - extra-args": (True, False, True, True),
    "trainer - problem.loss": (False, True, True, True),
}


def make_chunk(problem, static, use_problem_loss, extra_args, guard, cond):
    """A local copy of the trainer's chunk with each feature switchable; carry = TrainState."""
    opt = optax.adam(LR)
    if extra_args:
        opt = optax.with_extra_args_support(opt)

    def step(ts_, ys_, s):
        key = jax.random.fold_in(s.key, s.step)
        if use_problem_loss:
            prob = eqx.tree_at(lambda p: (p.ts, p.ys), problem, (ts_, ys_))

            def loss_fn(p):
                loss, (_, metrics) = prob.loss(eqx.combine(p, static), None, key)
                return loss, metrics
        else:
            def loss_fn(p):
                return spiral_loss(p, static, ts_, ys_, key), {}

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(s.params)
        if extra_args:
            updates, opt_state = opt.update(grads, s.opt_state, s.params, value=loss, grad=grads,
                                            value_fn=lambda p: loss_fn(p)[0])
        else:
            updates, opt_state = opt.update(grads, s.opt_state, s.params)
        new = TrainState(optax.apply_updates(s.params, updates), opt_state, None, s.key, s.step + 1)
        finite = jnp.array(True)
        if guard:
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
            new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, s)
        return new, loss, metrics, finite

    def chunk(ts_, ys_, s, n):
        def body(s, i):
            if cond:
                zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(step, ts_, ys_, s)[1:3])
                s, loss, metrics, _ = jax.lax.cond(
                    i < n, lambda s: step(ts_, ys_, s), lambda s: (s, *zeros, jnp.array(True)), s)
            else:
                s, loss, metrics, _ = step(ts_, ys_, s)
            return s, (loss, metrics)

        s, (losses, metrics) = jax.lax.scan(body, s, jnp.arange(CHUNK))
        return s, losses, metrics

    return opt, chunk


def main(steps, repeats, out=OUT):
    problem = build_problem("neural_ode_spiral", {}, {})
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(SEED), 3)
    model, _ = problem.init(init_key)
    params, static = eqx.partition(model, eqx.is_array)
    arrays, pstatic = eqx.partition(problem, eqx.is_array)
    data = (problem.ts, problem.ys)

    runners = {}
    for name, flags in VARIANTS.items():
        opt, chunk = make_chunk(problem, static, *flags)
        s0 = TrainState(params, opt.init(params), None, train_key, jnp.int32(0))
        c = jax.jit(chunk, donate_argnums=(2,)).lower(*data, s0, jnp.int32(CHUNK)).compile()
        runners[name] = (lambda c=c, s0=s0: (
            jax.tree.map(jnp.copy, s0), lambda s: c(*data, s, jnp.int32(CHUNK))))
    # sciml's own chunk, called as fit calls it (the carry is (ts, ok, bad, losses, metrics)).
    opt = optax.with_extra_args_support(optax.adam(LR))
    own = jax.jit(_chunk_fn(_make_step(pstatic, static, opt), CHUNK, [0], make_mesh(1)),
                  donate_argnums=(1,))
    s0 = TrainState(params, opt.init(params), None, train_key, jnp.int32(0))
    own = own.lower(arrays, s0, jnp.int32(CHUNK)).compile()
    runners["sciml _chunk_fn (fit's chunk)"] = lambda: (
        jax.tree.map(jnp.copy, s0), lambda s: own(arrays, s, jnp.int32(CHUNK)))

    def timed(name):
        s, call = runners[name]()
        jax.block_until_ready(s)
        t0 = time.perf_counter()
        for _ in range(steps // CHUNK):
            s, *rest = call(s)
            np.asarray(rest[-2] if name.startswith("sciml") else rest[0])  # pull losses
        return time.perf_counter() - t0

    times = {name: [] for name in runners}
    for name in runners:
        timed(name)  # warm-up
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in order:
            times[name].append(timed(name))
        print(f"round {r + 1}/{repeats} done", flush=True)

    problem.evaluate(model, None, eval_key)  # compile the trajectory solve
    evals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        problem.evaluate(model, None, eval_key)
        evals.append(time.perf_counter() - t0)

    base = statistics.median(times["baseline"])
    print(f"\nsteps={steps} repeats={repeats} jax={jax.__version__} "
          f"platform={jax.devices()[0].platform}, medians\n")
    print("| variant | ms/step | ratio vs baseline | median of paired ratios |")
    print("|---|---:|---:|---:|")
    summary = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median([a / b for a, b in zip(ts, times["baseline"], strict=True)])
        summary[name] = {"ms_per_step": 1e3 * med / steps, "ratio": med / base, "paired_ratio": paired}
        print(f"| {name} | {1e3 * med / steps:.4f} | {med / base:.3f} | {paired:.3f} |")
    print(f"\nfit fixed cost: final problem.evaluate = {1e3 * statistics.median(evals):.1f} ms per call")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": steps, "repeats": repeats, "jax_version": jax.__version__,
                               "platform": jax.devices()[0].platform, "raw_s": times,
                               "evaluate_s": evals, "summary": summary}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    main(a.steps, a.repeats)
