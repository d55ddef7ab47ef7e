"""Distributions: log-densities against scipy (float64), sample moments within a few standard
errors, `Transformed` against closed forms, one-pass `sample_and_log_prob` against `log_prob`,
a 2-D flow density integrating to one on a grid, and the shape/context errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from sciml.flows._bijection import Chain
from sciml.flows._distributions import (
    AbstractDistribution,
    DiagNormal,
    GaussianMixture,
    StandardNormal,
    StudentT,
    Transformed,
)
from sciml.flows._elementwise import Affine, Tanh
from sciml.flows._linear import LULinear
from sciml.flows._planar import Planar

N_SAMPLES = 20_000


def _samples(dist, n=N_SAMPLES, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(_vmap_sample(dist, keys))


@eqx.filter_jit
def _vmap_sample(dist, keys):
    return jax.vmap(dist.sample)(keys)


@eqx.filter_jit
def _vmap_log_prob(dist, xs):
    return jax.vmap(dist.log_prob)(xs)


def _perturb(tree, key, scale=0.3):
    """Random offsets on every float leaf, so zero-initialised networks matter.

    (NumPy draws: eager `jax.random` calls would compile one program per leaf shape.)
    """
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
    params, static = eqx.partition(tree, eqx.is_inexact_array)
    params = jax.tree.map(
        lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype), params
    )
    return eqx.combine(params, static)


def _check_mean_var(samples, mean, var, n_se=5.0):
    """Sample mean and variance within `n_se` standard errors (var SE from the sample kurtosis)."""
    n = samples.shape[0]
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), n_se * np.sqrt(var / n))
    m4 = np.mean((samples - samples.mean(0)) ** 4, axis=0)
    se_var = np.sqrt((m4 - samples.var(0) ** 2) / n)
    np.testing.assert_array_less(np.abs(samples.var(0) - var), n_se * se_var)


X = np.array([[0.3, -1.2, 2.5], [-4.0, 0.0, 0.7]])


def test_standard_normal(x64):
    d = StandardNormal(3)
    for x in X:
        np.testing.assert_allclose(d.log_prob(jnp.asarray(x)), stats.norm.logpdf(x).sum(), 1e-13)
    s = _samples(d)
    assert s.dtype == np.float64
    _check_mean_var(s, 0.0, 1.0)


def test_diag_normal(x64):
    loc, scale = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.5])
    d = DiagNormal(loc, scale)
    for x in X:
        expected = stats.norm.logpdf(x, loc, scale).sum()
        np.testing.assert_allclose(d.log_prob(jnp.asarray(x)), expected, rtol=1e-13)
    np.testing.assert_allclose(d.scale, scale, rtol=1e-14)
    _check_mean_var(_samples(d), loc, scale**2)
    # reparameterised: d sample / d loc = 1
    g = jax.grad(lambda m: jnp.sum(m.sample(jax.random.key(0))))(d)
    np.testing.assert_allclose(g.loc, 1.0)
    with pytest.raises(ValueError, match="positive"):
        DiagNormal(loc, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="broadcast"):
        DiagNormal(loc, np.ones(2))


@pytest.mark.parametrize("trainable", [False, True])
def test_student_t(trainable, x64):
    df = 10.0
    d = StudentT(3, df, trainable_df=trainable)
    assert (d.log_df is not None) == trainable
    for x in X:
        np.testing.assert_allclose(
            d.log_prob(jnp.asarray(x)), stats.t.logpdf(x, df).sum(), rtol=1e-12
        )
    s = _samples(d)
    _check_mean_var(s, 0.0, df / (df - 2))
    # the whole distribution, not just two moments: Kolmogorov-Smirnov on each coordinate
    for i in range(3):
        assert stats.kstest(s[:, i], stats.t(df).cdf).pvalue > 1e-3
    if trainable:  # the df gradient matches d/dν of scipy's log-density (central difference)
        x = jnp.asarray(X[0])
        g = jax.grad(lambda m: m.log_prob(x))(d).log_df * 1.0 / df  # d/dν = d/dlogν / ν
        h = 1e-5
        fd = (stats.t.logpdf(X[0], df + h).sum() - stats.t.logpdf(X[0], df - h).sum()) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6)
    with pytest.raises(ValueError, match="df"):
        StudentT(3, 0.0)


def test_student_t_heavier_tails_than_normal(x64):
    x = jnp.array([8.0])
    assert StudentT(1, 3.0).log_prob(x) > StandardNormal(1).log_prob(x) + 20


def test_gaussian_mixture(x64):
    d = GaussianMixture(3, 2, key=jax.random.key(0))
    d = eqx.tree_at(
        lambda m: (m.logits, m.means, m.log_scales),
        d,
        (
            jnp.array([0.5, -1.0, 0.2]),
            jnp.array([[-2.0, 0.0], [1.0, 3.0], [2.5, -1.5]]),
            jnp.log(jnp.array([[0.5, 1.0], [0.8, 0.3], [1.2, 0.7]])),
        ),
    )
    logits, means = np.asarray(d.logits), np.asarray(d.means)
    scales = np.exp(np.asarray(d.log_scales))
    weights = np.exp(logits - special.logsumexp(logits))
    for x in [np.array([0.1, 0.2]), np.array([-2.5, 0.3]), np.array([10.0, -8.0])]:
        comps = [
            np.log(weights[k]) + stats.norm.logpdf(x, means[k], scales[k]).sum() for k in range(3)
        ]
        np.testing.assert_allclose(d.log_prob(jnp.asarray(x)), special.logsumexp(comps), rtol=1e-12)
    mean = weights @ means
    var = weights @ (scales**2 + means**2) - mean**2
    _check_mean_var(_samples(d), mean, var)
    # the component choice is not reparameterised: no gradient reaches the logits via samples
    g = jax.grad(lambda m: jnp.sum(m.sample(jax.random.key(1)) ** 2))(d)
    np.testing.assert_array_equal(g.logits, 0.0)
    assert np.any(np.asarray(g.means) != 0)
    with pytest.raises(ValueError, match="num_components"):
        GaussianMixture(0, 2, key=jax.random.key(0))


def test_transformed_affine_is_gaussian(x64):
    loc, scale = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.5, 2.0, 1.5])
    flow = Transformed(StandardNormal(3), Affine(3, loc=loc, scale=scale))
    for x in X:
        expected = stats.norm.logpdf(x, loc, scale).sum()
        np.testing.assert_allclose(flow.log_prob(jnp.asarray(x)), expected, rtol=1e-13)
    x, lq = flow.sample_and_log_prob(jax.random.key(0))
    np.testing.assert_allclose(lq, stats.norm.logpdf(np.asarray(x), loc, scale).sum(), 1e-13)
    _check_mean_var(_samples(flow), loc, scale**2)


def _flow_2d(cond_dim=None):
    key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
    bij = Chain(
        [
            Affine(2, loc=jnp.array([0.3, -0.2]), scale=jnp.array([0.8, 1.1])),
            Planar(2, key=key1, cond_dim=cond_dim),
            LULinear(2, key=key2, cond_dim=cond_dim),
            Planar(2, key=key3, cond_dim=cond_dim),
        ]
    )
    return Transformed(StandardNormal(2), _perturb(bij, jax.random.key(5), scale=0.5))


def test_2d_flow_density_integrates_to_one(x64):
    """A non-Gaussian density on R² (Affine, Planar, LU, Planar) sums to 1 on a grid."""
    flow = _flow_2d()
    h = 0.1  # the Riemann sum of a smooth, rapidly decaying density is accurate far beyond 1e-2
    g = np.arange(-8.0, 8.0 + h / 2, h)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1))
    logq = _vmap_log_prob(flow, pts)
    total = float(jnp.sum(jnp.exp(logq)) * h * h)
    assert abs(total - 1.0) < 1e-2, total
    # sampling and log_prob describe the same distribution: grid mean vs sample mean
    q = np.asarray(jnp.exp(logq))[:, None]
    grid_mean = (q * np.asarray(pts)).sum(0) * h * h
    grid_var = (q * np.asarray(pts) ** 2).sum(0) * h * h - grid_mean**2
    _check_mean_var(_samples(flow), grid_mean, grid_var)
    # and it is not the base density (the flow does something)
    base = jax.vmap(flow.base.log_prob)(pts)
    assert float(jnp.max(jnp.abs(jnp.exp(logq) - jnp.exp(base)))) > 1e-2


@pytest.mark.parametrize("cond_dim", [None, 2])
def test_sample_and_log_prob_matches_log_prob(cond_dim, x64):
    flow = _flow_2d(cond_dim)
    ctx = None if cond_dim is None else jnp.array([0.4, -0.9])

    @eqx.filter_jit
    def both(f, key):
        x, lq = f.sample_and_log_prob(key, ctx)
        return x, lq, f.log_prob(x, ctx), f.sample(key, ctx)

    x, lq, lp, x2 = jax.vmap(both, in_axes=(None, 0))(flow, jax.random.split(jax.random.key(1), 8))
    np.testing.assert_allclose(lq, lp, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(x, x2, rtol=1e-14)


def test_transformed_with_tanh_and_float32():
    """float32 end to end; a bounded flow (Tanh) keeps samples in (−1, 1)²."""
    flow = Transformed(StandardNormal(2), Chain([Affine(2, scale=0.7), Tanh(2)]))
    x, lq = flow.sample_and_log_prob(jax.random.key(0))
    assert x.dtype == jnp.float32 and lq.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(x) < 1))
    np.testing.assert_allclose(lq, flow.log_prob(x), rtol=1e-4, atol=1e-4)


def test_shape_and_context_errors():
    key = jax.random.key(0)
    dists = [
        StandardNormal(2),
        DiagNormal(jnp.zeros(2), 1.0),
        StudentT(2, 4.0),
        GaussianMixture(2, 2, key=key),
        Transformed(StandardNormal(2), Affine(2)),
    ]
    for d in dists:
        assert isinstance(d, AbstractDistribution)
        name = type(d).__name__
        with pytest.raises(ValueError, match=rf"{name}: expected a point of shape \(2,\)"):
            d.log_prob(jnp.zeros(3))
        with pytest.raises(ValueError, match="jax.vmap"):
            d.log_prob(jnp.zeros((5, 2)))
        with pytest.raises(ValueError, match="no context"):
            d.log_prob(jnp.zeros(2), jnp.zeros(1))
        with pytest.raises(ValueError, match="no context"):
            d.sample(key, jnp.zeros(1))
    cond = Transformed(StandardNormal(2), Affine(2, cond_dim=3, key=key))
    assert cond.cond_shape == (3,)
    with pytest.raises(ValueError, match="got None"):
        cond.log_prob(jnp.zeros(2))
    with pytest.raises(ValueError, match="got None"):
        cond.sample_and_log_prob(key)
    with pytest.raises(ValueError, match=r"context shape \(3,\)"):
        cond.sample(key, jnp.zeros(2))
    with pytest.raises(ValueError, match="base shape"):
        Transformed(StandardNormal(3), Affine(2))
    with pytest.raises(TypeError, match="AbstractBijection"):
        Transformed(StandardNormal(2), StandardNormal(2))
