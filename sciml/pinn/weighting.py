"""Adaptive loss weights for PINNs: gradient-norm and NTK balancing, EMA, causal weights.

Optimizer-agnostic building blocks (REFERENCES §2.3) that a problem calls inside its
jitted loss or `advance` hook. Terms are named by the keys of a dict; weights come back
as a dict with the same keys, under `jax.lax.stop_gradient`, so they never carry
gradient into the parameters.

A typical problem keeps a `WeightingState` in its state and refreshes it every
`every` steps:

    def advance(self, model, state, step):
        params = eqx.filter(model, eqx.is_inexact_array)
        ...
        weighting = update_weighting(
            state.weighting, step,
            lambda: grad_norm_weights(lambda p: self.term_losses(p, model), params),
            every=1000, momentum=0.9,
        )

and forms its loss with `weighted_sum(term_losses, weighting.weights)`.

Moving weights make the objective non-stationary: freeze them (stop calling
`update_weighting`) during L-BFGS or ENGD phases, whose line searches assume a fixed
loss.

References: Wang, Teng, Perdikaris, "Understanding and mitigating gradient flow
pathologies in physics-informed neural networks", SISC 2021; Wang, Yu, Perdikaris,
"When and why PINNs fail to train: A neural tangent kernel perspective", JCP 2022;
Wang, Sankaran, Perdikaris, "Respecting causality for training physics-informed neural
networks", CMAME 2024; Wang et al., "An Expert's Guide to Training Physics-informed
Neural Networks", arXiv:2308.08468; `PredictiveIntelligenceLab/jaxpi`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = [
    "NORMALIZATIONS",
    "WeightingState",
    "balanced_weights",
    "causal_loss",
    "causal_weights",
    "ema_weights",
    "grad_norm_weights",
    "init_weighting",
    "maybe_update",
    "ntk_trace_weights",
    "ntk_traces",
    "term_grad_norms",
    "update_weighting",
    "weighted_sum",
]

NORMALIZATIONS: tuple[str, ...] = ("mean", "sum", "unit_mean")
"""How `balanced_weights` scales ŵ_i ∝ 1/m_i (all give w_i m_i equal across terms):

- `"mean"` (default, jaxpi's code): ŵ_i = mean_j m_j / m_i.
- `"sum"` (the papers and the Expert's guide): ŵ_i = Σ_j m_j / m_i, i.e. `"mean"` times
  the number of terms n; the two differ by a constant factor n, a learning-rate rescale.
- `"unit_mean"`: rescaled so that mean_i ŵ_i = 1 (Σ_i ŵ_i = n), ŵ_i = n (1/m_i) /
  Σ_j (1/m_j); the factor to the paper's form changes as the m_i move.
"""


def _check_terms(terms: Mapping, where: str) -> None:
    if not isinstance(terms, Mapping) or not terms:
        raise ValueError(f"{where}: expected a non-empty dict of named terms, got {terms!r}")


def _sq_norm(tree) -> Array:
    """Σ |x|² over every array leaf of `tree` (the squared global 2-norm)."""
    leaves = [x for x in jax.tree.leaves(tree) if eqx.is_array(x)]
    if not leaves:
        raise ValueError("no array leaves to take a norm of: are the params empty?")
    return sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves)


def balanced_weights(
    magnitudes: Mapping[str, ArrayLike], *, normalization: str = "mean"
) -> dict[str, Array]:
    """Weights inversely proportional to per-term magnitudes, ŵ_i = (Σ_j m_j) / m_i.

    The shared rule behind `grad_norm_weights` (m_i = ‖∇_θ L_i‖) and `ntk_trace_weights`
    (m_i = mean NTK trace). After weighting, every term has the same magnitude w_i m_i.

    Args:
        magnitudes: `{name: scalar}`, positive magnitudes per term.
        normalization: one of `NORMALIZATIONS` (default `"mean"`, jaxpi's form).

    Returns:
        `{name: scalar}` weights, under `jax.lax.stop_gradient`. A term with m_i = 0
        gets an infinite weight (the loss then turns non-finite and the trainer's
        finiteness check reports it) — drop terms that vanish identically.

    Raises:
        ValueError: empty dict, non-scalar magnitudes or unknown `normalization`.
    """
    _check_terms(magnitudes, "balanced_weights")
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"balanced_weights: unknown normalization {normalization!r}; "
            f"allowed: {', '.join(NORMALIZATIONS)}"
        )
    names = list(magnitudes)
    m = [jnp.asarray(magnitudes[k]) for k in names]
    for k, v in zip(names, m):
        if v.shape != ():
            raise ValueError(f"balanced_weights: magnitude {k!r} must be a scalar, got {v.shape}")
    m = jax.lax.stop_gradient(jnp.stack(m))
    n = len(names)
    if normalization == "sum":
        w = jnp.sum(m) / m
    elif normalization == "mean":
        w = jnp.mean(m) / m
    else:  # unit_mean
        w = n * (1 / m) / jnp.sum(1 / m)
    return {k: w[i] for i, k in enumerate(names)}


def term_grad_norms(term_losses: Callable[[Any], Mapping[str, Array]], params) -> dict[str, Array]:
    """Global gradient norms g_i = ‖∇_θ L_i(θ)‖₂ of each loss term.

    Args:
        term_losses: `params -> {name: scalar loss}`.
        params: a pytree (an equinox model works: only its inexact array leaves are
            differentiated). The norm runs over all of them, flattened together.

    Returns:
        `{name: scalar}` norms (also worth logging: REFERENCES §2.8). One forward
        pass and one vmapped reverse pass per term (`eqx.filter_jacrev`).
    """
    jac = eqx.filter_jacrev(lambda p: dict(term_losses(p)))(params)
    _check_terms(jac, "term_grad_norms: term_losses(params)")
    return {k: jnp.sqrt(_sq_norm(g)) for k, g in jac.items()}


def grad_norm_weights(
    term_losses: Callable[[Any], Mapping[str, Array]],
    params,
    *,
    normalization: str = "mean",
) -> dict[str, Array]:
    """Gradient-norm balancing (Wang et al. 2021, jaxpi): ŵ_i = (Σ_j g_j) / g_i.

    g_i = ‖∇_θ L_i‖₂ over the whole flattened parameter vector (`term_grad_norms`).
    With `normalization="mean"` (default) the numerator is the mean over terms as in
    jaxpi's code, with `"sum"` the sum as in the papers: a constant factor of the number
    of terms between them (see `NORMALIZATIONS`). Smooth the result with `ema_weights`.

    Args:
        term_losses: `params -> {name: scalar loss}` (unweighted terms).
        params: pytree or equinox model.
        normalization: one of `NORMALIZATIONS`.

    Returns:
        `{name: scalar}` weights under `stop_gradient`.

    Example:
        >>> w = grad_norm_weights(lambda p: {"pde": loss_r(p), "ic": loss_ic(p)}, params)
    """
    return balanced_weights(term_grad_norms(term_losses, params), normalization=normalization)


def ntk_traces(term_residuals: Callable[[Any], Mapping[str, Array]], params) -> dict[str, Array]:
    """Mean NTK diagonal per term, K̄_i = mean_n ‖∇_θ r_i(x_n)‖² = tr(K_ii) / N_i.

    Args:
        term_residuals: `params -> {name: (N_i,) residual vector}` (use u − g, whose
            parameter gradient is that of u, for data and boundary terms as jaxpi does).
        params: pytree or equinox model.

    Returns:
        `{name: scalar}`. Builds the full Jacobian of every term (Σ_i N_i × #params
        numbers): pass a subsample of the collocation points when that is large.

    Raises:
        ValueError: a residual that is not one-dimensional (or is empty).
    """
    out_shapes = jax.eval_shape(lambda p: dict(term_residuals(p)), params)
    _check_terms(out_shapes, "ntk_traces: term_residuals(params)")
    for k, s in out_shapes.items():
        if len(s.shape) != 1 or s.shape[0] == 0:
            raise ValueError(
                f"ntk_traces: residual {k!r} must have shape (N,) with N >= 1, got {s.shape}"
            )
    jac = eqx.filter_jacrev(lambda p: dict(term_residuals(p)))(params)
    return {k: _sq_norm(j) / out_shapes[k].shape[0] for k, j in jac.items()}


def ntk_trace_weights(
    term_residuals: Callable[[Any], Mapping[str, Array]],
    params,
    *,
    normalization: str = "mean",
) -> dict[str, Array]:
    """NTK balancing (Wang et al. 2022): ŵ_i = (Σ_j K̄_j) / K̄_i, K̄_i from `ntk_traces`.

    `normalization` as for `grad_norm_weights` (jaxpi: mean over terms, the default).
    Returns `{name: scalar}` weights under `stop_gradient`.
    """
    return balanced_weights(ntk_traces(term_residuals, params), normalization=normalization)


def ema_weights(
    old: Mapping[str, ArrayLike], new: Mapping[str, ArrayLike], momentum: float = 0.9
) -> dict[str, Array]:
    """Exponential moving average w ← momentum·w_old + (1 − momentum)·w_new, per term.

    Raises:
        ValueError: different term names, or `momentum` outside [0, 1].
    """
    if set(old) != set(new):
        raise ValueError(
            f"ema_weights: old and new weights name different terms: {sorted(old)} vs {sorted(new)}"
        )
    if isinstance(momentum, int | float) and not 0 <= momentum <= 1:
        raise ValueError(f"ema_weights: momentum must be in [0, 1], got {momentum}")
    return {
        k: jax.lax.stop_gradient(momentum * jnp.asarray(old[k]) + (1 - momentum) * new[k])
        for k in old
    }


def maybe_update(step: ArrayLike, every: int, update: Callable[[Any], Any], value):
    """`update(value)` when `step % every == 0`, else `value`; jit-able.

    Uses `lax.cond`, so an expensive `update` (an NTK) runs only on the steps that take
    it (outside `vmap`). `update` must return a pytree of the same structure, shapes and
    dtypes as `value`. Step 0 updates.

    Raises:
        ValueError: `every < 1`.
    """
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"maybe_update: every must be an integer >= 1, got {every!r}")
    return jax.lax.cond(jnp.asarray(step) % every == 0, update, lambda v: v, value)


class WeightingState(eqx.Module):
    """Per-term loss weights carried in a problem's state (a pytree; checkpoints).

    Attributes:
        weights: `{name: scalar}` current weights (ones at the start).
        n_updates: how many times `update_weighting` refreshed them (int32 scalar).
    """

    weights: dict[str, Float[Array, ""]]
    n_updates: Int[Array, ""]


def init_weighting(names, dtype=None) -> WeightingState:
    """A `WeightingState` with weight 1 for each name in `names` (non-empty, distinct)."""
    names = list(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"init_weighting: need distinct term names, got {names!r}")
    dtype = jnp.result_type(float) if dtype is None else dtype
    return WeightingState(
        weights={k: jnp.ones((), dtype) for k in names}, n_updates=jnp.zeros((), jnp.int32)
    )


def update_weighting(
    state: WeightingState,
    step: ArrayLike,
    compute: Callable[[], Mapping[str, Array]],
    *,
    every: int = 1000,
    momentum: float = 0.9,
) -> WeightingState:
    """Every `every` steps (and at step 0), EMA the weights towards `compute()`.

    jaxpi's schedule: w ← momentum·w + (1 − momentum)·ŵ with ŵ = `compute()` (e.g. a
    closure over the parameters calling `grad_norm_weights` or `ntk_trace_weights`),
    recomputed every 1000 steps with momentum 0.9. `momentum=0` replaces the weights.
    Other steps return `state` unchanged; `compute` only runs on update steps (lax.cond).

    Raises:
        ValueError: `compute()` names other terms than `state`, bad `every`/`momentum`.
    """

    def update(s: WeightingState) -> WeightingState:
        new = dict(compute())
        if set(new) != set(s.weights):
            raise ValueError(
                f"update_weighting: compute() returned terms {sorted(new)}, the state holds "
                f"{sorted(s.weights)}"
            )
        new = {k: jnp.asarray(new[k], s.weights[k].dtype) for k in s.weights}
        w = ema_weights(s.weights, new, momentum)
        w = {k: v.astype(s.weights[k].dtype) for k, v in w.items()}
        return WeightingState(weights=w, n_updates=s.n_updates + 1)

    return maybe_update(step, every, update, state)


def weighted_sum(losses: Mapping[str, ArrayLike], weights: Mapping[str, ArrayLike]) -> Array:
    """Σ_i w_i L_i with the weights under `stop_gradient`.

    Raises:
        ValueError: losses and weights name different terms.
    """
    if set(losses) != set(weights):
        raise ValueError(
            f"weighted_sum: losses name {sorted(losses)} but weights name {sorted(weights)}"
        )
    return sum(jax.lax.stop_gradient(weights[k]) * losses[k] for k in losses)


def _check_epsilon(epsilon, where: str):
    if isinstance(epsilon, int | float):
        if not epsilon >= 0:
            raise ValueError(f"{where}: epsilon must be >= 0, got {epsilon}")
        return epsilon
    epsilon = jnp.asarray(epsilon)
    if epsilon.shape != ():
        raise ValueError(f"{where}: epsilon must be a scalar, got shape {epsilon.shape}")
    return eqx.error_if(epsilon, epsilon < 0, f"{where}: epsilon must be >= 0")


def causal_weights(chunk_losses: Float[Array, " M"], epsilon) -> Float[Array, " M"]:
    """Causal weights w_k = exp(−ε Σ_{j<k} L_j), w_0 = 1 (Wang et al. 2024).

    A time chunk only counts once the residual of all earlier chunks is small. The
    weights are under `stop_gradient`: they steer, they are not minimised.

    Args:
        chunk_losses: `(M,)` mean squared residual per time chunk, earliest first.
        epsilon: causality parameter ε >= 0 (a Python number, checked at trace time,
            or a traced scalar, checked with `eqx.error_if`). jaxpi uses 0.01–5.

    Returns:
        `(M,)` weights in (0, 1], non-increasing for non-negative losses.

    Raises:
        ValueError: `chunk_losses` not one-dimensional, or ε < 0.
    """
    chunk_losses = jnp.asarray(chunk_losses)
    if chunk_losses.ndim != 1 or chunk_losses.shape[0] == 0:
        raise ValueError(
            f"causal_weights: chunk_losses must have shape (M,) with M >= 1, got "
            f"{chunk_losses.shape}"
        )
    epsilon = _check_epsilon(epsilon, "causal_weights")
    before = jnp.cumsum(chunk_losses) - chunk_losses  # Σ_{j<k} L_j
    return jax.lax.stop_gradient(jnp.exp(-epsilon * before))


def causal_loss(
    residuals: Float[Array, "N ..."],
    times: Float[Array, " N"],
    n_chunks: int,
    epsilon,
) -> tuple[Array, dict[str, Array]]:
    """Causally weighted residual loss L_r = mean_k w_k L_k (Wang et al. 2024).

    The points are sorted by time and split into `n_chunks` chunks of equal size
    N / M (jaxpi's rule: sort, then reshape to (M, −1)). Equal counts, not a uniform
    time grid: the chunks are time quantiles of the points, which for uniformly drawn
    times are close to equal time bins, and every chunk has the same number of points
    whatever the draw. Sorting (`argsort`) runs inside the function, so it is jit-able
    for a fixed `N`, and a collocation set that is resampled every step works as is.

    L_k = mean over chunk k (and over trailing residual components) of |r|²;
    w = `causal_weights(L, epsilon)` (under stop_gradient), so
    ∇L_r = (1/M) Σ_k w_k ∇L_k.

    Args:
        residuals: `(N,)` or `(N, ...)` residuals at the points (trailing axes, e.g.
            the components of a system, are averaged).
        times: `(N,)` time of each point.
        n_chunks: M, a divisor of N with 1 <= M <= N (jaxpi: 16–32).
        epsilon: ε >= 0, as for `causal_weights`.

    Returns:
        `(loss, info)`: the scalar loss and `{"chunk_losses": (M,), "causal_weights":
        (M,), "causal_min_weight": scalar}`; log the minimum weight (training has
        respected causality over the whole interval once it approaches 1; the paper
        raises ε when min_k w_k > 0.99).

    Raises:
        ValueError: mismatched shapes, `n_chunks` not dividing N or out of range,
            ε < 0.
    """
    residuals = jnp.asarray(residuals)
    times = jnp.asarray(times)
    if times.ndim != 1:
        raise ValueError(f"causal_loss: times must have shape (N,), got {times.shape}")
    if residuals.ndim < 1 or residuals.shape[0] != times.shape[0]:
        raise ValueError(
            f"causal_loss: residuals must have shape (N, ...) with N = len(times) = "
            f"{times.shape[0]}, got {residuals.shape}"
        )
    n = times.shape[0]
    if not (isinstance(n_chunks, int) and 1 <= n_chunks <= n and n % n_chunks == 0):
        raise ValueError(
            f"causal_loss: n_chunks must be a divisor of the number of points N = {n} "
            f"with 1 <= n_chunks <= N, got {n_chunks!r}"
        )
    order = jnp.argsort(times)
    sq = jnp.abs(residuals[order]) ** 2
    chunk_losses = jnp.mean(sq.reshape(n_chunks, -1), axis=1)
    w = causal_weights(chunk_losses, epsilon)
    loss = jnp.mean(w * chunk_losses)
    info = {"chunk_losses": chunk_losses, "causal_weights": w, "causal_min_weight": jnp.min(w)}
    return loss, info
