"""Multiple shooting with learnable node states for fitting differential equations.

Single shooting fits a model by solving once from the initial state over the
whole time span. On long or oscillatory spans its loss landscape is full of
local minima: a small error in a rotation rate becomes a phase error that
grows with time, and the gradient then points towards damping the
trajectory rather than correcting the rate. Multiple shooting cuts the span
into short segments, each started from its own learnable node state, so every
segment stays close to the data; a continuity penalty glues the segments into
one trajectory as training proceeds.

Public names: `MultipleShooting` (model plus node states, built by
`MultipleShooting.init`), `shooting_loss`, `single_shooting_loss`,
`finish_single_shooting`; `horizon_curriculum` and `sample_windows` (in
`_windows.py`) schedule and minibatch the fitted span.

References:
    Bock & Plitt, "A multiple shooting algorithm for direct solution of
    optimal control problems", IFAC Proceedings 17(2), 1984.
    Turan & Jäschke, "Multiple shooting for training neural differential
    equations on time series", IEEE Control Systems Letters 6, 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sciml.ude._solve import solve

__all__ = [
    "MultipleShooting",
    "shooting_loss",
    "single_shooting_loss",
    "finish_single_shooting",
]


# ----------------------------------------------------------------------------
# checks shared by the constructor and the losses


def _check_ts(ts, what: str) -> Array:
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"{what}: ts must be 1-D with at least 2 times, got shape {ts.shape}")
    if not jnp.issubdtype(ts.dtype, jnp.inexact):
        ts = ts.astype(jnp.result_type(float))
    return ts


def _check_observed(observed, n_states: int, what: str) -> tuple[int, ...]:
    """Normalise `observed` to a tuple of state indices, checking the range."""
    if observed is None:
        return tuple(range(n_states))
    idx = np.asarray(observed)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"{what}: observed must be a non-empty 1-D sequence of integer state indices, "
            f"got {observed!r}"
        )
    if idx.min() < 0 or idx.max() >= n_states:
        raise ValueError(
            f"{what}: observed indices {idx.tolist()} out of range for a state of dimension "
            f"{n_states} (valid: 0..{n_states - 1})"
        )
    if len(set(idx.tolist())) != idx.size:
        raise ValueError(f"{what}: observed indices {idx.tolist()} contain duplicates")
    return tuple(int(i) for i in idx)


def _check_data(data, ts, n_obs: int, what: str) -> Array:
    data = jnp.asarray(data)
    if not jnp.issubdtype(data.dtype, jnp.inexact):
        data = data.astype(ts.dtype)
    if data.ndim == 1 and n_obs == 1:
        data = data[:, None]
    if data.shape != (ts.shape[0], n_obs):
        raise ValueError(
            f"{what}: data must have shape (len(ts), n_observed) = ({ts.shape[0]}, {n_obs}), "
            f"got {data.shape}; one row per time in ts, one column per observed state"
        )
    return data


def _segment_count(n_times: int, segment_length: int, n_nodes: int, what: str) -> int:
    """Number of segments that cover `n_times` samples, with a clear error."""
    n_int = n_times - 1
    if n_int % segment_length != 0 or n_int // segment_length > n_nodes:
        raise ValueError(
            f"{what}: len(ts) - 1 = {n_int} intervals must be a multiple of the segment "
            f"length {segment_length} (in intervals) and at most n_segments * segment_length "
            f"= {n_nodes * segment_length}; pass ts[:k * {segment_length} + 1] for the first "
            "k segments"
        )
    return n_int // segment_length


def _moving_average(data: Array, width: int) -> Array:
    """Centred moving average along axis 0; windows shrink at the ends (no padding bias)."""
    if width <= 1:
        return data
    half = width // 2
    n = data.shape[0]
    csum = jnp.concatenate([jnp.zeros_like(data[:1]), jnp.cumsum(data, axis=0)])
    lo = jnp.clip(jnp.arange(n) - half, 0, n)
    hi = jnp.clip(jnp.arange(n) + half + 1, 0, n)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None].astype(data.dtype)


def _solve_ys(model, y0, ts, solver, stepsize_controller, adjoint, max_steps, throw):
    return solve(
        model,
        y0,
        ts,
        solver=solver,
        stepsize_controller=stepsize_controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=throw,
    ).ys


# ----------------------------------------------------------------------------
# the trainable pytree


class MultipleShooting(eqx.Module):
    """A vector field together with learnable node states s_0..s_{K-1}.

    The time grid t_0 < ... < t_N (N = K L) is cut at the node times
    tau_k = t_{kL} into K segments of L intervals each. Segment k is the
    solution y_k of dy/dt = model(t, y) on [tau_k, tau_{k+1}] from
    y_k(tau_k) = s_k. Both the model's parameters theta and the nodes s are
    trained by `shooting_loss`; s_0 is the estimate of the initial state.
    Equal segment sizes let the K solves run as one `jax.vmap`.

    Build it with `MultipleShooting.init`; train it as any pytree (its
    inexact arrays are the trainable leaves: the model's and `nodes`).

    Attributes:
        model: the vector field `model(t, y, args) -> dy/dt` on one state (n,).
        nodes: node states, shape (K, n) (K = n_segments, n = state dimension).
        segment_length: L, the number of grid intervals per segment (static).
        observed: indices of the observed state components, H y = y[observed]
            (static tuple).
        state_scale: per-state scale sigma (n floats, static) dividing the
            continuity defects, so states of different magnitudes weigh alike.

    References:
        Bock & Plitt, IFAC 1984; Turan & Jäschke, IEEE L-CSS 2022.
    """

    model: Callable[[Any, Any, Any], Any]
    nodes: Float[Array, "K n"]
    segment_length: int = eqx.field(static=True)
    observed: tuple[int, ...] = eqx.field(static=True)
    state_scale: tuple[float, ...] = eqx.field(static=True)

    def __check_init__(self):
        if jnp.ndim(self.nodes) != 2:
            raise ValueError(
                f"MultipleShooting: nodes must have shape (n_segments, n_states), "
                f"got {jnp.shape(self.nodes)}"
            )
        n = jnp.shape(self.nodes)[1]
        if self.segment_length < 1:
            raise ValueError(
                f"MultipleShooting: segment_length must be >= 1, got {self.segment_length}"
            )
        if len(self.state_scale) != n:
            raise ValueError(
                f"MultipleShooting: state_scale needs {n} entries (one per state), "
                f"got {len(self.state_scale)}"
            )
        _check_observed(self.observed, n, "MultipleShooting")

    @property
    def n_segments(self) -> int:
        return self.nodes.shape[0]

    @classmethod
    def init(
        cls,
        model: Callable[[Any, Any, Any], Any],
        ts,
        data,
        n_segments: int,
        observed: Sequence[int] | None = None,
        *,
        n_states: int | None = None,
        y0=None,
        nodes=None,
        smoothing: int = 3,
        state_scale=None,
        solver: dfx.AbstractSolver | None = None,
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        max_steps: int | None = 4096,
    ) -> MultipleShooting:
        """Cut the grid `ts` into `n_segments` segments and initialise the nodes.

        Node initialisation (unless `nodes` is given):

        1. Observed components: the data smoothed by a centred moving average
           of `smoothing` samples (windows shrink at the ends), read at the
           node times tau_k = ts[k L].
        2. Unobserved components: one forward simulation of the initial
           `model` over `ts` from the first node (its observed part from step
           1, its unobserved part from `y0`, or zeros), read at the node
           times. A poor initial model gives poor unobserved nodes, which
           training then corrects through the continuity penalty; pass
           `nodes` (or a better `y0`) when you know more.

        Args:
            model: vector field `model(t, y, args) -> dy/dt` on one state (n,).
            ts: 1-D times of the observations, shape (N + 1,). Every segment
                holds L = N / n_segments intervals; on a uniform grid the
                segments have equal lengths.
            data: observations d_j ~ H(y(t_j)), shape (N + 1, len(observed))
                (a 1-D array is accepted when one component is observed).
            n_segments: K, the number of segments (and of node states).
            observed: indices of the observed state components (H is the
                selection y -> y[observed]); default: all, then n = data's
                column count.
            n_states: state dimension n; needed when `observed` is given and
                neither `y0` nor `nodes` fixes it.
            y0: optional full initial-state guess (n,); its unobserved
                components start the forward simulation (default zeros). Its
                observed components are replaced by the smoothed data.
            nodes: optional node states (K, n), used as given.
            smoothing: moving-average width for the observed node values
                (1: raw data).
            state_scale: per-state scale sigma (n,) for the continuity term;
                default: the standard deviation of the smoothed data for
                observed components and of the forward simulation for the
                others (1 where that is zero or not finite).
            solver, stepsize_controller, max_steps: for the forward simulation
                (passed to `sciml.ude.solve`).

        Returns:
            A `MultipleShooting` with nodes of shape (n_segments, n).

        Raises:
            ValueError: if len(ts) - 1 is not divisible by `n_segments`, data
                does not match ts, observed indices are out of range, or the
                forward simulation fails (then pass `nodes`).

        Example:
            >>> ms = MultipleShooting.init(model, ts, data, n_segments=10)
            >>> loss, metrics = shooting_loss(ms, ts, data)
        """
        what = "MultipleShooting.init"
        ts = _check_ts(ts, what)
        if not isinstance(n_segments, int | np.integer) or n_segments < 1:
            raise ValueError(f"{what}: n_segments must be a positive integer, got {n_segments!r}")
        n_int = ts.shape[0] - 1
        if n_int % n_segments != 0:
            raise ValueError(
                f"{what}: len(ts) - 1 = {n_int} intervals is not divisible by "
                f"n_segments = {n_segments}; choose n_segments among the divisors of {n_int} "
                f"or trim ts (and data) to k * {n_segments} + 1 points"
            )
        segment_length = n_int // int(n_segments)

        if nodes is not None:
            nodes = jnp.asarray(nodes)
            if nodes.ndim != 2 or nodes.shape[0] != n_segments:
                raise ValueError(
                    f"{what}: nodes must have shape (n_segments, n_states) = ({n_segments}, n), "
                    f"got {nodes.shape}"
                )
            n = nodes.shape[1]
        elif y0 is not None:
            y0 = jnp.asarray(y0)
            if y0.ndim != 1:
                raise ValueError(f"{what}: y0 must be 1-D (n_states,), got shape {y0.shape}")
            n = y0.shape[0]
        elif n_states is not None:
            n = int(n_states)
        elif observed is None:
            n = jnp.shape(data)[1] if jnp.ndim(data) == 2 else 1
        else:
            raise ValueError(
                f"{what}: with observed={list(observed)} the state dimension is unknown; "
                "pass n_states, y0 or nodes"
            )
        if n_states is not None and int(n_states) != n:
            raise ValueError(f"{what}: n_states={n_states} but y0/nodes have {n} states")
        obs = _check_observed(observed, n, what)
        data = _check_data(data, ts, len(obs), what)
        node_idx = np.arange(n_segments) * segment_length
        smooth = _moving_average(data, int(smoothing))
        obs_arr = np.asarray(obs)
        unobs = np.setdiff1d(np.arange(n), obs_arr)

        sim = None
        if nodes is None:
            dtype = jnp.result_type(ts.dtype, data.dtype)
            start = jnp.zeros(n, dtype) if y0 is None else y0.astype(dtype)
            start = start.at[obs_arr].set(smooth[0])
            if unobs.size:
                sim = _solve_ys(
                    model, start, ts, solver, stepsize_controller, None, max_steps, False
                )
                if not bool(jnp.all(jnp.isfinite(sim))):
                    raise ValueError(
                        f"{what}: the forward simulation of the initial model from the first "
                        "node failed (non-finite states), so the unobserved node components "
                        "cannot be initialised; pass nodes=... (shape (n_segments, n_states)) "
                        "or a better y0"
                    )
                nodes = sim[node_idx]
            else:
                nodes = jnp.zeros((n_segments, n), dtype)
            nodes = nodes.at[:, obs_arr].set(smooth[node_idx])

        if state_scale is None:
            scale = np.ones(n)
            scale[obs_arr] = np.std(np.asarray(smooth), axis=0)
            if unobs.size:
                ref = np.asarray(sim) if sim is not None else np.asarray(nodes)
                scale[unobs] = np.std(ref[:, unobs], axis=0)
            scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        else:
            scale = np.asarray(state_scale, dtype=float)
            if scale.shape != (n,) or not np.all(scale > 0):
                raise ValueError(
                    f"{what}: state_scale must be {n} positive numbers, got {state_scale!r}"
                )
        return cls(
            model=model,
            nodes=nodes,
            segment_length=segment_length,
            observed=obs,
            state_scale=tuple(float(s) for s in scale),
        )

    def trajectory(
        self,
        ts,
        *,
        solver: dfx.AbstractSolver | None = None,
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        max_steps: int | None = 16384,
        throw: bool = True,
    ) -> Float[Array, "T n"]:
        """One single-shooting solve of the model from s_0 at ts[0], saved at `ts`.

        `ts[0]` must be the first node time tau_0. This is the final check
        after multiple shooting: the segments may still disagree slightly at
        the nodes; this trajectory is the model's own prediction.
        """
        ts = _check_ts(ts, "MultipleShooting.trajectory")
        return _solve_ys(
            self.model, self.nodes[0], ts, solver, stepsize_controller, None, max_steps, throw
        )


# ----------------------------------------------------------------------------
# losses


def shooting_loss(
    ms: MultipleShooting,
    ts,
    data,
    *,
    continuity_weight: float = 100.0,
    observed: Sequence[int] | None = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    adjoint: dfx.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """Multiple-shooting loss: data misfit of every segment plus continuity defects.

    With segments y_k from s_k at tau_k (k = 0..K-1), H y = y[observed],
    m observed components and sigma the per-state scale,

        data_mse       = 1/(m (N+1)) sum_j ||H y_{k(j)}(t_j) - d_j||^2
        continuity_mse = 1/(n (K-1)) sum_{k<K-1} ||(y_k(tau_{k+1}) - s_{k+1}) / sigma||^2
        loss           = data_mse + continuity_weight * continuity_mse

    where k(j) is the segment holding t_j (a node time belongs to the segment
    it starts; the last time to the last segment), so every datum counts
    once. Continuity is imposed on the full state, observed or not: that is
    what pins down unobserved components. When the defects vanish, the nodes
    lie on one trajectory of the model and the loss is single shooting's.

    The K segment solves are one `jax.vmap` of `sciml.ude.solve`, each saving
    at its own L + 1 grid times. Passing only the first k L + 1 times (and
    data rows) uses only the first k segments, for growing-horizon training
    (`horizon_curriculum` with `multiple_of=ms.segment_length`).

    Args:
        ms: the `MultipleShooting` pytree (model and nodes).
        ts: observation times, shape (k L + 1,) with k <= K.
        data: observations, shape (len(ts), len(observed)).
        continuity_weight: lambda_c (DiffEqFlux's default `continuity_term`
            is 100); a Python float or a traced scalar, so it can follow a
            schedule inside one compiled step. From a poor initial model, a
            large lambda_c at once pulls the nodes off the data onto the
            model's wrong trajectory; raising it during training (e.g.
            geometrically from 1 to 100 over the first ~70 % of the steps)
            first fits the short segments, then glues them together.
        observed: observed components; default `ms.observed`.
        solver, stepsize_controller, adjoint, max_steps: passed to
            `sciml.ude.solve` (defaults: Tsit5, PID rtol 1e-3 atol 1e-6,
            RecursiveCheckpointAdjoint).
        throw: raise on a failed solve; with `False` a failed segment gives
            a non-finite loss (a trainer then rejects the step).

    Returns:
        `(loss, {"data_mse": ..., "continuity_mse": ...})`, scalars.

    References:
        Bock & Plitt, IFAC 1984; Turan & Jäschke, IEEE L-CSS 2022.
    """
    what = "shooting_loss"
    ts = _check_ts(ts, what)
    n = ms.nodes.shape[1]
    obs = ms.observed if observed is None else _check_observed(observed, n, what)
    data = _check_data(data, ts, len(obs), what)
    L = ms.segment_length
    k = _segment_count(ts.shape[0], L, ms.n_segments, what)
    nodes = ms.nodes[:k]
    # (k, L + 1) save times per segment: segment i runs over ts[iL : (i+1)L + 1].
    seg_ts = ts[np.arange(k)[:, None] * L + np.arange(L + 1)]

    def one_segment(s, t):
        return _solve_ys(ms.model, s, t, solver, stepsize_controller, adjoint, max_steps, throw)

    ys = jax.vmap(one_segment)(nodes, seg_ts)  # (k, L + 1, n)
    # Every datum once: the first L points of each segment, then the final point.
    pred = jnp.concatenate([ys[:, :L].reshape(k * L, n), ys[-1:, L]], axis=0)
    data_mse = jnp.mean((pred[:, np.asarray(obs)] - data) ** 2)
    if k > 1:
        sigma = jnp.asarray(ms.state_scale, dtype=ys.dtype)
        defect = (ys[:-1, L] - nodes[1:]) / sigma
        continuity_mse = jnp.mean(defect**2)
    else:
        continuity_mse = jnp.zeros((), ys.dtype)
    loss = data_mse + continuity_weight * continuity_mse
    return loss, {"data_mse": data_mse, "continuity_mse": continuity_mse}


def single_shooting_loss(
    model: Callable[[Any, Any, Any], Any],
    y0,
    ts,
    data,
    *,
    observed: Sequence[int] | None = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    adjoint: dfx.AbstractAdjoint | None = None,
    max_steps: int | None = 16384,
    throw: bool = True,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """Single-shooting loss: one solve from `y0` at ts[0] over all of `ts`.

        loss = data_mse = 1/(m (N+1)) sum_j ||H y(t_j) - d_j||^2

    The baseline against which multiple shooting is compared; differentiate
    with respect to `(model, y0)` to also fit the initial state.

    Args:
        model: vector field on one state (n,).
        y0: initial state (n,) at ts[0].
        ts: observation times (N + 1,).
        data: observations (N + 1, len(observed)).
        observed: observed components (default: all n).
        solver, stepsize_controller, adjoint, max_steps, throw: passed to
            `sciml.ude.solve`.

    Returns:
        `(loss, {"data_mse": loss})`.
    """
    what = "single_shooting_loss"
    ts = _check_ts(ts, what)
    y0 = jnp.asarray(y0)
    if y0.ndim != 1:
        raise ValueError(f"{what}: y0 must be 1-D (n_states,), got shape {y0.shape}")
    obs = _check_observed(observed, y0.shape[0], what)
    data = _check_data(data, ts, len(obs), what)
    ys = _solve_ys(model, y0, ts, solver, stepsize_controller, adjoint, max_steps, throw)
    data_mse = jnp.mean((ys[:, np.asarray(obs)] - data) ** 2)
    return data_mse, {"data_mse": data_mse}


def finish_single_shooting(
    ms: MultipleShooting,
    ts,
    data,
    *,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    max_steps: int | None = 16384,
    throw: bool = True,
) -> tuple[Float[Array, "T n"], dict[str, Float[Array, ""]]]:
    """The final check of multiple shooting: one solve from s_0 with the learned model.

    Returns the trajectory (len(ts), n) and `{"data_mse": ...}` against
    `data` on `ms.observed`. A data MSE close to `shooting_loss`'s says the
    segments have merged into one trajectory of the model; a much larger one
    says the continuity penalty was too weak (raise `continuity_weight`)
    or the model is unstable over the span.
    """
    what = "finish_single_shooting"
    ts = _check_ts(ts, what)
    data = _check_data(data, ts, len(ms.observed), what)
    ys = ms.trajectory(
        ts, solver=solver, stepsize_controller=stepsize_controller, max_steps=max_steps, throw=throw
    )
    return ys, {"data_mse": jnp.mean((ys[:, np.asarray(ms.observed)] - data) ** 2)}
