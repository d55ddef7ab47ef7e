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

__all__ = ["solve", "solve_batch", "check_solution", "failure_report", "SolveFailed"]


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


# --- the stability cap of solve's default controller --------------------------------


_STABILITY_LIMITS: dict[type, float] = {}


def _real_stability_limit(tableau) -> float:
    """Largest z with |R(-x)| <= 1 on all of [0, z]: the real stability interval of a tableau.

    R(z) = 1 + z b^T (I - z A)^{-1} 1 is the stability function of the
    explicit Runge-Kutta tableau (A, b): one step of size h on y' = -lam y
    multiplies y by R(-h lam). Tsit5: 3.51, Dopri5: 3.31, Bosh3: 2.51,
    Heun: 2.0, Dopri8: 5.17.
    """
    s = len(tableau.b_sol)
    a = np.zeros((s, s))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    b = np.asarray(tableau.b_sol, dtype=float)
    zs = np.linspace(0.0, 20.0, 4001)
    stages = np.linalg.solve(np.eye(s) + zs[:, None, None] * a, np.ones((zs.size, s, 1)))
    r = 1.0 - zs * (stages[..., 0] @ b)
    unstable = np.abs(r) > 1.0 + 1e-12
    return float(zs[np.argmax(unstable) - 1]) if unstable.any() else float(zs[-1])


def _shape_of(y) -> tuple:
    return jax.tree.structure(y), tuple(jnp.shape(leaf) for leaf in jax.tree.leaves(y))


def _global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree.leaves(tree)))


def _stop(tree):
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


class _StabilityCap(dfx.AbstractAdaptiveStepSizeController):
    """Solve's default controller: a PID controller whose steps stay stable for the tangent.

    An explicit Runge-Kutta step of size h multiplies a perturbation along an
    eigenvector of J = df/dy with eigenvalue -lam by R(-h lam). The error
    estimate sees that growth only through the solution's own deviation from
    a smooth path: when y sits (to within much less than the tolerance) on an
    equilibrium, the estimate is ~0, the PID controller grows every step by
    `factormax`, and steps leave the stability interval. The solution stays
    right, but its derivatives (`jax.grad`, `jax.jacfwd`: perturbations that
    the error estimate never sees) are amplified by |R(-h lam)| per step:
    dy(100)/dtheta = -1.9e11 instead of 1 for y' = theta - y from y0 = theta.

    This controller caps every step at h <= `bound` / rho, rho an estimate of
    the spectral radius of J by power iteration (a few products J v at t0,
    then one per step, warm-started, gradients stopped; each a forward
    difference of two evaluations of f), and `bound` = 0.8 x the solver's
    real stability interval, where every mode decays and the stiffest by at
    least |R| = 0.68 per step (Heun; Tsit5 0.28). Away from equilibria the error
    control already keeps explicit steps near this limit, so the cap rarely
    binds; its cost is two evaluations of f per step (Tsit5 makes six).

    It guards the state it was built for: on a state of another structure
    (an adjoint's augmented backward solve) it is the plain PID controller.
    `solve` does not use it with `BacksolveAdjoint`, whose backward solve
    controls the adjoint's own error.
    """

    controller: dfx.AbstractAdaptiveStepSizeController
    vector_field: Callable
    bound: float = eqx.field(static=True)
    state_shape: tuple = eqx.field(static=True)
    direction: Any = 1

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(
            lambda c: (c.controller, c.direction),
            self,
            (self.controller.wrap(direction), direction),
        )

    def _power_step(self, t, y, args, v):
        t, y, args, v = _stop((t, y, args, v))
        field = lambda y: self.vector_field(t * self.direction, y, args)  # noqa: E731
        # J v by a forward difference, not jax.jvp: forward mode fails at transformation time
        # on a field with a jax.custom_vjp inside (e.g. a nested diffrax solve) under jax.grad
        dtype = jnp.result_type(*jax.tree.leaves(y))
        delta = jnp.sqrt(jnp.finfo(dtype).eps) * (1 + _global_norm(y))
        moved = jax.tree.map(lambda a, b: a + delta * b, y, v)
        w = jax.tree.map(lambda a, b: (a - b) / delta, field(moved), field(y))
        rho = _global_norm(w)
        ok = jnp.isfinite(rho) & (rho > 0)
        v = jax.tree.map(lambda a, b: jnp.where(ok, a / jnp.where(ok, rho, 1), b), w, v)
        return jax.lax.stop_gradient(jnp.where(jnp.isfinite(rho), rho, 0.0)), _stop(v)

    def _cap(self, t_next, t_start, rho):
        dtype = jnp.result_type(t_next)
        h = jnp.where(rho > 0, self.bound / jnp.where(rho > 0, rho, 1), jnp.inf)
        return jnp.minimum(t_next, t_start + h.astype(dtype))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t_next, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        if _shape_of(y0) != self.state_shape:
            return t_next, (inner, None)
        keys = jax.random.split(jax.random.key(0), len(jax.tree.leaves(y0)))
        leaves = [
            jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
            for k, x in zip(keys, jax.tree.leaves(y0))
        ]
        v = jax.tree.unflatten(jax.tree.structure(y0), leaves)
        v = jax.tree.map(lambda x: x / _global_norm(v), v)
        for _ in range(4):
            rho, v = self._power_step(t0, y0, args, v)
        return self._cap(t_next, t0, rho), (inner, v)

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        inner, v = controller_state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        if v is None:
            return keep, next_t0, next_t1, made_jump, (inner, None), result
        t = jnp.where(keep, t1, t0)
        y = jax.tree.map(lambda a, b: jnp.where(keep, a, b), y1_candidate, y0)
        rho, v = self._power_step(t, y, args, v)
        return keep, next_t0, self._cap(next_t1, next_t0, rho), made_jump, (inner, v), result


def _default_controller(vector_field, solver, y0, adjoint):
    pid = dfx.PIDController(rtol=1e-3, atol=1e-6)
    if not isinstance(solver, dfx.AbstractERK):
        return pid  # implicit solvers are A-stable: no stability limit on the step
    if isinstance(adjoint, dfx.BacksolveAdjoint):
        # Its backward solve controls the adjoint's own error (y' = theta - y from the
        # equilibrium: dy(100)/dtheta = 0.9999996 with the plain PID), and a controller that
        # holds a vector field with traced parameters cannot pass its custom_vjp.
        return pid
    if type(solver) not in _STABILITY_LIMITS:  # a tableau is a class attribute of its solver
        _STABILITY_LIMITS[type(solver)] = _real_stability_limit(solver.tableau)
    bound = 0.8 * _STABILITY_LIMITS[type(solver)]
    return _StabilityCap(pid, vector_field, bound, _shape_of(y0))


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


def _raise_if_failed(sol, what, stop) -> None:
    report = _report(sol, what, None, stop)
    if report is not None:
        message, index, reached, reason, n_steps = report
        raise SolveFailed(message, index=index, t_reached=reached, result=reason, num_steps=n_steps)


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
