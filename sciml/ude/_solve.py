"""A thin `solve` over `diffrax.diffeqsolve` with shape checks and failure reports."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sciml.ude._failures import (
    SolveFailed,
    _error_if_failed,
    _raise_if_failed,
    check_solution,
    failure_report,
)
from sciml.ude._stability import _default_controller

__all__ = ["solve", "solve_batch", "check_solution", "failure_report", "SolveFailed"]


def _check_vector_field(vf, t0, y0, args) -> None:
    """Trace the vector field once on `y0` and compare shapes (no compute)."""
    try:
        out = eqx.filter_eval_shape(vf, t0, y0, args)
    except (ValueError, TypeError) as e:
        shapes = jax.tree.map(lambda a: jnp.shape(a), y0)
        raise ValueError(
            f"solve: the vector field cannot be evaluated on y0 of shape {shapes}: {e}"
        ) from e
    want = jax.tree.structure(y0), [jnp.shape(a) for a in jax.tree.leaves(y0)]
    got = jax.tree.structure(out), [jnp.shape(a) for a in jax.tree.leaves(out)]
    if want != got:
        raise ValueError(
            f"solve: the vector field returns shapes {got[1]} for y0 of shapes {want[1]}; "
            "dy/dt must have the shape of y"
        )


def _is_imex(solver) -> bool:
    """Whether `solver` takes an (explicit, implicit) pair of terms (KenCarp, Sil3)."""
    structure = getattr(solver, "term_structure", None)
    return getattr(structure, "__origin__", None) is dfx.MultiTerm


def _concrete(x) -> bool:
    """Whether every leaf of `x` has a value now (no jit/vmap/grad tracer)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _is_inf(t) -> bool:
    return t is not None and _concrete(t) and bool(np.isinf(np.asarray(t)).any())


def _check_tolerance(rtol, y0, timelikes, who: str = "solve") -> None:
    """Refuse an `rtol` finer than the resolution of the state's floating-point dtype.

    diffrax computes in the promotion of y0's dtype with the time dtype. Below
    one machine epsilon the relative accuracy asked of each step cannot be
    represented in y: the error estimate then shrinks with the step only
    through rounding, the solver takes ever smaller steps and ends at
    max_steps (float32 with rtol=1e-9) with no sign of why.
    """
    if rtol is None or not _concrete(rtol):
        return
    rtol = float(np.max(np.asarray(rtol)))
    if rtol <= 0:  # rtol=0: pure absolute control, judged against the scale of y
        return
    times = [t for t in timelikes if t is not None]
    dtypes = {jnp.result_type(leaf, *times) for leaf in jax.tree.leaves(y0)}
    for dtype in dtypes:
        if not jnp.issubdtype(dtype, jnp.inexact):
            continue
        eps = float(jnp.finfo(dtype).eps)
        if rtol < eps:
            raise ValueError(
                f"{who}: rtol={rtol:g} is below the resolution of the state's dtype "
                f"{jnp.dtype(dtype).name} (machine epsilon {eps:.3g}): no step can be that "
                f"accurate, and the solver would shrink its steps until max_steps. Use "
                f"rtol >= {eps:.3g} for {jnp.dtype(dtype).name}, or switch to float64 "
                "(jax.config.update('jax_enable_x64', True) and a float64 y0) for tighter "
                "tolerances."
            )


# --- solve ---------------------------------------------------------------------------


def _saves_final_state_only(saveat: dfx.SaveAt) -> bool:
    subs = jax.tree.leaves(saveat.subs, is_leaf=lambda s: isinstance(s, dfx.SubSaveAt))
    return not saveat.dense and all(s.ts is None and not s.steps for s in subs)


def solve(
    vector_field: Callable[[Any, Any, Any], Any],
    y0,
    ts=None,
    *,
    t0=None,
    t1=None,
    args=None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    dt0=None,
    adjoint: dfx.AbstractAdjoint | None = None,
    saveat: dfx.SaveAt | None = None,
    event: dfx.Event | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
) -> dfx.Solution:
    """Solve dy/dt = vector_field(t, y, args) from `y0`, saving at times `ts`.

    A thin layer over `diffrax.diffeqsolve`: every solver, controller,
    adjoint and event of diffrax passes straight through. What it adds: `ts`
    sets `t0 = ts[0]`, `t1 = ts[-1]` and `SaveAt(ts=ts)`; the vector field
    is checked against `y0`'s shape and the tolerance against the state's
    dtype before anything is compiled; failures raise `SolveFailed` with the
    time reached and what to change; and defaults chosen for neural
    differential equations, including gradients that stay honest at
    equilibria (see `stepsize_controller`).

    Args:
        vector_field: `f(t, y, args) -> dy/dt` on one state (vmap for batches);
            for an IMEX solver (`KenCarp3/4/5`, `Sil3`) a pair
            `(explicit, implicit)` whose sum is dy/dt, the stiff part in
            `implicit`.
        y0: initial state (array or pytree of arrays) at `t0`.
        ts: 1-D increasing save times; or give `t0`, `t1` (and `saveat`).
        t0, t1: start and end times when `ts` is not given. `t1=jnp.inf`
            integrates until `event` stops the solve (e.g. a steady state,
            `diffrax.Event(diffrax.steady_state_event())`), saving the final
            state only; differentiate such a solve with
            `adjoint=diffrax.ImplicitAdjoint()` when the event is a steady
            state (or use `steady_state`).
        args: passed to `vector_field`.
        solver: a diffrax solver (default `Tsit5()`; `Kvaerno5()` for stiff
            problems, `KenCarp4()` / `KenCarp5()` for stiff + non-stiff splits).
        stepsize_controller: default `PIDController(rtol=1e-3, atol=1e-6)`,
            with, for explicit Runge-Kutta solvers (and any adjoint but
            `BacksolveAdjoint`, which controls its own error), every step capped at 0.8x
            the solver's stability limit for the Jacobian of the vector field
            (spectral radius by power iteration, two extra evaluations of
            the vector field per step). Without the cap, a solve that starts
            on (or within much less than the tolerance of) an equilibrium has
            a ~zero error estimate, grows its steps past the stability limit
            and returns gradients wrong by orders of magnitude (see
            docs/ude.md). A controller you pass is used as given (give it a
            `dtmax` if you differentiate long solves near equilibria).
            `ConstantStepSize()` needs `dt0`. `rtol` below the machine
            epsilon of the state's dtype is refused.
        dt0: initial (or fixed) step; `None` lets the controller choose.
        adjoint: how to differentiate: `RecursiveCheckpointAdjoint()`
            (default, exact discrete gradients), `BacksolveAdjoint()`
            (continuous adjoint, O(1) memory), `ForwardMode()` (for
            `jax.jacfwd`, e.g. Gauss-Newton), `DirectAdjoint()`,
            `ImplicitAdjoint()` (steady states reached with `t1=inf`).
        saveat: overrides the save times implied by `ts`;
            `SaveAt(dense=True)` with `t0`, `t1` gives `sol.evaluate(t)` at
            any time in between, differentiable.
        event: a `diffrax.Event` that ends the solve when it fires; the
            solution then has `result` `event_occurred` (not a failure) and
            its final save is at the event time.
        max_steps: step budget (`None` for unbounded, forward-only).
        throw: on a failed solve, raise `SolveFailed` (called eagerly: the
            message names the time the integration stopped, the number of
            steps and what to change); under `jax.jit`, `jax.vmap` or
            `jax.grad` the values are unknown while tracing, so the error is
            raised at run time by `equinox.error_if` with diffrax's reason,
            what to change and a pointer to `throw=False` + `check_solution`.
            With `False`, unreached outputs are `inf` and `check_solution`
            reports the failure afterwards.

    Returns:
        The `diffrax.Solution` (`.ts`, `.ys`, `.stats`, `.result`, and
        `.evaluate(t)` with `SaveAt(dense=True)`).

    Raises:
        SolveFailed: the solve failed and `throw=True` (eager call).
        ValueError, TypeError: inconsistent arguments (shapes, dtypes,
            tolerances, `t1=inf` without an event).

    Example:
        >>> sol = solve(lambda t, y, a: -y, jnp.ones(2), jnp.linspace(0, 1, 11))
        >>> sol.ys.shape
        (11, 2)
    """
    if ts is not None:
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(f"solve: ts must be 1-D with at least 2 times, got shape {ts.shape}")
        if _is_inf(ts):
            raise ValueError(
                "solve: ts must be finite; to run until an event (t1=jnp.inf), pass t0 and "
                "t1=jnp.inf with event=..., which saves the final state only"
            )
        t0 = ts[0] if t0 is None else t0
        t1 = ts[-1] if t1 is None else t1
        saveat = dfx.SaveAt(ts=ts) if saveat is None else saveat
    if t0 is None or t1 is None:
        raise ValueError("solve: give save times ts, or both t0 and t1")
    if _is_inf(t0):
        raise ValueError(f"solve: t0 must be finite, got {t0}")
    if _is_inf(t1):
        if event is None:
            raise ValueError(
                "solve: t1=inf needs an event that stops the solve, e.g. "
                "event=diffrax.Event(diffrax.steady_state_event()); got event=None"
            )
        if saveat is not None and not _saves_final_state_only(saveat):
            raise ValueError(
                "solve: with t1=inf only the final state can be saved (saveat=None or "
                f"diffrax.SaveAt(t1=True)), got {saveat}"
            )
        if max_steps is None:
            raise ValueError(
                "solve: t1=inf needs a finite max_steps: if the event never fires the solve "
                "would run forever"
            )
    for leaf in jax.tree.leaves(y0):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            raise TypeError(
                f"solve: y0 must be floating point, got dtype {jnp.result_type(leaf)}; "
                "use e.g. jnp.asarray(y0, float)"
            )
    solver = dfx.Tsit5() if solver is None else solver
    split = isinstance(vector_field, (tuple, list))
    imex = _is_imex(solver)
    if split and len(vector_field) != 2:
        raise ValueError(
            f"solve: a split vector field must be (explicit, implicit), got {len(vector_field)} parts"
        )
    if split and not imex:
        raise ValueError(
            "solve: a split vector field (explicit, implicit) needs an IMEX solver "
            f"(diffrax.KenCarp3/4/5 or Sil3), got {type(solver).__name__}"
        )
    if imex and not split:
        raise ValueError(
            f"solve: {type(solver).__name__} is an IMEX solver: pass "
            "vector_field=(explicit, implicit) with the stiff part in `implicit` "
            "(`(zero_field, f)` treats all of f implicitly), or use diffrax.Kvaerno5 "
            "for a fully implicit solve"
        )
    if split:
        for part in vector_field:
            _check_vector_field(part, t0, y0, args)
        terms = dfx.MultiTerm(*(dfx.ODETerm(part) for part in vector_field))
    else:
        _check_vector_field(vector_field, t0, y0, args)
        terms = dfx.ODETerm(vector_field)
    adjoint = dfx.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if stepsize_controller is None:
        stepsize_controller = (
            dfx.PIDController(rtol=1e-3, atol=1e-6)
            if split
            else _default_controller(vector_field, solver, y0, adjoint)
        )
    if isinstance(stepsize_controller, dfx.ConstantStepSize) and dt0 is None:
        raise ValueError("solve: ConstantStepSize needs a step dt0")
    _check_tolerance(getattr(stepsize_controller, "rtol", None), y0, [t0, t1, dt0])
    if throw and isinstance(adjoint, dfx.BacksolveAdjoint) and "throw" not in adjoint.kwargs:
        # the backward solve takes `throw` from the forward call, which is False below
        adjoint = dfx.BacksolveAdjoint(**adjoint.kwargs, throw=True)
    run = functools.partial(
        dfx.diffeqsolve,
        terms,
        solver,
        t0,
        t1,
        dt0,
        y0,
        args=args,
        stepsize_controller=stepsize_controller,
        event=event,
        max_steps=max_steps,
        throw=False,
    )
    sol = run(saveat=dfx.SaveAt(t1=True) if saveat is None else saveat, adjoint=adjoint)
    if not throw:
        return sol
    if not _concrete(sol.result._value):
        return _error_if_failed(sol)
    _raise_if_failed(sol, "solve", lambda index: _stop_time(run, max_steps))
    return sol


def _stop_time(run, max_steps) -> tuple[float, int] | None:
    """Re-run a failed solve saving every step: where it stopped and after how many steps.

    Only on the failure path of an eager `solve`, so the second solve costs
    nothing in normal use.
    """
    if max_steps is None:
        return None
    sol = run(saveat=dfx.SaveAt(steps=True), adjoint=dfx.RecursiveCheckpointAdjoint())
    ts = np.asarray(sol.ts)
    finite = np.nonzero(np.isfinite(ts))[0]
    return (float(ts[finite[-1]]) if finite.size else None), int(sol.stats["num_steps"])


class _JointField(eqx.Module):
    """A per-sample vector field applied to a batch stacked on the leading axis."""

    field: Callable[[Any, Any, Any], Any]

    def __call__(self, t, ys, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, ys, args)


def solve_batch(
    vector_field: Callable[[Any, Any, Any], Any],
    y0s,
    ts,
    *,
    mode: str = "vmap",
    **kwargs,
) -> dfx.Solution:
    """Solve one ODE from each of a batch of initial states, saving at shared times `ts`.

    Two ways to batch, with different costs and semantics:

    - `mode="vmap"` (default): every sample is its own solve with its own
      step sizes (`jax.vmap` over `solve`); a failure is reported per sample
      by `check_solution`. Fastest with `RecursiveCheckpointAdjoint`.
    - `mode="joint"`: the batch is one system of ODEs, solved with one step
      size for all samples (error norm over the whole batch), as torchdiffeq
      does with a batched state. With `BacksolveAdjoint` this is several times
      faster than vmap (~6.6x on the spiral benchmark), because the backward
      solve carries one parameter adjoint instead of one per sample and runs
      one loop instead of a vmapped one. A failure fails the whole batch.

    With `throw=True` (the default) and an eager call, a failure raises
    `SolveFailed` naming the first failed sample (`index`), how many failed,
    the time that sample's integration stopped and what to change; under
    jit/vmap/grad, as `solve`.

    Args:
        vector_field: `f(t, y, args) -> dy/dt` on one state.
        y0s: initial states, batch on the leading axis of every leaf.
        ts: 1-D save times shared by the batch.
        mode: `"vmap"` or `"joint"`.
        **kwargs: passed to `solve` (solver, stepsize_controller, adjoint,
            max_steps, throw, args, ...).

    Returns:
        A `diffrax.Solution` whose `ys` leaves have shape (batch, len(ts), ...)
        in both modes.
    """
    if mode not in ("vmap", "joint"):
        raise ValueError(f"solve_batch: mode must be 'vmap' or 'joint', got {mode!r}")
    leaves = jax.tree.leaves(y0s)
    if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
        raise ValueError("solve_batch: y0s must have a leading batch axis on every leaf")
    sizes = {jnp.shape(x)[0] for x in leaves}
    if len(sizes) != 1:
        raise ValueError(
            f"solve_batch: the leaves of y0s have different batch sizes {sorted(sizes)}"
        )
    if "saveat" in kwargs:
        raise ValueError("solve_batch: saves at ts; pass saveat to solve under jax.vmap instead")
    if mode == "joint":
        single = jax.tree.map(lambda x: x[0], y0s)
        _check_vector_field(vector_field, jnp.asarray(ts)[0], single, kwargs.get("args"))
        sol = solve(_JointField(vector_field), y0s, ts, **kwargs)
        return eqx.tree_at(
            lambda s: s.ys, sol, jax.tree.map(lambda y: jnp.swapaxes(y, 0, 1), sol.ys)
        )
    throw = kwargs.pop("throw", True)
    sol = jax.vmap(lambda y0: solve(vector_field, y0, ts, throw=False, **kwargs))(y0s)
    if not throw:
        return sol
    if not _concrete(sol.result._value):
        return _error_if_failed(sol)

    def stop(index):
        # the failed sample alone, eagerly: its stop time from a re-run that saves every step
        y0 = jax.tree.map(lambda x: x[index], y0s)
        try:
            solve(vector_field, y0, ts, throw=True, **kwargs)
        except SolveFailed as e:
            return e.t_reached, e.num_steps
        return None

    _raise_if_failed(sol, "solve_batch", stop)
    return sol


