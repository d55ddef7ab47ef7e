"""Rational-quadratic spline maths and the elementwise `RationalQuadraticSpline`.

Also home of the bijection conformance battery (`BatteryCase`, `battery_report`,
`check_*`), which test_coupling.py and test_autoregressive.py reuse.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.flows._spline import (
    RationalQuadraticSpline,
    rational_quadratic_knots,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
)

DTYPES = ("float32", "float64")


# ---------------------------------------------------------------- the battery


@pytest.fixture(params=DTYPES)
def dtype(request):
    """Run the test in float32 and in float64 (x64 switched on and restored)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param == "float64")
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", previous)


def perturb(module, key, scale: float = 0.5):
    """Add N(0, scale²) noise to every inexact array leaf (fresh flows are the identity).

    The noise is drawn with numpy from `key`'s bits: no per-shape JAX compilation.
    """
    leaves, tree = jax.tree.flatten(module)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    out = [
        jnp.asarray(np.asarray(leaf) + scale * rng.standard_normal(leaf.shape), leaf.dtype)
        if eqx.is_inexact_array(leaf)
        else leaf
        for leaf in leaves
    ]
    return jax.tree.unflatten(tree, out)


@dataclasses.dataclass(frozen=True)
class BatteryCase:
    """One bijection to run the conformance battery on.

    make(key) builds it (called under the test's float mode); points are a few
    test inputs (rows), far a few far-out inputs; cond_dim the context size.
    """

    name: str
    make: Callable
    dim: int
    cond_dim: int | None = None
    spline: bool = False
    scale: float = 0.5

    def points(self, dtype):
        base = np.array([[-2.0, 0.4, 1.7, -0.9], [2.5, -1.3, 0.1, 4.5], [-3.7, 2.9, -0.2, 0.8]])
        return jnp.asarray(base[:, : self.dim], dtype)

    def far(self, dtype):
        big = 1e30 if dtype == "float32" else 1e300
        rows = [[1e3, -1e3, 1e3, -1e3], [-1e3, 1e3, -1e3, 1e3]]
        if self.spline:  # near the dtype limit: only elementwise-bounded maps survive this
            rows += [[big, -big, 0.5, big], [-big, 0.3, big, -big]]
        return jnp.asarray(np.array(rows)[:, : self.dim], dtype)

    def context(self, dtype, n):
        if self.cond_dim is None:
            return None
        c = np.linspace(-1.0, 1.0, n * self.cond_dim).reshape(n, self.cond_dim)
        return jnp.asarray(c, dtype)


# XLA's CPU compile dominates these tests; its backend optimisation level 0
# compiles the battery ~40% faster and computes the same functions.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def fast_jit(fn: Callable) -> Callable:
    """Like `eqx.filter_jit` (arrays traced, everything else static), compiled at opt level 0."""

    @functools.partial(jax.jit, static_argnums=0, compiler_options=_FAST_COMPILE)
    def run(static, dynamic):
        return fn(*eqx.combine(dynamic, static))

    def wrapper(*args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        return run(static, dynamic)

    return wrapper


@fast_jit
def _battery(model, z, z_context, far, far_context):
    """Everything the battery checks, in one compiled call."""

    def conformance(v, c):
        x, ld = model.transform_and_log_det(v, c)
        z_back, ld_inv = model.inverse_and_log_det(x, c)
        jac_f = jax.jacfwd(model.transform)(v, c)
        return dict(
            x=x,
            ld=ld,
            z_back=z_back,
            ld_inv=ld_inv,
            slogdet_fwd=jnp.linalg.slogdet(jac_f)[1],
        )

    def loss(m, v, c):
        x, ld = m.transform_and_log_det(v, c)
        zz, ld2 = m.inverse_and_log_det(v, c)
        # bounded weights so huge-but-finite outputs do not overflow the sum itself
        return jnp.sum(jnp.tanh(x)) + ld + jnp.sum(jnp.tanh(zz)) + ld2, (x, ld, zz, ld2)

    def far_out(v, c):
        (_, values), (g_model, g_input) = eqx.filter_value_and_grad(
            lambda mv: loss(mv[0], mv[1], c), has_aux=True
        )((model, v))
        return values, g_model, g_input

    return jax.vmap(conformance)(z, z_context), jax.vmap(far_out)(far, far_context)


_CACHE: dict = {}
_BASE: dict = {}


def _cast(module, dtype: str):
    """The module with every inexact leaf converted to `dtype` (through numpy: no compiles)."""
    return jax.tree.map(
        lambda leaf: (
            jnp.asarray(np.asarray(leaf).astype(dtype)) if eqx.is_inexact_array(leaf) else leaf
        ),
        module,
    )


def build(make: Callable, key=None):
    """`make(key)` under `eqx.filter_jit`: one compile instead of one per initialiser op."""
    return eqx.filter_jit(make)(jax.random.key(0) if key is None else key)


def battery_model(case: BatteryCase, dtype: str):
    """The case's perturbed bijection with `dtype` parameters (built once per case, jitted)."""
    if case.name not in _BASE:
        fresh = build(case.make)
        _BASE[case.name] = perturb(fresh, jax.random.key(1), case.scale)
    return _cast(_BASE[case.name], dtype)


def battery_report(case: BatteryCase, dtype: str):
    """Build the case's (perturbed) bijection and evaluate the battery once per (case, dtype)."""
    key = (case.name, dtype)
    if key not in _CACHE:
        model = battery_model(case, dtype)
        z, far = case.points(dtype), case.far(dtype)
        conf, (values, g_model, g_input) = _battery(
            model, z, case.context(dtype, z.shape[0]), far, case.context(dtype, far.shape[0])
        )
        _CACHE[key] = dict(
            model=model,
            z=np.asarray(z),
            conf={k: np.asarray(v) for k, v in conf.items()},
            far_values=[np.asarray(v) for v in values],
            far_grads=[np.asarray(g) for g in jax.tree.leaves(g_model)] + [np.asarray(g_input)],
        )
    return _CACHE[key]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-8) if dtype == "float64" else dict(rtol=2e-3, atol=2e-3)


def check_round_trip(case, dtype):
    r = battery_report(case, dtype)
    assert r["conf"]["x"].dtype == np.dtype(dtype)
    atol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(r["conf"]["z_back"], r["z"], atol=atol, rtol=0)
    # a perturbed layer must actually move the points, or the battery proves nothing
    assert np.max(np.abs(r["conf"]["x"] - r["z"])) > 1e-3


def check_log_det(case, dtype):
    c = battery_report(case, dtype)["conf"]
    np.testing.assert_allclose(c["ld"], c["slogdet_fwd"], **_tol(dtype))
    np.testing.assert_allclose(c["ld_inv"], -c["ld"], **_tol(dtype))
    assert np.max(np.abs(c["ld"])) > 1e-3  # non-trivial Jacobians


def check_far_out(case, dtype):
    r = battery_report(case, dtype)
    for v in r["far_values"]:
        assert np.all(np.isfinite(v)), v
    for g in r["far_grads"]:
        assert np.all(np.isfinite(g)), g


def check_errors(case):
    model = battery_model(case, "float32")
    good = jnp.zeros(case.dim)
    ctx = None if case.cond_dim is None else jnp.zeros(case.cond_dim)
    for method in (model.transform_and_log_det, model.inverse_and_log_det):
        with pytest.raises(ValueError, match=r"expected input shape"):
            method(jnp.zeros(case.dim + 1), ctx)
        with pytest.raises(ValueError, match=r"expected input shape"):
            method(jnp.zeros((2, case.dim)), ctx)
        if case.cond_dim is None:
            with pytest.raises(ValueError, match=r"takes no context"):
                method(good, jnp.zeros(2))
        else:
            with pytest.raises(ValueError, match=r"got None"):
                method(good)
            with pytest.raises(ValueError, match=r"expected context shape"):
                method(good, jnp.zeros(case.cond_dim + 1))


def battery_tests(cases):
    """Return the four parametrized battery test functions for `cases`."""
    ids = [c.name for c in cases]
    p = pytest.mark.parametrize("case", cases, ids=ids)

    @p
    def test_round_trip(case, dtype):
        check_round_trip(case, dtype)

    @p
    def test_log_det_matches_jacobian(case, dtype):
        check_log_det(case, dtype)

    @p
    def test_far_out_inputs_finite(case, dtype):
        check_far_out(case, dtype)

    @p
    def test_shape_and_context_errors(case):
        check_errors(case)

    return (
        test_round_trip,
        test_log_det_matches_jacobian,
        test_far_out_inputs_finite,
        (test_shape_and_context_errors),
    )


# ------------------------------------------------- RationalQuadraticSpline battery

CASES = [
    BatteryCase(
        "rqs",
        lambda k: RationalQuadraticSpline((3,), knots=5, key=k),
        dim=3,
        spline=True,
        scale=0.3,
    ),
    BatteryCase(
        "rqs_ctx",
        lambda k: RationalQuadraticSpline((3,), knots=5, key=k, cond_dim=2, width=8, depth=1),
        dim=3,
        cond_dim=2,
        spline=True,
        scale=0.3,
    ),
]

(
    test_round_trip,
    test_log_det_matches_jacobian,
    test_far_out_inputs_finite,
    test_shape_and_context_errors,
) = battery_tests(CASES)


# ------------------------------------------------------------- spline maths


_fwd = jax.jit(rational_quadratic_spline)
_inv = jax.jit(rational_quadratic_spline_inverse)


@pytest.fixture(scope="module")
def knots64():
    """Knots of 6 random splines (K = 8, B = 3) as float64 numpy arrays."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        params = jax.random.normal(jax.random.key(3), (6, 23))
        return tuple(np.asarray(k) for k in rational_quadratic_knots(params, 3.0))
    finally:
        jax.config.update("jax_enable_x64", previous)


def _grid(n=50, lo=-3.0, hi=3.0):
    """(n, 6): the same n points for each of the 6 splines."""
    return jnp.asarray(np.tile(np.linspace(lo, hi, n)[:, None], (1, 6)))


def test_knots_structure(knots64):
    xk, yk, dk = knots64
    assert xk.shape == yk.shape == dk.shape == (6, 9)
    for k in (xk, yk):
        np.testing.assert_array_equal(k[:, 0], -3.0)
        np.testing.assert_array_equal(k[:, -1], 3.0)
        assert np.all(np.diff(k, axis=-1) >= 6e-3 * (1 - 1e-9))  # minimum bin 1e-3 · 2B
    np.testing.assert_array_equal(dk[:, [0, -1]], 1.0)
    assert np.all(dk >= 1e-3)


def test_zero_params_identity(x64):
    knots = rational_quadratic_knots(jnp.zeros((4, 23)))
    x = jnp.array([-2.9, -0.3, 1.1, 2.99])
    y, logd = rational_quadratic_spline(x, knots)
    np.testing.assert_allclose(y, x, atol=1e-14)
    np.testing.assert_allclose(logd, 0.0, atol=1e-14)


def test_round_trip_inside_bounds(knots64, x64):
    x = _grid(200, -2.999, 2.999)
    y, ld = _fwd(x, knots64)
    x_back, ld_inv = _inv(y, knots64)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(x_back, x, atol=1e-10, rtol=0)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-9, rtol=0)
    assert np.all(np.abs(y) <= 3.0)
    assert np.all(np.diff(y, axis=0) > 0)  # monotone
    assert np.max(np.abs(y - x)) > 0.1  # the random splines are far from the identity


def test_derivative_matches_finite_differences(knots64, x64):
    x = _grid(37, -2.95, 2.95)
    h = 1e-6
    y, ld = _fwd(x, knots64)
    fd = (_fwd(x + h, knots64)[0] - _fwd(x - h, knots64)[0]) / (2 * h)
    np.testing.assert_allclose(np.exp(ld), fd, rtol=1e-6, atol=1e-8)
    fd_inv = (_inv(y + h, knots64)[0] - _inv(y - h, knots64)[0]) / (2 * h)
    np.testing.assert_allclose(np.exp(_inv(y, knots64)[1]), fd_inv, rtol=1e-6, atol=1e-8)


def test_identity_outside_and_c1_at_bounds(knots64, x64):
    far = np.array([-1e3, -7.0, -3.0001, 3.0001, 5.0, 1e200])
    x = jnp.asarray(np.tile(far[:, None], (1, 6)))
    for fn in (_fwd, _inv):
        y, ld = fn(x, knots64)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(ld, 0.0)
    # the spline branch itself joins the tails C¹: value ±B and slope 1 at ±B
    edge = jnp.asarray(np.tile(np.array([-3.0, 3.0])[:, None], (1, 6)))
    for fn in (_fwd, _inv):
        ye, lde = fn(edge, knots64)
        np.testing.assert_allclose(ye, edge, atol=1e-12)
        np.testing.assert_allclose(lde, 0.0, atol=1e-12)


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_function_gradients_finite_everywhere(dtype_name):
    """Clip before mask: gradients wrt inputs and parameters finite at ±1e3, ~limit, ±inf."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", dtype_name == "float64")
    try:
        big = 1e30 if dtype_name == "float32" else 1e300
        x = jnp.asarray([1e3, -1e3, big, -big, np.inf, -np.inf, 2.0, 3.0], dtype_name)
        params = jax.random.normal(jax.random.key(0), (8, 23), dtype_name)

        def loss(p, v):
            kn = rational_quadratic_knots(p)
            y, ld = rational_quadratic_spline(v, kn)
            w, ld2 = rational_quadratic_spline_inverse(v, kn)
            return jnp.sum(jnp.tanh(y)) + jnp.sum(ld) + jnp.sum(jnp.tanh(w)) + jnp.sum(ld2)

        gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
        assert np.all(np.isfinite(gp)) and np.all(np.isfinite(gx))
        assert gp.dtype == np.dtype(dtype_name)
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_bad_param_count():
    with pytest.raises(ValueError, match="3K - 1"):
        rational_quadratic_knots(jnp.zeros((2, 7)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(knots=0), "knots"),
        (dict(interval=-1.0), "interval"),
        (dict(cond_dim=0, key=jax.random.key(0)), "cond_dim"),
        (dict(cond_dim=2), "key"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RationalQuadraticSpline((3,), **kwargs)


def test_fresh_spline_is_identity_and_context_matters():
    rqs = build(lambda k: RationalQuadraticSpline((2, 2), key=k, cond_dim=1, width=8, depth=1))
    run = fast_jit(lambda m, v, c: m.transform_and_log_det(v, c))
    z = jnp.array([[0.3, -1.2], [2.0, 7.0]])
    x, ld = run(rqs, z, jnp.ones(1))
    np.testing.assert_allclose(x, z, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)
    moved = perturb(rqs, jax.random.key(2))
    x1 = run(moved, z, jnp.ones(1))[0]
    x2 = run(moved, z, -jnp.ones(1))[0]
    assert np.max(np.abs(x1 - x2)) > 1e-3
