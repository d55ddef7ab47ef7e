"""Equation discovery for universal differential equations: which terms is the network?

`discover_missing_terms` turns a trained UDE's network into a sparse
combination of library terms, judged against the data (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sciml.ude._estimation import levenberg_marquardt
from sciml.ude._fields import UDE
from sciml.ude._library import AbstractLibrary, PolynomialLibrary
from sciml.ude._sindy import stlsq
from sciml.ude._solve import solve

__all__ = ["discover_missing_terms"]

_MAX_STEPS = 10_000
SELECTIONS = ("bic", "tol")
_SELECTIONS = SELECTIONS


def _solve_ts(field, u0, ts, rtol, atol, **kw):
    return _solution(field, u0, ts, rtol, atol, **kw).ys


def _solution(field, u0, ts, rtol, atol, **kw):
    return solve(
        field,
        u0,
        ts,
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=_MAX_STEPS,
        **kw,
    )


class _Candidate(eqx.Module):
    """Known physics plus a sparse library term `library(u) @ coefs` (coefs in args)."""

    known: Callable = eqx.field(static=True)
    known_params: Any
    library: AbstractLibrary

    def __call__(self, t, u, coefs):
        return self.known(t, u, self.known_params) + self.library(u) @ coefs


@eqx.filter_jit
def _refit(known, known_params, library, u0, ts, data, rtol, atol, coefs, mask):
    """Levenberg-Marquardt refit of the active coefficients to the data, and its SSE.

    Module level and filter-jitted, so repeated discoveries (every evaluate,
    every candidate support) reuse one compiled program.
    """
    field = _Candidate(known, known_params, library)

    def simulate(c):
        # a candidate that blows up is rejected (infinite error), not an error
        return _solve_ts(field, u0, ts, rtol, atol, args=c, adjoint=dfx.ForwardMode(), throw=False)

    def residual(c, _):
        return (simulate(c * mask) - data).ravel()

    out = levenberg_marquardt(residual, coefs, max_steps=200, throw=False)
    c = out.params * mask
    return c, jnp.sum((simulate(c) - data) ** 2, axis=0)


def discover_missing_terms(
    ude: UDE,
    u0,
    ts,
    data,
    *,
    library: PolynomialLibrary,
    thresholds,
    selection: str = "bic",
    selection_tol: float = 0.1,
    normalize_columns: bool | None = None,
    alpha: float = 0.05,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    n_dense: int = 301,
):
    """Sparse regression of a UDE's network term, with model selection against data.

    Args:
        ude: the trained UDE (its `net` is the missing term, its `known` part
            is kept as is in every candidate).
        u0, ts, data: the observations (data has shape (len(ts), n)).
        library: candidate terms.
        thresholds: STLSQ thresholds to sweep (each gives a candidate support).
        selection: how to choose among the refitted candidates: `"bic"`
            (default) minimises the Bayesian information criterion of the
            data refit, N log(SSE/N) + k log N, with N observations (times
            x states) and k active terms; `"tol"` takes the sparsest
            candidate whose data SSE is at most (1 + selection_tol) times
            the UDE's.
        selection_tol: see `selection="tol"`.
        normalize_columns: threshold the coefficients of library columns
            scaled to unit RMS over the trajectory (so `thresholds` keep their
            meaning for O(1) features); `None` (default) turns it on when the
            library has monomials above degree 2, whose columns differ
            greatly in scale.
        alpha: ridge penalty of STLSQ's thresholding iterations (pysindy's
            default 0.05). Along one orbit the columns of a library above
            degree 2 are nearly collinear (condition number ~3e5 at degree
            3): the ridge then spreads an exact network's fit over collinear
            terms (`alpha=0` recovers it exactly), but for a network trained
            on noisy data the ridge is what keeps the path sparse.
        n_dense: points along the fitted trajectory used for the regression.

    Returns:
        dict with `coefficients` (L, n) of the chosen model, `support`,
        `sse` of the chosen model, `sse_ude`, and `candidates` (list of
        (n_active, sse, support) for every distinct support, sse summed
        over states).
    """
    if selection not in _SELECTIONS:
        raise ValueError(
            f"discover_missing_terms: selection must be one of "
            f"{', '.join(map(repr, _SELECTIONS))}, got {selection!r}"
        )
    ts = jnp.asarray(ts)
    t_dense = jnp.linspace(ts[0], ts[-1], n_dense)
    x_hat = _solve_ts(ude, u0, t_dense, rtol, atol, throw=False)
    x_hat = x_hat[np.asarray(jnp.all(jnp.isfinite(x_hat), axis=1))]  # where the UDE reached
    target = jax.vmap(ude.net)(x_hat)
    theta = jax.vmap(library)(x_hat)
    sse_ude = float(jnp.sum((_solve_ts(ude, u0, ts, rtol, atol, throw=False) - data) ** 2))
    known_params = ude.physical_params()

    data = jnp.asarray(data)
    u0 = jnp.asarray(u0)

    seen: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # support -> (coefs, SSE per state)
    if normalize_columns is None:
        normalize_columns = getattr(library, "degree", 0) > 2
    # stlsq normalises columns to unit 2-norm: a threshold on unit-RMS columns
    # is sqrt(n_samples) times larger there.
    scale = float(np.sqrt(theta.shape[0])) if normalize_columns else 1.0
    for thr in np.asarray(thresholds):
        coefs = stlsq(
            theta, target, float(thr) * scale, alpha=alpha, normalize_columns=normalize_columns
        )
        mask = np.asarray(coefs != 0)
        key = tuple(mask.ravel().tolist())
        if key in seen or not mask.any():
            continue
        c, sse = _refit(
            ude.known, known_params, library, u0, ts, data, rtol, atol, coefs,
            jnp.asarray(mask, coefs.dtype),
        )
        c, sse = np.asarray(c), np.asarray(sse, dtype=float)
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(sse))):
            sse = np.full_like(sse, np.inf)
        seen[key] = (c, sse)
    if not seen:
        raise RuntimeError("discover_missing_terms: every threshold removed every term")
    candidates = sorted(
        ((int(sum(k)), sse, c, k) for k, (c, sse) in seen.items()),
        key=lambda r: (r[0], float(r[1].sum())),
    )
    n_times, n_states = data.shape
    n_obs = n_times * n_states
    # Below the solver's accuracy, smaller errors mean nothing: without this
    # floor, noise-free data would reward extra terms for fitting round-off.
    floor = (10 * rtol) ** 2 * np.asarray(jnp.sum(data**2, axis=0))  # per state

    def bic(n_active, sse):
        # one noise variance for all states; a per-state variance was tried
        # and did worse (see the module docstring)
        fit = n_obs * np.log(max(float(sse.sum()), float(floor.sum())) / n_obs)
        return fit + n_active * np.log(n_obs)

    if selection == "bic":
        best = min(candidates, key=lambda r: bic(r[0], r[1]))
    else:
        accepted = [r for r in candidates if r[1].sum() <= (1 + selection_tol) * sse_ude]
        best = accepted[0] if accepted else min(candidates, key=lambda r: r[1].sum())
    return {
        "coefficients": best[2],
        "support": np.asarray(best[3]).reshape(best[2].shape),
        "sse": float(best[1].sum()),
        "sse_ude": sse_ude,
        "candidates": [
            (n, float(s.sum()), np.asarray(k).reshape(best[2].shape)) for n, s, _, k in candidates
        ],
    }
