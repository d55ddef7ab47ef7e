"""Tests for sciml.pinn.operators: every engine against analytic derivatives and each other."""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.jet import jet

from sciml.nn import MLP
from sciml.pinn import operators as ops
from sciml.pinn.operators import (
    ENGINES,
    EXACT_ENGINES,
    divergence,
    forward_laplacian,
    gradient,
    hessian,
    laplacian,
    partial,
    time_derivative,
    value_and_derivatives,
)

NESTED = ("reverse", "forward", "forward_over_reverse", "taylor")
PI = np.pi


# ---------------------------------------------------------------------------
# analytic fields


def sine2(x):
    return jnp.sin(PI * x[0]) * jnp.sin(PI * x[1])


def poly(x):  # u = x³ y²
    return x[0] ** 3 * x[1] ** 2


def vec_field(x):  # F(x) = (x0² x1, sin x1 · x2², x0 x2³)
    return jnp.stack([x[0] ** 2 * x[1], jnp.sin(x[1]) * x[2] ** 2, x[0] * x[2] ** 3])


X2 = np.array([0.3, 0.45])
X3 = np.array([0.7, -0.4, 1.3])


def test_sine_product():
    @jax.jit
    def derivatives(x):
        out = {}
        for e in EXACT_ENGINES:
            out[e] = [laplacian(sine2, x, engine=e), gradient(sine2, x, engine=e)]
            if e != "forward_laplacian":
                out[e].append(hessian(sine2, x, engine=e))
        return out

    u = sine2(X2)
    mixed = PI**2 * np.cos(PI * X2[0]) * np.cos(PI * X2[1])
    expected = [
        -2 * PI**2 * u,
        PI
        * np.array(
            [np.cos(PI * X2[0]) * np.sin(PI * X2[1]), np.sin(PI * X2[0]) * np.cos(PI * X2[1])]
        ),
        np.array([[-(PI**2) * u, mixed], [mixed, -(PI**2) * u]]),
    ]
    for engine, got in derivatives(jnp.asarray(X2)).items():
        for g, want in zip(got, expected):
            np.testing.assert_allclose(g, want, rtol=1e-12, err_msg=engine)


def test_polynomial_mixed_partials():
    x, y = 0.7, -1.3
    expected = {
        (0,): 3 * x**2 * y**2,
        (0, 0): 6 * x * y**2,
        (0, 1): 6 * x**2 * y,
        (-1, -1): 2 * x**3,
        (0, 0, 0): 6 * y**2,
        (0, 0, 1): 12 * x * y,
        (1, 0, 1): 6 * x**2,
        (0, 0, 1, 1): 12 * x,
    }
    fn = jax.jit(lambda pt: {e: [partial(poly, pt, a, engine=e) for a in expected] for e in NESTED})
    for engine, got in fn(jnp.array([x, y])).items():
        for g, (axes, want) in zip(got, expected.items()):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12, err_msg=f"{engine} {axes}")


def test_third_order_kdv_term():
    def u(x):  # u = sin(2x) e^t, u_xxx = -8 cos(2x) e^t, u_t = u
        return jnp.sin(2 * x[0]) * jnp.exp(x[1])

    @jax.jit
    def derivatives(pt):
        out = {
            e: (partial(u, pt, (0, 0, 0), engine=e), time_derivative(u, pt, engine=e))
            for e in NESTED
        }
        _, kdv = value_and_derivatives(u, pt, [(0,), (0, 0, 0), (1,)], engine="taylor")
        out["value_and_derivatives"] = (kdv[(0, 0, 0)], kdv[(1,)])
        return out

    pt = jnp.array([0.4, 0.25])
    for engine, (uxxx, ut) in derivatives(pt).items():
        np.testing.assert_allclose(
            uxxx, -8 * np.cos(0.8) * np.exp(0.25), rtol=1e-13, err_msg=engine
        )
        np.testing.assert_allclose(ut, np.sin(0.8) * np.exp(0.25), rtol=1e-13, err_msg=engine)


def test_taylor_convention_on_cube():
    """jet series are derivatives (not Taylor coefficients): x³ at 2 gives 12, 12, 6."""
    if "factorial_scaled" in inspect.signature(jet).parameters:
        assert ops._JET_KWARGS == {"factorial_scaled": True}
    u = lambda x: x[0] ** 3  # noqa: E731
    pt = jnp.array([2.0])
    primal, series = jet(u, (pt,), ((jnp.ones(1), jnp.zeros(1), jnp.zeros(1)),), **ops._JET_KWARGS)
    np.testing.assert_allclose([primal, *series], [8.0, 12.0, 12.0, 6.0], rtol=1e-14)
    value, d = jax.jit(
        lambda pt: value_and_derivatives(u, pt, [(0,), (0, 0), (0, 0, 0)], engine="taylor")
    )(pt)
    np.testing.assert_allclose(value, 8.0)
    np.testing.assert_allclose([d[(0,)], d[(0, 0)], d[(0, 0, 0)]], [12.0, 12.0, 6.0], rtol=1e-14)


def test_value_and_derivatives_mixed_and_other_engine():
    pt = jnp.array([0.7, -1.3])
    want = [(0,), (0, 0, 0), (1,), (0, 1)]
    (v_t, d_t), (v_r, d_r) = jax.jit(
        lambda pt: [value_and_derivatives(poly, pt, want, engine=e) for e in ("taylor", "forward")]
    )(pt)
    np.testing.assert_allclose([v_t, v_r], poly(pt))
    expected = [3 * 0.7**2 * 1.3**2, 6 * 1.3**2, 2 * 0.7**3 * -1.3, 6 * 0.7**2 * -1.3]
    for axes, e in zip(want, expected):
        np.testing.assert_allclose([d_t[axes], d_r[axes]], e, rtol=1e-12)


def test_vector_fields():
    x0, x1, x2 = X3

    @jax.jit
    def derivatives(pt):
        out = {}
        for e in EXACT_ENGINES:
            out[e] = [divergence(vec_field, pt, engine=e), laplacian(vec_field, pt, engine=e)]
            out[e].append(gradient(vec_field, pt, engine=e)[0])
            if e != "forward_laplacian":
                out[e].append(hessian(vec_field, pt, engine=e)[2])
                out[e].append(partial(vec_field, pt, (0, 2), engine=e))
        return out

    expected = [
        2 * x0 * x1 + np.cos(x1) * x2**2 + 3 * x0 * x2**2,
        [2 * x1, -np.sin(x1) * x2**2 + 2 * np.sin(x1), 6 * x0 * x2],
        [2 * x0 * x1, x0**2, 0.0],
        [[0, 0, 3 * x2**2], [0, 0, 0], [3 * x2**2, 0, 6 * x0 * x2]],
        [0, 0, 3 * x2**2],
    ]
    for engine, got in derivatives(jnp.asarray(X3)).items():
        for g, want in zip(got, expected):
            np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-15, err_msg=engine)


# ---------------------------------------------------------------------------
# a random MLP: all exact engines agree to round-off


def _fields(mlp):
    def scalar(x):
        return mlp(x)[0]

    def hard_constraint(x):  # vanishes on the boundary of the unit square in (x0, x1)
        return x[0] * (1 - x[0]) * x[1] * (1 - x[1]) * mlp(x)[0]

    def embedded(x):  # sin/cos input embedding, then the network
        z = jnp.concatenate([jnp.cos(PI * x[:2]), jnp.sin(PI * x[2:])])
        return mlp(z)[1]

    return {"scalar": scalar, "hard": hard_constraint, "embedded": embedded, "vector": mlp}


def _mlp(act=jnp.tanh, out=2, seed=0):
    return MLP(
        3, out, width=16, depth=2, activation=act, dtype=jnp.float64, key=jax.random.key(seed)
    )


@pytest.fixture(scope="module")
def points():
    return jax.random.uniform(jax.random.key(3), (4, 3), jnp.float64, -1.0, 1.0)


def test_mlp_engines_agree(points):
    fields = {k: v for k, v in _fields(_mlp()).items() if k in ("scalar", "vector")}

    @jax.jit
    def everything(x):
        return {
            name: {e: (laplacian(f, x, engine=e), gradient(f, x, engine=e)) for e in EXACT_ENGINES}
            for name, f in fields.items()
        }

    for name, by_engine in everything(points[0]).items():
        ref_lap, ref_grad = by_engine["reverse"]
        for engine, (lap, grad) in by_engine.items():
            np.testing.assert_allclose(lap, ref_lap, rtol=1e-12, err_msg=f"{name} {engine}")
            np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, err_msg=f"{name} {engine}")


def test_forward_laplacian_on_mlp_fields(points):
    """tanh/sin/gelu/silu networks, hard constraint, sin/cos embedding, vector output."""
    cases = {
        "tanh hard": _fields(_mlp(jnp.tanh, seed=1))["hard"],
        "sin embedded": _fields(_mlp(jnp.sin, seed=2))["embedded"],
        "gelu scalar": _fields(_mlp(jax.nn.gelu, seed=3))["scalar"],
        "silu vector": _fields(_mlp(jax.nn.silu, seed=4))["vector"],
    }

    @jax.jit
    def both(x):
        mine = {n: forward_laplacian(f, x) for n, f in cases.items()}
        # references straight from JAX, independent of the module's code paths
        ref = {
            n: (f(x), jax.jacrev(f)(x), jnp.trace(jax.hessian(f)(x), axis1=-2, axis2=-1))
            for n, f in cases.items()
        }
        return mine, ref

    mine, ref = both(points[1])
    for name in cases:
        for got, want in zip(mine[name], ref[name]):
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)


def test_mlp_hessian_and_partials_agree(points):
    mlp = MLP(3, 1, width=16, depth=1, dtype=jnp.float64, key=jax.random.key(2))
    f = _fields(mlp)["scalar"]
    axes_list = [(0, 1, 2), (2, 1, 1)]

    @jax.jit
    def everything(x):
        h = {e: hessian(f, x, engine=e) for e in NESTED}
        p = {e: [partial(f, x, a, engine=e) for a in axes_list] for e in NESTED}
        return h, p, jax.hessian(f)(x), jax.jacfwd(jax.jacfwd(jax.jacrev(f)))(x)

    h, p, ref, ref3 = everything(points[2])
    for engine in NESTED:
        np.testing.assert_allclose(h[engine], ref, rtol=1e-12, atol=1e-14, err_msg=engine)
        for got, axes in zip(p[engine], axes_list):
            np.testing.assert_allclose(got, ref3[axes], rtol=1e-10, atol=1e-13, err_msg=engine)


def test_batched_jit_matches_pointwise(points):
    f = _fields(_mlp(out=1, seed=2))["hard"]
    lap = jax.jit(jax.vmap(lambda x: laplacian(f, x, engine="forward_laplacian")))(points)
    ref = jax.jit(lambda x: laplacian(f, x, engine="taylor"))
    np.testing.assert_allclose(lap, [ref(x) for x in points], rtol=1e-12)


def _laplacian_loss(model, points, engine):
    f = lambda x: x[0] * (1 - x[0]) * model(x)[0]  # noqa: E731
    lap = jax.vmap(lambda x: laplacian(f, x, engine=engine))(points)
    return jnp.mean(lap**2)


@pytest.fixture(scope="module")
def param_gradients(points):
    """d/dθ mean_x (Δu_θ(x))² for every exact engine (what PINN training computes), and a
    central difference of the loss along a random parameter direction."""
    mlp = MLP(3, 1, width=16, depth=1, dtype=jnp.float64, key=jax.random.key(6))
    params, static = eqx.partition(mlp, eqx.is_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = jax.tree.unflatten(
        treedef, [jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)]
    )
    eps = 1e-5

    def loss(p, engine):
        return _laplacian_loss(eqx.combine(p, static), points, engine)

    @jax.jit
    def run(p):
        grads = {e: jax.grad(loss)(p, e) for e in EXACT_ENGINES}
        shift = lambda s: jax.tree.map(lambda a, v: a + s * v, p, direction)  # noqa: E731
        fd = (loss(shift(eps), "forward_laplacian") - loss(shift(-eps), "forward_laplacian")) / (
            2 * eps
        )
        return grads, fd

    grads, fd = run(params)
    return grads, fd, direction


def test_parameter_gradients_agree_across_engines(param_gradients):
    grads, _, _ = param_gradients
    ref = jax.tree.leaves(grads["reverse"])
    assert max(float(jnp.max(jnp.abs(g))) for g in ref) > 1e-6
    for engine, g in grads.items():
        for a, b in zip(jax.tree.leaves(g), ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14, err_msg=engine)


def test_parameter_gradient_matches_finite_difference(param_gradients):
    grads, fd, direction = param_gradients
    g = grads["forward_laplacian"]
    directional = sum(
        jnp.vdot(a, v) for a, v in zip(jax.tree.leaves(g), jax.tree.leaves(direction))
    )
    np.testing.assert_allclose(fd, directional, rtol=1e-6)


def test_forward_mode_through_forward_laplacian(points):
    mlp = MLP(3, 1, width=8, depth=1, activation=jnp.sin, dtype=jnp.float64, key=jax.random.key(5))

    def lap_of(bias, engine):
        model = eqx.tree_at(lambda m: m.layers[-1].bias, mlp, bias)
        return laplacian(lambda x: model(x)[0] * jnp.sum(x**2), points[2], engine=engine)

    b = mlp.layers[-1].bias
    fwd, rev = jax.jit(
        lambda b: (jax.jacfwd(lap_of)(b, "forward_laplacian"), jax.jacrev(lap_of)(b, "reverse"))
    )(b)
    np.testing.assert_allclose(fwd, rev, rtol=1e-12)


def test_forward_laplacian_primitive_coverage():
    """Bilinear, multi-operand elementwise, structural and zero-derivative primitives."""

    def f(x):
        r2 = x @ x  # dot_general with both operands depending on x
        a = jnp.where(x[0] > 0, x[0] ** 2, -x[0])  # comparison + select_n
        b = jnp.cumsum(x)[::-1].reshape(1, 3).T[:, 0]  # cumsum, rev, reshape, transpose
        c = x[1] / (1 + r2) + x[0] ** x[2] + jnp.arctan2(x[0], x[1])  # div, pow, atan2
        e = jnp.sqrt(1 + r2) + jax.lax.rsqrt(2 + x[2] ** 2) + jnp.log1p(x[0] ** 2)
        g = jax.nn.sigmoid(x[1]) * jax.scipy.special.erf(x[2]) + jnp.maximum(x[0], x[1])
        h = jax.lax.stop_gradient(x[0]) * x[1] + jax.nn.softplus(x[2])
        s = jnp.stack([x[0], x[1] * x[2]]) @ jnp.array([1.0, 2.0])
        return a * jnp.sum(b) + c + e + g + h + s + jnp.float64(3.0)

    @jax.jit
    def both(x):
        return forward_laplacian(f, x), (f(x), jax.grad(f)(x), jnp.trace(jax.hessian(f)(x)))

    mine, ref = both(jnp.array([0.6, 0.3, 1.2]))
    for got, want in zip(mine, ref):
        np.testing.assert_allclose(got, want, rtol=1e-12)

    const_value, const_grad, const_lap = forward_laplacian(lambda x: jnp.float64(2.0), X3)
    assert const_value == 2.0 and const_grad.shape == (3,) and not jnp.any(const_grad)
    assert const_lap == 0.0


# ---------------------------------------------------------------------------
# randomised engines: unbiased, within 5 standard errors over many keys

A = np.array([0.3, -0.5, 0.8, 0.1, -0.4])
XR = np.array([0.2, 0.1, -0.3, 0.5, 0.4])


def expa(x):  # H = a aᵀ u, Δu = |a|² u
    return jnp.exp(jnp.asarray(A) @ x)


def _estimates(engine, n, **kw):
    keys = jax.random.split(jax.random.key(11), n)
    fn = jax.jit(jax.vmap(lambda k: laplacian(expa, jnp.asarray(XR), engine=engine, key=k, **kw)))
    return np.asarray(fn(keys))


@pytest.mark.parametrize(
    "engine, kw, per_sample_var",
    [
        ("hutchinson", {"probe": "rademacher"}, 2 * (np.sum(A**2) ** 2 - np.sum(A**4))),
        ("hutchinson", {"probe": "gaussian"}, 2 * np.sum(A**2) ** 2),
        ("sdgd", {"num_dims": 2}, None),
        ("stde", {"num_dims": 2}, None),
    ],
)
def test_randomised_unbiased(engine, kw, per_sample_var):
    n, probes = 4000, 2
    u = float(expa(XR))
    exact = np.sum(A**2) * u
    est = _estimates(engine, n, num_probes=probes, **kw)
    se = est.std(ddof=1) / np.sqrt(n)
    assert se > 1e-3 * abs(exact)  # really random
    assert abs(est.mean() - exact) < 5 * se
    if per_sample_var is not None:  # variance of the mean of `probes` probes, vᵀHv = u (a·v)²
        np.testing.assert_allclose(est.var(ddof=1), per_sample_var * u**2 / probes, rtol=0.2)
    if engine != "hutchinson":  # each estimate is (d/k) Σ_{i∈I} a_i² u over 2 distinct dims
        terms = 2.5 * u * (A[:, None] ** 2 + A[None, :] ** 2)
        possible = terms[~np.eye(5, dtype=bool)]
        assert np.all(np.min(np.abs(est[:, None] - possible[None]), axis=1) < 1e-12)


def test_dimension_sampling_exact_with_all_dims():
    @jax.jit
    def both(key):
        pt = jnp.asarray(XR)
        return [laplacian(expa, pt, engine=e, key=key, num_dims=5) for e in ("sdgd", "stde")]

    np.testing.assert_allclose(both(jax.random.key(0)), np.sum(A**2) * float(expa(XR)), rtol=1e-13)


def test_randomised_divergence_unbiased():
    x0, x1, x2 = X3
    exact = 2 * x0 * x1 + np.cos(x1) * x2**2 + 3 * x0 * x2**2
    pt = jnp.asarray(X3)

    @jax.jit
    @jax.vmap
    def estimates(k):
        return (
            divergence(vec_field, pt, engine="hutchinson", key=k, num_probes=1),
            divergence(vec_field, pt, engine="sdgd", key=k, num_dims=1),
            divergence(vec_field, pt, engine="stde", key=k, num_dims=3),  # all dims: exact
        )

    hutch, sdgd, full = map(np.asarray, estimates(jax.random.split(jax.random.key(12), 2000)))
    for est in (hutch, sdgd):
        assert abs(est.mean() - exact) < 5 * est.std(ddof=1) / np.sqrt(len(est))
    np.testing.assert_allclose(full, exact, rtol=1e-13)


# ---------------------------------------------------------------------------
# errors


def test_errors():
    x = jnp.asarray(X3)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        laplacian(sine2, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(\)"):
        gradient(sine2, jnp.float64(1.0))
    with pytest.raises(ValueError, match="floating-point.*int"):
        laplacian(sine2, jnp.array([1, 2]))
    for engine in ("reverse", "forward_laplacian"):
        with pytest.raises(ValueError, match=r"scalar.*vector.*output shape \(3, 3\)"):
            laplacian(lambda x: jnp.outer(x, x), x, engine=engine)
    allowed = ", ".join(ENGINES)
    with pytest.raises(ValueError, match=f"unknown engine 'jet'; allowed: {allowed}"):
        laplacian(sine2, x, engine="jet")
    with pytest.raises(ValueError, match="'hutchinson' is randomised and needs key"):
        laplacian(sine2, x, engine="hutchinson")
    with pytest.raises(ValueError, match="'sdgd' is randomised and needs key"):
        divergence(vec_field, x, engine="sdgd")
    with pytest.raises(ValueError, match="unknown probe 'normal'; allowed: rademacher, gaussian"):
        laplacian(sine2, x, engine="hutchinson", key=jax.random.key(0), probe="normal")
    with pytest.raises(ValueError, match="num_dims must be a positive integer, got 0"):
        laplacian(sine2, x, engine="sdgd", key=jax.random.key(0), num_dims=0)
    with pytest.raises(ValueError, match="'forward_laplacian' cannot compute"):
        hessian(sine2, x, engine="forward_laplacian")
    with pytest.raises(ValueError, match="'hutchinson' cannot compute"):
        gradient(sine2, x, engine="hutchinson")
    with pytest.raises(ValueError, match=r"pure second derivatives only, got axes=\(0, 1\)"):
        partial(sine2, x, (0, 1), engine="forward_laplacian")
    with pytest.raises(ValueError, match=r"axes must be integers in \[-3, 3\).*\(0, 3\)"):
        partial(sine2, x, (0, 3))
    with pytest.raises(ValueError, match=r"R\^d to R\^d.*\(2,\)"):
        divergence(lambda x: x[:2], x)
    with pytest.raises(NotImplementedError, match="'reduce_max'.*engine='taylor'"):
        laplacian(lambda x: jnp.max(x), x, engine="forward_laplacian")
    with pytest.raises(NotImplementedError, match="'(scan|while)'.*engine='taylor'"):
        forward_laplacian(lambda x: jax.lax.fori_loop(0, 2, lambda i, y: jnp.sin(y), x)[0], x)


def test_weighted_forward_laplacian_gives_single_second_derivatives():
    """`weights = e_i` turns the Laplacian channel into ∂²/∂x_i², with the full gradient."""

    def u(x):
        return jnp.sin(2.0 * x[0]) * jnp.exp(0.5 * x[1]) + x[0] ** 2 * x[1] ** 3

    x = jnp.array([0.4, -0.3])
    value, grad, u_xx = ops.forward_laplacian(u, x, weights=jnp.array([1.0, 0.0]))
    exact_xx = -4.0 * jnp.sin(0.8) * jnp.exp(-0.15) + 2.0 * (-0.3) ** 3
    np.testing.assert_allclose(u_xx, exact_xx, rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(u)(x), rtol=1e-12)
    np.testing.assert_allclose(value, u(x), rtol=1e-14)
    _, d = ops.value_and_derivatives(
        u, x, [(0,), (1,), (0, 0), (1, 1), (0, 1)], engine="forward_laplacian"
    )
    ref = jax.hessian(u)(x)
    np.testing.assert_allclose(d[(0, 0)], ref[0, 0], rtol=1e-12)
    np.testing.assert_allclose(d[(1, 1)], ref[1, 1], rtol=1e-12)
    np.testing.assert_allclose(d[(0, 1)], ref[0, 1], rtol=1e-12)
    np.testing.assert_allclose(
        ops.partial(u, x, (1, 1), engine="forward_laplacian"), ref[1, 1], rtol=1e-12
    )
    with pytest.raises(ValueError, match="weights must have"):
        ops.forward_laplacian(u, x, weights=jnp.ones(3))
