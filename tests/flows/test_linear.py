"""Linear bijections: the conformance battery (float32 and float64, with and without context)
for `Permute`, `Reverse`, `LULinear`, `ActNorm`; permutation validation, integer leaves under
equinox filtering, the LU weight, `actnorm_init`, and `Stack` of LU layers."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from battery import _perturb, check_conformance, check_errors

from sciml.flows._bijection import Chain, Stack
from sciml.flows._elementwise import Affine
from sciml.flows._linear import ActNorm, LULinear, Permute, Reverse, actnorm_init

COND = 3
DIM = 4


FACTORIES = {
    "permute": lambda key, cond: Permute([2, 0, 3, 1]),
    "reverse": lambda key, cond: Reverse(DIM),
    "lu": lambda key, cond: LULinear(DIM, key=key, cond_dim=cond),
    "actnorm": lambda key, cond: ActNorm(DIM),
}
CONDITIONAL = ("lu",)
CASES = [(n, None) for n in FACTORIES] + [(n, COND) for n in CONDITIONAL]


@pytest.mark.parametrize("name,cond", CASES)
def test_conformance(name, cond, dtype):
    bij = _perturb(FACTORIES[name](jax.random.key(0), cond), jax.random.key(1))
    z = jnp.array([0.7, -1.3, 0.2, 1.1], dtype)
    ctx = None if cond is None else jnp.array([0.5, -1.0, 2.0], dtype)
    check_conformance(bij, z, ctx, dtype)
    check_errors(bij, type(bij).__name__)


def test_permute_values_and_validation():
    z = jnp.array([10.0, 11.0, 12.0, 13.0])
    np.testing.assert_array_equal(Permute([2, 0, 3, 1]).transform(z), [12.0, 10.0, 13.0, 11.0])
    np.testing.assert_array_equal(Reverse(4).transform(z), z[::-1])
    with pytest.raises(ValueError, match=r"not a permutation of 0..2 \(missing \[1\]\)"):
        Permute([0, 2, 2])
    with pytest.raises(ValueError, match="not a permutation"):
        Permute([1, 2, 3])
    with pytest.raises(ValueError, match="integers"):
        Permute([0.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        Permute([[0, 1], [1, 0]])


def test_integer_leaves_survive_filter_grad_and_jit():
    flow = Chain([Affine(3, loc=jnp.array([0.1, 0.2, 0.3])), Permute([1, 2, 0])])
    z = jnp.array([1.0, 2.0, 3.0])

    @eqx.filter_jit
    def loss(f, v):
        x, ld = f.transform_and_log_det(v)
        return jnp.sum(x * jnp.array([1.0, 2.0, 3.0])) + ld

    grads = eqx.filter_grad(loss)(flow, z)
    perm_grads = grads.bijections[1]
    assert perm_grads.permutation is None and perm_grads.inverse_permutation is None
    # d/d loc_i of Σ w_j x_j with x = (z + loc)[perm]: w at the position where i lands
    np.testing.assert_allclose(grads.bijections[0].loc, [3.0, 1.0, 2.0])
    assert loss(flow, z).shape == ()


def test_lu_weight_and_determinant(x64):
    key = jax.random.key(3)
    bij = _perturb(LULinear(DIM, key=key), jax.random.key(4))
    w = bij.weight()
    z = jnp.array([0.3, -0.2, 1.0, 0.5])
    x, ld = bij.transform_and_log_det(z)
    np.testing.assert_allclose(x, w @ z + bij.bias, rtol=1e-12)
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(w))[1], rtol=1e-12)
    # a fresh layer is the LU factorisation of a rotation: orthogonal, volume preserving
    w0 = LULinear(DIM, key=key).weight()
    np.testing.assert_allclose(w0 @ w0.T, np.eye(DIM), atol=1e-12)
    assert not np.allclose(w0, np.eye(DIM))
    # conditional: fresh network changes nothing, and the context enters after training
    cond = LULinear(DIM, key=key, cond_dim=2)
    np.testing.assert_allclose(cond.weight(jnp.array([1.0, 2.0])), w0, atol=1e-14)
    cond = _perturb(cond, jax.random.key(5))
    assert not np.allclose(cond.weight(jnp.array([1.0, 2.0])), cond.weight(jnp.zeros(2)))
    assert cond.sign.dtype == jnp.int8 and cond.permutation.dtype == jnp.int32


def test_stack_of_lu_layers(x64):
    stack = Stack(lambda k: LULinear(3, key=k), jax.random.split(jax.random.key(0), 3))
    stack = _perturb(stack, jax.random.key(1))
    z = jnp.array([0.5, -1.0, 0.25])
    x, ld = stack.transform_and_log_det(z)
    jac = jax.jacfwd(stack.transform)(z)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], rtol=1e-10)
    z2, ldi = stack.inverse_and_log_det(x)
    np.testing.assert_allclose(z2, z, rtol=1e-10)
    np.testing.assert_allclose(ldi, -ld, rtol=1e-10)


@pytest.mark.parametrize("inverse", [False, True])
def test_actnorm_init(inverse, x64):
    key = jax.random.key(7)
    data = jnp.array([3.0, -1.0, 0.5, 10.0]) + jnp.array([2.0, 0.1, 1.0, 5.0]) * (
        jax.random.normal(key, (50, DIM))
    )
    fresh = ActNorm(DIM)
    layer = actnorm_init(fresh, data, inverse=inverse)
    apply = layer.inverse if inverse else layer.transform
    out = jax.vmap(apply)(data)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-12)
    # the original module is untouched (no hidden state)
    np.testing.assert_array_equal(fresh.log_scale, 0.0)
    np.testing.assert_array_equal(fresh.loc, 0.0)
    z = data[0]
    jac = jax.jacfwd(layer.transform)(z)
    np.testing.assert_allclose(
        layer.transform_and_log_det(z)[1], jnp.linalg.slogdet(jac)[1], rtol=1e-12
    )


def test_actnorm_init_errors():
    with pytest.raises(ValueError, match=r"shape \(batch, \*\(4,\)\)"):
        actnorm_init(ActNorm(DIM), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        actnorm_init(ActNorm(DIM), jnp.ones((1, DIM)))
    with pytest.raises(ValueError, match=r"zero variance in dimension\(s\) \[\[2\]\]"):
        actnorm_init(
            ActNorm(DIM), jnp.ones((5, DIM)).at[:, [0, 1, 3]].set(jnp.arange(5.0)[:, None])
        )
    with pytest.raises(TypeError, match="ActNorm"):
        actnorm_init(Reverse(DIM), jnp.ones((5, DIM)))
