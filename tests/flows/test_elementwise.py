"""Elementwise bijections: the conformance battery (float32 and float64, with and without
context) for `Affine`/`Shift`/`Scale` and the constraint maps `Tanh`, `Sigmoid`, `Softplus`,
plus closed forms, stable log-derivatives far out, and boundary behaviour of the inverses."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from battery import _perturb, check_conformance, check_errors

from sciml.flows._elementwise import Affine, Scale, Shift, Sigmoid, Softplus, Tanh

COND = 3
SHAPE = (3,)


FACTORIES = {
    "affine": lambda key, cond: Affine(SHAPE, cond_dim=cond, key=key),
    "shift": lambda key, cond: Shift(SHAPE, cond_dim=cond, key=key),
    "scale": lambda key, cond: Scale(SHAPE, cond_dim=cond, key=key),
    "tanh": lambda key, cond: Tanh(SHAPE),
    "sigmoid": lambda key, cond: Sigmoid(SHAPE),
    "softplus": lambda key, cond: Softplus(SHAPE),
}
CONDITIONAL = ("affine", "shift", "scale")
CASES = [(n, None) for n in FACTORIES] + [(n, COND) for n in CONDITIONAL]


@pytest.mark.parametrize("name,cond", CASES)
def test_conformance(name, cond, dtype):
    key = jax.random.key(0)
    bij = _perturb(FACTORIES[name](key, cond), jax.random.key(1))
    z = jnp.array([0.7, -1.3, 0.2], dtype)
    ctx = None if cond is None else jnp.array([0.5, -1.0, 2.0], dtype)
    check_conformance(bij, z, ctx, dtype)
    check_errors(bij, type(bij).__name__)


def test_affine_closed_form_and_parametrisations(x64):
    loc, scale = jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, 0.5, 3.0])
    z = jnp.array([0.3, 1.0, -1.0])
    x, ld = Affine(3, loc=loc, scale=scale).transform_and_log_det(z)
    np.testing.assert_allclose(x, loc + scale * z, rtol=1e-14)
    np.testing.assert_allclose(ld, np.log(2.0 * 0.5 * 3.0), rtol=1e-14)
    shift, sc = Shift(3, loc=loc), Scale(3, scale=scale)
    assert shift.log_scale is None and sc.loc is None
    np.testing.assert_allclose(shift.transform(z), z + loc, rtol=1e-14)
    np.testing.assert_allclose(sc.transform_and_log_det(z)[1], ld, rtol=1e-14)
    # a fresh conditional layer equals the unconditional one (zero-initialised network)
    cond = Affine(3, loc=loc, scale=scale, cond_dim=2, key=jax.random.key(0))
    np.testing.assert_array_equal(cond.transform(z, jnp.array([3.0, -4.0])), x)
    with pytest.raises(ValueError, match="positive"):
        Affine(3, scale=jnp.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="broadcast"):
        Affine(3, loc=jnp.zeros(2))
    with pytest.raises(ValueError, match="key"):
        Affine(3, cond_dim=2)
    with pytest.raises(ValueError, match="cond_dim"):
        Affine(3, cond_dim=0, key=jax.random.key(0))


def test_affine_multidim_shape(x64):
    bij = _perturb(Affine((2, 3), cond_dim=2, key=jax.random.key(0)), jax.random.key(1))
    z, c = jnp.arange(6.0).reshape(2, 3) / 6, jnp.array([0.1, 0.2])

    @eqx.filter_jit
    def run(b, v):
        x, ld = b.transform_and_log_det(v, c)
        jac = jax.jacfwd(lambda u: b.transform(u, c))(v).reshape(6, 6)
        return ld, jnp.linalg.slogdet(jac)[1], b.inverse(x, c)

    ld, expected, z2 = run(bij, z)
    np.testing.assert_allclose(ld, expected, rtol=1e-12)
    np.testing.assert_allclose(z2, z, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus"])
def test_constraint_maps_far_out(name, dtype):
    """Finite values, log-dets and input gradients at ±1e3 and near the dtype limit."""
    bij = FACTORIES[name](None, None)
    big = 1e30 if dtype == jnp.float32 else 1e300
    z = jnp.array([1e3, -big, big], dtype)

    @jax.jit
    def run(v):
        x, ld = bij.transform_and_log_det(v)
        g = jax.grad(lambda u: bij.transform_and_log_det(u)[1] + jnp.sum(bij.transform(u)))(v)
        return x, ld, g

    x, ld, g = run(z)
    assert bool(jnp.all(jnp.isfinite(x))) and bool(jnp.isfinite(ld))
    assert bool(jnp.all(jnp.isfinite(g)))
    # the log-derivative is exact where the naive log(f') underflows
    zz = jnp.array([-200.0, -30.0, 30.0], dtype)
    expected = {
        "tanh": 2 * math.log(2) - 2 * np.abs(np.asarray(zz, np.float64)),
        "sigmoid": -np.abs(np.asarray(zz, np.float64)),
        "softplus": np.minimum(np.asarray(zz, np.float64), 0.0),
    }[name]
    lds = jax.vmap(lambda v: run(jnp.full(SHAPE, v, dtype))[1])(zz) / 3
    np.testing.assert_allclose(lds, expected, rtol=1e-6, atol=1e-5)


def test_constraint_values_and_ranges(x64):
    z = jnp.linspace(-4.0, 4.0, 9)
    for bij, f, lo, hi in [
        (Tanh(9), np.tanh, -1, 1),
        (Sigmoid(9), lambda v: 1 / (1 + np.exp(-v)), 0, 1),
        (Softplus(9), lambda v: np.log1p(np.exp(v)), 0, np.inf),
    ]:
        x = bij.transform(z)
        np.testing.assert_allclose(x, f(np.asarray(z)), rtol=1e-13)
        assert bool(jnp.all((x > lo) & (x < hi)))


def test_inverse_boundaries(x64):
    """At the boundary of the image: ±inf and log-det +inf; outside: NaN (documented)."""
    z, ld = Tanh(2).inverse_and_log_det(jnp.array([1.0, -1.0]))
    assert z.tolist() == [np.inf, -np.inf] and ld == np.inf
    z, ld = Sigmoid(2).inverse_and_log_det(jnp.array([0.0, 1.0]))
    assert z.tolist() == [-np.inf, np.inf] and ld == np.inf
    z, ld = Softplus(1).inverse_and_log_det(jnp.array([0.0]))
    assert z.tolist() == [-np.inf] and ld == np.inf
    assert bool(jnp.isnan(Tanh(1).inverse(jnp.array([1.5]))[0]))
    # near the boundary the inverse stays accurate (log1p forms)
    for bij, x in [
        (Tanh(1), 1 - 1e-12),
        (Sigmoid(1), 1e-300),
        (Sigmoid(1), 1 - 1e-12),
        (Softplus(1), 1e-300),
        (Softplus(1), 700.0),
    ]:
        zz = bij.inverse(jnp.array([x]))
        np.testing.assert_allclose(bij.transform(zz), [x], rtol=1e-10)
