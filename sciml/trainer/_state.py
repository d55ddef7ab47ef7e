"""The training state and how a model splits into trained, carried and static parts."""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["TrainState", "split_model", "join_model", "init_train_state", "run_keys"]


class TrainState(NamedTuple):
    """Everything a checkpoint holds.

    Attributes:
        params: the trained leaves of the model: its floating-point (real or
            complex) arrays, as split by `split_model`.
        buffers: the model's other array leaves (integer, boolean), carried
            unchanged.
        opt_state: optimizer state.
        problem_state: the problem's non-trainable state (may be `None`).
        key: the run's base PRNG key (constant over the run).
        step: number of optimizer steps taken (int32 scalar).
    """

    params: Any
    buffers: Any
    opt_state: Any
    problem_state: Any
    key: jax.Array
    step: jax.Array


def split_model(model) -> tuple[Any, Any, Any]:
    """Split `model` into `(params, buffers, static)`.

    `params` holds the inexact (floating or complex) array leaves, which are
    differentiated and updated; `buffers` the other array leaves (integer and
    boolean: permutations, masks, index tables), carried through training
    and checkpoints unchanged; `static` everything that is not an array.
    `join_model(params, buffers, static)` is the model again.
    """
    params, rest = eqx.partition(model, eqx.is_inexact_array)
    buffers, static = eqx.partition(rest, eqx.is_array)
    return params, buffers, static


def join_model(params, buffers, static):
    """Inverse of `split_model`."""
    return eqx.combine(params, buffers, static)


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(init_key, train_key, eval_key)` of a run with seed `seed`."""
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    return init_key, train_key, eval_key


def init_train_state(problem, optimizer, seed: int):
    """The step-0 training state of `problem` and the model's static part.

    Returns `(TrainState, model_static)`; `join_model(state.params,
    state.buffers, model_static)` is the model. Also the template for loading
    checkpoints.
    """
    init_key, train_key, _ = run_keys(seed)
    model, pstate = problem.init(init_key)
    params, buffers, static = split_model(model)
    ts = TrainState(
        params, buffers, optimizer.init(params), pstate, train_key, jnp.array(0, jnp.int32)
    )
    return ts, static
