"""Planar layer: the conformance battery (float32 and float64, with and without context), the
invertibility reparametrisation (wᵀû > −1) and the numerical inverse in hard cases."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from battery import _perturb, check_conformance, check_errors

from sciml.flows._planar import Planar

COND = 3
DIM = 3


@pytest.mark.parametrize("cond", [None, COND])
def test_conformance(cond, dtype):
    bij = _perturb(Planar(DIM, key=jax.random.key(0), cond_dim=cond), jax.random.key(1))
    z = jnp.array([0.7, -1.3, 0.2], dtype)
    ctx = None if cond is None else jnp.array([0.5, -1.0, 2.0], dtype)
    check_conformance(bij, z, ctx, dtype)
    check_errors(bij, "Planar")


def _with(bij, w, u, b):
    return eqx.tree_at(lambda p: (p.w, p.u, p.b), bij, (jnp.asarray(w), jnp.asarray(u), b))


def test_closed_form_and_reparametrisation(x64):
    bij = Planar(2, key=jax.random.key(0))
    # w ⟂ u: m(0) = softplus(0) − 1 = log 2 − 1, û = u + (log 2 − 1) w/‖w‖²
    w, u, b = jnp.array([2.0, 0.0]), jnp.array([0.0, 1.5]), jnp.array(0.3)
    bij = _with(bij, w, u, b)
    u_hat = u + (np.log(2) - 1) * w / 4
    z = jnp.array([0.4, -0.7])
    h = np.tanh(w @ z + b)
    x, ld = bij.transform_and_log_det(z)
    np.testing.assert_allclose(x, z + u_hat * h, rtol=1e-14)
    np.testing.assert_allclose(ld, np.log(abs(1 + (1 - h**2) * (u_hat @ w))), rtol=1e-13)


@pytest.mark.parametrize("wu", [-100.0, -3.0, 0.0, 5.0, 40.0, 500.0])
def test_inverse_hard_cases(wu, x64):
    """Round trip and log-det even when wᵀû → −1 (nearly singular) or |wᵀû| is large."""
    w = jnp.array([1.0, -2.0, 0.5])
    u = wu * w / jnp.dot(w, w) + jnp.array([0.4, 0.2, 0.0])  # wᵀu = wu
    bij = _with(Planar(DIM, key=jax.random.key(0)), w, u, jnp.array(0.7))
    zs = jax.random.normal(jax.random.key(2), (64, DIM)) * jnp.array([3.0, 0.5, 10.0])
    zs = zs.at[0].set(jnp.array([0.1, 0.2, 1e3]))
    xs, lds = jax.vmap(bij.transform_and_log_det)(zs)
    z2, ldi = jax.jit(jax.vmap(bij.inverse_and_log_det))(xs)
    np.testing.assert_allclose(z2, zs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ldi, -lds, rtol=1e-9, atol=1e-9)


def test_inverse_gradient_matches_finite_differences(x64):
    """Gradients through the root find (implicit function) vs central differences."""
    bij = _perturb(Planar(DIM, key=jax.random.key(0), cond_dim=2), jax.random.key(1))
    x, c = jnp.array([0.3, -0.8, 1.5]), jnp.array([0.2, -0.1])

    @jax.jit
    def f(v, ctx):
        z, ld = bij.inverse_and_log_det(v, ctx)
        return jnp.sum(jnp.sin(z)) + ld

    for arg in (0, 1):
        g = jax.grad(f, argnums=arg)(x, c)
        base = (x, c)[arg]
        fd = []
        for i in range(base.shape[0]):
            e = jnp.zeros_like(base).at[i].set(1e-6)
            plus = (x + e, c) if arg == 0 else (x, c + e)
            minus = (x - e, c) if arg == 0 else (x, c - e)
            fd.append((f(*plus) - f(*minus)) / 2e-6)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_fresh_conditional_equals_unconditional(x64):
    key = jax.random.key(4)
    z = jnp.array([0.1, 0.2, 0.3])
    plain = Planar(DIM, key=key)
    cond = Planar(DIM, key=key, cond_dim=2)
    np.testing.assert_allclose(plain.w, cond.w)
    np.testing.assert_array_equal(cond.transform(z, jnp.array([5.0, -5.0])), plain.transform(z))


def test_constructor_errors():
    with pytest.raises(ValueError, match="bisection_steps"):
        Planar(2, key=jax.random.key(0), bisection_steps=0)
    with pytest.raises(ValueError, match="cond_dim"):
        Planar(2, key=jax.random.key(0), cond_dim=-1)
