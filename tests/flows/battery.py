"""The conformance battery shared by the bijection test files (float32 and float64).

The `dtype` fixture (conftest.py) switches x64 per test; `check_conformance` checks the round trip, both log-determinants
against `slogdet(jacfwd)` and finite gradients in one jitted call;
`check_errors` checks the shape and context errors; `_perturb` moves every
float leaf so that zero-initialised context networks matter.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-9) if dtype == jnp.float64 else dict(rtol=2e-4, atol=2e-4)


def _perturb(bij, key, scale=0.3):
    """Random offsets on every float leaf, so zero-initialised context networks matter.

    (NumPy draws: eager `jax.random` calls would compile one program per leaf shape.)
    """
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
    params, static = eqx.partition(bij, eqx.is_inexact_array)
    params = jax.tree.map(
        lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype), params
    )
    return eqx.combine(params, static)


def _finite_tree(tree):
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree) if eqx.is_array(a))


@eqx.filter_jit
def _battery(bij, z, context):
    x, ld = bij.transform_and_log_det(z, context)
    z2, ldi = bij.inverse_and_log_det(x, context)
    jac = jax.jacfwd(lambda v: bij.transform(v, context))(z)
    jac_inv = jax.jacfwd(lambda v: bij.inverse(v, context))(x)

    def loss(b, v):
        y, a = b.transform_and_log_det(v, context)
        w, c = b.inverse_and_log_det(y, context)
        return jnp.sum(y) + a + jnp.sum(w) + c

    grads = eqx.filter_grad(loss)(bij, z)
    grad_z = jax.grad(loss, argnums=1)(bij, z)
    return dict(
        x=x,
        ld=ld,
        z2=z2,
        ldi=ldi,
        slogdet=jnp.linalg.slogdet(jac)[1],
        slogdet_inv=jnp.linalg.slogdet(jac_inv)[1],
        grads=grads,
        grad_z=grad_z,
    )


def check_conformance(bij, z, context, dtype):
    """Round trip, log-dets vs slogdet(jacfwd) both ways, finite gradients (one jit)."""
    tol = _tol(dtype)
    out = _battery(bij, z, context)
    assert out["x"].dtype == dtype and out["ld"].dtype == dtype and out["ld"].shape == ()
    np.testing.assert_allclose(out["z2"], z, **tol)
    np.testing.assert_allclose(out["ldi"], -out["ld"], **tol)
    np.testing.assert_allclose(out["ld"], out["slogdet"], **tol)
    np.testing.assert_allclose(out["ldi"], out["slogdet_inv"], **tol)
    assert _finite_tree(out["grads"]) and _finite_tree(out["grad_z"])
    return out


def check_errors(bij, name):
    good = jnp.zeros(bij.shape)
    ctx = None if bij.cond_shape is None else jnp.zeros(bij.cond_shape)
    with pytest.raises(ValueError, match=name):
        bij.transform_and_log_det(jnp.zeros((bij.shape[0] + 1,)), ctx)
    with pytest.raises(ValueError, match="jax.vmap"):
        bij.inverse_and_log_det(jnp.zeros((2, *bij.shape)), ctx)
    if bij.cond_shape is None:
        with pytest.raises(ValueError, match="no context"):
            bij.transform_and_log_det(good, jnp.zeros(2))
    else:
        with pytest.raises(ValueError, match="got None"):
            bij.transform_and_log_det(good)
        with pytest.raises(ValueError, match="context shape"):
            bij.inverse_and_log_det(good, jnp.zeros(bij.cond_shape[0] + 1))
