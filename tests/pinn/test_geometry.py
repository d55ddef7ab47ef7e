"""Domains: boundary points and normals, uniformity of every sampling method, errors."""

import functools
import math
import warnings
from fractions import Fraction

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import qmc

from sciml.pinn import geometry as geo
from sciml.pinn.geometry import (
    METHODS,
    Ball,
    Box,
    Disk,
    Interval,
    Rectangle,
    SpaceTime,
    TimeInterval,
    product,
    sample_unit_cube,
)

RANDOM = ("uniform", "lhs", "halton", "sobol")  # the methods that use the key


def _key(i=0):
    # rbg keys compile several times faster than threefry (every sampler accepts any key
    # type; the default threefry keys are used in test_sampling's statistical test).
    return jax.random.key(1000 + i, impl="rbg")


# Test programs run a few times: skip XLA's LLVM optimisation, it costs more than it saves.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _run(f, *args):
    """Run `f` as one jitted program (not one compile per eager op); numpy results."""
    return jax.tree.map(np.asarray, jax.jit(f, compiler_options=FAST_COMPILE)(*args))


# ------------------------------------------------------------------ boundaries

BOX_LO, BOX_HI = np.array([0.0, -1.0, 2.0]), np.array([1.0, 1.0, 5.0])
BALLS = {  # (dim, method) -> ball; every method on the disk
    **{(2, m): Disk((0.3, -1.2), 0.7) for m in RANDOM},
    (3, "halton"): Ball((-1.0, 0.0, 0.5), 0.7),
    (5, "sobol"): Ball(np.linspace(-1.0, 0.7, 5), 0.7),
}


@pytest.fixture(scope="module")
def boundaries():
    box = Box(BOX_LO, BOX_HI)

    def draw(key):
        out = {("box", m): box.sample_boundary(key, 200, m) for m in RANDOM}
        out.update(
            {("ball", *k): ball.sample_boundary(key, 128, k[1]) for k, ball in BALLS.items()}
        )
        return out

    return _run(draw, _key())


@pytest.mark.parametrize("method", RANDOM)
def test_box_boundary_on_faces_with_axis_normals_and_counts(boundaries, method):
    lo, hi, n = BOX_LO, BOX_HI, 200
    x, nrm = boundaries["box", method]
    assert x.shape == nrm.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-15)
    # each normal is +-e_i, and the point sits exactly on that face
    axis = np.argmax(np.abs(nrm), axis=1)
    sign = nrm[np.arange(n), axis]
    assert np.all(np.abs(sign) == 1.0) and np.count_nonzero(nrm) == n
    face_value = np.where(sign > 0, hi[axis], lo[axis])
    assert np.all(x[np.arange(n), axis] == face_value)
    assert np.all((x >= lo) & (x <= hi))
    assert np.all(np.sum(nrm * (x - (lo + hi) / 2), axis=1) > 0)
    # counts per face proportional to face area (largest remainder: off by < 1)
    sides = hi - lo
    areas = [np.prod(np.delete(sides, i)) for i in range(3)]
    for i in range(3):
        expected = n * areas[i] / (2 * sum(areas))
        for s in (-1.0, 1.0):
            count = np.sum((axis == i) & (sign == s))
            assert abs(count - expected) < 1, (i, s, count, expected)
    assert len(np.unique(x, axis=0)) == n


@pytest.mark.parametrize("dim, method", sorted(BALLS))
def test_ball_boundary_on_sphere_with_outward_normals(boundaries, dim, method):
    ball = BALLS[dim, method]
    center, radius = np.asarray(ball.center), ball.radius
    x, nrm = boundaries["ball", dim, method]
    assert x.shape == nrm.shape == (128, dim)
    np.testing.assert_allclose(np.linalg.norm(x - center, axis=1), radius, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(np.sum(nrm * (x - center), axis=1) > 0)
    np.testing.assert_allclose(nrm, (x - center) / radius, atol=1e-12)
    # spread over the sphere: the mean normal is near 0 (|mean| ~ 1/sqrt(n) for iid)
    assert np.linalg.norm(nrm.mean(axis=0)) < 5 / math.sqrt(128)


@pytest.mark.parametrize("domain", [Interval(-1.0, 2.0), TimeInterval(-1.0, 2.0)])
def test_interval_boundary_splits_the_two_ends(domain):
    x, nrm = _run(lambda key: domain.sample_boundary(key, 7), _key())
    assert x.shape == nrm.shape == (7, 1)
    left = x[:, 0] == -1.0
    assert left.sum() == 4 and np.all(x[~left, 0] == 2.0)
    assert np.all(nrm[left] == -1.0) and np.all(nrm[~left] == 1.0)


def test_measures():
    # Disk circumference and 3-ball surface vs the closed forms.
    assert math.isclose(Disk((0.0, 0.0), 2.0).surface, 4 * math.pi)
    assert math.isclose(Ball((0.0, 0.0, 0.0), 2.0).surface, 16 * math.pi)
    assert math.isclose(Disk((0.0, 0.0), 2.0).volume, 4 * math.pi)
    assert math.isclose(Ball((0.0, 0.0, 0.0), 2.0).volume, 32 / 3 * math.pi)
    assert math.isclose(Ball((0.0,) * 4, 1.0).volume, math.pi**2 / 2)
    assert math.isclose(Box((0, 0, 0), (1, 2, 3)).volume, 6.0)
    assert math.isclose(Interval(-1, 2).volume, 3.0)


# -------------------------------------------------------------------- interiors

# Each domain with one or two methods: the unit-cube methods are tested on their own
# below, and the maps to the domains do not depend on the method.
INTERIORS = {
    ("interval", "lhs"): Interval(-1.0, 3.0),
    ("box3", "sobol"): Box((0.0, -1.0, 2.0), (1.0, 1.0, 5.0)),
    ("disk", "halton"): Disk((0.2, -0.3), 1.5),
    ("ball3", "uniform"): Ball((0.0, 1.0, 0.0), 0.5),
    ("ball4", "halton"): Ball((0.0, 0.0, 0.0, 1.0), 2.0),
    ("ball4", "sobol"): Ball((0.0, 0.0, 0.0, 1.0), 2.0),
    ("disk_x_t", "sobol"): Disk((0.0, 0.0), 1.0) * TimeInterval(0.5, 2.0),
    ("interval_x_t", "lhs"): product(Interval(0.0, 1.0), TimeInterval(0.0, 1.0)),
    ("box3_x_t", "uniform"): Box((0.0,) * 3, (1.0, 2.0, 3.0)) * TimeInterval(0.0, 1.0),
}


@pytest.fixture(scope="module")
def interiors():
    def draw(key):
        out = {}
        for case, domain in INTERIORS.items():
            x = domain.sample_interior(key, 64, case[1])
            out[case] = (x, domain.contains(x))
        return out

    return _run(draw, _key())


@pytest.mark.parametrize("case", sorted(INTERIORS))
def test_interior_points_inside(interiors, case):
    domain, (x, inside) = INTERIORS[case], interiors[case]
    assert x.shape == (64, domain.dim) and x.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all(inside)
    lo, hi = domain.bounds
    assert np.all((x >= lo) & (x <= hi))
    assert len(np.unique(x, axis=0)) == 64


def test_contains_agrees_with_volume():
    # Independent check of contains() and volume: hit fraction of box-uniform points.
    disk = Disk((1.0, -1.0), 0.8)
    lo, hi = map(np.asarray, disk.bounds)
    u = np.random.default_rng(0).uniform(size=(20000, 2))
    box = Box((0.0, 0.0), (1.0, 2.0))
    hits, inside, near, box_inside = _run(
        lambda: (
            disk.contains(lo + (hi - lo) * u),
            disk.contains(np.array([[1.8, -1.0], [1.81, -1.0], [1.0, -1.0]])),
            disk.contains(np.array([1.8 + 1e-9, -1.0]), atol=1e-8),
            box.contains(np.array([[0.0, 2.0], [0.5, 2.1]])),
        )
    )
    frac = float(np.mean(hits))
    expected = disk.volume / float(np.prod(hi - lo))
    assert abs(frac - expected) < 5 * math.sqrt(expected * (1 - expected) / 20000)
    assert inside.tolist() == [True, False, True] and bool(near)
    assert box_inside.tolist() == [True, False]


# ------------------------------------------------------------------- uniformity


@pytest.fixture(scope="module")
def unit_samples():
    lo, hi = jnp.array([-1.0, 0.0, 2.0]), jnp.array([1.0, 3.0, 2.5])
    lo4, hi4 = np.array([-2.0, 0.0, 1.0, 5.0]), np.array([1.0, 0.5, 4.0, 9.0])

    def draw(key):
        out = {}
        for m in RANDOM:
            out["box", m] = (Box(lo, hi).sample_interior(key, 4096, m) - lo) / (hi - lo)
            out["disk", m] = Disk((0.5, -0.5), 2.0).sample_interior(key, 1024, m)
            out["ball3", m] = Ball((0.0, 0.0, 0.0), 2.0).sample_interior(key, 1024, m)
        out["lhs4", "lhs"] = (Box(lo4, hi4).sample_interior(key, 50, "lhs") - lo4) / (hi4 - lo4)
        out["sobol2", "sobol"] = sample_unit_cube(key, 256, 2, "sobol")
        out["halton2", "halton"] = sample_unit_cube(key, 216, 2, "halton")
        return out

    return _run(draw, _key()), _run(draw, _key(1))


@pytest.mark.parametrize("method", RANDOM)
def test_box_moments(unit_samples, method):
    n = 4096
    u = unit_samples[0]["box", method]
    mean, var = u.mean(axis=0), u.var(axis=0)
    if method == "uniform":  # 5 standard errors of the sample mean / variance
        tol_mean, tol_var = 5 * math.sqrt(1 / 12 / n), 5 * math.sqrt((1 / 80 - 1 / 144) / n)
    elif method in ("lhs", "sobol"):  # one point per stratum [j/n, (j+1)/n) per axis
        tol_mean, tol_var = 0.5 / n, 1.0 / n
    else:  # Halton: 1-D discrepancy O(log n / n)
        tol_mean, tol_var = 5 * math.log(n) / n, 5 * math.log(n) / n
    np.testing.assert_allclose(mean, 0.5, atol=tol_mean)
    np.testing.assert_allclose(var, 1 / 12, atol=tol_var)


def test_lhs_one_point_per_stratum(unit_samples):
    for draws in unit_samples:
        strata = np.floor(draws["lhs4", "lhs"] * 50).astype(int)
        for j in range(4):
            assert sorted(strata[:, j]) == list(range(50))
    assert not np.allclose(unit_samples[0]["lhs4", "lhs"], unit_samples[1]["lhs4", "lhs"])


def test_lhs_stratifies_each_boundary_piece():
    # Rectangle 1 x 2: edges get 10, 10, 20, 20 points; each edge is its own hypercube.
    x, _ = _run(
        lambda key: Rectangle((0.0, 0.0), (2.0, 1.0)).sample_boundary(key, 60, "lhs"), _key()
    )
    for on, coord, length, count in [
        (x[:, 0] == 0.0, 1, 1.0, 10),
        (x[:, 0] == 2.0, 1, 1.0, 10),
        (x[:, 1] == 0.0, 0, 2.0, 20),
        (x[:, 1] == 1.0, 0, 2.0, 20),
    ]:
        assert sorted(np.floor(x[on, coord] / length * count).astype(int)) == list(range(count))


def test_sobol_matches_scipy_and_is_a_net(unit_samples):
    n, k = 1000, 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's advice to use powers of two
        reference = qmc.Sobol(k, scramble=False, bits=32).random(n)
    ours = _run(lambda: geo._sobol_integers(n, k)).astype(float) / 2.0**32
    np.testing.assert_array_equal(ours, reference)
    # With the random digital shift, the first two coordinates of 2**m points still form
    # a (0, m, 2)-net: every dyadic box of area 2**-m holds exactly one point.
    m = 8
    for u in (draws["sobol2", "sobol"] for draws in unit_samples):
        for a in range(m + 1):
            cells = np.floor(u[:, 0] * 2**a).astype(int) * 2 ** (m - a) + np.floor(
                u[:, 1] * 2 ** (m - a)
            ).astype(int)
            assert sorted(cells) == list(range(2**m)), a
    assert not np.allclose(unit_samples[0]["sobol2", "sobol"], unit_samples[1]["sobol2", "sobol"])


def _radical_inverse_exact(i, b):
    out, f = Fraction(0), Fraction(1, b)
    while i:
        out += f * (i % b)
        i //= b
        f /= b
    return float(out)


def test_halton_radical_inverse_and_scrambled_strata(unit_samples):
    n = 100
    h = _run(lambda: geo._radical_inverse(jnp.arange(n), (2, 3, 5, 7), 7))
    exact = np.array([[_radical_inverse_exact(i, b) for b in (2, 3, 5, 7)] for i in range(n)])
    np.testing.assert_allclose(h, exact, atol=1e-14)
    # Scrambling permutes digits, so the strata of the radical inverse survive: with
    # 216 = 2^3 * 3^3 points, every [j/8, (j+1)/8) of the base-2 coordinate holds 27 points
    # and every [j/27, (j+1)/27) of the base-3 coordinate holds 8.
    for u in (draws["halton2", "halton"] for draws in unit_samples):
        assert np.all(np.bincount(np.floor(u[:, 0] * 8).astype(int), minlength=8) == 27)
        assert np.all(np.bincount(np.floor(u[:, 1] * 27).astype(int), minlength=27) == 8)
    assert not np.allclose(
        unit_samples[0]["halton2", "halton"], unit_samples[1]["halton2", "halton"]
    )


def test_quasi_random_integration_beats_uniform():
    # RMS error over 16 keys of the integral of exp(x1 + x2 + x3) on [0, 1]^3 = (e - 1)^3.
    exact = (math.e - 1) ** 3

    def estimates(keys):
        def one(key):
            return {
                m: jnp.mean(jnp.exp(jnp.sum(sample_unit_cube(key, 1024, 3, m), 1))) for m in RANDOM
            }

        return jax.vmap(one)(keys)

    est = _run(estimates, jax.random.split(_key(), 16))
    errors = {m: float(np.sqrt(np.mean((est[m] - exact) ** 2))) for m in RANDOM}
    assert errors["halton"] < errors["uniform"] / 10, errors
    assert errors["sobol"] < errors["uniform"] / 10, errors
    assert errors["lhs"] < errors["uniform"] / 2, errors


@pytest.mark.parametrize("method", RANDOM)
def test_disk_and_ball_uniform_in_volume(unit_samples, method):
    n, radius = 1024, 2.0
    x = unit_samples[0]["disk", method] - np.array([0.5, -0.5])
    r2 = np.sum(x**2, axis=1)
    # iid: 5 standard errors (all below 5/sqrt(n)); stratified radius and angle: 0.02
    tol = 5 / math.sqrt(n) if method == "uniform" else 0.02
    # uniform in area: P(r < R/2) = 1/4, E r^2 = R^2/2, P(first quadrant) = 1/4, mean = 0
    assert abs(np.mean(r2 < radius**2 / 4) - 0.25) < tol
    assert abs(np.mean(r2) / radius**2 - 0.5) < tol
    assert abs(np.mean((x[:, 0] > 0) & (x[:, 1] > 0)) - 0.25) < tol
    assert np.max(np.abs(np.mean(x, axis=0))) < tol * radius
    # 3-ball: E r^2 = 3/5 R^2, P(r < R/2) = 1/8
    y = unit_samples[0]["ball3", method]
    r2 = np.sum(y**2, axis=1)
    assert abs(np.mean(r2) / radius**2 - 0.6) < tol
    assert abs(np.mean(r2 < radius**2 / 4) - 0.125) < tol
    assert abs(np.mean(y[:, 2] > 0) - 0.5) < tol


# ------------------------------------------------------------------- space-time


def test_space_time_product():
    space, time = Rectangle((0.0, 0.0), (1.0, 2.0)), TimeInterval(0.5, 3.5)
    omega = space * time
    assert omega == product(space, time) == SpaceTime(space, time)
    assert omega.dim == 3 and math.isclose(omega.volume, 6.0)
    lo, hi = omega.bounds
    np.testing.assert_array_equal(lo, [0.0, 0.0, 0.5])
    np.testing.assert_array_equal(hi, [1.0, 2.0, 3.5])

    def draw(key):
        x0 = omega.sample_initial(key, 32, "halton")
        xb, nb = omega.sample_boundary(key, 60, "sobol")
        x = omega.sample_interior(key, 1024, "sobol")
        inside = (space.contains(x0[:, :2]), omega.contains(xb), omega.contains(x))
        return x0, (xb, nb), x, inside

    x0, (xb, nb), x, inside = _run(draw, _key())
    assert all(np.all(i) for i in inside)
    assert x0.shape == (32, 3) and np.all(x0[:, 2] == 0.5)
    assert xb.shape == nb.shape == (60, 3)
    assert np.all(nb[:, 2] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(nb, axis=1), 1.0)
    # lateral faces x=0, x=1 (measure 2*3) and y=0, y=2 (measure 1*3): 20, 20, 10, 10
    on = [xb[:, 0] == 0, xb[:, 0] == 1, xb[:, 1] == 0, xb[:, 1] == 2]
    assert [int(np.sum(m)) for m in on] == [20, 20, 10, 10]
    assert np.all(np.sum(nb[:, :2] * (xb[:, :2] - np.array([0.5, 1.0])), 1) > 0)
    assert np.all((xb[:, 2] >= 0.5) & (xb[:, 2] <= 3.5))
    # Sobol: one point per 1/1024 stratum of t, so the mean time is within 0.5/1024 * 3
    assert abs(np.mean(x[:, 2]) - 2.0) < 1.5 / 1024


# ------------------------------------------------------------------------- grids


def test_grids():
    box = Rectangle((0.0, -1.0), (2.0, 1.0))
    g, g1, st = _run(
        lambda: (
            box.grid((3, 4)),
            Interval(1.0, 2.0).grid(3),
            product(Interval(0.0, 1.0), TimeInterval(0.0, 2.0)).grid((2, 3)),
        )
    )
    assert g.shape == (12, 2)
    np.testing.assert_allclose(g.reshape(3, 4, 2)[:, 0, 0], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(g.reshape(3, 4, 2)[0, :, 1], np.linspace(-1, 1, 4))
    np.testing.assert_allclose(g1[:, 0], [1.0, 1.5, 2.0])
    np.testing.assert_allclose(st.reshape(2, 3, 2)[1, :, 1], [0.0, 1.0, 2.0])

    def draw():
        return (
            box.sample_interior(None, 16, "grid"),
            Disk((0.0, 0.0), 1.0).sample_interior(None, 16, "grid"),
            box.sample_boundary(None, 8, "grid")[0],
            Disk((0.0, 0.0), 1.0).sample_boundary(None, 4, "grid")[0],
        )

    mid, disk, xb, circle = _run(draw)
    np.testing.assert_allclose(np.unique(mid[:, 0]), [0.25, 0.75, 1.25, 1.75], atol=1e-15)
    np.testing.assert_allclose(np.unique(mid[:, 1]), [-0.75, -0.25, 0.25, 0.75], atol=1e-15)
    # equal-area polar grid: radii R sqrt((i + 1/2) / 4)
    np.testing.assert_allclose(
        np.unique(np.round(np.linalg.norm(disk, axis=1), 12)), np.sqrt((np.arange(4) + 0.5) / 4)
    )
    assert sorted(xb[xb[:, 0] == 0.0][:, 1].tolist()) == [-0.5, 0.5]  # two per edge
    np.testing.assert_allclose(
        np.arctan2(circle[:, 1], circle[:, 0]) % (2 * np.pi),
        np.pi / 4 * np.array([1, 3, 5, 7]),
        atol=1e-14,
    )


# --------------------------------------------------------------------------- jit


def test_jit_with_traced_keys_traces_once():
    omega = Disk((0.0, 0.0), 1.0) * TimeInterval(0.0, 1.0)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(domain, key):  # the domain passes through jit as a leafless pytree
        out = {m: domain.sample_interior(key, 32, m) for m in RANDOM}
        return out, domain.sample_boundary(key, 16, "lhs"), domain.sample_initial(key, 8)

    a, b = draw(omega, _key(0)), draw(omega, _key(1))
    assert jax.tree.map(jnp.shape, a) == jax.tree.map(jnp.shape, b)
    for m in RANDOM:
        assert not np.allclose(a[0][m], b[0][m])
    assert not np.allclose(a[1][0], b[1][0]) and not np.allclose(a[2], b[2])


# ------------------------------------------------------------------------ errors

ERRORS = [
    (lambda: Box((0.0, 1.0), (1.0, 1.0)), ValueError, r"lo < hi.*index \[1\]"),
    (lambda: Box((0.0, 0.0), (1.0, 1.0, 1.0)), ValueError, "same length"),
    (lambda: Box((0.0, np.nan), (1.0, 1.0)), ValueError, "finite"),
    (lambda: Rectangle((0.0,), (1.0,)), ValueError, "length 2"),
    (lambda: Interval(1.0, 1.0), ValueError, "a < b"),
    (lambda: TimeInterval(2.0, 1.0), ValueError, "t0 < t1"),
    (lambda: Disk((0.0, 0.0), 0.0), ValueError, "radius must be > 0"),
    (lambda: Disk((0.0, 0.0, 0.0), 1.0), ValueError, "length 2"),
    (lambda: Ball((0.0,), 1.0), ValueError, "at least 2"),
    (lambda: Interval(0, 1).sample_interior(_key(), 0), ValueError, "n must be >= 1"),
    (lambda: Interval(0, 1).sample_interior(_key(), 2.5), TypeError, "Python int"),
    (
        lambda: Interval(0, 1).sample_boundary(_key(), 4, "random"),
        ValueError,
        "unknown method 'random'; allowed: uniform, lhs, halton, sobol, grid",
    ),
    (lambda: Rectangle((0, 0), (1, 1)).sample_interior(None, 15, "grid"), ValueError, "m\\*\\*2"),
    (lambda: Box((0,) * 3, (1,) * 3).sample_boundary(None, 8, "grid"), ValueError, "<= 1"),
    (lambda: Box((0, 0), (1, 1)).contains(jnp.zeros((4, 3))), ValueError, r"\(\.\.\., 2\)"),
    (lambda: Interval(0, 1) * Interval(0, 1), TypeError, "unsupported operand"),
    (lambda: SpaceTime(Interval(0, 1), Interval(0, 1)), TypeError, "TimeInterval"),
    (lambda: SpaceTime(TimeInterval(0, 1), TimeInterval(0, 1)), TypeError, "spatial"),
    (lambda: (Disk((0, 0), 1) * TimeInterval(0, 1)).grid(3), TypeError, "Box or Interval"),
    (lambda: Box((0, 0), (1, 1)).grid((3, 1)), ValueError, ">= 2"),
    (lambda: jax.jit(lambda c: Box((0.0,), (c,)))(1.0), TypeError, "concrete"),
]


@pytest.mark.parametrize("make, exc, match", ERRORS)
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_methods_list():
    assert METHODS == ("uniform", "lhs", "halton", "sobol", "grid")
