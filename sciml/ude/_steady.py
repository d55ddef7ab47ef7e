"""`steady_state`: the equilibrium an ODE settles to, differentiable by implicit differentiation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from sciml.ude._failures import SolveFailed
from sciml.ude._solve import _check_tolerance, _concrete, solve
from sciml.ude._stability import _stop

__all__ = ["steady_state"]


def steady_state(
    vector_field: Callable[[Any, Any, Any], Any],
    y0,
    args=None,
    *,
    t0=0.0,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    max_steps: int = 4096,
    newton_steps: int = 32,
) -> Any:
    """The steady state y* (f(y*) = 0) that dy/dt = vector_field(t, y, args) settles to from `y0`.

    Two stages:

    1. **Dynamics**: `solve` from `y0` with `t1 = inf` until diffrax's
       steady-state event fires, `||f(y)|| < atol + rtol ||y||` (RMS norms).
       This finds the attractor the system actually reaches from `y0` (a
       root finder started at `y0` may converge to an unstable equilibrium,
       or diverge). No derivative flows through this stage.
    2. **Refinement and derivative**: Newton's method (`optimistix.Newton`,
       same `rtol`, `atol`) on f(y*, args) = 0 from that state, differentiated
       by the implicit function theorem (`optimistix.ImplicitAdjoint`):

           dy*/dargs = -(df/dy)^{-1} df/dargs   at (y*, args).

       Newton converges quadratically, so y* is accurate to about the square
       of the tolerance, and the derivative is exact at y*: neither depends on
       how the dynamics got there, the step sizes, or the integration length.

    Why not differentiate a long solve: the derivative of y(t1) for large
    t1 converges to dy*/dargs only if every step is stable for the tangent,
    which the error estimate does not check (see `solve`, docs/ude.md); and
    backpropagating through thousands of steps costs memory and time. The
    implicit derivative costs one linear solve with df/dy. diffrax's
    `ImplicitAdjoint` applies the same theorem at the state where the event
    fired (accurate to the event tolerance only); the Newton refinement
    makes y* and its derivative tight.

    Works with `jax.grad`, `jax.jacfwd`, `jax.jit` and `jax.vmap`. Pass
    parameters through `args`. The vector field must be autonomous at the
    steady state (t is the time the event fired) and the equilibrium
    isolated (df/dy nonsingular): a system with a conserved quantity (e.g.
    mass in a closed reaction network) has a singular df/dy; eliminate one
    species per conservation law first.

    Args:
        vector_field: `f(t, y, args) -> dy/dt` on one state.
        y0: initial state (array or pytree of arrays); no derivative flows
            to it (an isolated equilibrium does not move with y0).
        args: parameters passed to `vector_field`; y* is differentiable in
            them.
        t0: start time of the dynamics.
        rtol, atol: steady-state tolerance of the dynamics and Newton's
            tolerance on its steps (`rtol` at least the machine epsilon of
            y0's dtype).
        solver: diffrax solver for the dynamics (default `Tsit5()`; use
            `diffrax.Kvaerno5()` for stiff systems).
        stepsize_controller: controller for the dynamics (default: `solve`'s,
            whose stability cap also keeps explicit steps converging near the
            equilibrium).
        max_steps: step budget of the dynamics.
        newton_steps: iteration budget of the Newton refinement.

    Returns:
        y*, with the structure, shapes and dtypes of `y0`.

    Raises:
        SolveFailed: no steady state within `max_steps` (an oscillation, a
            drift or a blow-up), or the Newton refinement did not converge
            (singular df/dy). Under jit/vmap/grad the failure is raised at run
            time by `equinox.error_if` instead (`solve`'s message for the
            dynamics, this advice for Newton).
        ValueError: `rtol` below the resolution of the state's dtype.

    Example:
        >>> steady_state(lambda t, y, th: th - y, jnp.array(0.0), jnp.array(0.76))
        Array(0.76, dtype=float32)
        >>> jax.grad(lambda th: steady_state(lambda t, y, a: a - y, jnp.array(0.0), th))(0.76)
        Array(1., dtype=float32, weak_type=True)

    References:
        S. G. Krantz and H. R. Parks, *The Implicit Function Theorem* (2002);
        diffrax's steady-state example (`ImplicitAdjoint`).
    """
    _check_tolerance(rtol, y0, [t0], who="steady_state")
    event = dfx.Event(dfx.steady_state_event(rtol=rtol, atol=atol))
    what = (
        f"steady_state: no steady state (||f(y)|| < {atol:g} + {rtol:g} ||y||) was reached "
        f"from y0 within max_steps={max_steps} solver steps"
    )
    advice = (
        "The dynamics may not settle (an oscillation, a drift, a blow-up): check that the "
        "system has a stable equilibrium; otherwise raise max_steps, loosen rtol/atol, or use "
        "a stiff solver (solver=diffrax.Kvaerno5())."
    )
    kwargs = dict(
        t0=t0,
        t1=jnp.inf,
        args=_stop(args),
        solver=solver,
        stepsize_controller=stepsize_controller,
        event=event,
        # the derivative comes from stage 2; ImplicitAdjoint keeps this stage cheap to trace
        adjoint=dfx.ImplicitAdjoint(),
        max_steps=max_steps,
    )
    y0 = _stop(y0)
    try:
        sol = solve(vector_field, y0, **kwargs)
    except SolveFailed as e:
        stopped = "" if e.t_reached is None else f"; the integration stopped at t = {e.t_reached:g}"
        raise SolveFailed(
            f"{what} ({e.result.rstrip('.')}{stopped}). {advice}",
            t_reached=e.t_reached,
            result=e.result,
            num_steps=e.num_steps,
        ) from e
    y_settled = _stop(jax.tree.map(lambda y: y[-1], sol.ys))
    t_end = jax.lax.stop_gradient(sol.ts[-1])

    # Newton stops when its step is below atol + rtol |y| and |f| is below atol (optimistix's
    # Cauchy test). Scaling f by a constant moves neither the root nor the implicit
    # derivative; this one makes the f test the event's, |f| < atol + rtol ||y||, which a
    # float32 residual can meet (its rounding is ~1e-7 |terms of f|, above atol = 1e-8).
    y_norm = jnp.sqrt(
        sum(jnp.sum(y**2) for y in jax.tree.leaves(y_settled))
        / sum(jnp.size(y) for y in jax.tree.leaves(y_settled))
    )
    scale = jax.lax.stop_gradient(atol / (atol + rtol * y_norm))

    def residual(y, args):
        return jax.tree.map(lambda f: scale * f, vector_field(t_end, y, args))

    root = optx.root_find(
        residual,
        optx.Newton(rtol=rtol, atol=atol),
        y_settled,
        args=args,
        max_steps=newton_steps,
        adjoint=optx.ImplicitAdjoint(),
        throw=False,
    )
    failed = root.result != optx.RESULTS.successful
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(y)) for y in jax.tree.leaves(root.value)]))
    newton = (
        f"steady_state: the Newton refinement of the state the dynamics settled to did not "
        f"converge in newton_steps={newton_steps} iterations (or gave NaN/inf): df/dy is "
        "probably singular or ill-conditioned there, e.g. a conservation law (eliminate one "
        "species per conserved quantity) or a non-isolated equilibrium; or raise newton_steps."
    )
    bad = failed | ~finite
    if _concrete(bad):
        if bool(np.any(np.asarray(bad))):
            t = float(np.asarray(t_end).ravel()[0])
            reason = optx.RESULTS._index_to_message[int(np.asarray(root.result._value).ravel()[0])]
            raise SolveFailed(
                f"{newton} The dynamics settled at t = {t:g}. optimistix: {reason or 'non-finite'}",
                t_reached=t,
                result=str(reason),
            )
        return root.value
    return eqx.error_if(root.value, bad, f"{newton} (Under jit/vmap/grad the time is unknown.)")
