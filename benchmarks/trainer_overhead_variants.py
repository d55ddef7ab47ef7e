"""Where does `fit`'s overhead over a hand-written loop come from?

Three experiments on the `trainer_overhead.py` problem (neural_ode_spiral,
adam(1e-3), 100-step chunks):

1. `chunks` (default): chunk variants that add the trainer's features one at
   a time to the hand-written baseline (problem.loss with its extra metric,
   the extra-args optimizer wrapper, the NaN guard, the lax.cond tail mask),
   one that masks with `jnp.where` instead of `lax.cond`, and sciml's own
   chunk (`sciml.trainer._chunk_fn(_make_step(...))`). Each is compiled once;
   then every round times ONE chunk of each variant in a shuffled order, so a
   round takes well under a second and the per-round ratio variant/baseline
   sees one machine state. All variants take the same batches (identical
   numerics) and restart from the initial model every `--steps` steps.
2. `fit`: fit's time outside its compiled chunks (setup, host logging, final
   evaluation, freeing the executable it compiled), measured as
   `wall - compile_time_s - train_time_s`, with fit's executable freed at
   return as usual vs kept alive (sciml.trainer's `jax` swapped for a proxy).
3. `--callgrind NAME`: run one variant's chunks under
   `valgrind --tool=callgrind --instr-atstart=no` with instrumentation on only
   around `--chunks` chunks, to count instructions (deterministic, unlike
   time on a shared box); see benchmarks/README.md.

JSON goes to `benchmarks/results/trainer_overhead_variants.json`.

    python benchmarks/trainer_overhead_variants.py [--steps 3000] [--rounds 150] [--fit-repeats 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from trainer_overhead import CHUNK, LR, SEED, run_sciml, sciml_version, spiral_loss

import sciml.trainer
from sciml.parallel import make_mesh
from sciml.problems import build_problem
from sciml.trainer import TrainState, _chunk_fn, _make_step

OUT = Path(__file__).resolve().parent / "results" / "trainer_overhead_variants.json"

# name -> (problem.loss instead of the local loss, extra-args optimizer, NaN guard, tail mask)
VARIANTS = {
    "baseline": (False, False, False, None),
    "baseline + lax.cond mask": (False, False, False, "cond"),
    "+ problem.loss (mse metric)": (True, False, False, None),
    "+ extra-args optimizer": (True, True, False, None),
    "+ NaN guard (isfinite+where)": (True, True, True, None),
    "+ lax.cond mask (= scan trainer, d78a096)": (True, True, True, "cond"),
    "scan trainer, where-mask not cond": (True, True, True, "where"),
}


def make_chunk(problem, static, use_problem_loss, extra_args, guard, mask):
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
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, s)
        return new, loss, metrics, finite

    def chunk(ts_, ys_, s, n):
        def body(s, i):
            if mask == "cond":  # as the trainer: skip masked tail steps
                zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(step, ts_, ys_, s)[1:3])
                s, loss, metrics, _ = jax.lax.cond(
                    i < n, lambda s: step(ts_, ys_, s), lambda s: (s, *zeros, jnp.array(True)), s)
            else:
                new, loss, metrics, _ = step(ts_, ys_, s)
                # "where": always compute the step, keep it only if unmasked
                s = jax.tree.map(lambda a, b: jnp.where(i < n, a, b), new, s) if mask else new
            return s, (loss, metrics)

        s, (losses, metrics) = jax.lax.scan(body, s, jnp.arange(CHUNK))
        return s, losses, metrics

    return opt, chunk


def build_runners(problem, only=None):
    """name -> () -> (fresh initial state, state -> chunk outputs), each compiled once."""
    init_key, train_key, _ = jax.random.split(jax.random.PRNGKey(SEED), 3)
    model, _ = problem.init(init_key)
    params, static = eqx.partition(model, eqx.is_array)
    arrays, pstatic = eqx.partition(problem, eqx.is_array)
    data = (problem.ts, problem.ys)

    runners = {}
    for name, flags in VARIANTS.items():
        if only not in (None, name):
            continue
        opt, chunk = make_chunk(problem, static, *flags)
        s0 = TrainState(params, opt.init(params), None, train_key, jnp.int32(0))
        c = jax.jit(chunk, donate_argnums=(2,)).lower(*data, s0, jnp.int32(CHUNK)).compile()
        runners[name] = (lambda c=c, s0=s0: (
            jax.tree.map(jnp.copy, s0), lambda s: c(*data, s, jnp.int32(CHUNK))))
    name = "sciml _chunk_fn (fit's chunk)"  # whatever sciml/trainer.py now has, called as fit does
    if only not in (None, name):
        return runners
    opt = optax.with_extra_args_support(optax.adam(LR))
    own = jax.jit(_chunk_fn(_make_step(pstatic, static, opt), CHUNK, [0], make_mesh(1)),
                  donate_argnums=(1,))
    s0 = TrainState(params, opt.init(params), None, train_key, jnp.int32(0))
    own = own.lower(arrays, s0, jnp.int32(CHUNK)).compile()
    runners[name] = lambda: (
        jax.tree.map(jnp.copy, s0), lambda s: own(arrays, s, jnp.int32(CHUNK)))

    return runners


def losses_of(name, outputs):
    return outputs[3] if name.startswith("sciml") else outputs[1]


def time_chunks(problem, steps, rounds):
    runners = build_runners(problem)
    # One sample = one chunk (100 steps + pulling its losses), so a round over all
    # variants takes well under a second and the paired ratios (variant / baseline
    # in the same round) see the same machine state. All variants take the same
    # steps with the same batches (identical numerics), so they stay in lockstep;
    # every `steps` steps they all restart from the initial model.
    states = {}
    times = {name: [] for name in runners}
    rng = random.Random(0)
    for r in range(-1, rounds):  # round -1 is a warm-up
        if r * CHUNK % steps == 0 or r == -1:
            for name in runners:
                states[name] = runners[name]()
            jax.block_until_ready([st for st, _ in states.values()])
        order = list(runners)
        rng.shuffle(order)  # a fresh order each round: no variant always follows another
        for name in order:
            st, call = states[name]
            t0 = time.perf_counter()
            outputs = call(st)
            np.asarray(losses_of(name, outputs))  # pull the losses to the host
            if r >= 0:
                times[name].append(time.perf_counter() - t0)
            states[name] = (outputs[0], call)
        if (r + 1) % 50 == 0:
            print(f"round {r + 1}/{rounds}", flush=True)

    base = statistics.median(times["baseline"])
    print(f"\n{rounds} rounds of one {CHUNK}-step chunk per variant, restart every {steps} steps\n")
    print("| variant | ms/step (median) | ratio of medians | median per-round ratio |")
    print("|---|---:|---:|---:|")
    summary = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median([a / b for a, b in zip(ts, times["baseline"], strict=True)])
        summary[name] = {"ms_per_step": 1e3 * med / CHUNK, "ratio": med / base, "paired_ratio": paired}
        print(f"| {name} | {1e3 * med / CHUNK:.4f} | {med / base:.3f} | {paired:.3f} |")
    return {"raw_chunk_s": times, "summary": summary}


class _KeepCompiled:
    """Stands in for `jax` in sciml.trainer: `jit(f).lower(...).compile()` results stay alive."""

    def __init__(self):
        self.kept = []

    def __getattr__(self, name):
        return getattr(jax, name)

    def jit(self, *args, **kwargs):
        jitted, kept = jax.jit(*args, **kwargs), self.kept

        class Lowerable:
            def lower(self, *a, **k):
                lowered = jitted.lower(*a, **k)

                class Compilable:
                    def compile(self):
                        kept.append(lowered.compile())
                        return kept[-1]

                return Compilable()

        return Lowerable()


def time_fit_outside(problem, steps, repeats):
    """fit's time outside compiled chunks, with its executable freed at return vs kept alive."""
    run_sciml(problem, CHUNK)  # warm-up
    out = {"freed at return (as fit does)": [], "kept alive": []}
    proxy = _KeepCompiled()
    for _ in range(repeats):
        for mode, samples in out.items():
            sciml.trainer.jax = proxy if mode == "kept alive" else jax
            try:
                x = run_sciml(problem, steps)
            finally:
                sciml.trainer.jax = jax
            samples.append(x["wall_minus_compile_s"] - x["train_time_s"])
    proxy.kept.clear()
    print(f"\nfit({steps} steps): time outside compiled chunks, median of {repeats}\n")
    print("| fit variant | ms per fit call |\n|---|---:|")
    for mode, samples in out.items():
        print(f"| {mode} | {1e3 * statistics.median(samples):.1f} |")
    return out


def callgrind(problem, name, chunks):
    """Run `chunks` chunks of variant `name` with callgrind instrumentation on (needs valgrind)."""
    state, call = build_runners(problem, only=name)[name]()
    outputs = call(state)  # warm-up chunk, not counted
    np.asarray(losses_of(name, outputs))

    def ctl(*args):  # callgrind_control waits until valgrind has applied the command
        subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)

    ctl("-i", "on")
    for _ in range(chunks):
        outputs = call(outputs[0])
        np.asarray(losses_of(name, outputs))
    ctl("-i", "off")


def main(steps, rounds, fit_repeats, out=OUT):
    problem = build_problem("neural_ode_spiral", {}, {})
    result = {"steps": steps, "rounds": rounds, "chunk": CHUNK, "jax_version": jax.__version__,
              "platform": jax.devices()[0].platform, "cpu_affinity": sorted(os.sched_getaffinity(0)), **sciml_version()}
    result["chunks"] = time_chunks(problem, steps, rounds)
    result["fit_outside_chunks_s"] = time_fit_outside(problem, steps, fit_repeats)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000, help="restart from the initial model every")
    ap.add_argument("--rounds", type=int, default=150, help="chunks timed per variant")
    ap.add_argument("--fit-repeats", type=int, default=6, help="fit calls per mode in experiment 2")
    ap.add_argument("--callgrind", metavar="NAME", help="only run experiment 3 on this variant")
    ap.add_argument("--chunks", type=int, default=3, help="chunks counted by --callgrind")
    a = ap.parse_args()
    if a.callgrind:
        callgrind(build_problem("neural_ode_spiral", {}, {}), a.callgrind, a.chunks)
    else:
        main(a.steps, a.rounds, a.fit_repeats)
