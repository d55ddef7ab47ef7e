"""Sparse identification of nonlinear dynamics (SINDy) in JAX.

Given samples X (T, n) of a state and its time derivative Ẋ (T, n), SINDy
writes Ẋ ≈ Θ(X) Ξ with a library Θ of candidate functions (monomials, user
functions) evaluated row-wise, and finds a sparse coefficient matrix Ξ (L, n)
by sequentially thresholded least squares (STLSQ). Each nonzero Ξ[j, k] is
the term `feature_j` in the equation for target k.

Building blocks:

- libraries (`PolynomialLibrary`, `FunctionLibrary`, `ConcatLibrary`, in
  `_library.py`) act on ONE state x of shape (n_vars,); vmap them over samples;
- `stlsq` fits one threshold, `sindy_path` a grid of thresholds;
- `central_difference` estimates Ẋ from clean, finely sampled data;
- `format_equations` prints Ξ as `dx/dt = -10.000 x + 10.000 y`.

Reference: S. L. Brunton, J. L. Proctor, J. N. Kutz, "Discovering governing
equations from data by sparse identification of nonlinear dynamical
systems", PNAS 113(15):3932-3937, 2016. Defaults follow pysindy's `STLSQ`
(de Silva et al., JOSS 2020).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = [
    "stlsq",
    "SINDyPath",
    "sindy_path",
    "central_difference",
    "format_equations",
]


# ----------------------------------------------------------------------------
# STLSQ


def _masked_lstsq(theta, y, mask, alpha):
    """argmin_ξ ||y - Θ ξ||² + α ||ξ||² over ξ with ξ_j = 0 where `mask` is False.

    Fixed-shape form: the least-squares problem on the stacked matrix
    [Θ D; √α D + c (I - D)] with right-hand side [y; 0], D = diag(mask).
    Inactive columns of Θ are zero and their padding row forces ξ_j = 0, so
    the system stays full rank (c, the largest column norm, keeps those rows
    on the scale of Θ). Solved by SVD (`lstsq`) rather than the normal
    equations, which would square the condition number of Θ.
    """
    n_features = theta.shape[1]
    m = mask.astype(theta.dtype)
    scale = jnp.max(jnp.linalg.norm(theta, axis=0))
    scale = jnp.where(scale > 0, scale, 1.0)
    pad = jnp.diag(jnp.sqrt(alpha) * m + scale * (1 - m))
    a = jnp.concatenate([theta * m, pad], axis=0)
    b = jnp.concatenate([y, jnp.zeros((n_features,), theta.dtype)])
    rcond = jnp.finfo(theta.dtype).eps * n_features
    xi = jnp.linalg.lstsq(a, b, rcond=rcond)[0]
    return xi * m


def _stlsq_one(theta, y, threshold, alpha, max_iter, unbias):
    """STLSQ for one target column y (T,); returns ξ (L,)."""
    n_features = theta.shape[1]

    def cond(carry):
        k, _, _, changed = carry
        return (k < max_iter) & changed

    def body(carry):
        k, _, mask, _ = carry
        xi = _masked_lstsq(theta, y, mask, alpha)
        new_mask = mask & (jnp.abs(xi) >= threshold)
        xi = jnp.where(new_mask, xi, 0.0)
        return k + 1, xi, new_mask, jnp.any(new_mask != mask)

    init = (
        jnp.array(0),
        jnp.zeros((n_features,), theta.dtype),
        jnp.ones((n_features,), bool),
        jnp.array(True),
    )
    _, xi, mask, _ = jax.lax.while_loop(cond, body, init)
    if unbias:
        xi = _masked_lstsq(theta, y, mask, 0.0)
    return xi


@functools.partial(jax.jit, static_argnames=("max_iter", "normalize_columns", "unbias"))
def _stlsq(theta, y, threshold, alpha, max_iter, normalize_columns, unbias):
    """theta (T, L), y (T, n) -> Ξ (L, n)."""
    threshold = eqx.error_if(threshold, threshold < 0, "stlsq: threshold must be >= 0")
    if normalize_columns:
        norms = jnp.linalg.norm(theta, axis=0)
        norms = jnp.where(norms > 0, norms, 1.0)
        theta = theta / norms
    fit = jax.vmap(_stlsq_one, in_axes=(None, 1, None, None, None, None), out_axes=1)
    xi = fit(theta, y, threshold, alpha, max_iter, unbias)
    if normalize_columns:
        xi = xi / norms[:, None]
    return xi


def _check_regression(name, theta, y):
    theta_shape, y_shape = jnp.shape(theta), jnp.shape(y)
    if len(theta_shape) != 2:
        raise ValueError(f"{name}: theta must be 2-D (T, L), got shape {theta_shape}")
    if len(y_shape) not in (1, 2):
        raise ValueError(f"{name}: y must have shape (T,) or (T, n_targets), got {y_shape}")
    if y_shape[0] != theta_shape[0]:
        raise ValueError(
            f"{name}: theta and y need the same number of rows (samples), got theta "
            f"{theta_shape} and y {y_shape}"
        )
    dtype = jnp.result_type(theta, y, float)
    theta = jnp.asarray(theta, dtype)
    y = jnp.asarray(y, dtype)
    return theta, (y if y.ndim == 2 else y[:, None]), len(y_shape) == 1


def _check_nonnegative(name, what, value):
    # Only concrete values can be checked here; traced ones go through eqx.error_if.
    if not isinstance(value, jax.core.Tracer):
        v = np.asarray(value)
        if np.any(v < 0) or np.any(np.isnan(v)):
            raise ValueError(f"{name}: {what} must be >= 0, got {value!r}")


def stlsq(
    theta: Float[Array, "T L"],
    y: Float[Array, " T"] | Float[Array, "T n"],
    threshold: float,
    *,
    alpha: float = 0.05,
    max_iter: int = 20,
    normalize_columns: bool = False,
    unbias: bool = True,
) -> Float[Array, " L"] | Float[Array, "L n"]:
    """Sequentially thresholded least squares (Brunton, Proctor & Kutz 2016).

    For each target column y (independently, by vmap), starting with every
    library term active:

    1. ridge regression on the active columns a,
       ξ_a = argmin ||y - Θ_a ξ_a||² + α ||ξ_a||²;
    2. deactivate terms with |ξ_j| < `threshold` and set them to 0;
    3. repeat until the active set stops changing, at most `max_iter` times;
    4. with `unbias`, refit the survivors by ordinary least squares (α = 0),
       so the ridge shrinkage does not bias the reported coefficients.

    The active set is a boolean mask, so every iteration has fixed shapes and
    the loop is a `lax.while_loop`; the whole fit is jit-able and can be
    vmapped (e.g. over thresholds, see `sindy_path`).

    With `normalize_columns`, each column of Θ is scaled to unit 2-norm
    before fitting; `threshold` and `alpha` then apply to the coefficients of
    the normalized columns, and the result is mapped back to the raw columns.
    Use it when the library's columns differ greatly in scale.

    Args:
        theta: library matrix Θ(X), shape (T, L): T samples, L features.
        y: targets, shape (T,) or (T, n_targets), e.g. Ẋ.
        threshold: magnitude below which a coefficient is dropped (>= 0).
        alpha: ridge penalty of the thresholding iterations (>= 0).
        max_iter: maximum number of ridge-and-threshold iterations.
        normalize_columns: threshold the coefficients of unit-norm columns.
        unbias: refit the final active terms without the ridge penalty.

    Returns:
        Coefficients Ξ of shape (L, n_targets), or (L,) for a 1-D `y`; exact
        zeros mark dropped terms, so `Θ @ Ξ` predicts `y`.

    Example:
        >>> theta = jax.vmap(PolynomialLibrary(3, 2))(xs)
        >>> xi = stlsq(theta, central_difference(xs, dt), threshold=0.1)

    Defaults as pysindy's `STLSQ` (threshold 0.1, alpha 0.05, max_iter 20).
    """
    theta, y2, was_1d = _check_regression("stlsq", theta, y)
    _check_nonnegative("stlsq", "threshold", threshold)
    _check_nonnegative("stlsq", "alpha", alpha)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"stlsq: max_iter must be a positive int, got {max_iter!r}")
    xi = _stlsq(
        theta,
        y2,
        jnp.asarray(threshold, theta.dtype),
        jnp.asarray(alpha, theta.dtype),
        max_iter,
        bool(normalize_columns),
        bool(unbias),
    )
    return xi[:, 0] if was_1d else xi


class SINDyPath(NamedTuple):
    """STLSQ fits over a grid of thresholds (see `sindy_path`).

    Attributes:
        thresholds: the grid, shape (K,).
        coefficients: Ξ for each threshold, shape (K, L, n_targets).
        n_active: number of nonzero coefficients (all targets), shape (K,).
        mse: mean squared residual mean((Θ Ξ - y)²), shape (K,).
    """

    thresholds: Float[Array, " K"]
    coefficients: Float[Array, "K L n"]
    n_active: Int[Array, " K"]
    mse: Float[Array, " K"]


def sindy_path(
    theta: Float[Array, "T L"],
    y: Float[Array, " T"] | Float[Array, "T n"],
    thresholds,
    *,
    alpha: float = 0.05,
    max_iter: int = 20,
    normalize_columns: bool = False,
    unbias: bool = True,
) -> SINDyPath:
    """Fit `stlsq` for every threshold of a grid: the sparsity/error trade-off.

    Plot `mse` against `n_active` and pick the knee of this Pareto front
    (or minimise an information criterion such as AIC/BIC): the threshold
    that a single fit needs is rarely known in advance.

    Args:
        theta, y, alpha, max_iter, normalize_columns, unbias: as `stlsq`.
        thresholds: 1-D grid of thresholds (>= 0), e.g. `jnp.logspace(-3, 1, 20)`.

    Returns:
        A `SINDyPath`; `coefficients` always has a target axis, (K, L, n_targets).

    Example:
        >>> path = sindy_path(theta, xdot, jnp.logspace(-3, 1, 20))
        >>> for t, k, e in zip(path.thresholds, path.n_active, path.mse): print(t, k, e)
    """
    theta, y2, _ = _check_regression("sindy_path", theta, y)
    thresholds = jnp.asarray(thresholds, theta.dtype)
    if thresholds.ndim != 1:
        raise ValueError(f"sindy_path: thresholds must be 1-D, got shape {thresholds.shape}")
    _check_nonnegative("sindy_path", "thresholds", thresholds)
    _check_nonnegative("sindy_path", "alpha", alpha)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"sindy_path: max_iter must be a positive int, got {max_iter!r}")
    alpha = jnp.asarray(alpha, theta.dtype)

    def one(threshold):
        return _stlsq(theta, y2, threshold, alpha, max_iter, bool(normalize_columns), bool(unbias))

    coefs = jax.vmap(one)(thresholds)
    n_active = jnp.sum(coefs != 0, axis=(1, 2))
    mse = jnp.mean((jnp.einsum("tl,kln->ktn", theta, coefs) - y2) ** 2, axis=(1, 2))
    return SINDyPath(thresholds, coefs, n_active, mse)


# ----------------------------------------------------------------------------
# Derivatives and printing


def central_difference(x: Float[Array, "T ..."], dt: float) -> Float[Array, "T ..."]:
    """Time derivative of uniformly sampled data by 2nd-order finite differences.

    Interior: (x[i+1] - x[i-1]) / (2 dt). Ends, one-sided and also 2nd order:
    (-3 x[0] + 4 x[1] - x[2]) / (2 dt) and (3 x[-1] - 4 x[-2] + x[-3]) / (2 dt).
    The error is O(dt²) everywhere. Differentiating noisy data amplifies the
    noise by ~1/dt: smooth first, or fit without derivatives.

    Args:
        x: samples along axis 0, shape (T, ...) with T >= 3.
        dt: the sampling interval (> 0).

    Returns:
        dx/dt at every sample, the same shape as `x`.
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 3:
        raise ValueError(
            f"central_difference: need at least 3 samples along axis 0, got shape {x.shape}"
        )
    _check_nonnegative("central_difference", "dt", dt)
    if not isinstance(dt, jax.core.Tracer) and float(dt) == 0:
        raise ValueError("central_difference: dt must be > 0, got 0")
    interior = (x[2:] - x[:-2]) / (2 * dt)
    first = (-3 * x[0] + 4 * x[1] - x[2]) / (2 * dt)
    last = (3 * x[-1] - 4 * x[-2] + x[-3]) / (2 * dt)
    return jnp.concatenate([first[None], interior, last[None]], axis=0)


def format_equations(
    coefs,
    feature_names: Sequence[str],
    target_names: Sequence[str],
    precision: int = 3,
) -> list[str]:
    """Render coefficients as readable equations, one string per target.

    Zero coefficients are omitted, signs are folded into ` + ` / ` - `, the
    constant feature `"1"` prints as a bare number, and an equation without
    active terms reads `lhs = 0`.

    Args:
        coefs: Ξ of shape (L, n_targets) (or (L,) for one target).
        feature_names: L names, e.g. `library.feature_names(["x", "y", "z"])`.
        target_names: the left-hand sides, used verbatim, e.g. `["dx/dt", "dy/dt"]`.
        precision: digits after the decimal point.

    Returns:
        e.g. `["dx/dt = 1.300 x - 0.902 x y", "dy/dt = -1.800 y + 0.500 x y"]`.
    """
    coefs = np.asarray(coefs)
    if coefs.ndim == 1:
        coefs = coefs[:, None]
    if coefs.ndim != 2:
        raise ValueError(f"format_equations: coefs must be (L, n_targets), got {coefs.shape}")
    feature_names, target_names = list(feature_names), list(target_names)
    if len(feature_names) != coefs.shape[0] or len(target_names) != coefs.shape[1]:
        raise ValueError(
            f"format_equations: coefs of shape {coefs.shape} need {coefs.shape[0]} feature names "
            f"and {coefs.shape[1]} target names, got {len(feature_names)} and {len(target_names)}"
        )
    lines = []
    for k, lhs in enumerate(target_names):
        text = ""
        for c, name in zip(coefs[:, k], feature_names):
            if c == 0:
                continue
            number = f"{abs(float(c)):.{precision}f}"
            term = number if name == "1" else f"{number} {name}"
            if not text:
                text = f"-{term}" if c < 0 else term
            else:
                text += f" - {term}" if c < 0 else f" + {term}"
        lines.append(f"{lhs} = {text or '0'}")
    return lines
