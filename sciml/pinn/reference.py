"""Offline reference solutions for the PINN benchmark problems.

Everything here is plain numpy in float64: a reference is computed once, outside `jit`,
and compared with a network on a grid. Two engines:

- `etdrk4`: Fourier pseudo-spectral space, exponential time differencing Runge–Kutta 4
  in time (Kassam & Trefethen 2005) for periodic problems û_t = L(k) û + N̂(û) with a
  diagonal linear part. The convenience solvers `allen_cahn_reference`, `kdv_reference`
  and `burgers_periodic_reference` wrap it.
- `burgers_cole_hopf`: the exact Cole–Hopf solution of viscous Burgers with
  u0 = -sin(πx) on [-1, 1] and u(±1, t) = 0, by Gauss–Hermite quadrature;
  `burgers_reference` tabulates it on a grid.

`interpolate_periodic` evaluates a periodic grid function between grid points by its
Fourier series.

References:
    Kassam & Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci.
    Comput. 26(4), 2005. Cox & Matthews, "Exponential time differencing for stiff
    systems", JCP 2002. Basdevant et al., "Spectral and finite difference solutions of
    the Burgers equation", Comput. Fluids 1986.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import roots_hermite

__all__ = [
    "MAX_HERMITE_NODES",
    "allen_cahn_reference",
    "burgers_cole_hopf",
    "burgers_periodic_reference",
    "burgers_reference",
    "etdrk4",
    "fourier_wavenumbers",
    "interpolate_periodic",
    "kdv_reference",
]

MAX_HERMITE_NODES = 1000
"""Largest Gauss–Hermite rule `burgers_cole_hopf` accepts. Beyond ~400 nodes the outer
weights underflow to 0 in float64 (they are dropped, which is harmless below this cap for
ν ≳ 1e-3); numpy's `hermgauss` would already return NaN weights there, so the nodes come
from `scipy.special.roots_hermite`."""

# Evaluation blocks are kept near this many float64 entries (about 32 MB per temporary).
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------- helpers


def _positive_float(name: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive real number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return out


def _int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _domain(domain) -> tuple[float, float]:
    try:
        x0, x1 = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise TypeError(f"domain must be a pair (x0, x1) of numbers, got {domain!r}") from None
    if not (math.isfinite(x0) and math.isfinite(x1) and x1 > x0):
        raise ValueError(f"domain must be (x0, x1) with finite x0 < x1, got {domain!r}")
    return x0, x1


def _times(save_times, t_final) -> np.ndarray:
    if t_final is not None:
        t_final = _positive_float("t_final", t_final)
    if save_times is None:
        if t_final is None:
            raise ValueError("give save_times, t_final, or both")
        return np.array([t_final])
    times = np.asarray(save_times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(
            f"save_times must be a non-empty 1-D sequence of times, got shape {times.shape}"
        )
    if not np.all(np.isfinite(times)):
        raise ValueError("save_times must be finite")
    if times[0] < 0:
        raise ValueError(f"save_times must be >= 0, got first time {times[0]}")
    if np.any(np.diff(times) <= 0):
        i = int(np.argmax(np.diff(times) <= 0))
        raise ValueError(
            f"save_times must be strictly increasing; save_times[{i}] = {times[i]} is "
            f"followed by {times[i + 1]}"
        )
    if t_final is not None and times[-1] > t_final:
        raise ValueError(f"save_times must lie in [0, t_final={t_final}], got {times[-1]}")
    return times


def _grid_function(name: str, u0, x: np.ndarray) -> np.ndarray:
    """Samples u0(x) of an initial condition given as a callable, checked."""
    values = np.asarray(u0(x))
    if values.shape != x.shape:
        raise ValueError(
            f"{name} must give one value per grid point, shape {x.shape}; got {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has non-finite values on the grid")
    return values.astype(np.float64)


def fourier_wavenumbers(n: int, length: float, *, real: bool = True) -> np.ndarray:
    """Angular wavenumbers k = 2π m / length in numpy's FFT ordering.

    Args:
        n: number of grid points.
        length: period of the domain.
        real: `True` for the `np.fft.rfft` ordering (m = 0 … n//2, shape `(n//2 + 1,)`),
            `False` for the `np.fft.fft` ordering (shape `(n,)`).

    Returns:
        float64 array of wavenumbers. For even n the Nyquist entry is +π n / length (rfft)
        or −π n / length (fft); zero it yourself when applying an odd derivative.

    Raises:
        ValueError/TypeError: n < 2 or non-positive length.
    """
    n = _int_at_least("n", n, 2)
    length = _positive_float("length", length)
    freqs = np.fft.rfftfreq(n) if real else np.fft.fftfreq(n)
    return 2 * np.pi * n * freqs / length


def _odd_wavenumbers(n: int, length: float) -> np.ndarray:
    """rfft wavenumbers with the Nyquist mode zeroed, for odd derivatives of real data."""
    k = fourier_wavenumbers(n, length)
    if n % 2 == 0:
        k[-1] = 0.0
    return k


# --------------------------------------------------------------------------- ETDRK4


def _etdrk4_coefficients(linear: np.ndarray, h: float, contour_points: int):
    """E, E/2, Q, f1, f2, f3 of Kassam & Trefethen for step h.

    The φ-functions are averaged over a full circle of radius 1 around each z = hL, which
    avoids the cancellation at small |z| and stays valid for complex L (KdV): the upper
    half circle plus a real part, as in the paper, is only right for real L.
    """
    z = h * linear.astype(np.complex128)
    roots = np.exp(2j * np.pi * (np.arange(contour_points) + 0.5) / contour_points)
    zeta = z[:, None] + roots[None, :]
    ez = np.exp(zeta)
    zeta3 = zeta**3
    q = h * np.mean((np.exp(zeta / 2) - 1) / zeta, axis=1)
    f1 = h * np.mean((-4 - zeta + ez * (4 - 3 * zeta + zeta**2)) / zeta3, axis=1)
    f2 = h * np.mean((2 + zeta + ez * (zeta - 2)) / zeta3, axis=1)
    f3 = h * np.mean((-4 - 3 * zeta - zeta**2 + ez * (4 - zeta)) / zeta3, axis=1)
    return np.exp(z), np.exp(z / 2), q, f1, f2, f3


def etdrk4(
    u0,
    *,
    length: float,
    linear: np.ndarray | Callable[[np.ndarray], np.ndarray],
    nonlinear: Callable[[np.ndarray], np.ndarray],
    dt: float,
    save_times: Sequence[float] | np.ndarray | None = None,
    t_final: float | None = None,
    contour_points: int = 64,
) -> np.ndarray:
    """Integrate û_t = L û + N̂(û) on a periodic domain with Fourier ETDRK4.

    The state is the vector of Fourier coefficients v̂ of u sampled on the n-point grid
    x_j = x0 + j·length/n, j = 0 … n−1 (x0 never enters). For a real `u0` the
    representation is `np.fft.rfft` (n//2 + 1 coefficients); for a complex `u0` it is
    `np.fft.fft` (n coefficients). One step of size h, with E = e^{hL}, E₂ = e^{hL/2}:

        a = E₂v + Q N̂(v),  b = E₂v + Q N̂(a),  c = E₂a + Q (2N̂(b) − N̂(v)),
        v ← E v + f₁ N̂(v) + 2 f₂ (N̂(a) + N̂(b)) + f₃ N̂(c),

    with Q, f₁, f₂, f₃ the φ-function combinations of Kassam & Trefethen evaluated by
    contour means (see `_etdrk4_coefficients`).

    Each interval between consecutive save times is split into ⌈Δ/dt⌉ equal steps, so
    every save time is hit exactly (coefficients are reused while the step size agrees
    to 1e-12 relative, as for a uniform time grid).

    Args:
        u0: `(n,)` initial samples, real or complex, n ≥ 2. Sampling aliases an IC that
            is not smooth (e.g. a derivative jump) into the resolved modes, an error that
            may never decay; pass the grid values of its Fourier projection instead (the
            convenience solvers below do).
        length: the period.
        linear: L for each Fourier coefficient, shape `(n//2 + 1,)` (real u0) or `(n,)`
            (complex u0), real or complex; or a callable mapping the wavenumbers
            `fourier_wavenumbers(n, length, real=...)` to that array. Example, Allen–Cahn:
            `lambda k: -1e-4 * k**2`.
        nonlinear: N̂(v̂) → array of v̂'s shape. For real problems write it as
            `lambda v: np.fft.rfft(f(np.fft.irfft(v, n)))`; dealias inside it if needed
            (2/3 rule for quadratic terms, 1/2 rule for cubic ones).
        dt: largest allowed step.
        save_times: strictly increasing times ≥ 0 at which to return the solution;
            t = 0 returns `u0` itself. Defaults to `(t_final,)`.
        t_final: optional end time; when given, every save time must lie in [0, t_final].
        contour_points: points on the contour for the φ-functions (32–64 is ample).

    Returns:
        `(len(save_times), n)` array: float64 for real `u0` (the inverse rfft), complex128
        otherwise.

    Raises:
        ValueError/TypeError: bad shapes, non-positive `length`/`dt`, save times that are
            negative, not increasing or beyond `t_final`, a `linear` or `nonlinear` of the
            wrong shape; `FloatingPointError` if the solution stops being finite (the step
            is too large for the explicit nonlinear part).

    Example:
        >>> n, ell = 256, 2.0
        >>> x = -1 + ell * np.arange(n) / n
        >>> k = fourier_wavenumbers(n, ell)
        >>> burgers = lambda v: -0.5j * k * np.fft.rfft(np.fft.irfft(v, n) ** 2)
        >>> u = etdrk4(-np.sin(np.pi * x), length=ell, linear=-0.1 * k**2,
        ...            nonlinear=burgers, dt=1e-3, save_times=[0.0, 0.5])
    """
    u0 = np.asarray(u0)
    if u0.ndim != 1 or u0.shape[0] < 2:
        raise ValueError(f"u0 must be a 1-D array of n >= 2 grid values, got shape {u0.shape}")
    if not np.issubdtype(u0.dtype, np.number) or np.issubdtype(u0.dtype, np.bool_):
        raise TypeError(f"u0 must hold real or complex numbers, got dtype {u0.dtype}")
    if not np.all(np.isfinite(u0)):
        raise ValueError("u0 has non-finite values")
    length = _positive_float("length", length)
    dt = _positive_float("dt", dt)
    contour_points = _int_at_least("contour_points", contour_points, 4)
    times = _times(save_times, t_final)
    real = not np.iscomplexobj(u0)
    n = u0.shape[0]
    u0 = u0.astype(np.float64 if real else np.complex128)
    forward = np.fft.rfft if real else np.fft.fft

    def backward(v):
        return np.fft.irfft(v, n) if real else np.fft.ifft(v)

    v = forward(u0)
    if callable(linear):
        linear = linear(fourier_wavenumbers(n, length, real=real))
    linear = np.asarray(linear)
    if linear.shape != v.shape:
        kind = "rfft (real u0)" if real else "fft (complex u0)"
        raise ValueError(
            f"linear must have shape {v.shape} (one value per {kind} coefficient of "
            f"n={n} points), got {linear.shape}"
        )
    if not np.all(np.isfinite(linear)):
        raise ValueError("linear has non-finite values")
    if np.max(np.real(linear)) * times[-1] > 700:
        raise ValueError(
            f"linear has Re L = {np.max(np.real(linear))} > 0; e^(L t) overflows by t = {times[-1]}"
        )
    probe = np.asarray(nonlinear(v))
    if probe.shape != v.shape:
        raise ValueError(
            f"nonlinear must return an array of the coefficients' shape {v.shape}, "
            f"got {probe.shape}"
        )

    out = np.empty((times.size, n), dtype=u0.dtype)
    t = 0.0
    coefficients = None
    h_cached = -1.0
    for i, target in enumerate(times):
        span = target - t
        if span > 0:
            n_steps = max(1, math.ceil(span / dt * (1 - 1e-12)))
            h = span / n_steps
            if abs(h - h_cached) > 1e-12 * h:
                coefficients = _etdrk4_coefficients(linear, h, contour_points)
                h_cached = h
            e, e2, q, f1, f2, f3 = coefficients
            try:
                # Overflow is how a too-large step shows itself: turn numpy's warning
                # into a FloatingPointError that says what to change.
                with np.errstate(over="raise", invalid="raise"):
                    for _ in range(n_steps):
                        nv = nonlinear(v)
                        a = e2 * v + q * nv
                        na = nonlinear(a)
                        b = e2 * v + q * na
                        nb = nonlinear(b)
                        c = e2 * a + q * (2 * nb - nv)
                        nc = nonlinear(c)
                        v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
                finite = bool(np.all(np.isfinite(v)))
            except FloatingPointError:
                finite = False
            if not finite:
                raise FloatingPointError(
                    f"ETDRK4 solution became non-finite between t = {t} and {target} with "
                    f"step {h:.3g}; reduce dt or increase the resolution"
                ) from None
            t = float(target)
            out[i] = backward(v)
        else:  # only possible for a first save time of 0
            out[i] = u0
    return out


# --------------------------------------------------------------------------- interpolation


def interpolate_periodic(u, x, *, length: float, x0: float = 0.0) -> np.ndarray:
    """Evaluate periodic grid data at arbitrary points by its trigonometric interpolant.

    Args:
        u: `(..., n)` samples on x_j = x0 + j·length/n (e.g. a reference `(n_t, n_x)`).
        x: points of any shape; taken modulo the period.
        length: the period.
        x0: the first grid point.

    Returns:
        `(..., *x.shape)` values (real if `u` is real). At the grid points they equal `u`
        to rounding; for an even n the Nyquist mode is split symmetrically (a cosine), so
        the interpolant of real data is real.

    Raises:
        ValueError/TypeError: `u` with fewer than 2 points on its last axis, non-finite
            values, or a non-positive length.
    """
    u = np.asarray(u)
    if u.ndim == 0 or u.shape[-1] < 2:
        raise ValueError(f"u must have n >= 2 grid values on its last axis, got {u.shape}")
    length = _positive_float("length", length)
    x = np.asarray(x, dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u)) and math.isfinite(x0)):
        raise ValueError("u, x and x0 must be finite")
    n = u.shape[-1]
    coeffs = np.fft.fft(u, axis=-1) / n
    k = fourier_wavenumbers(n, length, real=False)
    flat = (x.reshape(-1) - x0) % length
    out = np.empty(u.shape[:-1] + flat.shape, dtype=np.complex128)
    block = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, flat.size, block):
        xs = flat[start : start + block]
        basis = np.exp(1j * k[:, None] * xs[None, :])
        if n % 2 == 0:
            basis[n // 2] = np.cos(k[n // 2] * xs)
        out[..., start : start + block] = coeffs @ basis
    if not np.iscomplexobj(u):
        out = out.real
    return out.reshape(u.shape[:-1] + x.shape)


# --------------------------------------------------------------------------- periodic PDEs


def _periodic_reference(
    *,
    u0,
    domain,
    n_x: int,
    n_modes: int,
    t_final: float,
    n_t: int | None,
    save_times,
    dt: float,
    linear_of: Callable[[int, float], np.ndarray],
    nonlinear_of: Callable[[int, float], Callable[[np.ndarray], np.ndarray]],
):
    x0, x1 = _domain(domain)
    length = x1 - x0
    n_x = _int_at_least("n_x", n_x, 2)
    n_modes = _int_at_least("n_modes", n_modes, 4)
    t_final = _positive_float("t_final", t_final)
    if save_times is None:
        t = np.linspace(0.0, t_final, _int_at_least("n_t", 201 if n_t is None else n_t, 1))
    elif n_t is not None:
        raise ValueError("give n_t (a uniform time grid) or save_times, not both")
    else:
        t = _times(save_times, t_final)
    u_start = _projected_samples(u0, x0, length, n_modes)
    u = etdrk4(
        u_start,
        length=length,
        linear=linear_of(n_modes, length),
        nonlinear=nonlinear_of(n_modes, length),
        dt=dt,
        save_times=t,
        t_final=t_final,
    )
    x = x0 + length * np.arange(n_x) / n_x
    if n_modes % n_x == 0:
        u = u[:, :: n_modes // n_x]
    else:
        u = interpolate_periodic(u, x, length=length, x0=x0)
    if t[0] == 0.0:
        u[0] = _grid_function("u0", u0, x)  # the exact initial condition on the output grid
    return x, t, u


def _projected_samples(u0, x0: float, length: float, n: int) -> np.ndarray:
    """Grid values of the Fourier projection of u0 onto the n-point grid's modes.

    The coefficients come from an FFT on a much finer grid. Sampling u0 directly would
    alias its tail into the resolved modes: for the Allen–Cahn IC x² cos πx, whose
    derivative jumps at x = ±1, that left O(n⁻²) errors in the low modes that never decay
    (1e-6 relative at n = 2048 instead of 1e-8 with the projection).
    """
    if not callable(u0):
        raise TypeError(f"u0 must be a callable of the numpy grid x, got {type(u0).__name__}")
    n_fine = max(1 << 20, 64 * n)
    x_fine = x0 + length * np.arange(n_fine) / n_fine
    values = _grid_function("u0", u0, x_fine)
    ends = _grid_function("u0", u0, np.array([x0, x0 + length]))
    if abs(ends[1] - ends[0]) > 1e-8 * max(1.0, float(np.max(np.abs(values)))):
        raise ValueError(
            f"u0 must be periodic on the domain: u0({x0}) = {ends[0]} but "
            f"u0({x0 + length}) = {ends[1]}"
        )
    coeffs = np.fft.rfft(values)[: n // 2 + 1] * (n / n_fine)
    if n % 2 == 0:
        coeffs[-1] = 0.0  # the Nyquist mode of a projection is not a real grid function
    return np.fft.irfft(coeffs, n)


def _dealias_mask(n: int, fraction: float) -> np.ndarray:
    """rfft mask keeping the modes |m| < fraction · n/2."""
    m = np.arange(n // 2 + 1)
    return m < fraction * (n / 2)


def _quadratic_flux(n: int, length: float):
    """N̂(v) = −½ ik·FFT(u²) (the u u_x term), 2/3-rule dealiased."""
    ik = -0.5j * _odd_wavenumbers(n, length) * _dealias_mask(n, 2 / 3)

    def nonlinear(v):
        return ik * np.fft.rfft(np.fft.irfft(v, n) ** 2)

    return nonlinear


def allen_cahn_reference(
    *,
    n_x: int = 512,
    n_t: int | None = None,
    t_final: float = 1.0,
    save_times=None,
    epsilon: float = 1e-4,
    coeff: float = 5.0,
    domain: tuple[float, float] = (-1.0, 1.0),
    u0: Callable[[np.ndarray], np.ndarray] = lambda x: x**2 * np.cos(np.pi * x),
    n_modes: int = 4096,
    dt: float = 1e-3,
):
    """Periodic Allen–Cahn u_t = ε u_xx + c (u − u³) by Fourier ETDRK4.

    L = −εk², N̂ = FFT(c(u − u³)), 1/2-rule dealiasing for the cubic term.

    Args:
        n_x: output grid size; the grid is x_j = x0 + j·(x1 − x0)/n_x, j < n_x (periodic,
            right endpoint excluded: u(x1) = u(x0)).
        n_t: number of uniform output times on [0, t_final] (default 201).
        t_final: end time.
        save_times: instead of `n_t`, explicit increasing output times in [0, t_final].
        epsilon: the diffusion ε.
        coeff: the reaction coefficient c.
        domain: (x0, x1), the period is x1 − x0.
        u0: initial condition, a callable of x (numpy), must be periodic.
        n_modes: solver grid size (the output is subsampled when n_modes is a multiple of
            n_x, else Fourier-interpolated).
        dt: largest time step.

    Returns:
        `(x, t, u)` with shapes `(n_x,)`, `(n_t,)`, `(n_t, n_x)`, float64.

    The default IC's derivative jumps at x = ±1; the solver starts from its Fourier
    projection (see `_projected_samples`) and the t = 0 row is u0 itself.

    Accuracy at the defaults (measured against n_modes=16384, dt=5e-4): relative L2 error
    5e-11 over the (201, 512) grid, 3e-12 at t = 1, max |u| = 1; 1.4–2.4 s on 2 shared
    CPU cores. Time-step error is negligible (dt = 2e-3 changes nothing at 1e-11); the
    error is the early, kink-dominated frames.
    """
    epsilon = _positive_float("epsilon", epsilon)
    coeff = float(coeff)
    if not math.isfinite(coeff):
        raise ValueError(f"coeff must be finite, got {coeff}")

    def nonlinear_of(n, length):
        mask = _dealias_mask(n, 1 / 2)

        def nonlinear(v):
            u = np.fft.irfft(v, n)
            return mask * np.fft.rfft(coeff * (u - u**3))

        return nonlinear

    return _periodic_reference(
        u0=u0,
        domain=domain,
        n_x=n_x,
        n_modes=n_modes,
        t_final=t_final,
        n_t=n_t,
        save_times=save_times,
        dt=dt,
        linear_of=lambda n, length: -epsilon * fourier_wavenumbers(n, length) ** 2,
        nonlinear_of=nonlinear_of,
    )


def kdv_reference(
    *,
    n_x: int = 512,
    n_t: int | None = None,
    t_final: float = 1.0,
    save_times=None,
    delta: float = 0.022,
    domain: tuple[float, float] = (-1.0, 1.0),
    u0: Callable[[np.ndarray], np.ndarray] = lambda x: np.cos(np.pi * x),
    n_modes: int = 512,
    dt: float = 1e-4,
):
    """Periodic Korteweg–de Vries u_t + u u_x + δ² u_xxx = 0 by Fourier ETDRK4.

    L = iδ²k³ (complex: full-circle contour, complex coefficients), N̂ = −½ik·FFT(u²)
    with 2/3-rule dealiasing. The defaults are the Zabusky–Kruskal setting of the PINN
    literature (δ = 0.022, u0 = cos πx on [−1, 1)).

    Args:
        n_x, n_t, t_final, save_times, domain, u0, n_modes, dt: as for
            `allen_cahn_reference` (periodic x grid without the right endpoint).
        delta: the dispersion δ.

    Returns:
        `(x, t, u)` with shapes `(n_x,)`, `(n_t,)`, `(n_t, n_x)`, float64.

    Accuracy at the defaults (measured against n_modes=1024, dt=2.5e-5): relative L2 error
    1.6e-10 over the (201, 512) grid, 3.3e-10 at t = 1 (time-step error: ×16 per halving
    of dt); ∫u conserved to 1e-16, ∫u² to 2e-11 relative; 0.6–1.5 s on 2 shared CPU cores.
    """
    delta = _positive_float("delta", delta)

    def linear_of(n, length):
        return 1j * delta**2 * _odd_wavenumbers(n, length) ** 3

    return _periodic_reference(
        u0=u0,
        domain=domain,
        n_x=n_x,
        n_modes=n_modes,
        t_final=t_final,
        n_t=n_t,
        save_times=save_times,
        dt=dt,
        linear_of=linear_of,
        nonlinear_of=_quadratic_flux,
    )


def burgers_periodic_reference(
    nu: float = 0.01 / np.pi,
    *,
    n_x: int = 256,
    n_t: int | None = None,
    t_final: float = 1.0,
    save_times=None,
    domain: tuple[float, float] = (-1.0, 1.0),
    u0: Callable[[np.ndarray], np.ndarray] = lambda x: -np.sin(np.pi * x),
    n_modes: int = 2048,
    dt: float = 1e-4,
):
    """Periodic viscous Burgers u_t + u u_x = ν u_xx by Fourier ETDRK4.

    L = −νk², N̂ = −½ik·FFT(u²) with 2/3-rule dealiasing. With the default u0 = −sin πx
    on [−1, 1) the solution is odd and 2-periodic, so it vanishes at x = ±1 and equals
    the Dirichlet problem of `burgers_cole_hopf`.

    Args:
        nu: viscosity ν > 0. Small ν needs more modes: the shock width is ~ν.
        n_x, n_t, t_final, save_times, domain, u0, n_modes, dt: as for
            `allen_cahn_reference` (periodic x grid without the right endpoint).

    Returns:
        `(x, t, u)` with shapes `(n_x,)`, `(n_t,)`, `(n_t, n_x)`, float64.

    Accuracy at the defaults (ν = 0.01/π, against `burgers_cole_hopf`): relative L2 error
    2.1e-11 over the (201, 256) grid (largest near shock formation), 4e-13 at t = 1;
    n_modes=4096, dt=5e-5 gives 1.3e-13. 1–2.5 s on 2 shared CPU cores.
    """
    nu = _positive_float("nu", nu)
    return _periodic_reference(
        u0=u0,
        domain=domain,
        n_x=n_x,
        n_modes=n_modes,
        t_final=t_final,
        n_t=n_t,
        save_times=save_times,
        dt=dt,
        linear_of=lambda n, length: -nu * fourier_wavenumbers(n, length) ** 2,
        nonlinear_of=_quadratic_flux,
    )


# --------------------------------------------------------------------------- Cole–Hopf


def burgers_cole_hopf(x, t, nu: float = 0.01 / np.pi, n_nodes: int = 200) -> np.ndarray:
    """Exact viscous Burgers solution for u0 = −sin πx, by Cole–Hopf and Gauss–Hermite.

    Solves u_t + u u_x = ν u_xx on [−1, 1] with u(x, 0) = −sin πx and u(±1, t) = 0. With
    u = −2ν ∂_x log φ, φ_t = ν φ_xx, φ₀(y) = exp(−cos(πy)/(2πν)) and y = x − 2√(νt)·η,

        u(x, t) = −∫ sin(πy) φ₀(y) e^{−η²} dη / ∫ φ₀(y) e^{−η²} dη,

    evaluated by an `n_nodes`-point Gauss–Hermite rule. The largest exponent is
    subtracted before exponentiating (they reach ±1/(2πν) = ±50 at ν = 0.01/π). The IC is
    odd and 2-periodic, so this whole-line formula keeps u(±1, t) = 0 (to ~1e-16) and also
    gives the periodic extension for |x| > 1.

    Args:
        x, t: arrays broadcast against each other; t ≥ 0. At t = 0 the IC is returned.
        nu: viscosity ν > 0.
        n_nodes: Gauss–Hermite nodes, 2 … `MAX_HERMITE_NODES`.

    Returns:
        float64 array of the broadcast shape.

    Accuracy at ν = 0.01/π on a (101, 257) grid, t ∈ [0, 1]: 200 (default) and 100 nodes
    agree with 800 nodes to 5e-16 and 1.5e-15 relative L2 (50 nodes: 1e-8), and with a
    4096-mode ETDRK4 run to 1.3e-13 (the spectral run's own error).

    Raises:
        ValueError/TypeError: negative or non-finite t, non-finite x, ν ≤ 0, n_nodes out
            of range, shapes that do not broadcast.
    """
    nu = _positive_float("nu", nu)
    n_nodes = _int_at_least("n_nodes", n_nodes, 2)
    if n_nodes > MAX_HERMITE_NODES:
        raise ValueError(f"n_nodes must be <= MAX_HERMITE_NODES={MAX_HERMITE_NODES}, got {n_nodes}")
    try:
        x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
    except ValueError:
        raise ValueError(
            f"x and t must broadcast together, got shapes {np.shape(x)} and {np.shape(t)}"
        ) from None
    if not np.all(np.isfinite(x)):
        raise ValueError("x has non-finite values")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"t must be finite and >= 0, got min {np.min(t) if t.size else t}")
    eta, weights = roots_hermite(n_nodes)
    keep = weights > 0  # the outermost weights underflow to 0 beyond ~400 nodes
    eta, log_w = eta[keep], np.log(weights[keep])
    xf, tf = x.reshape(-1), t.reshape(-1)
    out = np.empty(xf.shape)
    block = max(1, _BLOCK_ENTRIES // eta.size)
    for start in range(0, xf.size, block):
        xs, ts = xf[start : start + block], tf[start : start + block]
        y = xs[:, None] - 2 * np.sqrt(nu * ts)[:, None] * eta[None, :]
        exponent = log_w - np.cos(np.pi * y) / (2 * np.pi * nu)
        exponent -= exponent.max(axis=1, keepdims=True)
        weight = np.exp(exponent)
        out[start : start + block] = -np.sum(np.sin(np.pi * y) * weight, axis=1) / np.sum(
            weight, axis=1
        )
    initial = tf == 0
    out[initial] = -np.sin(np.pi * xf[initial])
    return out.reshape(x.shape)


def burgers_reference(
    n_x: int = 256,
    n_t: int = 100,
    nu: float = 0.01 / np.pi,
    *,
    t_final: float = 1.0,
    n_nodes: int = 200,
):
    """Cole–Hopf Burgers reference (`burgers_cole_hopf`) on a uniform grid with walls.

    Args:
        n_x: points of x = linspace(−1, 1, n_x), both walls included (u = 0 there).
        n_t: points of t = linspace(0, t_final, n_t), t = 0 included.
        nu: viscosity ν > 0.
        t_final: end time.
        n_nodes: Gauss–Hermite nodes.

    Returns:
        `(x, t, u)` with shapes `(n_x,)`, `(n_t,)`, `(n_t, n_x)`, float64.

    Accuracy: as `burgers_cole_hopf` (< 1e-13 relative L2 at the defaults); 0.15–0.9 s.
    """
    n_x = _int_at_least("n_x", n_x, 2)
    n_t = _int_at_least("n_t", n_t, 1)
    t_final = _positive_float("t_final", t_final)
    x = np.linspace(-1.0, 1.0, n_x)
    t = np.linspace(0.0, t_final, n_t)
    return x, t, burgers_cole_hopf(x[None, :], t[:, None], nu=nu, n_nodes=n_nodes)
