"""Parameter estimation for mechanistic ODE models: Gauss-Newton and Levenberg-Marquardt.

Thin wrappers over `optimistix.least_squares` that check their inputs, use
forward-mode Jacobians, and return a small `LeastSquaresResult`. A residual
function that solves an ODE must solve it with `adjoint=diffrax.ForwardMode()`:
the Jacobian J = dr/dp is built column by column with `jax.jvp` (P forward
passes for P parameters), and diffrax's default `RecursiveCheckpointAdjoint`
supports reverse mode only.

Reference: Nocedal & Wright, *Numerical Optimization*, 2nd ed., Springer 2006,
ch. 10 (nonlinear least squares).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PyTree

__all__ = ["LeastSquaresResult", "levenberg_marquardt", "gauss_newton", "scaled_residuals"]


class LeastSquaresResult(eqx.Module):
    """The outcome of `levenberg_marquardt` or `gauss_newton`.

    Attributes:
        params: the parameters found, with the structure and dtypes of `p0`.
        residual_norm: ||r(params)||_2, the Euclidean norm of all residuals.
        num_steps: optimistix steps taken (accepted and rejected).
        converged: `True` when the solver met its tolerances within `max_steps`.
        result: the optimistix result code; `optimistix.RESULTS[result]` is a message.
    """

    params: PyTree[Array]
    residual_norm: Float[Array, ""]
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]
    result: optx.RESULTS


def _leaves_with_paths(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _check_inputs(name: str, residual_fn, p0, args, jac: str):
    if jac not in ("fwd", "bwd"):
        raise ValueError(f"{name}: jac must be 'fwd' or 'bwd', got {jac!r}")
    if not callable(residual_fn):
        raise TypeError(f"{name}: residual_fn must be callable as residual_fn(params, args)")
    leaves = _leaves_with_paths(p0)
    if not leaves:
        raise ValueError(f"{name}: p0 holds no arrays; pass the initial parameters")
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "p0"
            raise TypeError(
                f"{name}: p0 must be floating point, got dtype {dtype} at {where}; "
                f"pass e.g. jnp.asarray(p0, dtype=float)"
            )
    try:
        out = jax.eval_shape(residual_fn, p0, args)
    except TypeError as e:  # e.g. a non-array output; re-raised with what was expected
        raise TypeError(
            f"{name}: residual_fn(p0, args) must return a 1-D float array or a pytree of "
            f"float arrays; calling it raised: {e}"
        ) from e
    out_leaves = _leaves_with_paths(out)
    if not out_leaves:
        raise ValueError(f"{name}: residual_fn returned no arrays; it must return the residuals")
    size = 0
    for path, leaf in out_leaves:
        where = jax.tree_util.keystr(path) or "the output"
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            raise TypeError(
                f"{name}: residual_fn must return a 1-D array or a pytree of arrays, "
                f"got {type(leaf).__name__} at {where}"
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name}: residual_fn must return floating arrays, got dtype {leaf.dtype} at {where}"
            )
        size += leaf.size
    if size == 0:
        raise ValueError(f"{name}: residual_fn returned empty arrays; there is nothing to fit")


def _solve(name, solver, residual_fn, p0, args, max_steps, jac, throw) -> LeastSquaresResult:
    _check_inputs(name, residual_fn, p0, args, jac)
    if not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"{name}: max_steps must be a positive int, got {max_steps!r}")
    sol = optx.least_squares(
        residual_fn,
        solver,
        p0,
        args,
        options={"jac": jac},
        max_steps=max_steps,
        throw=throw,
    )
    return _finish(residual_fn, args, sol)


@eqx.filter_jit
def _finish(residual_fn, args, sol) -> LeastSquaresResult:
    # One extra residual evaluation: the solver's state holds the residual of
    # the last accepted point too, but reading it couples us to its internals.
    r = residual_fn(sol.value, args)
    norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(r)))
    return LeastSquaresResult(
        params=sol.value,
        residual_norm=norm,
        num_steps=sol.stats["num_steps"],
        converged=sol.result == optx.RESULTS.successful,
        result=sol.result,
    )


def levenberg_marquardt(
    residual_fn: Callable[[Any, Any], PyTree[Array]],
    p0: PyTree[Array],
    args: Any = None,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 100,
    jac: str = "fwd",
    throw: bool = True,
) -> LeastSquaresResult:
    r"""Minimise ½||r(p)||² with Levenberg-Marquardt (`optimistix.LevenbergMarquardt`).

    Each step solves the damped Gauss-Newton system

        (JᵀJ + μD) δ = −Jᵀr,    J = ∂r/∂p at the current p,

    with D = I here (optimistix solves it stably as the least-squares problem
    [J; √μ I] δ ≈ [−r; 0] by QR, never forming JᵀJ). The damping μ comes
    from a classical trust region: the step is accepted when the gain ratio
    ρ = (||r(p)||² − ||r(p+δ)||²) / (||r||² − ||r + Jδ||²) is large enough, and
    μ shrinks after good steps and grows after poor ones. μ → 0 recovers
    Gauss-Newton, large μ a short steepest-descent step.

    Args:
        residual_fn: `residual_fn(params, args) -> residuals`, a 1-D float
            array or any pytree of float arrays. Residuals should be O(1) and
            comparable across outputs (see `scaled_residuals`).
        p0: initial parameters, a float array or pytree of float arrays.
            Fit rates spanning decades as log-rates.
        args: passed through to `residual_fn`.
        rtol, atol: the Cauchy termination tolerances of optimistix (on
            successive parameters and residuals, in the max norm).
        max_steps: step budget (accepted and rejected steps).
        jac: `"fwd"` (forward mode, `jax.jvp` once per parameter: cheap when
            there are few parameters) or `"bwd"` (reverse mode, once per residual).
        throw: raise if the solve does not converge; with `False` read
            `converged` and `result` instead.

    Returns:
        A `LeastSquaresResult`.

    Raises:
        TypeError: `p0` or the residuals are not floating point, or the
            residuals are not arrays.
        ValueError: empty `p0` or residuals, a bad `jac` or `max_steps`.

    When `residual_fn` solves an ODE with diffrax, solve it with
    `adjoint=diffrax.ForwardMode()` so that `jac="fwd"` can differentiate
    through the solver (the default `RecursiveCheckpointAdjoint` is reverse
    mode only).

    Example:
        >>> t = jnp.linspace(0.0, 2.0, 20)
        >>> y = 2.0 * jnp.exp(-1.5 * t)
        >>> fit = levenberg_marquardt(lambda p, _: p[0] * jnp.exp(-p[1] * t) - y, jnp.array([1.0, 1.0]))
        >>> fit.params  # ≈ [2.0, 1.5]

    Reference: Nocedal & Wright, *Numerical Optimization*, 2006, §10.3.
    """
    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    return _solve("levenberg_marquardt", solver, residual_fn, p0, args, max_steps, jac, throw)


def gauss_newton(
    residual_fn: Callable[[Any, Any], PyTree[Array]],
    p0: PyTree[Array],
    args: Any = None,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 100,
    jac: str = "fwd",
    throw: bool = True,
) -> LeastSquaresResult:
    r"""Minimise ½||r(p)||² with undamped Gauss-Newton (`optimistix.GaussNewton`).

    Each step takes the full step δ solving min_δ ||r + Jδ||², i.e. the normal
    equations JᵀJ δ = −Jᵀr (solved by lineax's least-squares-capable
    `AutoLinearSolver(well_posed=None)`, not by forming JᵀJ). Fast (locally
    quadratic for zero-residual problems) near the minimiser, but with no
    damping it can diverge from a poor start; prefer `levenberg_marquardt`
    there. Arguments, returns and errors as `levenberg_marquardt`; an ODE
    inside `residual_fn` must be solved with `adjoint=diffrax.ForwardMode()`.

    Reference: Nocedal & Wright, *Numerical Optimization*, 2006, §10.3.
    """
    solver = optx.GaussNewton(rtol=rtol, atol=atol)
    return _solve("gauss_newton", solver, residual_fn, p0, args, max_steps, jac, throw)


def scaled_residuals(
    pred: Float[Array, "n_times n_states"],
    data: Float[Array, "n_times n_states"],
    scale: Float[Array, " n_states"] | None = None,
) -> Float[Array, "n_times n_states"]:
    """Residuals `(pred - data) / scale`, one scale per state (column).

    Unscaled, a least-squares fit sees only the large states: in Robertson's
    kinetics y1 and y3 are O(1) while y2 never exceeds ~4e-5, so y2's residuals
    are ~1e-5 of the others and k2, k3 (which y2 pins down) are barely
    identified. Dividing each state by its own size makes every species count
    equally.

    Args:
        pred: model prediction, shape (n_times, n_states).
        data: observations, same shape.
        scale: per-state scale, shape (n_states,); default `max |data|` over
            time for each state. A state whose scale is 0 keeps scale 1.

    Returns:
        Scaled residuals, shape (n_times, n_states).
    """
    pred = jnp.asarray(pred)
    data = jnp.asarray(data)
    if pred.shape != data.shape or pred.ndim != 2:
        raise ValueError(
            f"scaled_residuals: pred and data must both have shape (n_times, n_states), "
            f"got {pred.shape} and {data.shape}"
        )
    if scale is None:
        scale = jnp.max(jnp.abs(data), axis=0)
    scale = jnp.asarray(scale)
    if scale.shape != data.shape[1:]:
        raise ValueError(
            f"scaled_residuals: scale must have shape ({data.shape[1]},) (one per state), "
            f"got {scale.shape}"
        )
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return (pred - data) / scale
