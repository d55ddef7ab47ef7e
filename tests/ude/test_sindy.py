"""SINDy building blocks: libraries, STLSQ, the threshold path, derivatives, printing."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.ude import (
    ConcatLibrary,
    FunctionLibrary,
    PolynomialLibrary,
    central_difference,
    format_equations,
    sindy_path,
    stlsq,
)


def hand_monomials(x, y, z):
    return [1, x, y, z, x * x, x * y, x * z, y * y, y * z, z * z]


def test_polynomial_library_features_and_names(x64):
    lib = PolynomialLibrary(3, 2)
    point = jnp.array([2.0, 3.0, 5.0])
    np.testing.assert_array_equal(lib(point), hand_monomials(2.0, 3.0, 5.0))
    assert lib.n_features == 10
    assert lib.feature_names(["x", "y", "z"]) == [
        "1", "x", "y", "z", "x^2", "x y", "x z", "y^2", "y z", "z^2"
    ]  # fmt: skip
    assert lib.feature_names()[:3] == ["1", "x0", "x1"]

    cubic = PolynomialLibrary(2, 3, include_bias=False)
    x, y = 1.5, -2.0
    np.testing.assert_allclose(
        cubic(jnp.array([x, y])), [x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3]
    )
    assert cubic.feature_names(["x", "y"]) == [
        "x", "y", "x^2", "x y", "y^2", "x^3", "x^2 y", "x y^2", "y^3"
    ]  # fmt: skip
    for n, d in [(1, 4), (3, 3), (5, 2)]:
        assert PolynomialLibrary(n, d).n_features == math.comb(n + d, d)


def test_function_and_concat_libraries(x64):
    lib = ConcatLibrary(
        [PolynomialLibrary(2, 1), FunctionLibrary(2, [jnp.sin, jnp.exp], ["sin({})", "exp({})"])]
    )
    x, y = 0.3, -1.2
    np.testing.assert_allclose(
        lib(jnp.array([x, y])), [1, x, y, np.sin(x), np.sin(y), np.exp(x), np.exp(y)]
    )
    assert lib.n_vars == 2 and lib.n_features == 7
    assert lib.feature_names(["x", "y"]) == [
        "1", "x", "y", "sin(x)", "sin(y)", "exp(x)", "exp(y)"
    ]  # fmt: skip


def test_library_errors():
    with pytest.raises(ValueError, match=r"expected one point of shape \(3,\), got \(4, 3\)"):
        PolynomialLibrary(3, 2)(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="degree must be an int >= 1, got 0"):
        PolynomialLibrary(3, 0)
    with pytest.raises(ValueError, match="expected 3 variable names, got 2"):
        PolynomialLibrary(3, 2).feature_names(["x", "y"])
    with pytest.raises(ValueError, match="2 functions but 1 names"):
        FunctionLibrary(2, [jnp.sin, jnp.cos], ["sin({})"])
    with pytest.raises(ValueError, match="disagree on n_vars"):
        ConcatLibrary([PolynomialLibrary(2, 1), PolynomialLibrary(3, 1)])


def sparse_polynomial_system(key, n_samples=200):
    """Exact data Y = Θ(X) Ξ for a known sparse Ξ in a cubic library on 3 variables."""
    lib = PolynomialLibrary(3, 3)
    xs = jax.random.normal(key, (n_samples, 3))
    theta = jax.vmap(lib)(xs)
    names = lib.feature_names(["x", "y", "z"])
    xi = np.zeros((lib.n_features, 3))
    xi[names.index("1"), 0] = 0.7
    xi[names.index("x"), 0] = -1.5
    xi[names.index("y z"), 0] = 2.0
    xi[names.index("y"), 1] = 0.5
    xi[names.index("x^2 z"), 1] = -0.8
    xi[names.index("z^3"), 2] = 1.2
    xi[names.index("x y"), 2] = -3.0
    xi[names.index("z"), 2] = 0.3
    return theta, theta @ xi, xi


def test_stlsq_recovers_an_exact_sparse_polynomial_system(x64, getkey):
    theta, y, xi_true = sparse_polynomial_system(getkey())
    xi = stlsq(theta, y, threshold=0.1)
    assert xi.shape == xi_true.shape and xi.dtype == jnp.float64
    np.testing.assert_array_equal(xi != 0, xi_true != 0)
    np.testing.assert_allclose(xi, xi_true, rtol=0, atol=1e-10)
    # jit-able, with the threshold traced
    xi_jit = jax.jit(lambda t, yy, th: stlsq(t, yy, th))(theta, y, 0.1)
    np.testing.assert_allclose(xi_jit, xi_true, rtol=0, atol=1e-10)


def test_threshold_drops_small_terms(x64, getkey):
    lib = PolynomialLibrary(2, 2)
    xs = jax.random.normal(getkey(), (300, 2))
    theta = jax.vmap(lib)(xs)
    y = 1.0 * xs[:, 0] + 0.05 * xs[:, 1]  # the y term is below a threshold of 0.1
    strict = stlsq(theta, y, threshold=0.1)
    loose = stlsq(theta, y, threshold=0.01)
    assert strict.shape == (lib.n_features,)  # 1-D target -> 1-D coefficients
    names = lib.feature_names(["x", "y"])
    assert [n for n, c in zip(names, strict) if c != 0] == ["x"]
    assert [n for n, c in zip(names, loose) if c != 0] == ["x", "y"]
    np.testing.assert_allclose(loose[1:3], [1.0, 0.05], atol=1e-12)
    # Threshold 0 keeps every term: the ridge+unbias fit is then plain least squares.
    full = stlsq(theta, y, threshold=0.0)
    np.testing.assert_allclose(full, np.linalg.lstsq(theta, y, rcond=None)[0], atol=1e-10)


def test_normalize_columns_recovers_a_badly_scaled_library(x64, getkey):
    theta, y, xi_true = sparse_polynomial_system(getkey())
    scales = jnp.logspace(-3, 3, theta.shape[1])  # column scales spanning six decades
    theta_scaled = theta * scales
    xi_scaled = xi_true / scales[:, None]
    # With unit-norm columns the true coefficients are >= ~4 in magnitude (0.3 * |z| with
    # |z| ~ sqrt(200)); a threshold of 2 and a light ridge separate them from the rest.
    xi = stlsq(theta_scaled, y, threshold=2.0, alpha=1e-3, normalize_columns=True)
    np.testing.assert_array_equal(xi != 0, xi_true != 0)
    np.testing.assert_allclose(xi, xi_scaled, rtol=1e-8, atol=0)
    # A threshold in raw units gets the active set wrong: true terms on large-scale
    # columns have tiny coefficients (dropped), noise on small-scale columns huge ones.
    raw = np.asarray(stlsq(theta_scaled, y, threshold=0.1)) != 0
    true = xi_true != 0
    assert np.any(true & ~raw) and np.any(raw & ~true)


def test_sindy_path_traces_the_pareto_front(x64, getkey):
    theta, y, xi_true = sparse_polynomial_system(getkey())
    thresholds = jnp.array([0.0, 0.1, 1.0, 100.0])
    path = sindy_path(theta, y, thresholds)
    assert path.coefficients.shape == (4, *xi_true.shape)
    n_active = np.asarray(path.n_active)
    assert np.all(np.diff(n_active) <= 0), n_active
    assert n_active[0] == theta.shape[1] * 3 and n_active[1] == 8 and n_active[-1] == 0
    np.testing.assert_allclose(path.coefficients[1], stlsq(theta, y, 0.1), atol=1e-12)
    assert path.mse[1] < 1e-20
    np.testing.assert_allclose(path.mse[-1], jnp.mean(y**2))


def test_central_difference_is_second_order(x64):
    def max_error(n):
        ts = jnp.linspace(0.0, 2.0, n)
        return jnp.max(jnp.abs(central_difference(jnp.sin(ts), ts[1] - ts[0]) - jnp.cos(ts)))

    ratio = max_error(101) / max_error(201)  # dt halves
    assert 3.8 < ratio < 4.2, ratio
    ts = jnp.linspace(0.0, 1.0, 50)
    xs = jnp.stack([ts**2, 3 * ts, jnp.ones_like(ts)], axis=1)
    dx = central_difference(xs, ts[1] - ts[0])
    assert dx.shape == xs.shape
    # exact for quadratics, ends included
    np.testing.assert_allclose(dx, jnp.stack([2 * ts, 3 + 0 * ts, 0 * ts], axis=1), atol=1e-12)


def test_format_equations():
    coefs = np.array(
        [
            [0.0, -2.0, 0.0],
            [1.3, 0.0, 0.0],
            [0.0, -1.8, 0.0],
            [-0.90249, 0.5, 0.0],
        ]
    )
    lines = format_equations(coefs, ["1", "x", "y", "x y"], ["dx/dt", "dy/dt", "dz/dt"])
    assert lines == [
        "dx/dt = 1.300 x - 0.902 x y",
        "dy/dt = -2.000 - 1.800 y + 0.500 x y",
        "dz/dt = 0",
    ]
    assert format_equations(coefs[:, 1], ["1", "x", "y", "x y"], ["f"], precision=1) == [
        "f = -2.0 - 1.8 y + 0.5 x y"
    ]


def test_shape_and_value_errors():
    theta, y = jnp.ones((10, 4)), jnp.ones((10, 2))
    with pytest.raises(ValueError, match=r"theta must be 2-D \(T, L\), got shape \(10,\)"):
        stlsq(jnp.ones(10), y, 0.1)
    with pytest.raises(ValueError, match=r"same number of rows.*\(10, 4\).*\(9, 2\)"):
        stlsq(theta, jnp.ones((9, 2)), 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(T,\) or \(T, n_targets\)"):
        stlsq(theta, jnp.ones((10, 2, 1)), 0.1)
    with pytest.raises(ValueError, match="threshold must be >= 0, got -0.5"):
        stlsq(theta, y, -0.5)
    with pytest.raises(ValueError, match="max_iter must be a positive int"):
        stlsq(theta, y, 0.1, max_iter=0)
    with pytest.raises(ValueError, match=r"thresholds must be 1-D, got shape \(2, 2\)"):
        sindy_path(theta, y, jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="thresholds must be >= 0"):
        sindy_path(theta, y, jnp.array([0.1, -1.0]))
    with pytest.raises(ValueError, match=r"same number of rows"):
        sindy_path(theta, jnp.ones(3), jnp.array([0.1]))
    with pytest.raises(ValueError, match=r"at least 3 samples.*\(2, 3\)"):
        central_difference(jnp.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match=r"need 4 feature names and 2 target names, got 3 and 2"):
        format_equations(np.ones((4, 2)), ["a", "b", "c"], ["f", "g"])
    # a traced negative threshold is caught at run time
    with pytest.raises(
        (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match="threshold must be >= 0"
    ):
        jax.jit(lambda th: stlsq(theta, y, th))(-1.0)
