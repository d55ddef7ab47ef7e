"""Failure reports of differential-equation solves: `SolveFailed`, `failure_report`, `check_solution`.

Every failed solve explains itself: which sample (of a batch), the time
reached, diffrax's reason and what to change for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import numpy as np

__all__ = ["SolveFailed", "failure_report", "check_solution"]


class SolveFailed(RuntimeError):
    """A differential-equation solve did not reach its final time.

    Attributes:
        index: batch index of the failed solve (`None` for an unbatched solve).
        t_reached: the time the failed solve reached: where the integration
            stopped when `solve` raised it eagerly, else the last saved time
            (`None` if no save time was reached).
        result: diffrax's result message.
        num_steps: steps taken by the failed solve, when known.
    """

    def __init__(
        self, message: str, *, index=None, t_reached=None, result: str = "", num_steps=None
    ):
        super().__init__(message)
        self.index = index
        self.t_reached = t_reached
        self.result = result
        self.num_steps = num_steps


def _raise_if_failed(sol, what, stop) -> None:
    report = _report(sol, what, None, stop)
    if report is not None:
        message, index, reached, reason, n_steps = report
        raise SolveFailed(message, index=index, t_reached=reached, result=reason, num_steps=n_steps)


_TRACED_NOTE = (
    "(solve ran under jax.jit, jax.vmap or jax.grad, where it cannot say which sample failed "
    "or when: call solve(..., throw=False) and then sciml.ude.check_solution(sol) outside "
    "jit for the batch index and the time reached, or set EQX_ON_ERROR=breakpoint.)"
)


def _error_if_failed(sol: dfx.Solution) -> dfx.Solution:
    """Runtime error on a failed traced solve, one message per diffrax result code."""
    messages = [
        f"solve failed: {reason.rstrip('.')}. {_hint(code, None)} {_TRACED_NOTE}"
        for code, reason in enumerate(dfx.RESULTS._index_to_message)  # equinox enum internals
    ]
    failed = ~((sol.result == dfx.RESULTS.successful) | (sol.result == dfx.RESULTS.event_occurred))
    return eqx.branched_error_if(sol, failed, sol.result._value, messages)


# --- failure reports -----------------------------------------------------------------


def _hint(code: int, max_steps) -> str:
    """What to change for a failure with diffrax result `code`."""
    r = dfx.RESULTS
    budget = "" if max_steps is None else f" (now {max_steps})"
    hints = [  # (result, hint) pairs: equinox enumeration items are not hashable
        (
            r.max_steps_reached,
            f"Try a larger max_steps{budget}, a stiff solver (diffrax.Kvaerno5) if the system "
            "is stiff, looser tolerances, or check for a blow-up of the vector field (a smaller "
            "learning rate or gradient clipping if it happens during training).",
        ),
        (
            r.dt_min_reached,
            "The step size fell to the controller's dtmin: the solution may blow up or the "
            "vector field jump there; lower dtmin, give known jumps to "
            "diffrax.ClipStepSizeController(jump_ts=...), or use a stiff solver.",
        ),
        (
            r.nonfinite,
            "The vector field returned NaN or inf: check it at the time reached (division by "
            "zero, log or sqrt of a negative, overflow); during training, a smaller learning "
            "rate or gradient clipping.",
        ),
        (
            r.nonlinear_max_steps_reached,
            "The implicit solver's nonlinear iteration did not converge: tighten rtol/atol or "
            "give a smaller dt0 (shorter steps help Newton), or check the vector field's "
            "Jacobian.",
        ),
        (
            r.nonlinear_divergence,
            "The implicit solver's nonlinear iteration diverged: tighten rtol/atol or give a "
            "smaller dt0, or check the vector field's Jacobian for NaN or inf.",
        ),
        (r.max_steps_rejected, "Raise store_rejected_steps of diffrax.ClipStepSizeController."),
        (r.internal_error, "This is a diffrax bug: report it with a small example."),
    ]
    for result, hint in hints:
        if code == result._value:
            return hint
    return (
        "A linear or nonlinear solve inside the solver failed: check the vector field and "
        "its Jacobian for NaN, inf or singularity at the time reached, or try another solver."
    )


def _report(sol, what, describe, stop):
    """`failure_report`, plus `stop(index) -> (t, num_steps) | None` for where it stopped."""
    result = np.asarray(sol.result._value)
    ok = (result == dfx.RESULTS.successful._value) | (result == dfx.RESULTS.event_occurred._value)
    if ok.all():
        return None
    index = None
    if result.ndim:
        index = tuple(int(i) for i in np.argwhere(~ok)[0])
        index = index[0] if len(index) == 1 else index
    ts = None if sol.ts is None else np.asarray(sol.ts)
    leaves = jax.tree.leaves(sol.ys)
    reached = None
    if ts is not None and ts.ndim > result.ndim and leaves:
        ys = np.asarray(leaves[0])
        finite = np.isfinite(ys).reshape(*ys.shape[: ts.ndim], -1).all(-1)
        t_sel = ts[index] if index is not None else ts
        f_sel = finite[index] if index is not None else finite
        good = np.nonzero(f_sel)[0]
        reached = float(t_sel[good[-1]]) if good.size else None
    code = int(result[index]) if index is not None else int(result)
    table = getattr(dfx.RESULTS, "_index_to_message", None)  # equinox enum internals
    reason = table[code] if table is not None else f"diffrax result code {code}"
    if index is None:
        where = ""
    elif describe is not None:
        where = f" for {describe(index)}"
    else:
        where = f" for batch element {index}"
    at = (
        "; no save time was reached"
        if reached is None
        else f"; last saved time reached: {reached:g}"
    )
    stopped = None if stop is None else stop(index)
    n_steps = None
    if stopped is not None and stopped[0] is not None:
        saved, (reached, n_steps) = at, stopped
        steps = "" if n_steps is None else f" after {n_steps} steps"
        at = f"; the integration stopped at t = {reached:g}{steps}"
        at = at if saved.endswith(f" {reached:g}") else f"{at}{saved}"
    max_steps = sol.stats.get("max_steps") if isinstance(sol.stats, dict) else None
    if max_steps is not None:
        max_steps = int(np.asarray(max_steps).ravel()[0])
    count = "" if index is None else f" ({int((~ok).sum())} of {ok.size} failed)"
    message = f"{what} failed{where}{count}: {reason.rstrip('.')}{at}. {_hint(code, max_steps)}"
    return message, index, reached, str(reason), n_steps


def failure_report(
    sol: dfx.Solution,
    *,
    what: str = "solve",
    describe: Callable[[Any], str] | None = None,
) -> tuple[str, Any, float | None, str] | None:
    """Describe the first failed solve in `sol` (possibly vmapped), or return `None`.

    Returns `(message, index, t_reached, diffrax_message)`. The message names
    the batch element (through `describe(index)` when given, e.g. "training
    window 3 starting at t = 1.2"), how many failed, diffrax's reason, the
    last saved time reached and what to change for that reason. A solve
    stopped by an event (`result` `event_occurred`) is not a failure. Call
    outside jit on a solution computed with `throw=False`.
    """
    report = _report(sol, what, describe, None)
    return None if report is None else report[:4]


def check_solution(
    sol: dfx.Solution, *, what: str = "solve", describe: Callable[[Any], str] | None = None
) -> None:
    """Raise `SolveFailed` if `sol` (possibly vmapped) holds a failed solve.

    The message names the batch index (or `describe(index)`), the time
    reached and what to change. Call it outside jit on a solution computed
    with `throw=False`.
    """
    report = failure_report(sol, what=what, describe=describe)
    if report is not None:
        message, index, reached, reason = report
        raise SolveFailed(message, index=index, t_reached=reached, result=reason)
