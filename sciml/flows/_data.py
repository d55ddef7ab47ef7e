"""Datasets and target densities of the flow problems, generated here (nothing downloads).

Every dataset comes with its exact log-density where one exists, so that a
flow's test NLL can be compared with the best any model can do (the
oracle: the entropy of the data distribution, estimated on the same test
points).

- `two_moons`: scikit-learn's `make_moons` (two half circles, Gaussian noise).
  For many points the curve parameter is uniform on each arc, so the density
  is `½ Σ_arcs (1/π) ∫₀^π N(x; c_arc(θ), σ²I) dθ` (`two_moons_log_density`,
  Gauss-Legendre quadrature in θ); conditioned on the arc (the label) it is
  the single-arc integral.
- `checkerboard`, `eight_gaussians`: the 2-D generators of FFJORD
  (Grathwohl et al. 2019): uniform on 8 unit-area squares scaled by 2 (density
  1/32, entropy log 32); 8 Gaussians with std 0.5/√2 at radius 4/√2.
- `digits`: scikit-learn's bundled 8x8 `load_digits` (values 0..16),
  dequantised `(x + u) / 17` with `u ~ U(0,1)`, split 80/20 with a seed.
- 2-D energies for variational inference: `banana_log_density` (a sheared
  Gaussian with a closed-form normaliser) and `ring_log_density` (Rezende &
  Mohamed 2015's U1, normaliser by quadrature: `ring_log_normaliser`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

__all__ = [
    "BANANA_LOG_Z",
    "banana_log_density",
    "checkerboard",
    "checkerboard_log_density",
    "digits",
    "eight_gaussians",
    "eight_gaussians_log_density",
    "ring_log_density",
    "ring_log_normaliser",
    "two_moons",
    "two_moons_log_density",
]


def _check_n(name, n):
    if int(n) != n or n < 1:
        raise ValueError(f"{name}: n must be a positive integer, got {n!r}")
    return int(n)


def two_moons(n: int, *, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """`n` points of scikit-learn's `make_moons(noise=noise)` and their arc labels (0 or 1).

    Returns `(x, labels)`: float64 `(n, 2)` and int32 `(n,)`.
    """
    from sklearn.datasets import make_moons

    n = _check_n("two_moons", n)
    if not noise > 0:
        raise ValueError(f"two_moons: noise must be > 0, got {noise}")
    x, y = make_moons(n_samples=n, noise=noise, random_state=int(seed))
    return x.astype(np.float64), y.astype(np.int32)


def _arc_centres(theta):
    outer = np.stack([np.cos(theta), np.sin(theta)], -1)
    inner = np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], -1)
    return outer, inner


def two_moons_log_density(
    x: np.ndarray, *, noise: float = 0.1, label: np.ndarray | None = None, nodes: int = 400
) -> np.ndarray:
    """Exact log-density of the two-moons distribution at points `x` (n, 2), float64.

    With `label` (n,) it is the density conditioned on the arc (0: outer, 1:
    inner). The θ-integral uses `nodes` Gauss-Legendre nodes (400 gives 1e-12
    relative accuracy at noise 0.1).
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"two_moons_log_density: x must have shape (n, 2), got {x.shape}")
    u, w = np.polynomial.legendre.leggauss(nodes)
    theta, w = (u + 1) * np.pi / 2, w / 2  # mean over θ in [0, π]: Σ w = 1
    logs = []
    for centres in _arc_centres(theta):
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        log_k = -d2 / (2 * noise**2) - np.log(2 * np.pi * noise**2)
        m = log_k.max(1, keepdims=True)
        logs.append(m[:, 0] + np.log((np.exp(log_k - m) * w).sum(1)))
    arcs = np.stack(logs, -1)  # (n, 2): log p(x | arc)
    if label is not None:
        label = np.asarray(label)
        if label.shape != (x.shape[0],) or not np.isin(label, (0, 1)).all():
            raise ValueError("two_moons_log_density: label must be (n,) with values 0 or 1")
        return arcs[np.arange(x.shape[0]), label]
    return np.logaddexp(arcs[:, 0], arcs[:, 1]) - np.log(2)


def checkerboard(n: int, *, seed: int) -> np.ndarray:
    """`n` points uniform on FFJORD's checkerboard: 8 squares of side 2 in [−4, 4]², float64."""
    n = _check_n("checkerboard", n)
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], -1)


def checkerboard_log_density(x: np.ndarray) -> np.ndarray:
    """log(1/32) on the checkerboard's squares, −inf elsewhere (n, 2) -> (n,)."""
    x = np.asarray(x, np.float64) / 2
    inside = (np.abs(x[:, 0]) <= 2) & (np.abs(x[:, 1]) <= 2)
    # square (i, j) of side 1 is filled when floor(x1) + floor(x2) is even
    filled = (np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0
    return np.where(inside & filled, -np.log(32.0), -np.inf)


_EIGHT_SCALE = 4.0 / math.sqrt(2.0)
_EIGHT_STD = 0.5 / math.sqrt(2.0)


def _eight_centres():
    angles = np.arange(8) * np.pi / 4
    return _EIGHT_SCALE * np.stack([np.cos(angles), np.sin(angles)], -1)


def eight_gaussians(n: int, *, seed: int) -> np.ndarray:
    """`n` points of FFJORD's 8 Gaussians (equal weights, std 0.5/√2, radius 4/√2), float64."""
    n = _check_n("eight_gaussians", n)
    rng = np.random.default_rng(seed)
    centres = _eight_centres()[rng.integers(0, 8, n)]
    return centres + _EIGHT_STD * rng.standard_normal((n, 2))


def eight_gaussians_log_density(x: np.ndarray) -> np.ndarray:
    """Exact log-density of `eight_gaussians` at `x` (n, 2)."""
    x = np.asarray(x, np.float64)
    d2 = ((x[:, None, :] - _eight_centres()[None]) ** 2).sum(-1)
    log_k = -d2 / (2 * _EIGHT_STD**2) - np.log(2 * np.pi * _EIGHT_STD**2) - np.log(8)
    m = log_k.max(1, keepdims=True)
    return m[:, 0] + np.log(np.exp(log_k - m).sum(1))


def digits(*, seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `load_digits`, dequantised `(x + U(0,1)) / 17`, split into train and test.

    The dequantisation noise (numpy `default_rng(seed)`, drawn for the whole
    set in its original order) and the split (`train_test_split(...,
    random_state=seed)`) both come from `seed`; with seed 0 a full-covariance
    Gaussian fitted to the training set scores −49.33 nats per test image. Returns `(train, test)`, float64 `(n, 64)` in (0, 1).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"digits: test_fraction must be in (0, 1), got {test_fraction}")
    x = load_digits().data.astype(np.float64)
    x = (x + np.random.default_rng(seed).uniform(0, 1, x.shape)) / 17.0
    train, test = train_test_split(x, test_size=test_fraction, random_state=int(seed))
    return train, test


BANANA_LOG_Z = math.log(2 * math.pi * 2.0 * 0.5)
"""log of the normaliser of `banana_log_density`: a sheared N(0, diag(2², 0.5²))."""


def banana_log_density(x):
    """Unnormalised log-density of a banana: `x₁ ~ N(0, 2²)`, `x₂ | x₁ ~ N(x₁²/4 − 1, 0.5²)`.

    Works on one point (2,) with numpy or jax arrays; the shear has unit
    Jacobian, so the normaliser is `BANANA_LOG_Z` exactly.
    """
    x1, x2 = x[..., 0], x[..., 1]
    return -0.5 * (x1 / 2.0) ** 2 - 0.5 * ((x2 - x1**2 / 4.0 + 1.0) / 0.5) ** 2


def ring_log_density(x):
    """Unnormalised log-density of Rezende & Mohamed's U1 ring (one point (2,), numpy or jax).

    `log p̃ = −½((‖x‖ − 2)/0.4)² + log(exp(−½((x₁−2)/0.6)²) + exp(−½((x₁+2)/0.6)²))`.
    """
    xp = np if isinstance(x, np.ndarray) else jnp
    r = xp.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2)
    a = -0.5 * ((x[..., 0] - 2) / 0.6) ** 2
    b = -0.5 * ((x[..., 0] + 2) / 0.6) ** 2
    return -0.5 * ((r - 2) / 0.4) ** 2 + xp.logaddexp(a, b)


def ring_log_normaliser(grid: int = 2001, half_width: float = 5.0) -> float:
    """log ∫ exp(ring_log_density) on a `grid`² midpoint grid over [−w, w]² (mass outside < 1e-12)."""
    h = 2 * half_width / grid
    c = -half_width + h * (np.arange(grid) + 0.5)
    xx, yy = np.meshgrid(c, c, indexing="ij")
    lp = ring_log_density(np.stack([xx, yy], -1))
    m = lp.max()
    return float(m + np.log(np.exp(lp - m).sum() * h * h))
