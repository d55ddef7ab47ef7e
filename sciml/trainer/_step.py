"""The compiled training step and the chunk of steps run per host round-trip.

One step, for step count `s` of a run with base key `K`:

1. `key = fold_in(K, s)`; the problem's `advance` hook (if defined) gets
   `fold_in(key, 1)` and moves the state that lives outside differentiation
   (Markov chains, collocation points);
2. `loss(model, state, key)` and its gradient with respect to the trained
   leaves; complex leaves get the conjugate of `jax.grad`'s output, which is
   the direction of steepest ascent that optax optimizers expect;
3. `optimizer.update(grad, opt_state, params, **extras)`;
4. the step is good when the loss, the gradient and the new problem state
   are finite.

Extras handed to `update` (see `sciml.optim.request_extra_args`): always
optax's own `value` (the loss), `grad` (the conjugated gradient) and
`value_fn(params) -> loss` at this step's batch, state and key (line
searches; the `advance` hook is not re-run); and, to an optimizer that asked
for them, `per_sample_fn(params) -> dict` (the problem's `per_sample` hook at
this step's batch and state) and `key` (`fold_in(key, 2)`). Unused closures
cost nothing: XLA only compiles what an optimizer calls.
"""

from __future__ import annotations

import contextlib

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from sciml.optim import requested_extra_args
from sciml.parallel import batch_sharding, make_mesh, replicate
from sciml.problems import has_hook
from sciml.trainer._state import TrainState, join_model, split_model

__all__ = [
    "make_step",
    "make_chunk",
    "make_loss_and_grad",
    "conjugate_complex",
    "all_finite",
    "runtime_checks_as_nan",
]

ADVANCE_STREAM = 1
OPTIMIZER_STREAM = 2


def conjugate_complex(tree):
    """Conjugate the complex leaves of `tree` (real leaves unchanged).

    For a real loss L(z), `jax.grad` returns conj(∂L/∂z̄)·2, i.e. the
    conjugate of the steepest-ascent direction; optax subtracts what it is
    given, so complex gradients are conjugated before the optimizer sees them.
    """
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, tree)


def all_finite(tree) -> jax.Array:
    """Whether every inexact array leaf of `tree` is free of NaN and Inf (a bool scalar)."""
    leaves = [x for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _loss_of_params(problem, buffers, model_static, state, key):
    return lambda params: problem.loss(join_model(params, buffers, model_static), state, key)


def make_step(problem, model_static, optimizer):
    """One optimizer step `(problem_arrays, TrainState) -> (TrainState, loss, metrics, ok)`.

    `problem` supplies the static part (the arrays come in as arguments, so
    they are not baked into the program as constants).
    """
    problem_static = eqx.filter(problem, lambda x: not eqx.is_array(x))
    advance = has_hook(problem, "advance")
    wanted = requested_extra_args(optimizer)
    if "per_sample_fn" in wanted and not has_hook(problem, "per_sample"):
        raise ValueError(
            f"the optimizer needs per-sample information (per_sample_fn), but "
            f"{type(problem).__name__} defines no `per_sample(model, state, key)` hook; "
            "define it (see docs/core.md) or choose a first-order optimizer"
        )

    def step(problem_arrays, ts: TrainState):
        problem = eqx.combine(problem_arrays, problem_static)
        key = jax.random.fold_in(ts.key, ts.step)
        state = ts.problem_state
        if advance:
            model = join_model(ts.params, ts.buffers, model_static)
            state = problem.advance(model, state, jax.random.fold_in(key, ADVANCE_STREAM))
        loss_fn = _loss_of_params(problem, ts.buffers, model_static, state, key)
        (loss, (new_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ts.params
        )
        grads = conjugate_complex(grads)
        extras = {"value": loss, "grad": grads, "value_fn": lambda p: loss_fn(p)[0]}
        if "per_sample_fn" in wanted:
            extras["per_sample_fn"] = lambda p: problem.per_sample(
                join_model(p, ts.buffers, model_static), state, key
            )
        if "key" in wanted:
            extras["key"] = jax.random.fold_in(key, OPTIMIZER_STREAM)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params, **extras)
        params = optax.apply_updates(ts.params, updates)
        ok = jnp.isfinite(loss) & all_finite(grads) & all_finite(new_state)
        new = TrainState(params, ts.buffers, opt_state, new_state, ts.key, ts.step + 1)
        return new, loss, metrics, ok

    return step


@contextlib.contextmanager
def runtime_checks_as_nan():
    """While tracing the training chunk, equinox's runtime checks give NaN instead of raising.

    `eqx.error_if` (used throughout diffrax: `saveat.ts` ordering, step-size
    controller checks) raises through a host callback, and JAX never stores a
    program with host callbacks in its persistent compilation cache, so every
    run of a diffrax problem would compile again. Inside the chunk a NaN is
    what the trainer handles anyway: the step counts as diverged, the last
    good checkpoint stays, and the explanation recomputes the step outside the
    chunk, where the check raises with its own message. A user's explicit
    `EQX_ON_ERROR` other than the default `raise` is left alone.
    """
    try:
        import equinox._errors as errors  # no public switch exists (equinox 0.13)
    except ImportError:  # pragma: no cover - a future equinox; checks stay as they are
        yield
        return
    previous = getattr(errors, "EQX_ON_ERROR", None)
    if previous != "raise":
        yield
        return
    errors.EQX_ON_ERROR = "nan"
    try:
        yield
    finally:
        errors.EQX_ON_ERROR = previous


def make_chunk(step, length: int, mesh, counter: list[int] | None = None):
    """Up to `length` steps in one compiled loop: `chunk(problem_arrays, ts, n)`.

    A `lax.while_loop` with a runtime trip count `n`: one program serves full
    chunks, short chunks and resumed runs, and it stops at the first bad step
    without masking or selecting anything per step (a masked `scan` measured
    ~4% slower on the spiral problem). Returns `(ts, ok, last_step, losses,
    metrics)`; on failure `ts` holds the bad state of step `last_step`, which
    the caller discards. `counter[0]` counts traces.
    """

    def chunk(problem_arrays, ts: TrainState, n):
        if counter is not None:
            counter[0] += 1  # runs at trace time only
        with batch_sharding(mesh):
            shapes = jax.eval_shape(step, problem_arrays, ts)
            buffers = jax.tree.map(lambda s: jnp.zeros((length, *s.shape), s.dtype), shapes[1:3])

            def cond(carry):
                i, ok = carry[0], carry[1]
                return ok & (i < n)

            def body(carry):
                i, _, ts, (losses, metrics) = carry
                ts, loss, step_metrics, ok = step(problem_arrays, ts)
                losses = losses.at[i].set(loss)
                metrics = jax.tree.map(lambda b, v: b.at[i].set(v), metrics, step_metrics)
                return i + 1, ok, ts, (losses, metrics)

            init = (jnp.array(0, jnp.int32), jnp.array(True), ts, buffers)
            _, ok, ts, (losses, metrics) = jax.lax.while_loop(cond, body, init)
        return ts, ok, ts.step - 1, losses, metrics

    return chunk


def jitted_loss_and_grad(problem, model_static, mesh):
    """Jitted `(problem_arrays, params, buffers, state, key) -> ((loss, aux), grads)`."""
    problem_static = eqx.filter(problem, lambda x: not eqx.is_array(x))

    def loss_and_grad(problem_arrays, params, buffers, state, key):
        problem = eqx.combine(problem_arrays, problem_static)
        loss_fn = _loss_of_params(problem, buffers, model_static, state, key)
        with batch_sharding(mesh):
            return jax.value_and_grad(loss_fn, has_aux=True)(params)

    return jax.jit(loss_and_grad)


def make_loss_and_grad(problem, model, *, devices: int | str = 1):
    """Jitted `(params, state, key) -> ((loss, (state, metrics)), grads)` for `problem`.

    `params` are the trained leaves of `model` (`split_model(model)[0]`);
    its other array leaves are held fixed. With `devices > 1` the batch
    arrays that the problem marks with `shard_batch` are split over a 1-D
    mesh of that many devices and the parameters replicated, exactly as in
    `fit`; useful for checking data-parallel numerics. The gradient is
    `jax.grad`'s (not conjugated).
    """
    _, buffers, model_static = split_model(model)
    mesh = make_mesh(devices)
    jitted = jitted_loss_and_grad(problem, model_static, mesh)
    problem_arrays = replicate(eqx.filter(problem, eqx.is_array), mesh)
    buffers = replicate(buffers, mesh)

    def call(params, state, key):
        return jitted(
            problem_arrays, replicate(params, mesh), buffers, replicate(state, mesh), key
        )

    return call
