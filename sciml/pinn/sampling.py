"""Collocation point sets and residual-based adaptive resampling with fixed shapes.

Adaptive rules take a candidate set `(N, d)` and the residuals there, and return a new
point set whose shape does not depend on the residual values, so they run inside a
jitted `advance` hook without recompiling:

- **RAD** (Wu et al. 2023), `rad_resample`: draw `n` candidates without replacement with
  probability `p(x) ∝ |r(x)|^k / mean(|r|^k) + c` (defaults `k = 1`, `c = 1`).
  `rad_mix` replaces a fixed fraction of the current set with RAD draws; `rad_add` is
  the growing variant (RAR-D: the set gains `m` RAD draws, a new shape per call).
- **RAR** (Lu et al. 2021), `rar_select`: the `m` candidates of largest `|r|`.
  `rar_add` appends them (a growing set: a new shape per call, for host loops), and
  `rar_replace` is the fixed-capacity form: the set is a protected base (`start`
  leading slots, never replaced) followed by a ring buffer; each call writes the top-`m`
  candidates over the `m` oldest ring slots and advances a cursor. Until the ring has
  been filled once this is exactly RAR "add" (the not yet written slots hold the
  initial points); afterwards the oldest added points are evicted first.
- `AdaptiveSampler` bundles a domain, the candidate count and a rule into
  `init(key) -> SamplerState` / `update(key, state, residual_fn) -> SamplerState` with
  an optional cadence (`every`), for a Problem's `advance` hook.

Draws without replacement use `jax.random.choice(..., replace=False, p=p)` (Gumbel
top-k): successive sampling, i.e. draw one point with probability `p`, remove it,
renormalise, repeat. For `n << N` the chance that a candidate is picked is close to
`n p_i`. Residuals must be finite: the rules do not check (a diverged run is caught by
the trainer's loss check), and non-finite residuals give arbitrary, though valid, picks.

Residuals may be `(N,)` or `(N, ...)` (several PDE components); the magnitude used is
the Euclidean norm over the trailing axes.

References: Lu et al., "DeepXDE: A deep learning library for solving differential
equations", SIAM Review 2021 (RAR); Wu et al., "A comprehensive study of non-adaptive
and residual-based adaptive sampling for physics-informed neural networks", CMAME 2023
(RAD, RAR-D; `lu-group/pinn-sampling`).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sciml.pinn.geometry import METHODS, AbstractDomain, SpaceTime

__all__ = [
    "RULES",
    "AdaptiveSampler",
    "SamplerState",
    "evaluate_residuals",
    "rad_add",
    "rad_mix",
    "rad_probabilities",
    "rad_resample",
    "rar_add",
    "rar_replace",
    "rar_select",
    "sample_points",
]

_PARTS = ("interior", "boundary", "initial")


def sample_points(
    domain: AbstractDomain,
    key: PRNGKeyArray,
    n: int,
    method: str = "uniform",
    *,
    part: str = "interior",
):
    """Sample `n` points of one part of `domain`.

    Args:
        domain: any domain of `sciml.pinn.geometry`.
        key: PRNG key (may be traced).
        n: static Python int >= 1.
        method: one of `geometry.METHODS`.
        part: `"interior"` -> `(n, dim)` points; `"boundary"` -> `(points, normals)`;
            `"initial"` (a `SpaceTime` only) -> `(n, dim)` points at `t = t0`.

    Raises:
        ValueError: unknown `part` (or the domain's own errors).
        TypeError: `part="initial"` on a domain without time.
    """
    if part == "interior":
        return domain.sample_interior(key, n, method)
    if part == "boundary":
        return domain.sample_boundary(key, n, method)
    if part == "initial":
        if not isinstance(domain, SpaceTime):
            raise TypeError(
                f"sample_points: part='initial' needs a SpaceTime domain, "
                f"got {type(domain).__name__}"
            )
        return domain.sample_initial(key, n, method)
    raise ValueError(f"sample_points: unknown part {part!r}; allowed: {', '.join(_PARTS)}")


# ---------------------------------------------------------------------------- checks


def _check_candidates(candidates, where: str) -> Array:
    candidates = jnp.asarray(candidates)
    if candidates.ndim != 2:
        raise ValueError(
            f"{where}: candidates must have shape (N, dim), got shape {candidates.shape}"
        )
    return candidates


def _magnitudes(residuals, n_candidates: int, where: str) -> Array:
    residuals = jnp.asarray(residuals)
    if residuals.ndim < 1 or residuals.shape[0] != n_candidates:
        raise ValueError(
            f"{where}: residuals must have shape ({n_candidates},) or ({n_candidates}, ...) "
            f"to match the candidates, got shape {residuals.shape}"
        )
    if residuals.ndim == 1:
        return jnp.abs(residuals)
    return jnp.sqrt(jnp.sum(jnp.abs(residuals.reshape(n_candidates, -1)) ** 2, axis=-1))


def _check_count(m, name: str, low: int, high: int, where: str) -> int:
    try:
        m = operator.index(m)
    except TypeError:
        raise TypeError(f"{where}: {name} must be a Python int, got {m!r}") from None
    if not low <= m <= high:
        raise ValueError(f"{where}: {name} must be in [{low}, {high}], got {m}")
    return m


def _check_nonnegative(value, name: str, where: str) -> None:
    if isinstance(value, numbers.Real) and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: {name} must be finite and >= 0, got {value}")


def _check_same_dim(points, candidates, where: str) -> Array:
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"{where}: points must have shape (n, {candidates.shape[1]}) like the "
            f"candidates, got shape {points.shape}"
        )
    return points


# ------------------------------------------------------------------------------- RAD


def rad_probabilities(
    residuals: Float[Array, "N ..."], *, k: float = 1.0, c: float = 1.0
) -> Float[Array, " N"]:
    """RAD selection probabilities `p_i ∝ |r_i|^k / mean_j |r_j|^k + c`, summing to 1.

    Args:
        residuals: `(N,)` or `(N, ...)` residuals (norm over trailing axes).
        k: exponent >= 0 (`k = 0` gives uniform probabilities).
        c: floor >= 0 added after normalising by the mean (`c -> inf`: uniform).

    Returns:
        `(N,)` probabilities. All-zero residuals (mean 0) give uniform probabilities.

    Raises:
        ValueError: negative or non-finite `k`/`c` (when given as Python numbers).
    """
    where = "rad_probabilities"
    _check_nonnegative(k, "k", where)
    _check_nonnegative(c, "c", where)
    residuals = jnp.asarray(residuals)
    if residuals.ndim < 1 or residuals.shape[0] < 1:
        raise ValueError(
            f"{where}: residuals must have shape (N, ...), N >= 1, got {residuals.shape}"
        )
    return _rad_p(_magnitudes(residuals, residuals.shape[0], where), k, c)


def _rad_p(magnitude: Array, k, c) -> Array:
    weight = magnitude**k
    mean = jnp.mean(weight)
    positive = mean > 0
    density = jnp.where(positive, weight / jnp.where(positive, mean, 1.0), 0.0) + c
    total = jnp.sum(density)
    uniform = jnp.full_like(density, 1.0 / density.shape[0])
    return jnp.where(total > 0, density / jnp.where(total > 0, total, 1.0), uniform)


def rad_resample(
    key: PRNGKeyArray,
    candidates: Float[Array, "N dim"],
    residuals: Float[Array, "N ..."],
    n: int,
    *,
    k: float = 1.0,
    c: float = 1.0,
) -> Float[Array, "n dim"]:
    """RAD: draw `n` of the candidates without replacement with `p ∝ |r|^k/mean|r|^k + c`.

    The output shape depends only on `n`, so new residual values never recompile.

    Args:
        key: PRNG key.
        candidates: `(N, dim)` points (typically fresh uniform samples of the domain).
        residuals: `(N,)` or `(N, ...)` residuals at the candidates.
        n: static int, `1 <= n <= N`.
        k, c: see `rad_probabilities` (Wu et al. default `k = c = 1`).

    Returns:
        `(n, dim)` distinct candidates (successive sampling; see the module docstring).

    Raises:
        ValueError: bad shapes, `n` outside `[1, N]`, negative `k`/`c`.
    """
    where = "rad_resample"
    candidates = _check_candidates(candidates, where)
    n_cand = candidates.shape[0]
    n = _check_count(n, "n", 1, n_cand, where)
    _check_nonnegative(k, "k", where)
    _check_nonnegative(c, "c", where)
    p = _rad_p(_magnitudes(residuals, n_cand, where), k, c)
    index = jax.random.choice(key, n_cand, (n,), replace=False, p=p)
    return candidates[index]


def rad_add(
    points: Float[Array, "n dim"],
    key: PRNGKeyArray,
    candidates: Float[Array, "N dim"],
    residuals: Float[Array, "N ..."],
    m: int,
    *,
    k: float = 1.0,
    c: float = 1.0,
) -> Float[Array, "n+m dim"]:
    """RAR-D: append `m` RAD draws to `points` (the set grows: a new shape per call).

    Returns `(n + m, dim)`: `points` followed by `rad_resample(key, candidates, residuals, m)`.
    """
    candidates = _check_candidates(candidates, "rad_add")
    points = _check_same_dim(points, candidates, "rad_add")
    new = rad_resample(key, candidates, residuals, m, k=k, c=c)
    return jnp.concatenate([points, new.astype(points.dtype)], axis=0)


def rad_mix(
    points: Float[Array, "n dim"],
    key: PRNGKeyArray,
    candidates: Float[Array, "N dim"],
    residuals: Float[Array, "N ..."],
    fraction: float,
    *,
    k: float = 1.0,
    c: float = 1.0,
) -> Float[Array, "n dim"]:
    """Replace `m = round(fraction * n)` randomly chosen slots of `points` with RAD draws.

    Fixed shape (partial RAD: keeps `n - m` old points, e.g. to keep a stable base while
    refreshing the rest). `fraction = 1` is `rad_resample(..., n)` up to ordering.

    Args:
        points: `(n, dim)` current set.
        key: PRNG key (split for the slots and the draws).
        candidates: `(N, dim)`, with `N >= m`.
        residuals: `(N,)` or `(N, ...)`.
        fraction: static float in `(0, 1]`; `m` is at least 1.
        k, c: see `rad_probabilities`.

    Returns:
        `(n, dim)`: unchanged rows except `m` rows replaced by distinct candidates.

    Raises:
        ValueError: bad shapes, `fraction` outside `(0, 1]`, `m > N`.
    """
    where = "rad_mix"
    candidates = _check_candidates(candidates, where)
    points = _check_same_dim(points, candidates, where)
    if not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
        raise ValueError(f"{where}: fraction must be a number in (0, 1], got {fraction!r}")
    n = points.shape[0]
    m = max(1, round(fraction * n))
    if m > candidates.shape[0]:
        raise ValueError(
            f"{where}: replacing {m} points needs at least {m} candidates, "
            f"got {candidates.shape[0]}"
        )
    key_slots, key_draw = jax.random.split(key)
    slots = jax.random.choice(key_slots, n, (m,), replace=False)
    new = rad_resample(key_draw, candidates, residuals, m, k=k, c=c)
    return points.at[slots].set(new.astype(points.dtype))


# ------------------------------------------------------------------------------- RAR


def rar_select(
    candidates: Float[Array, "N dim"], residuals: Float[Array, "N ..."], m: int
) -> Float[Array, "m dim"]:
    """The `m` candidates with the largest `|r|`, in decreasing order of `|r|`.

    Raises:
        ValueError: bad shapes or `m` outside `[1, N]`.
    """
    where = "rar_select"
    candidates = _check_candidates(candidates, where)
    n_cand = candidates.shape[0]
    m = _check_count(m, "m", 1, n_cand, where)
    magnitude = _magnitudes(residuals, n_cand, where)
    _, index = jax.lax.top_k(magnitude, m)
    return candidates[index]


def rar_add(
    points: Float[Array, "n dim"],
    candidates: Float[Array, "N dim"],
    residuals: Float[Array, "N ..."],
    m: int,
) -> Float[Array, "n+m dim"]:
    """RAR (Lu et al. 2021): append the `m` largest-`|r|` candidates to `points`.

    The set grows, so each call has a new shape; for fixed shapes use `rar_replace`.
    """
    candidates = _check_candidates(candidates, "rar_add")
    points = _check_same_dim(points, candidates, "rar_add")
    top = rar_select(candidates, residuals, m)
    return jnp.concatenate([points, top.astype(points.dtype)], axis=0)


def rar_replace(
    points: Float[Array, "n dim"],
    candidates: Float[Array, "N dim"],
    residuals: Float[Array, "N ..."],
    m: int,
    *,
    cursor: Int[Array, ""] | int = 0,
    start: int = 0,
) -> tuple[Float[Array, "n dim"], Int[Array, ""]]:
    """Fixed-capacity RAR: write the `m` largest-`|r|` candidates into a ring buffer.

    `points[:start]` is a protected base set; `points[start:]` is a ring of capacity
    `n - start`. The top-`m` candidates go to ring slots `start + (cursor + j) mod
    (n - start)`, `j = 0..m-1` (the `m` oldest writes), and the cursor advances by `m`.
    Start with the ring holding ordinary samples (e.g. uniform) and `cursor = 0`.

    Args:
        points: `(n, dim)` current set.
        candidates: `(N, dim)`; residuals `(N,)` or `(N, ...)`.
        m: static int, `1 <= m <= min(N, n - start)`.
        cursor: int scalar (may be traced): ring position of the next write.
        start: static int, `0 <= start < n`: number of protected leading slots.

    Returns:
        `(new_points, new_cursor)`: same shape as `points`; `new_cursor = (cursor + m)
        mod (n - start)` as an int32 scalar.

    Raises:
        ValueError: bad shapes, `start` outside `[0, n)`, `m` larger than the ring or
            the candidate set.
    """
    where = "rar_replace"
    candidates = _check_candidates(candidates, where)
    points = _check_same_dim(points, candidates, where)
    n = points.shape[0]
    start = _check_count(start, "start", 0, n - 1, where)
    capacity = n - start
    m = _check_count(m, "m", 1, min(capacity, candidates.shape[0]), where)
    top = rar_select(candidates, residuals, m)
    cursor = jnp.asarray(cursor, jnp.int32) % capacity
    slots = start + (cursor + jnp.arange(m, dtype=jnp.int32)) % capacity
    new_points = points.at[slots].set(top.astype(points.dtype))
    return new_points, (cursor + m) % capacity


# ------------------------------------------------------------------ adaptive helper


def evaluate_residuals(
    residual_fn: Callable[[Array], Array],
    candidates: Float[Array, "N dim"],
    *,
    batch_size: int | None = None,
) -> Float[Array, " N"]:
    """`|r(x)|` at every candidate: `residual_fn` takes ONE point `(dim,)`.

    Args:
        residual_fn: `x -> r(x)`, a scalar or an array (norm taken over its entries).
        candidates: `(N, dim)`.
        batch_size: `None` evaluates all candidates in one `vmap`; an int evaluates
            them in chunks of that size (`jax.lax.map`) to bound memory.

    Returns:
        `(N,)` non-negative magnitudes.
    """
    where = "evaluate_residuals"
    candidates = _check_candidates(candidates, where)
    if batch_size is None:
        r = jax.vmap(residual_fn)(candidates)
    else:
        batch_size = _check_count(batch_size, "batch_size", 1, candidates.shape[0], where)
        r = jax.lax.map(residual_fn, candidates, batch_size=batch_size)
    return _magnitudes(r, candidates.shape[0], where)


RULES = ("rad", "rad_mix", "rar")
"""Rules of `AdaptiveSampler`."""


class SamplerState(eqx.Module):
    """State of an `AdaptiveSampler`: the current points and two counters.

    Attributes:
        points: `(n_points, dim)` collocation points.
        cursor: int32 scalar, next ring slot of the `"rar"` rule (0 otherwise).
        step: int32 scalar, number of `update` calls so far.
    """

    points: Float[Array, "n dim"]
    cursor: Int[Array, ""]
    step: Int[Array, ""]


class AdaptiveSampler(eqx.Module):
    """Residual-based resampling of a fixed-size collocation set, for an `advance` hook.

    Each resampling draws `n_candidates` fresh points of `domain.sample_interior` with
    `candidate_method`, evaluates `|r|` there (`evaluate_residuals`) and applies `rule`:

    - `"rad"`: replace the whole set, `rad_resample(..., n_points, k=k, c=c)`;
    - `"rad_mix"`: replace `round(fraction * n_points)` random slots with RAD draws;
    - `"rar"`: `rar_replace` with `n_add` points per update and `n_fixed` protected
      slots (the initial base set).

    With `every > 1` the update resamples only when `step % every == 0` (otherwise the
    points are returned unchanged; `lax.cond` runs one branch), so calling `update` on
    each training step gives the reference cadence (e.g. `every=1000`).

    Attributes:
        domain: the domain (its interior is sampled).
        n_points: size of the collocation set.
        n_candidates: candidates per resampling (Wu et al. use ~100x the set for RAD).
        rule: one of `RULES`.
        k, c: RAD exponent and floor (defaults 1, 1).
        fraction: `"rad_mix"` share of the set replaced per update.
        n_add: `"rar"` points written per update (default: a tenth of the ring, >= 1).
        n_fixed: `"rar"` protected leading slots (default half the set).
        every: resample when `step % every == 0`.
        method: how `init` samples the initial set (one of `geometry.METHODS`).
        candidate_method: how candidates are sampled (default `"uniform"`).
        batch_size: chunk size for evaluating residuals (`None`: one vmap).

    Example:
        >>> sampler = AdaptiveSampler(domain, n_points=1000, n_candidates=10000)
        >>> state = sampler.init(key)
        >>> state = sampler.update(key2, state, lambda x: pde_residual(model, x))

    Raises:
        ValueError: unknown rule or method, non-positive sizes, `n_candidates <
            n_points` for `"rad"`, bad `fraction`, `n_add`/`n_fixed` out of range.
    """

    domain: AbstractDomain
    n_points: int = eqx.field(static=True)
    n_candidates: int = eqx.field(static=True)
    rule: str = eqx.field(static=True, default="rad")
    k: float = eqx.field(static=True, default=1.0)
    c: float = eqx.field(static=True, default=1.0)
    fraction: float = eqx.field(static=True, default=0.5)
    n_add: int | None = eqx.field(static=True, default=None)
    n_fixed: int | None = eqx.field(static=True, default=None)
    every: int = eqx.field(static=True, default=1)
    method: str = eqx.field(static=True, default="uniform")
    candidate_method: str = eqx.field(static=True, default="uniform")
    batch_size: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        where = "AdaptiveSampler"
        if not isinstance(self.domain, AbstractDomain):
            raise TypeError(f"{where}: domain must be a domain, got {type(self.domain).__name__}")
        if self.rule not in RULES:
            raise ValueError(f"{where}: unknown rule {self.rule!r}; allowed: {', '.join(RULES)}")
        for name in ("method", "candidate_method"):
            value = getattr(self, name)
            if value not in METHODS:
                raise ValueError(
                    f"{where}: unknown {name} {value!r}; allowed: {', '.join(METHODS)}"
                )
        _check_count(self.n_points, "n_points", 1, 2**31 - 1, where)
        _check_count(self.n_candidates, "n_candidates", 1, 2**31 - 1, where)
        _check_count(self.every, "every", 1, 2**31 - 1, where)
        _check_nonnegative(self.k, "k", where)
        _check_nonnegative(self.c, "c", where)
        if self.rule == "rad" and self.n_candidates < self.n_points:
            raise ValueError(
                f"{where}: rule 'rad' draws n_points={self.n_points} distinct candidates, "
                f"so n_candidates must be >= n_points, got {self.n_candidates}"
            )
        if self.rule == "rad_mix":
            if not isinstance(self.fraction, numbers.Real) or not 0 < self.fraction <= 1:
                raise ValueError(f"{where}: fraction must be in (0, 1], got {self.fraction!r}")
            if max(1, round(self.fraction * self.n_points)) > self.n_candidates:
                raise ValueError(
                    f"{where}: fraction={self.fraction} of n_points={self.n_points} exceeds "
                    f"n_candidates={self.n_candidates}"
                )
        if self.rule == "rar":
            fixed = self._fixed()
            _check_count(fixed, "n_fixed", 0, self.n_points - 1, where)
            limit = min(self.n_points - fixed, self.n_candidates)
            _check_count(self._added(), "n_add", 1, limit, where)

    def _fixed(self) -> int:
        return self.n_points // 2 if self.n_fixed is None else self.n_fixed

    def _added(self) -> int:
        if self.n_add is not None:
            return self.n_add
        return max(1, min((self.n_points - self._fixed()) // 10, self.n_candidates))

    def init(self, key: PRNGKeyArray) -> SamplerState:
        """Initial state: `n_points` interior points drawn with `method`, counters at 0."""
        points = self.domain.sample_interior(key, self.n_points, self.method)
        zero = jnp.zeros((), jnp.int32)
        return SamplerState(points=points, cursor=zero, step=zero)

    def resample(
        self, key: PRNGKeyArray, state: SamplerState, residual_fn: Callable[[Array], Array]
    ) -> SamplerState:
        """Apply the rule once, unconditionally (ignores `every`; `step` advances by 1)."""
        key_cand, key_rule = jax.random.split(key)
        candidates = self.domain.sample_interior(key_cand, self.n_candidates, self.candidate_method)
        r = evaluate_residuals(residual_fn, candidates, batch_size=self.batch_size)
        r = jax.lax.stop_gradient(r)
        points, cursor = state.points, state.cursor
        if self.rule == "rad":
            points = rad_resample(key_rule, candidates, r, self.n_points, k=self.k, c=self.c)
        elif self.rule == "rad_mix":
            points = rad_mix(points, key_rule, candidates, r, self.fraction, k=self.k, c=self.c)
        else:
            points, cursor = rar_replace(
                points, candidates, r, self._added(), cursor=cursor, start=self._fixed()
            )
        points = points.astype(state.points.dtype)
        return SamplerState(points=points, cursor=cursor, step=state.step + 1)

    def update(
        self, key: PRNGKeyArray, state: SamplerState, residual_fn: Callable[[Array], Array]
    ) -> SamplerState:
        """Resample if `state.step % every == 0`, else only advance `step`.

        Args:
            key: PRNG key (may be traced).
            state: from `init` or a previous `update`.
            residual_fn: `x -> r(x)` on ONE point `(dim,)` (close over the model).

        Returns:
            The new `SamplerState`, same shapes and dtypes as `state`.
        """
        if self.every == 1:
            return self.resample(key, state, residual_fn)

        def skip(state):
            return SamplerState(points=state.points, cursor=state.cursor, step=state.step + 1)

        return jax.lax.cond(
            state.step % self.every == 0,
            lambda s: self.resample(key, s, residual_fn),
            skip,
            state,
        )
