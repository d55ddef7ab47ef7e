"""Continuous normalizing flows: the ODE map, its log-determinant, the trace estimators,
the RNODE integrals and the loss, checked against closed forms and finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from battery import _perturb

from sciml.flows import CNF, ConcatSquashField, StandardNormal, Transformed, cnf_loss


class LinearField(eqx.Module):
    """`f(t, x) = A x`: the time-`t1` map is `expm(A t1)`, with closed-form integrals."""

    a: jax.Array

    def __call__(self, t, x, context=None):
        return self.a @ x


def _cnf(dtype, cond_dim=None, tol=1e-8, **kw):
    tol = tol if dtype == jnp.float64 else 1e-5
    cnf = CNF(
        2, width=8, depth=2, cond_dim=cond_dim, rtol=tol, atol=tol, key=jax.random.key(0), **kw
    )
    return _perturb(cnf, jax.random.key(1), scale=0.5)


@pytest.mark.parametrize("cond_dim", [None, 1])
def test_round_trip_and_log_det_match_the_jacobian(cond_dim, dtype):
    cnf = _cnf(dtype, cond_dim)
    z = jnp.array([0.3, -0.7], dtype)
    ctx = None if cond_dim is None else jnp.array([0.4], dtype)

    @eqx.filter_jit
    def run(cnf, z, ctx):
        x, ld = cnf.transform_and_log_det(z, ctx)
        z2, ldi = cnf.inverse_and_log_det(x, ctx)
        fwd = cnf.with_settings(adjoint="forward")
        jac = jax.jacfwd(lambda v: fwd.transform(v, ctx))(z)
        return x, ld, z2, ldi, jnp.linalg.slogdet(jac)[1]

    x, ld, z2, ldi, slogdet = run(cnf, z, ctx)
    tol = 1e-6 if dtype == jnp.float64 else 2e-3
    assert x.dtype == dtype and ld.dtype == dtype
    assert float(jnp.max(jnp.abs(x - z))) > 0.05  # the perturbed flow is not the identity
    np.testing.assert_allclose(z2, z, atol=tol)
    np.testing.assert_allclose(ld, -ldi, atol=tol)
    np.testing.assert_allclose(ld, slogdet, rtol=tol, atol=tol)


def test_density_integrates_to_one_and_affine_is_included(x64):
    cnf = _cnf(jnp.float64, loc=jnp.array([0.5, -1.0]), scale=jnp.array([0.7, 1.3]))
    flow = Transformed(StandardNormal((2,)), cnf)
    g = jnp.linspace(-8.0, 8.0, 121)
    xx, yy = jnp.meshgrid(g, g)
    pts = jnp.stack([xx.ravel(), yy.ravel()], -1)
    lq = eqx.filter_jit(lambda f, p: jax.vmap(f.log_prob)(p))(flow, pts)
    mass = float(jnp.sum(jnp.exp(lq)) * (g[1] - g[0]) ** 2)
    assert abs(mass - 1.0) < 1e-2


def test_linear_field_matches_closed_forms(x64):
    """`expm(A t1)`, `log det = t1 tr A`, `∫‖Az(t)‖² dt` by quadrature, `t1 ‖A‖_F²`."""
    a = jnp.array([[-0.4, 1.1], [-0.7, 0.3]])
    t1 = 1.5
    cnf = CNF(2, field=LinearField(a), t1=t1, rtol=1e-10, atol=1e-10, key=jax.random.key(0))
    z = jnp.array([0.8, -0.5])
    x, ld, stats = cnf.transform_with_stats(z, regularise=True)
    np.testing.assert_allclose(x, jax.scipy.linalg.expm(a * t1) @ z, rtol=1e-8)
    np.testing.assert_allclose(ld, t1 * jnp.trace(a), rtol=1e-8)
    ts = np.linspace(0.0, t1, 2001)
    path = np.stack([np.asarray(jax.scipy.linalg.expm(a * t) @ z) for t in ts])
    speed2 = np.sum((path @ np.asarray(a).T) ** 2, axis=1)
    kinetic = np.sum((speed2[1:] + speed2[:-1]) / 2 * np.diff(ts))  # trapezoid
    np.testing.assert_allclose(stats.kinetic, kinetic, rtol=1e-5)
    np.testing.assert_allclose(stats.jacobian_frobenius, t1 * jnp.sum(a**2), rtol=1e-8)
    # the backward solve accumulates the same positive integrals
    _, ldi, back = cnf.inverse_with_stats(x, regularise=True)
    np.testing.assert_allclose(ldi, -ld, rtol=1e-7)
    np.testing.assert_allclose(back.kinetic, stats.kinetic, rtol=1e-6)
    assert int(stats.num_steps) > 0 and int(stats.nfe) == 6 * int(stats.num_steps) + 1


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe, x64):
    cnf = _cnf(jnp.float64)
    x = jnp.array([0.2, 0.9])
    exact = cnf.inverse_and_log_det(x)[1]
    hutch = cnf.with_settings(trace="hutchinson", probe=probe)
    n = 400
    lds = eqx.filter_jit(lambda h, ks: jax.vmap(lambda k: h.inverse_and_log_det(x, key=k)[1])(ks))(
        hutch, jax.random.split(jax.random.key(3), n)
    )
    se = float(jnp.std(lds)) / np.sqrt(n)
    assert float(jnp.std(lds)) > 0  # an estimate, not the exact trace in disguise
    assert abs(float(jnp.mean(lds)) - float(exact)) < 5 * se


@pytest.mark.slow  # the contract battery checks cnf_two_moons' gradient by finite differences
def test_loss_gradient_matches_finite_differences(x64):
    cnf = _cnf(jnp.float64, tol=1e-9)
    flow = Transformed(StandardNormal((2,)), cnf)
    x = jax.random.normal(jax.random.key(4), (2, 2))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def f(vec):
        loss, _ = cnf_loss(eqx.combine(unravel(vec), static), x, kinetic=0.1, jacobian=0.2)
        return loss

    grad = jax.grad(f)(flat)
    v = jax.random.normal(jax.random.key(5), flat.shape)
    v = v / jnp.linalg.norm(v)
    eps = 1e-5
    fd = (f(flat + eps * v) - f(flat - eps * v)) / (2 * eps)
    np.testing.assert_allclose(grad @ v, fd, rtol=1e-4)


def test_loss_metrics_and_regularisers(x64):
    flow = Transformed(StandardNormal((2,)), _cnf(jnp.float64))
    x = jax.random.normal(jax.random.key(6), (5, 2))

    @eqx.filter_jit
    def run(flow, x):
        return cnf_loss(flow, x), cnf_loss(flow, x, kinetic=0.5, jacobian=0.25)

    (plain, m0), (reg, m1) = run(flow, x)
    assert float(m0["kinetic"]) == 0.0 and float(m1["kinetic"]) > 0
    lq = eqx.filter_jit(lambda f, x: jax.vmap(f.log_prob)(x))(flow, x)
    np.testing.assert_allclose(m0["nll"], -jnp.mean(lq), rtol=1e-10)
    np.testing.assert_allclose(plain, m0["nll"], rtol=1e-12)
    np.testing.assert_allclose(
        reg, m1["nll"] + 0.5 * m1["kinetic"] + 0.25 * m1["jacobian_frobenius"], rtol=1e-12
    )
    assert float(m1["nfe"]) >= 7


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="trace 'trapezoid'.*exact, hutchinson"):
        CNF(2, trace="trapezoid", key=key)
    with pytest.raises(ValueError, match="solver 'euler'"):
        CNF(2, solver="euler", key=key)
    with pytest.raises(ValueError, match="rtol must be positive"):
        CNF(2, rtol=0.0, key=key)
    with pytest.raises(ValueError, match="scale must be positive"):
        CNF(2, scale=jnp.array([1.0, -1.0]), key=key)
    with pytest.raises(ValueError, match="cond_dim"):
        ConcatSquashField(2, cond_dim=0, key=key)
    cnf = CNF(2, width=4, depth=1, key=key)
    with pytest.raises(ValueError, match=r"expected input shape \(2,\)"):
        cnf.inverse_and_log_det(jnp.zeros(3))
    with pytest.raises(ValueError, match="takes no context"):
        cnf.inverse_and_log_det(jnp.zeros(2), jnp.zeros(1))
    with pytest.raises(ValueError, match="needs a key"):
        cnf.with_trace("hutchinson").inverse_and_log_det(jnp.zeros(2))
    with pytest.raises(ValueError, match="setting 'tol'"):
        cnf.with_settings(tol=1e-3)
    with pytest.raises(TypeError, match="CNF"):
        cnf_loss(StandardNormal((2,)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="kinetic weight"):
        cnf_loss(Transformed(StandardNormal((2,)), cnf), jnp.zeros((3, 2)), kinetic=-1.0)
