"""`AbstractPINN`: a PDE posed as residual terms on collocation points, as a trainable problem.

A concrete PINN problem says four things:

- `make_model(key)`: the trainable model (a network, maybe wrapped in a hard
  constraint, maybe with trainable physical parameters);
- `collocation(key)`: the initial point set of each loss term, `{name: (N_i, k)}`
  (a row is a point; data terms append the observed value to the row);
- `terms(model)`: one residual function per term, `{name: row -> residual}`
  acting on a single row (scalar or vector residual);
- `solution(model, x)`: the prediction `u(x)` at one point of the reference
  grid `ref_points`, compared with `ref_values` for `rel_l2`.

From these the base class builds the loss

    L = Σ_i w_i Σ_p c_ip |r_i(x_p)|²,   c_ip = 1/N_i  (or causal chunk weights),

the per-sample residuals `sqrt(2 w_i c_ip) r_i(x_p)` (so that
`L == ½ Σ r²`, which Gauss-Newton and ENGD use), the evaluation, figures,
and the `advance` hook that resamples the PDE points (RAD/RAR) and updates
adaptive term weights outside differentiation.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

import sciml.pinn.sampling as sampling
import sciml.pinn.weighting as weighting
from sciml.problems import AbstractProblem

__all__ = ["AbstractPINN", "PINNState"]

PDE = "pde"
"""Name of the interior residual term (the one resampling and causal weighting act on)."""


class PINNState(eqx.Module):
    """The non-trainable state of a PINN run (checkpointed with the model).

    Attributes:
        points: each loss term's collocation rows, `{name: (N_i, k)}`.
        weights: each loss term's weight, `{name: ()}` (fixed, or adapted by `advance`).
        step: number of `advance` calls so far (the resampling/weighting clock).
        causal: the causal weights of the PDE term's time chunks, `(M,)`
            (`(0,)` without causal weighting), set by `advance` from the
            current parameters, so the loss is an ordinary function of the
            parameters (its gradient is the finite-difference one, and a
            line search sees a fixed objective).
    """

    points: dict[str, Float[Array, "n k"]]
    weights: dict[str, Float[Array, ""]]
    step: Int[Array, ""]
    causal: Float[Array, " m"]


class AbstractPINN(AbstractProblem):
    """Interface of the PINN problems (see the module docstring).

    Class variables a concrete problem may set:

    - `time_dependent`: the last coordinate is time (enables causal weighting);
    - `grid_shape`: the reference grid's shape when it is a tensor grid of two
      axes (enables the heat-map figure);
    - `metric_names`: `rel_l2` first, then the problem's own.

    Settings read from `self.settings` when present: `weights` (a mapping
    term → fixed weight), `resample` (`ResampleSettings`), `weighting`
    (`WeightingSettings`), `causal` (`CausalSettings`).
    """

    default_dtype: ClassVar[str] = "float64"
    time_dependent: ClassVar[bool] = False
    grid_shape: ClassVar[tuple[int, ...] | None] = None

    @abc.abstractmethod
    def make_model(self, key) -> Any:
        """The trainable model for PRNG key `key`."""

    @abc.abstractmethod
    def collocation(self, key) -> dict[str, Array]:
        """The initial rows of every loss term, `{name: (N_i, k)}`."""

    @abc.abstractmethod
    def terms(self, model, key=None) -> dict[str, Callable[[Array], Array]]:
        """Per-row residual functions `{name: row -> r}` of `model` (same names as `collocation`).

        `key` is the step's PRNG key (for randomised derivative estimators;
        `None` outside training, e.g. in `evaluate`).
        """

    @abc.abstractmethod
    def solution(self, model, x: Array) -> Array:
        """The model's prediction `u(x)` at one point `x` (a scalar)."""

    @property
    @abc.abstractmethod
    def reference(self) -> tuple[Array, Array]:
        """`(points (M, d), values (M,))`: the reference solution `rel_l2` is measured against."""

    def candidates(self, key, n: int) -> Array:
        """`n` fresh candidate rows for the PDE term (for resampling). Override to resample."""
        raise NotImplementedError(f"{type(self).__name__} does not support resampling")

    def extra_metrics(self, model) -> dict[str, Any]:
        """Problem-specific evaluation numbers (e.g. a recovered parameter)."""
        return {}

    # -- the problem interface ------------------------------------------------

    def init(self, key):
        mkey, pkey = jax.random.split(key)
        model = self.make_model(mkey)
        points = {k: jnp.asarray(v) for k, v in self.collocation(pkey).items()}
        if self._causal_chunks:
            n = points[PDE].shape[0]
            if n % self._causal_chunks:
                raise ValueError(
                    f"{type(self).__name__}: causal.chunks={self._causal_chunks} must divide the "
                    f"number of PDE points ({n})"
                )
            points[PDE] = _sorted_by_time(points[PDE])
        fixed = dict(self._setting("weights") or {})
        unknown = sorted(set(fixed) - set(points))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: weights given for unknown term(s) {unknown}; "
                f"the terms are {sorted(points)}"
            )
        dtype = jnp.result_type(float)
        weights = {k: jnp.asarray(fixed.get(k, 1.0), dtype) for k in points}
        causal = jnp.ones((self._causal_chunks,), dtype)
        state = PINNState(points, weights, jnp.zeros((), jnp.int32), causal)
        if self._causal_chunks:
            causal = eqx.filter_jit(type(self)._causal_weights)(self, model, points)
            state = eqx.tree_at(lambda s: s.causal, state, causal)
        return model, state

    def residual_vectors(self, model, points: dict[str, Array], key=None) -> dict[str, Array]:
        """Every term's residuals on its rows, `{name: (N_i,) or (N_i, m)}`."""
        fns = self.terms(model, key)
        return {k: jax.vmap(fns[k])(points[k]) for k in points}

    def _coefficients(self, res: dict[str, Array], state: PINNState) -> dict[str, Array]:
        """The per-row coefficients `c_ip`: 1/N_i, or the PDE term's causal chunk weights / N."""
        coeffs = {k: jnp.full(r.shape[:1], 1.0 / r.shape[0], r.dtype) for k, r in res.items()}
        m = self._causal_chunks
        if m:
            # the PDE rows are kept sorted by time (init and resampling), so the
            # equal-count chunks of the causal loss are contiguous slices
            n = res[PDE].shape[0]
            coeffs[PDE] = jnp.repeat(state.causal.astype(res[PDE].dtype), n // m) / n
        return coeffs

    def _causal_weights(self, model, points) -> Array:
        """`w_k = exp(−ε Σ_{j<k} L_j)` from the chunk losses of the current model."""
        r = jax.vmap(self.terms(model)[PDE])(points[PDE])
        chunk_losses = _row_sq(r).reshape(self._causal_chunks, -1).mean(axis=1)
        return weighting.causal_weights(chunk_losses, self._setting("causal").epsilon)

    def _setting(self, name: str):
        """`self.settings.<name>`, or `None` for a problem without that setting (or settings)."""
        return getattr(getattr(self, "settings", None), name, None)

    @property
    def _causal_chunks(self) -> int:
        causal = self._setting("causal")
        return causal.chunks if causal is not None and self.time_dependent else 0

    def advance(self, model, state: PINNState, key):
        """Resample the PDE points, update adaptive and causal weights when due.

        Runs outside differentiation, once per step (see `docs/pinn.md`).
        All are off by default, and then the state only counts the step.
        """
        step = state.step + 1
        resample = self._setting("resample")
        if resample is not None and resample.method != "none":
            due = _due(step, resample.every, resample.until)
            points = jax.lax.cond(
                due,
                lambda: self._resampled(model, state.points, key, resample),
                lambda: state.points,
            )
            state = eqx.tree_at(lambda s: s.points, state, points)
        weighting = self._setting("weighting")
        if weighting is not None and weighting.method != "fixed":
            due = _due(step, weighting.every, weighting.until) | (state.step == 0)
            weights = jax.lax.cond(
                due,
                lambda: self._adapted_weights(model, state, weighting),
                lambda: state.weights,
            )
            state = eqx.tree_at(lambda s: s.weights, state, weights)
        if self._causal_chunks:
            causal = self._causal_weights(model, state.points)
            state = eqx.tree_at(lambda s: s.causal, state, causal)
        return eqx.tree_at(lambda s: s.step, state, step)

    def _resampled(self, model, points, key, cfg):
        old = points[PDE]
        cand = self.candidates(key, cfg.n_candidates).astype(old.dtype)
        fn = self.terms(model)[PDE]
        r = jnp.sqrt(_row_sq(jax.vmap(fn)(cand)))
        if cfg.method == "rad":
            new = sampling.rad_resample(
                jax.random.fold_in(key, 1), cand, r, old.shape[0], k=cfg.k, c=cfg.c
            )
        else:
            r_old = jnp.sqrt(_row_sq(jax.vmap(fn)(old)))
            m = max(1, int(round(cfg.fraction * old.shape[0])))
            # the m current points with the smallest residual make room for the m
            # candidates with the largest (a fixed-size RAR)
            smallest = jnp.argsort(r_old)[:m]
            new = old.at[smallest].set(sampling.rar_select(cand, r, m))
        if self._causal_chunks:
            new = _sorted_by_time(new)
        return {**points, PDE: new}

    def _adapted_weights(self, model, state, cfg):
        params, rest = eqx.partition(model, eqx.is_inexact_array)
        if cfg.method == "grad_norm":

            def term_losses(p):
                m = eqx.combine(p, rest)
                res = self.residual_vectors(m, state.points)
                coeffs = self._coefficients(res, state)
                return {k: jnp.sum(coeffs[k] * _row_sq(r)) for k, r in res.items()}

            target = weighting.grad_norm_weights(term_losses, params)
        else:

            def term_residuals(p):
                return self.residual_vectors(eqx.combine(p, rest), state.points)

            target = weighting.ntk_trace_weights(term_residuals, params)
        first = state.step == 0
        return {
            k: jnp.where(first, target[k], cfg.momentum * w + (1 - cfg.momentum) * target[k])
            for k, w in state.weights.items()
        }

    def loss(self, model, state: PINNState, key):
        res = self.residual_vectors(model, state.points, key)
        coeffs = self._coefficients(res, state)
        term_losses = {k: jnp.sum(coeffs[k] * _row_sq(r)) for k, r in res.items()}
        total = sum(state.weights[k] * term_losses[k] for k in res)
        metrics = {f"loss_{k}": v for k, v in term_losses.items()}
        if self._causal_chunks:
            metrics["causal_min_weight"] = jnp.min(state.causal)
        return total, (state, metrics)

    def per_sample(self, model, state: PINNState, key):
        res = self.residual_vectors(model, state.points, key)
        coeffs = self._coefficients(res, state)
        parts = []
        for k, r in res.items():
            scale = jnp.sqrt(2.0 * state.weights[k] * coeffs[k])
            parts.append((scale.reshape((-1,) + (1,) * (r.ndim - 1)) * r).reshape(-1))
        return {"residuals": jnp.concatenate(parts)}

    def evaluate(self, model, state: PINNState, key):
        points, values = self.reference
        pred = _predict(self, model, points)
        values = jnp.asarray(values, pred.dtype)
        rel = jnp.linalg.norm(pred - values) / jnp.linalg.norm(values)
        res = _residuals(self, model, state.points)
        out: dict[str, Any] = {"rel_l2": float(rel)}
        out["max_abs_error"] = float(jnp.max(jnp.abs(pred - values)))
        for k, r in res.items():
            out[f"loss_{k}"] = float(jnp.mean(_row_sq(r)))
        out.update(self.extra_metrics(model))
        out["precision"] = str(jnp.result_type(pred))
        return out

    def figures(self, model, state: PINNState, outdir):
        if self.grid_shape is None:
            return []
        from matplotlib.figure import Figure

        points, values = self.reference
        pred = np.asarray(_predict(self, model, points)).reshape(self.grid_shape)
        ref = np.asarray(values).reshape(self.grid_shape)
        pts = np.asarray(points).reshape(*self.grid_shape, -1)
        a, b = pts[..., 0], pts[..., 1]
        fig = Figure(figsize=(15, 4))
        axes = fig.subplots(1, 3)
        for ax, field, title in zip(
            axes, (pred, ref, np.abs(pred - ref)), ("prediction", "reference", "|error|")
        ):
            im = ax.pcolormesh(b, a, field, shading="auto", cmap="viridis" if title != "|error|" else "magma")
            fig.colorbar(im, ax=ax)
            ax.set_title(title)
        if PDE in state.points:
            p = np.asarray(state.points[PDE])
            axes[2].plot(p[:, 1], p[:, 0], "w.", ms=1, alpha=0.4)
        for ax in axes:
            ax.set_xlabel("t" if self.time_dependent else "x2")
            ax.set_ylabel("x" if self.time_dependent else "x1")
        fig.tight_layout()
        path = Path(outdir) / "solution.png"
        fig.savefig(path, dpi=90)
        return [str(path)]


def _due(step, every: int, until: int | None):
    due = step % every == 0
    return due if until is None else due & (step < until)


def _row_sq(r: Array) -> Array:
    """|r_p|² per row (vector residuals summed over components)."""
    return r**2 if r.ndim == 1 else jnp.sum(r**2, axis=tuple(range(1, r.ndim)))


def _sorted_by_time(points: Array) -> Array:
    return points[jnp.argsort(points[:, -1])]


@eqx.filter_jit
def _residuals(problem, model, points):
    return problem.residual_vectors(model, points)


@eqx.filter_jit
def _predict(problem, model, points):
    return jax.vmap(lambda x: problem.solution(model, x))(points)
