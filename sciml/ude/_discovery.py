"""Equation discovery for universal differential equations: which terms is the network?

`discover_missing_terms` turns a trained UDE's network into a sparse
combination of library terms, judged against the data (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _bic(sse: np.ndarray, n_active: int, n_obs: int, floor: float) -> float:
    """N log(SSE/N) + k log N with one noise variance for all states.

    A per-state variance was tried and did worse (see the module docstring of
    `ude_lotka_volterra`). `floor`: below the solver's accuracy smaller errors
    mean nothing; without it, noise-free data would reward extra terms for
    fitting round-off.
    """
    total = float(np.sum(sse))
    if not np.isfinite(total):
        return np.inf
    return n_obs * np.log(max(total, floor) / n_obs) + n_active * np.log(n_obs)


def discover_missing_terms(
    ude: UDE | Sequence[UDE],
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

    For each UDE (one, or the members of an ensemble trained from different
    initialisations):

    1. **Proposals.** STLSQ of the network's output along the UDE's fitted
       trajectory on the library, over the threshold grid; each distinct
       support (set of active terms) is a candidate.
    2. **Refit to the data.** Each candidate's coefficients are refitted to
       the *observations* through the ODE solver (Levenberg-Marquardt from
       the STLSQ coefficients, the known part included). A support proposed
       by several members is refitted once.
    3. **The member's choice**: the candidate with the lowest Bayesian
       information criterion of its data refit, N log(SSE/N) + k log N
       (N observations = times x states, k active terms); or, with
       `selection="tol"`, the sparsest candidate whose SSE is at most
       (1 + selection_tol) times that member's UDE's.

    With several members the result is the support **most members chose**
    (ties: the lower BIC). One network's regression depends on where its
    optimisation happened to end; a majority over independently initialised
    fits does not hinge on one of them, and the size of the majority says
    how much to trust the result.

    Args:
        ude: the trained UDE, or a sequence of UDEs with the same known part
            (an ensemble). Each `net` is the missing term; the `known` part is
            kept as is in every candidate.
        u0, ts, data: the observations (data has shape (len(ts), n)).
        library: candidate terms.
        thresholds: STLSQ thresholds to sweep (each gives a candidate support).
        selection: `"bic"` (default) or `"tol"` (see above).
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
        rtol, atol: tolerances of every solve.
        n_dense: points along each fitted trajectory used for the regression.

    Returns:
        dict with
        `coefficients` (L, n) of the chosen model, `support` (L, n) bool,
        `sse` of the chosen model's data refit, `sse_ude` (the UDE's SSE;
        the members' mean for an ensemble),
        `agreement` (fraction of members that chose this support; 1.0 for
        one UDE), `member_supports` (each member's choice, None for a member
        whose solve failed), `bic_weight` (exp(-BIC/2) of the chosen support
        normalised over every refitted support: near 1 when no other
        candidate explains the data nearly as well), `runner_up` (None, or
        `support`, `coefficients` and `delta_bic` of the next best support
        by BIC), and `candidates` (list of (n_active, sse, support) of every
        refitted support, sparsest first).
    """
    if selection not in SELECTIONS:
        raise ValueError(
            f"discover_missing_terms: selection must be one of "
            f"{', '.join(map(repr, SELECTIONS))}, got {selection!r}"
        )
    members = list(ude) if isinstance(ude, (list, tuple)) else [ude]
    if not members:
        raise ValueError("discover_missing_terms: got an empty sequence of UDEs")
    ts = jnp.asarray(ts)
    data = jnp.asarray(data)
    u0 = jnp.asarray(u0)
    t_dense = jnp.linspace(ts[0], ts[-1], n_dense)
    if normalize_columns is None:
        normalize_columns = getattr(library, "degree", 0) > 2
    n_times, n_states = data.shape
    n_obs = n_times * n_states
    floor = float((10 * rtol) ** 2 * np.sum(np.asarray(data) ** 2))

    refits: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # support -> (coefs, SSE per state)
    shape = None
    choices: list[tuple | None] = []
    sse_udes = []
    for member in members:
        x_hat = _solve_ts(member, u0, t_dense, rtol, atol, throw=False)
        x_hat = x_hat[np.asarray(jnp.all(jnp.isfinite(x_hat), axis=1))]  # where the UDE reached
        sse_ude = float(jnp.sum((_solve_ts(member, u0, ts, rtol, atol, throw=False) - data) ** 2))
        if x_hat.shape[0] < 2 or not np.isfinite(sse_ude):
            choices.append(None)  # this member's fit failed: it gets no vote
            continue
        sse_udes.append(sse_ude)
        target = jax.vmap(member.net)(x_hat)
        theta = jax.vmap(library)(x_hat)
        # stlsq normalises columns to unit 2-norm: a threshold on unit-RMS
        # columns is sqrt(n_samples) times larger there
        scale = float(np.sqrt(theta.shape[0])) if normalize_columns else 1.0
        mine = []
        for thr in np.asarray(thresholds):
            coefs = stlsq(
                theta, target, float(thr) * scale, alpha=alpha, normalize_columns=normalize_columns
            )
            mask = np.asarray(coefs != 0)
            shape = mask.shape
            key = tuple(mask.ravel().tolist())
            if not mask.any() or key in mine:
                continue
            mine.append(key)
            if key in refits:
                continue
            c, sse = _refit(
                member.known, member.physical_params(), library, u0, ts, data, rtol, atol,
                coefs, jnp.asarray(mask, coefs.dtype),
            )
            c, sse = np.asarray(c), np.asarray(sse, dtype=float)
            if not (np.all(np.isfinite(c)) and np.all(np.isfinite(sse))):
                sse = np.full_like(sse, np.inf)
            refits[key] = (c, sse)
        if not mine:
            choices.append(None)
            continue
        if selection == "bic":
            choices.append(min(mine, key=lambda k: _bic(refits[k][1], sum(k), n_obs, floor)))
        else:
            ordered = sorted(mine, key=lambda k: (sum(k), float(refits[k][1].sum())))
            accepted = [k for k in ordered if refits[k][1].sum() <= (1 + selection_tol) * sse_ude]
            choices.append(accepted[0] if accepted else min(ordered, key=lambda k: refits[k][1].sum()))
    if not refits:
        raise RuntimeError(
            "discover_missing_terms: no candidate support: every threshold removed every term, "
            "or every UDE solve failed"
        )
    bic = {k: _bic(sse, sum(k), n_obs, floor) for k, (_, sse) in refits.items()}
    votes: dict[tuple, int] = {}
    for k in choices:
        if k is not None:
            votes[k] = votes.get(k, 0) + 1
    chosen = max(votes, key=lambda k: (votes[k], -bic[k]))
    keys = sorted(refits, key=lambda k: (sum(k), float(refits[k][1].sum())))
    values = np.array([bic[k] for k in keys])
    weights = np.zeros_like(values)
    finite = np.isfinite(values)
    if finite.any():
        weights[finite] = np.exp(-(values[finite] - values[finite].min()) / 2)
        weights /= weights.sum()
    others = sorted((k for k in keys if k != chosen and np.isfinite(bic[k])), key=bic.get)
    as_mask = lambda k: np.asarray(k).reshape(shape)  # noqa: E731
    runner = others[0] if others else None
    return {
        "coefficients": refits[chosen][0],
        "support": as_mask(chosen),
        "sse": float(refits[chosen][1].sum()),
        "sse_ude": float(np.mean(sse_udes)),
        "agreement": votes[chosen] / len(members),
        "member_supports": [None if k is None else as_mask(k) for k in choices],
        "bic_weight": float(weights[keys.index(chosen)]),
        "runner_up": None if runner is None else {
            "support": as_mask(runner),
            "coefficients": refits[runner][0],
            "delta_bic": float(bic[runner] - bic[chosen]),
        },
        "candidates": [(sum(k), float(refits[k][1].sum()), as_mask(k)) for k in keys],
    }
