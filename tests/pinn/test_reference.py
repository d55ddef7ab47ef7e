"""Tests of the offline reference solvers (`sciml.pinn.reference`).

Oracles: exact solutions of linear problems, the observed order of ETDRK4, KdV's
invariants, an independent classical-RK4 pseudo-spectral run, the Cole–Hopf formula against
the spectral Burgers solution (two independent methods), finite-difference PDE residuals
and a Taylor expansion at small t.
"""

import math

import numpy as np
import pytest

from sciml.pinn.reference import (
    MAX_HERMITE_NODES,
    _etdrk4_coefficients,
    allen_cahn_reference,
    burgers_cole_hopf,
    burgers_periodic_reference,
    burgers_reference,
    etdrk4,
    fourier_wavenumbers,
    interpolate_periodic,
    kdv_reference,
)

NU = 0.01 / np.pi


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- ETDRK4 core


def test_phi_coefficients_match_closed_forms():
    # Away from z = 0 the closed forms are accurate; near 0 they tend to h/2 and h/6.
    h = 0.3
    z = np.array([5.0, -7.0, 4.0j, -3.0 + 6.0j, -40.0, 25.0j])
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(z / h, h, 64)
    np.testing.assert_allclose(e, np.exp(z), rtol=1e-14)
    np.testing.assert_allclose(e2, np.exp(z / 2), rtol=1e-14)
    np.testing.assert_allclose(q, h * (np.exp(z / 2) - 1) / z, rtol=1e-12)
    ez = np.exp(z)
    np.testing.assert_allclose(f1, h * (-4 - z + ez * (4 - 3 * z + z**2)) / z**3, rtol=1e-12)
    np.testing.assert_allclose(f2, h * (2 + z + ez * (z - 2)) / z**3, rtol=1e-12)
    np.testing.assert_allclose(f3, h * (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, rtol=1e-12)
    _, _, q0, f10, f20, f30 = _etdrk4_coefficients(np.array([0.0, 1e-9j, -1e-9]), h, 64)
    np.testing.assert_allclose(q0, h / 2, rtol=1e-8)
    for f in (f10, f20, f30):
        np.testing.assert_allclose(f, h / 6, rtol=1e-8)


def test_linear_advection_hits_save_times_exactly():
    # N = 0: ETDRK4 is exact for any step, so any miss of a save time shows up as a shift.
    n, ell, c = 64, 2.0, 0.7
    x = -1 + ell * np.arange(n) / n
    k = fourier_wavenumbers(n, ell)
    times = np.array([0.0, 0.013, 0.1, 0.37])
    calls = []

    def nonlinear(v):
        calls.append(1)
        return np.zeros_like(v)

    u = etdrk4(
        np.exp(np.sin(np.pi * x)),
        length=ell,
        linear=-1j * c * k,
        nonlinear=nonlinear,
        dt=0.03,
        save_times=times,
    )
    assert u.shape == (4, n) and u.dtype == np.float64
    # ⌈Δ/dt⌉ equal steps per interval (1 + 3 + 9), four evaluations each, plus one probe.
    assert len(calls) == 1 + 4 * (1 + 3 + 9)
    exact = np.exp(np.sin(np.pi * (x[None, :] - c * times[:, None])))
    np.testing.assert_allclose(u, exact, atol=1e-13, rtol=0)


def test_complex_state_with_stiff_and_nonstiff_linear_parts():
    # u_t = a u + b u with a (treated exactly) stiff and complex, b (treated explicitly)
    # a complex constant: u = u0 e^{(a+b)t}; error falls ~16x per halving of dt.
    n, ell = 8, 1.0
    k = fourier_wavenumbers(n, ell, real=False)
    a = -3.0 * k**2 / (2 * np.pi) ** 2 + 5j * k / (2 * np.pi)
    b = -1.0 + 2.0j
    x = np.arange(n) / n
    u0 = np.exp(2j * np.pi * x) + 0.5 * np.exp(-4j * np.pi * x)
    coeffs = np.fft.fft(u0)
    exact = np.fft.ifft(coeffs * np.exp((a + b) * 1.0))
    errors = []
    for dt in (0.1, 0.05):
        u = etdrk4(u0, length=ell, linear=a, nonlinear=lambda v: b * v, dt=dt, t_final=1.0)
        assert u.dtype == np.complex128
        errors.append(np.max(np.abs(u[0] - exact)))
    assert errors[1] < 1e-5
    assert 12 < errors[0] / errors[1] < 20


@pytest.fixture(scope="module")
def kdv_order_runs():
    t_final = 0.5
    run = {}
    for steps in (200, 400, 800, 3200):
        _, _, u = kdv_reference(n_x=128, n_modes=128, dt=t_final / steps, t_final=t_final, n_t=2)
        run[steps] = u[-1]
    return run


def test_etdrk4_is_fourth_order_on_kdv(kdv_order_runs):
    fine = kdv_order_runs[3200]
    errors = [rel_l2(kdv_order_runs[s], fine) for s in (200, 400, 800)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(13 < r < 19 for r in ratios), (errors, ratios)


def test_kdv_conserves_mass_and_energy():
    n = 256
    x, t, u = kdv_reference(n_x=n, n_modes=n, dt=2e-4, t_final=1.0, n_t=5)
    assert x.shape == (n,) and t.shape == (5,) and u.shape == (5, n)
    assert np.max(np.abs(u[-1] - u[0])) > 1.0  # solitons formed: a non-trivial check
    mass = u.mean(axis=1)  # the grid mean is the exact integral of the band-limited u
    energy = (u**2).mean(axis=1)
    np.testing.assert_allclose(mass, mass[0], atol=1e-14, rtol=0)
    np.testing.assert_allclose(energy, energy[0], rtol=2e-9)


def test_kdv_default_grid_and_initial_condition():
    x, t, u = kdv_reference(n_x=64, n_modes=128, n_t=3, t_final=0.01, dt=1e-3)
    np.testing.assert_allclose(x, -1 + 2 * np.arange(64) / 64)
    np.testing.assert_allclose(t, [0.0, 0.005, 0.01])
    np.testing.assert_allclose(u[0], np.cos(np.pi * x), atol=1e-15, rtol=0)


# --------------------------------------------------------------------------- Allen–Cahn


@pytest.fixture(scope="module")
def allen_cahn_default():
    return allen_cahn_reference()


def test_allen_cahn_default_is_bounded_and_converged(allen_cahn_default):
    x, t, u = allen_cahn_default
    assert x.shape == (512,) and t.shape == (201,) and u.shape == (201, 512)
    np.testing.assert_allclose(u[0], x**2 * np.cos(np.pi * x), atol=1e-15, rtol=0)
    # |u0| <= 1 and the maximum principle keep |u| <= 1.
    assert np.max(np.abs(u)) <= 1 + 1e-8
    # Half the modes: agrees to ~1e-8 only because the kinked IC (u0' jumps at x = ±1) is
    # projected, not sampled (sampling leaves ~1e-6).
    _, _, coarse = allen_cahn_reference(n_modes=2048, dt=2e-3)
    assert rel_l2(coarse, u) < 5e-8


def test_allen_cahn_matches_classical_rk4():
    n, eps, coeff, t_final = 256, 1e-4, 5.0, 0.25

    def u0(x):
        return 0.5 * np.sin(np.pi * x) + 0.25 * np.cos(3 * np.pi * x)

    x, t, u = allen_cahn_reference(n_x=n, n_modes=n, t_final=t_final, n_t=6, u0=u0, dt=1e-3)
    # Independent: classical RK4 on the same semi-discretisation (1/2-rule dealiasing),
    # with a step small enough for the stiff diffusion.
    k = 2 * np.pi * np.arange(n // 2 + 1) / 2.0
    mask = np.arange(n // 2 + 1) < n / 4

    def rhs(v):
        w = np.fft.irfft(v, n)
        return -eps * k**2 * v + mask * np.fft.rfft(coeff * (w - w**3))

    v, h, out = np.fft.rfft(u0(x)), 2.5e-4, [u0(x)]
    for i in range(1000):
        a = rhs(v)
        b = rhs(v + h / 2 * a)
        c = rhs(v + h / 2 * b)
        d = rhs(v + h * c)
        v = v + h / 6 * (a + 2 * b + 2 * c + d)
        if (i + 1) % 200 == 0:
            out.append(np.fft.irfft(v, n))
    assert np.max(np.abs(u[-1] - u[0])) > 0.3
    np.testing.assert_allclose(u, np.array(out), atol=1e-10, rtol=0)


# --------------------------------------------------------------------------- Burgers


def test_periodic_burgers_matches_cole_hopf_cheap():
    # Two independent methods. n_x = 100 does not divide n_modes: Fourier interpolation.
    nu = 0.1 / np.pi
    x, t, u = burgers_periodic_reference(nu, n_x=100, n_modes=256, dt=1e-3, n_t=5)
    exact = burgers_cole_hopf(x[None, :], t[:, None], nu=nu)
    assert rel_l2(u, exact) < 1e-10


def test_periodic_burgers_matches_cole_hopf_at_benchmark_viscosity():
    # The PINN benchmark: ν = 0.01/π, t in [0, 1]; measured 2.1e-11 on the grid, 4e-13 at t = 1.
    x, t, u = burgers_periodic_reference(n_x=256, n_t=11)
    exact = burgers_cole_hopf(x[None, :], t[:, None])
    assert rel_l2(u, exact) < 1e-9
    assert rel_l2(u[-1], exact[-1]) < 1e-10


def test_cole_hopf_initial_condition_walls_and_symmetry():
    x = np.linspace(-1, 1, 41)
    np.testing.assert_array_equal(burgers_cole_hopf(x, 0.0), -np.sin(np.pi * x))
    t = np.linspace(0.05, 1.0, 8)[:, None]
    walls = burgers_cole_hopf(np.array([-1.0, 1.0]), t)
    assert walls.shape == (8, 2)
    assert np.max(np.abs(walls)) < 1e-14
    np.testing.assert_allclose(
        burgers_cole_hopf(-x, t), -burgers_cole_hopf(x, t), atol=1e-14, rtol=0
    )


def test_cole_hopf_small_time_taylor_expansion():
    # u(x, t) = u0 + t (ν u0'' − u0 u0') + O(t²).
    x = np.linspace(-1, 1, 33)
    u0 = -np.sin(np.pi * x)
    ut0 = NU * np.pi**2 * np.sin(np.pi * x) - np.pi * np.sin(np.pi * x) * np.cos(np.pi * x)
    for tau in (1e-4, 1e-5):
        err = np.max(np.abs(burgers_cole_hopf(x, tau) - u0 - tau * ut0))
        assert err < 10 * tau**2


def test_cole_hopf_pde_residual_by_finite_differences():
    x, t, h = np.linspace(-0.9, 0.9, 37), 0.2, 1e-3

    def u(dx, dt):
        return burgers_cole_hopf(x + dx, t + dt)

    def d1(f):
        return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)

    u_x = d1(lambda s: u(s, 0.0))
    u_t = d1(lambda s: u(0.0, s))
    u_xx = (-u(2 * h, 0) + 16 * u(h, 0) - 30 * u(0, 0) + 16 * u(-h, 0) - u(-2 * h, 0)) / (12 * h**2)
    residual = u_t + u(0, 0) * u_x - NU * u_xx
    assert np.max(np.abs(u(0, 0) * u_x)) > 1.0  # the terms balanced are O(1)
    assert np.max(np.abs(residual)) < 1e-7


def test_cole_hopf_node_convergence_and_grid():
    x, t, u = burgers_reference(n_x=65, n_t=11)
    assert x.shape == (65,) and t.shape == (11,) and u.shape == (11, 65)
    assert x[0] == -1 and x[-1] == 1 and t[0] == 0 and t[-1] == 1
    np.testing.assert_array_equal(u[0], -np.sin(np.pi * x))
    more = burgers_cole_hopf(x[None, :], t[:, None], n_nodes=400)
    assert rel_l2(u, more) < 1e-13
    fewer = burgers_cole_hopf(x[None, :], t[:, None], n_nodes=30)
    assert rel_l2(fewer, more) > 1e-6  # the comparison can see an under-resolved rule


# --------------------------------------------------------------------------- interpolation


def test_interpolate_periodic_is_exact_for_trigonometric_polynomials():
    n, ell, x0 = 16, 3.0, -0.5
    grid = x0 + ell * np.arange(n) / n
    w = 2 * np.pi / ell

    def f(s):
        return 1.5 + np.sin(3 * w * s) - 0.25 * np.cos(7 * w * s + 0.3)

    pts = np.random.default_rng(0).uniform(-4, 4, size=(3, 5))
    values = interpolate_periodic(np.stack([f(grid), 2 * f(grid)]), pts, length=ell, x0=x0)
    assert values.shape == (2, 3, 5) and values.dtype == np.float64
    np.testing.assert_allclose(values[0], f(pts), atol=1e-13, rtol=0)
    np.testing.assert_allclose(values[1], 2 * f(pts), atol=1e-13, rtol=0)
    # The Nyquist mode (−1)^j is read as the real cosine through the grid, not a complex wave.
    nyquist = interpolate_periodic((-1.0) ** np.arange(n), pts, length=ell, x0=x0)
    np.testing.assert_allclose(nyquist, np.cos(n / 2 * w * (pts - x0)), atol=1e-13, rtol=0)
    z = np.exp(1j * w * grid)
    np.testing.assert_allclose(
        interpolate_periodic(z, pts, length=ell, x0=x0), np.exp(1j * w * pts), atol=1e-13, rtol=0
    )
    # Any grid data are reproduced at the grid points.
    data = np.random.default_rng(1).normal(size=n)
    np.testing.assert_allclose(
        interpolate_periodic(data, grid, length=ell, x0=x0), data, atol=1e-13, rtol=0
    )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"length": 0.0}, "length must be a positive"),
        ({"dt": -1e-3}, "dt must be a positive"),
        ({"save_times": [0.0, 0.2, 0.1]}, "strictly increasing"),
        ({"save_times": [-0.1, 0.1]}, "save_times must be >= 0"),
        ({"save_times": [0.5], "t_final": 0.2}, r"lie in \[0, t_final=0.2\]"),
        ({"save_times": None}, "give save_times, t_final"),
        ({"u0": np.ones((4, 4))}, "1-D array"),
        ({"u0": np.array(["a"] * 16)}, "real or complex numbers"),
        ({"linear": np.zeros(16)}, r"linear must have shape \(9,\)"),
        ({"nonlinear": lambda v: v[:-1]}, "nonlinear must return"),
        ({"linear": np.ones(9), "save_times": [1000.0]}, "overflows"),
    ],
)
def test_etdrk4_errors(changes, match):
    n = 16
    kwargs = {
        "u0": np.cos(np.pi * np.arange(n) / 8),
        "length": 2.0,
        "linear": 1j * fourier_wavenumbers(n, 2.0) ** 3,
        "nonlinear": np.zeros_like,
        "dt": 1e-3,
        "save_times": [0.1],
    }
    kwargs.update(changes)
    u0 = kwargs.pop("u0")
    with pytest.raises((ValueError, TypeError), match=match):
        etdrk4(u0, **kwargs)


def test_etdrk4_reports_blow_up():
    n = 64
    k = fourier_wavenumbers(n, 2.0)
    x = -1 + 2 * np.arange(n) / n
    with pytest.raises(FloatingPointError, match="reduce dt"):
        etdrk4(
            4 * np.cos(np.pi * x),
            length=2.0,
            linear=0 * k,
            nonlinear=lambda v: np.fft.rfft(np.fft.irfft(v, n) ** 3),
            dt=0.1,
            t_final=5.0,
        )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: burgers_cole_hopf(0.0, -1.0), "t must be finite and >= 0"),
        (lambda: burgers_cole_hopf(0.0, 0.5, nu=0.0), "nu must be a positive"),
        (lambda: burgers_cole_hopf(0.0, 0.5, n_nodes=MAX_HERMITE_NODES + 1), "n_nodes must be"),
        (lambda: burgers_cole_hopf(0.0, 0.5, n_nodes=2.5), "n_nodes must be an int"),
        (lambda: burgers_cole_hopf(np.zeros(3), np.zeros(4)), "must broadcast"),
        (lambda: burgers_reference(n_x=1), "n_x must be >= 2"),
        (lambda: kdv_reference(domain=(1.0, -1.0)), "x0 < x1"),
        (lambda: kdv_reference(n_t=5, save_times=[0.1]), "not both"),
        (lambda: kdv_reference(u0=np.zeros(512)), "u0 must be a callable"),
        (lambda: kdv_reference(u0=lambda x: np.zeros(3)), "one value per grid point"),
        (lambda: allen_cahn_reference(u0=lambda x: x), "u0 must be periodic"),
        (lambda: allen_cahn_reference(epsilon=-1.0), "epsilon must be a positive"),
        (lambda: burgers_periodic_reference(nu=math.inf), "nu must be a positive"),
        (lambda: interpolate_periodic(np.ones(1), 0.3, length=1.0), "n >= 2"),
        (lambda: fourier_wavenumbers(8, -2.0), "length must be a positive"),
    ],
)
def test_reference_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
