"""Divergence: the exception, and the explanation found by replaying the failing step."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp

from sciml.problems import has_hook
from sciml.trainer._state import TrainState, join_model
from sciml.trainer._step import ADVANCE_STREAM, jitted_loss_and_grad

__all__ = ["TrainingDiverged", "explain_divergence"]


class TrainingDiverged(RuntimeError):
    """Raised when the loss, its gradient or the problem state becomes NaN/Inf.

    Attributes:
        step: the step whose loss, gradient or state was not finite.
        checkpoint: path of the last good checkpoint (or `None`).
        reason: what the trainer found at that step: whether the loss, only
            the gradient (and which leaves) or the advanced state was
            non-finite, and the problem's own diagnosis (e.g. which solve
            failed and where), or `None` when it could not be determined.
    """

    def __init__(self, step: int, checkpoint: Path | None, reason: str | None = None):
        self.step = step
        self.checkpoint = checkpoint
        self.reason = reason
        where = (
            f"the last good checkpoint is {checkpoint}"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        why = f": {reason.rstrip('.')}." if reason else "."
        super().__init__(
            f"training diverged: the loss or its gradient became NaN/Inf at step {step}{why} "
            f"{where[0].upper()}{where[1:]}. Lower the learning rate, add optimizer.clip_norm, "
            "or check the problem's data."
        )


def _non_finite_leaves(tree) -> list[str]:
    return [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(x, "dtype")
        and jnp.issubdtype(x.dtype, jnp.inexact)
        and not bool(jnp.all(jnp.isfinite(x)))
    ]


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def explain_divergence(problem, model_static, problem_arrays, ts: TrainState, mesh) -> str | None:
    """Explain the non-finite loss, gradient or state of the step `ts` is about to take.

    Recomputes that step's `advance` and loss outside the training loop and
    asks the problem's `diagnose` hook. Never raises: a failure while
    explaining is reported in the text.
    """
    key = jax.random.fold_in(ts.key, ts.step)
    model = join_model(ts.params, ts.buffers, model_static)
    state = ts.problem_state
    parts = []
    try:
        if has_hook(problem, "advance"):
            state = jax.jit(problem.advance)(model, state, jax.random.fold_in(key, ADVANCE_STREAM))
            bad = _non_finite_leaves(state)
            if bad:
                parts.append(f"the problem state after advance is not finite, in {_shown(bad)}")
        loss_and_grad = jitted_loss_and_grad(problem, model_static, mesh)
        (loss, (new_state, _)), grads = loss_and_grad(
            problem_arrays, ts.params, ts.buffers, state, key
        )
        loss = float(loss)
        bad_grads = _non_finite_leaves(grads)
        bad_state = _non_finite_leaves(new_state)
        if not math.isfinite(loss):
            parts.append(f"the loss is {loss}")
        elif bad_grads:
            parts.append(
                f"the loss is finite ({loss:.6g}) but the gradient is not, in {_shown(bad_grads)}"
            )
        elif bad_state:
            parts.append(f"the state returned by the loss is not finite, in {_shown(bad_state)}")
        elif not parts:
            parts.append(
                f"the loss ({loss:.6g}) and gradient are finite when recomputed; the "
                "optimizer update or a nondeterministic computation produced the NaN/Inf"
            )
    except Exception as e:  # a diagnosis must never hide the divergence itself
        parts.append(f"(recomputing the loss failed: {type(e).__name__}: {e})")
    try:
        detail = problem.diagnose(model, state, key)
    except Exception as e:
        detail = f"(the problem's diagnose failed: {type(e).__name__}: {e})"
    if detail:
        parts.append(detail)
    return "; ".join(parts) if parts else None
