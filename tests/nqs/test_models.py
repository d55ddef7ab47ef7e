"""NQS models: RBM, Jastrow, FFN and the translation-symmetric models against independent numpy
formulas, the stable log cosh, translation invariance, and gradients against finite differences."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sciml.nqs._lattice import chain, square
from sciml.nqs._models import FFN, RBM, Jastrow, SymmetricFFN, SymmetricRBM, log_cosh

DTYPES = ["float32", "float64", "complex64", "complex128"]
TOL = {"float32": 2e-5, "complex64": 2e-5, "float64": 1e-12, "complex128": 1e-12}


@pytest.fixture(
    params=[p if p != "complex64" else pytest.param(p, marks=pytest.mark.slow) for p in DTYPES]
)
def dtype(request):  # complex64 in the slow set: float32 and complex128 cover its two halves
    """Each parameter dtype; the 64-bit ones with JAX's x64 switched on for the test."""
    if request.param in ("float64", "complex128"):
        request.getfixturevalue("x64")
    return request.param


@eqx.filter_jit
def evaluate(model, s):
    """log ψ of a batch of configurations `s` `(B, N)`, one compiled program per model type."""
    return jax.vmap(model)(s)


def all_states(n):
    """All 2^n configurations of ±1, independently of SpinHilbert."""
    return np.array(list(itertools.product([1.0, -1.0], repeat=n)))


def randomize(model, seed, scale=0.5):
    """Replace every parameter by random O(scale) values, so the tests do not sit near 0."""
    rng = np.random.default_rng(seed)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def draw(leaf):
        x = rng.normal(size=leaf.shape)
        if jnp.iscomplexobj(leaf):
            x = x + 1j * rng.normal(size=leaf.shape)
        return jnp.asarray(scale * x, leaf.dtype)

    return eqx.combine(jax.tree_util.tree_map(draw, params), static)


def np_params(leaf):
    return np.asarray(leaf).astype(np.complex128 if jnp.iscomplexobj(leaf) else np.float64)


def assert_log_close(actual, expected, tol):
    """log ψ agree: real parts close, imaginary parts close modulo 2π (the branch freedom)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = 1 + np.abs(expected)
    np.testing.assert_array_less(np.abs(actual.real - expected.real), tol * scale)
    dphase = np.angle(np.exp(1j * (actual.imag - expected.imag)))
    np.testing.assert_array_less(np.abs(dphase), tol * scale)


def np_log_cosh(z):
    return np.log(np.cosh(z))


# -- log cosh --------------------------------------------------------------------------------


def test_log_cosh_matches_numpy(x64):
    rng = np.random.default_rng(0)
    x = rng.uniform(-30, 30, 200)
    np.testing.assert_allclose(log_cosh(jnp.asarray(x)), np_log_cosh(x), rtol=1e-13, atol=1e-13)
    z = rng.uniform(-20, 20, 300) + 1j * rng.uniform(-10, 10, 300)
    assert_log_close(log_cosh(jnp.asarray(z)), np_log_cosh(z), 1e-12)
    # float32 and complex64 keep their dtype and single precision
    out = log_cosh(jnp.asarray(z, jnp.complex64))
    assert out.dtype == jnp.complex64
    assert_log_close(out, np_log_cosh(z), 1e-5)
    assert log_cosh(jnp.asarray(x, jnp.float32)).dtype == jnp.float32


@pytest.mark.parametrize("z", [1e4, -1e4, 1e4 + 3j, -1e4 - 2.5j, 3 + 1e4j, 1e4 + 1e4j])
def test_log_cosh_large_arguments_finite(z, x64):
    value = log_cosh(jnp.asarray(z))
    assert np.isfinite(complex(value))
    if abs(np.real(z)) > 100:
        # cosh z = e^{±z}(1 + e^{∓2z})/2 exactly, with e^{∓2z} below double precision here
        zp = z if np.real(z) > 0 else -z
        assert_log_close(value, zp - np.log(2.0), 1e-14)
    # the derivative is tanh z (±1 for large |Re z|), finite
    if np.iscomplexobj(z):
        grad = jax.grad(log_cosh, holomorphic=True)(jnp.asarray(z, jnp.complex128))
    else:
        grad = jax.grad(log_cosh)(jnp.asarray(z))
    assert np.isfinite(complex(grad))
    np.testing.assert_allclose(complex(grad), np.tanh(z), atol=1e-12)


def test_log_cosh_large_float32():
    value = log_cosh(jnp.asarray([1e4, -1e4], jnp.float32))
    np.testing.assert_allclose(value, 1e4 - np.log(2.0), rtol=1e-6)
    assert np.isfinite(jax.grad(lambda x: log_cosh(x).sum())(jnp.asarray([1e4, -1e4]))).all()


# -- RBM, Jastrow, FFN against numpy ----------------------------------------------------------


@pytest.mark.parametrize("use_visible_bias", [True, False])
def test_rbm_matches_numpy(dtype, use_visible_bias):
    n = 6
    model = RBM(
        n, alpha=2, use_visible_bias=use_visible_bias, param_dtype=dtype, key=jax.random.key(0)
    )
    model = randomize(model, seed=1)
    s = all_states(n)
    out = evaluate(model, jnp.asarray(s))
    assert out.shape == (2**n,) and out.dtype == jnp.dtype(dtype)
    w, b = np_params(model.weights), np_params(model.hidden_bias)
    assert w.shape == (2 * n, n)
    expected = np.array([np.sum(np_log_cosh(b + w @ si)) for si in s])
    if use_visible_bias:
        expected = expected + s @ np_params(model.visible_bias)
    else:
        assert model.visible_bias is None
    assert_log_close(out, expected, TOL[dtype])


def test_jastrow_matches_double_sum(dtype):
    n = 5
    model = randomize(Jastrow(n, param_dtype=dtype, key=jax.random.key(0)), seed=2)
    w = np.asarray(model.matrix())
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(np.diag(w), 0)
    s = all_states(n)
    out = evaluate(model, jnp.asarray(s))
    assert out.dtype == jnp.dtype(dtype)
    pairs = np_params(model.pair_weights)
    expected = []
    for si in s:
        total, k = 0.0, 0
        for i in range(n):
            for j in range(i + 1, n):
                total += pairs[k] * si[i] * si[j]
                k += 1
        expected.append(total)
    assert_log_close(out, np.array(expected), TOL[dtype])
    # the matrix form is the same function: ½ sᵀWs
    assert_log_close(out, 0.5 * np.einsum("bi,ij,bj->b", s, w, s), TOL[dtype])


def test_ffn_matches_numpy(dtype):
    n, width, depth = 5, 4, 3
    act = jnp.tanh
    model = randomize(
        FFN(n, width, depth, activation=act, param_dtype=dtype, key=jax.random.key(0)), seed=3
    )
    s = all_states(n)
    out = evaluate(model, jnp.asarray(s))
    assert out.shape == (2**n,) and out.dtype == jnp.dtype(dtype)
    assert model.weights_hidden.shape == (depth - 1, width, width)
    expected = []
    for si in s:
        h = np.tanh(np_params(model.weights_in) @ si + np_params(model.bias_in))
        for layer in range(depth - 1):
            w, b = np_params(model.weights_hidden)[layer], np_params(model.bias_hidden)[layer]
            h = np.tanh(w @ h + b)
        expected.append(h.sum())
    assert_log_close(out, np.array(expected), TOL[dtype])


def test_ffn_depth_one_is_rbm_without_visible_bias(x64):
    n = 6
    ffn = randomize(FFN(n, 12, param_dtype="complex128", key=jax.random.key(0)), seed=4)
    assert ffn.weights_hidden is None
    rbm = RBM(n, alpha=2, use_visible_bias=False, param_dtype="complex128", key=jax.random.key(1))
    rbm = eqx.tree_at(lambda m: (m.weights, m.hidden_bias), rbm, (ffn.weights_in, ffn.bias_in))
    s = jnp.asarray(all_states(n))
    assert_log_close(evaluate(ffn, s), evaluate(rbm, s), 1e-12)


# -- translation symmetry ---------------------------------------------------------------------


def chain_translates(s):
    """All cyclic shifts of a chain configuration (numpy roll, not the lattice's tables)."""
    return np.stack([np.roll(s, t) for t in range(len(s))])


def square_translates(s):
    """All translations of a square-lattice configuration, site (x, y) = x·L + y."""
    size = int(round(np.sqrt(len(s))))
    grid = s.reshape(size, size)
    shifts = [
        np.roll(grid, (tx, ty), axis=(0, 1)).ravel() for tx in range(size) for ty in range(size)
    ]
    return np.stack(shifts)


LATTICES = {
    "chain8": (lambda: chain(8), chain_translates),
    "square4": (lambda: square(4), square_translates),
}


@pytest.mark.parametrize("name", sorted(LATTICES))
def test_symmetric_rbm_invariant_and_explicit_sum(name, x64):
    make_lattice, translates = LATTICES[name]
    lattice = make_lattice()
    n = lattice.n_sites
    model = SymmetricRBM(lattice, alpha=2, param_dtype="complex128", key=jax.random.key(0))
    model = randomize(model, seed=5, scale=0.3)
    rng = np.random.default_rng(6)
    s = rng.choice([-1.0, 1.0], size=(6, n))
    every = np.concatenate([translates(si) for si in s])  # (6·n_T, N)
    out = np.asarray(evaluate(model, jnp.asarray(every))).reshape(len(s), -1)
    # invariance: each configuration's translates give the same log ψ
    assert_log_close(out, np.repeat(out[:, :1], out.shape[1], axis=1), 1e-12)
    # an explicit sum over the translates, from numpy's rolls
    w, b, a = (np_params(x) for x in (model.filters, model.hidden_bias, model.visible_bias))
    expected = np.array(
        [a * si.sum() + sum(np.sum(np_log_cosh(b + w @ t)) for t in translates(si)) for si in s]
    )
    assert_log_close(out[:, 0], expected, 1e-12)
    # not trivially constant: different configurations differ
    assert np.ptp(out[:, 0].real) > 1e-3


@pytest.mark.parametrize("name", sorted(LATTICES))
def test_symmetric_ffn_invariant_and_reduces_to_symmetric_rbm(name):
    make_lattice, translates = LATTICES[name]
    lattice = make_lattice()
    model = randomize(SymmetricFFN(lattice, 3, depth=2, key=jax.random.key(0)), seed=7, scale=0.4)
    s = np.random.default_rng(8).choice([-1.0, 1.0], size=(4, lattice.n_sites))
    every = np.concatenate([translates(si) for si in s])
    out = np.asarray(evaluate(model, jnp.asarray(every))).reshape(len(s), -1)
    np.testing.assert_allclose(out, np.repeat(out[:, :1], out.shape[1], axis=1), rtol=2e-5)
    # depth 1 with log cosh: a symmetric RBM with α = width filters and no visible bias
    ffn = randomize(SymmetricFFN(lattice, 2, key=jax.random.key(1)), seed=9, scale=0.4)
    rbm = SymmetricRBM(lattice, alpha=2, use_visible_bias=False, key=jax.random.key(2))
    rbm = eqx.tree_at(
        lambda m: (m.filters, m.hidden_bias), rbm, (ffn.network.weights_in, ffn.network.bias_in)
    )
    np.testing.assert_allclose(
        evaluate(ffn, jnp.asarray(s)), evaluate(rbm, jnp.asarray(s)), rtol=2e-5
    )


# -- gradients against finite differences ----------------------------------------------------


MODELS = {
    "rbm": lambda dt, k: RBM(5, alpha=2, param_dtype=dt, key=k),
    "jastrow": lambda dt, k: Jastrow(5, param_dtype=dt, key=k),
    "ffn": lambda dt, k: FFN(5, 3, depth=2, param_dtype=dt, key=k),
    "symmetric_rbm": lambda dt, k: SymmetricRBM(chain(5), alpha=2, param_dtype=dt, key=k),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradient_matches_finite_differences_real(name, x64):
    model = randomize(MODELS[name]("float64", jax.random.key(0)), seed=10, scale=0.3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    s = jnp.asarray([1.0, -1.0, -1.0, 1.0, -1.0])

    def f(theta):
        return eqx.combine(unravel(theta), static)(s)

    grad = jax.jit(jax.grad(f))(flat)
    h = 1e-5
    v = jnp.asarray(np.random.default_rng(11).normal(size=(3, flat.size)))
    values = jax.jit(jax.vmap(f))(jnp.concatenate([flat + h * v, flat - h * v]))
    fd = (values[:3] - values[3:]) / (2 * h)
    np.testing.assert_allclose(v @ grad, fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradient_is_holomorphic_and_matches_finite_differences(name, x64):
    model = randomize(MODELS[name]("complex128", jax.random.key(0)), seed=12, scale=0.3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    assert flat.dtype == jnp.complex128
    s = jnp.asarray([-1.0, -1.0, 1.0, 1.0, -1.0])

    def f(theta):
        return eqx.combine(unravel(theta), static)(s)

    grad = jax.jit(jax.grad(f, holomorphic=True))(flat)
    rng = np.random.default_rng(13)
    h = 1e-5
    v = jnp.asarray(rng.normal(size=(2, flat.size)) + 1j * rng.normal(size=(2, flat.size)))
    # holomorphic: the derivatives along v and along i·v are Σ_k ∂_k f v_k and i Σ_k ∂_k f v_k
    directions = jnp.concatenate([v, 1j * v])
    values = jax.jit(jax.vmap(f))(jnp.concatenate([flat + h * directions, flat - h * directions]))
    fd = (values[:4] - values[4:]) / (2 * h)
    np.testing.assert_allclose(directions @ grad, fd, rtol=1e-7, atol=1e-9)
    _, tangent = jax.jvp(f, (flat,), (v[0],))
    np.testing.assert_allclose(tangent, grad @ v[0], rtol=1e-12)


# -- sizes and errors ------------------------------------------------------------------------


def test_n_parameters_and_shapes():
    key = jax.random.key(0)
    assert RBM(6, alpha=2, key=key).n_parameters == 6 + 12 + 72
    assert RBM(6, alpha=0.5, use_visible_bias=False, key=key).n_parameters == 3 + 18
    assert RBM(7, alpha=0.5, key=key).n_hidden == 3  # ⌊αN⌋
    assert Jastrow(6, key=key).n_parameters == 15
    assert FFN(6, 4, depth=3, key=key).n_parameters == 4 * 6 + 4 + 2 * (16 + 4)
    assert SymmetricRBM(square(4), alpha=3, key=key).n_parameters == 1 + 3 + 3 * 16
    assert SymmetricFFN(chain(6), 4, key=key).n_parameters == 4 * 6 + 4
    complex_rbm = RBM(4, param_dtype="complex64", key=key)
    assert complex_rbm.n_parameters == 4 + 4 + 16
    assert complex_rbm(jnp.ones(4)).dtype == jnp.complex64
    # integer input is cast to the parameter dtype
    assert RBM(4, key=key)(jnp.ones(4, jnp.int32)).dtype == jnp.result_type(float)


def test_default_init_is_near_uniform():
    model = RBM(8, alpha=2, param_dtype="complex64", key=jax.random.key(0))
    log_psi = evaluate(model, jnp.asarray(all_states(8)))
    assert np.ptp(np.abs(np.exp(log_psi))) < 0.5


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda k: RBM(4, alpha=0.2, key=k), "alpha >= 1/N"),
        (lambda k: RBM(4, alpha=-1, key=k), "alpha must be a positive"),
        (lambda k: RBM(0, key=k), "n_sites must be a positive integer"),
        (lambda k: RBM(4, param_dtype="int32", key=k), "allowed: float32, float64, complex64"),
        (lambda k: RBM(4, param_dtype="float16", key=k), "unsupported param_dtype"),
        (lambda k: Jastrow(1, key=k), "at least 2 sites"),
        (lambda k: FFN(4, 0, key=k), "width must be a positive integer"),
        (lambda k: FFN(4, 3, depth=0, key=k), "depth must be a positive integer"),
        (lambda k: FFN(4, 3, activation="tanh", key=k), "activation must be a callable"),
        (lambda k: SymmetricRBM(chain(4), alpha=0.5, key=k), "positive integer"),
        (lambda k: SymmetricFFN(chain(4), 0, key=k), "width must be"),
    ],
)
def test_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build(jax.random.key(0))


def test_64bit_dtype_without_x64_is_refused():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is on globally")
    with pytest.raises(ValueError, match="needs 64-bit JAX"):
        RBM(4, param_dtype="complex128", key=jax.random.key(0))


def test_lattice_type_error():
    with pytest.raises(TypeError, match="expected a Lattice"):
        SymmetricRBM(8, key=jax.random.key(0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_wrong_input_shape(name):
    model = MODELS[name](None, jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected one configuration of shape \(5,\)"):
        model(jnp.ones(4))
    with pytest.raises(ValueError, match="use jax.vmap"):
        model(jnp.ones((3, 5)))
