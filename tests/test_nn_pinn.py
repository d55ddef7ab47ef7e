"""PINN layers of `sciml.nn`: init options, RWF, Fourier features, periodic embedding,
modified MLP, Sequential. Oracles are numpy forward passes and analytic statistics."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sciml.nn import (
    INITS,
    MLP,
    Dense,
    FactorizedDense,
    FourierFeatures,
    ModifiedMLP,
    PeriodicEmbedding,
    Sequential,
)


def np_dense(layer, x):
    w = np.asarray(layer.weight, np.float64)
    b = 0.0 if layer.bias is None else np.asarray(layer.bias, np.float64)
    return w @ np.asarray(x, np.float64) + b


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --- init option ----------------------------------------------------------------------


def test_default_init_is_unchanged(getkey, x64):
    # the previous Dense body, written out: split the key, uniform on ±1/sqrt(in)
    key = getkey()
    wkey, bkey = jax.random.split(key)
    lim = 1 / math.sqrt(7)
    w = jax.random.uniform(wkey, (5, 7), jnp.float64, -lim, lim)
    b = jax.random.uniform(bkey, (5,), jnp.float64, -lim, lim)
    for layer in (Dense(7, 5, key=key), Dense(7, 5, init="uniform", key=key)):
        np.testing.assert_array_equal(layer.weight, w)
        np.testing.assert_array_equal(layer.bias, b)
    # MLP: same leaves as before (Dense weight/bias only), same values with init="uniform"
    key = getkey()
    a = MLP(3, 2, width=8, depth=2, key=key)
    c = MLP(3, 2, width=8, depth=2, init="uniform", weight_factorization=None, key=key)
    assert all(type(layer) is Dense for layer in a.layers)
    assert jax.tree.structure(a) == jax.tree.structure(c)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c)):
        np.testing.assert_array_equal(u, v)
    assert len(jax.tree.leaves(eqx.filter(a, eqx.is_array))) == 6
    assert (a.in_size, a.out_size) == (3, 2)


def test_glorot_normal_statistics(getkey, x64):
    n_in, n_out = 300, 700
    layer = Dense(n_in, n_out, init="glorot_normal", key=getkey())
    w = np.asarray(layer.weight).ravel()
    np.testing.assert_array_equal(layer.bias, np.zeros(n_out))
    var = 2 / (n_in + n_out)
    n = w.size
    assert abs(w.mean()) < 6 * math.sqrt(var / n)
    # E[w^2] = var, Var[w^2] = 2 var^2 for a normal
    assert abs(np.mean(w**2) - var) < 6 * math.sqrt(2 * var**2 / n)
    # normal, not uniform with the same variance: P(|w| < std) = 0.6827 (uniform: 0.577)
    frac = np.mean(np.abs(w) < math.sqrt(var))
    assert abs(frac - 0.682689) < 6 * math.sqrt(0.25 / n)


def test_glorot_uniform_statistics(getkey, x64):
    n_in, n_out = 300, 700
    layer = Dense(n_in, n_out, init="glorot_uniform", key=getkey())
    w = np.asarray(layer.weight).ravel()
    np.testing.assert_array_equal(layer.bias, np.zeros(n_out))
    bound = math.sqrt(6 / (n_in + n_out))
    n = w.size
    assert np.all(np.abs(w) <= bound)
    assert w.min() < -bound * (1 - 1e-3) and w.max() > bound * (1 - 1e-3)
    var = bound**2 / 3
    assert abs(w.mean()) < 6 * math.sqrt(var / n)
    assert abs(np.mean(w**2) - var) < 6 * math.sqrt((bound**4 / 5 - var**2) / n)


def test_init_reaches_every_layer_and_dtype(getkey, x64):
    mlp = MLP(2, 3, width=6, depth=2, init="glorot_normal", key=getkey())
    for layer in mlp.layers:
        np.testing.assert_array_equal(layer.bias, 0.0)
    mod = ModifiedMLP(2, 3, width=6, depth=3, init="glorot_uniform", key=getkey())
    for layer in (mod.encoder_u, mod.encoder_v, *mod.hidden, mod.output):
        np.testing.assert_array_equal(layer.bias, 0.0)
    layer = Dense(3, 4, init="glorot_normal", dtype=jnp.float32, key=getkey())
    assert layer.weight.dtype == jnp.float32 and layer.bias.dtype == jnp.float32
    assert Dense(3, 4, init="glorot_uniform", use_bias=False, key=getkey()).bias is None


# --- random weight factorisation ------------------------------------------------------------


@pytest.mark.parametrize("init", INITS)
def test_factorized_dense_starts_as_the_plain_layer(getkey, x64, init):
    key = getkey()
    plain = Dense(4, 6, init=init, key=key)
    rwf = FactorizedDense(4, 6, mu=1.0, sigma=0.1, init=init, key=key)
    x = jnp.array([0.3, -1.0, 2.0, 0.5])
    np.testing.assert_allclose(rwf(x), plain(x), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(rwf.weight, plain.weight, rtol=1e-14)
    # the forward formula: exp(s) * (V x) + b
    s, v, b = (np.asarray(a) for a in (rwf.log_scale, rwf.direction, rwf.bias))
    np.testing.assert_allclose(rwf(x), np.exp(s) * (v @ np.asarray(x)) + b, rtol=1e-14)


def test_factorized_scale_statistics(getkey, x64):
    rwf = FactorizedDense(2, 20000, mu=0.5, sigma=0.1, key=getkey())
    s = np.asarray(rwf.log_scale)
    assert abs(s.mean() - 0.5) < 6 * 0.1 / math.sqrt(s.size)
    assert abs(s.std() - 0.1) < 6 * 0.1 / math.sqrt(2 * s.size)
    assert FactorizedDense(2, 3, use_bias=False, key=getkey()).bias is None


def test_factorized_networks_start_as_plain_ones(getkey, x64):
    key = getkey()
    x = jnp.array([0.4, -0.7])
    plain = MLP(2, 3, width=8, depth=2, init="glorot_normal", key=key)
    rwf = MLP(
        2, 3, width=8, depth=2, init="glorot_normal", weight_factorization=(1.0, 0.1), key=key
    )
    assert all(type(layer) is FactorizedDense for layer in rwf.layers)
    np.testing.assert_allclose(rwf(x), plain(x), rtol=1e-13)
    key = getkey()
    plain = ModifiedMLP(2, 3, width=8, depth=3, key=key)
    rwf = ModifiedMLP(2, 3, width=8, depth=3, weight_factorization=(0.5, 0.1), key=key)
    np.testing.assert_allclose(rwf(x), plain(x), rtol=1e-13)
    # but the parametrisation differs: the scales are trainable leaves
    grads = eqx.filter_grad(lambda m: jnp.sum(m(x) ** 2))(rwf)
    assert np.all(np.asarray(grads.output.log_scale) != 0)


# --- Fourier features -------------------------------------------------------------------------


def test_fourier_features_values_and_statistics(getkey, x64):
    ff = FourierFeatures(3, 5, 2.0, key=getkey())
    assert ff.out_size == 10 and ff.frequencies.shape == (5, 3)
    x = np.array([0.2, -0.4, 1.1])
    z = np.asarray(ff.frequencies) @ x
    np.testing.assert_allclose(
        ff(jnp.asarray(x)), np.concatenate([np.cos(z), np.sin(z)]), rtol=1e-13
    )
    assert jax.vmap(ff)(jnp.ones((4, 3))).shape == (4, 10)
    big = np.asarray(FourierFeatures(4, 5000, 1.5, key=getkey()).frequencies).ravel()
    assert abs(big.mean()) < 6 * 1.5 / math.sqrt(big.size)
    assert abs(np.mean(big**2) - 2.25) < 6 * math.sqrt(2 * 1.5**4 / big.size)


def test_fourier_matrix_gets_zero_gradient_and_stays_fixed(getkey, x64):
    ff = FourierFeatures(2, 8, 1.0, key=getkey())
    net = Sequential(ff, MLP(ff.out_size, 1, width=8, depth=1, key=getkey()))
    xs = jnp.array([[0.1, 0.2], [-0.5, 0.9], [1.3, -0.2]])
    opt = optax.adam(1e-2)

    @eqx.filter_jit
    def grad_and_step(model):
        grads = eqx.filter_grad(lambda m: jnp.mean(jax.vmap(m)(xs) ** 2))(model)
        # an Adam step: what the trainer does with every inexact leaf
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, _ = opt.update(grads, opt.init(params), params)
        return grads, eqx.apply_updates(model, updates)

    grads, stepped = grad_and_step(net)
    np.testing.assert_array_equal(grads.layers[0].frequencies, 0.0)
    assert np.any(np.asarray(grads.layers[1].layers[0].weight) != 0)
    np.testing.assert_array_equal(stepped.layers[0].frequencies, ff.frequencies)
    assert not np.allclose(stepped.layers[1].layers[0].weight, net.layers[1].layers[0].weight)


# --- periodic embedding -------------------------------------------------------------------------


def test_periodic_embedding_values(x64):
    emb = PeriodicEmbedding(3, axes=(2, 0), periods=(2.0, 0.5), harmonics=2)
    assert emb.out_size == 3 + 2 * 3
    x = np.array([0.3, -0.7, 1.2])
    w0, w2 = 2 * np.pi / 0.5, 2 * np.pi / 2.0
    expected = [
        np.cos(w0 * x[0]), np.sin(w0 * x[0]), np.cos(2 * w0 * x[0]), np.sin(2 * w0 * x[0]),
        x[1],
        np.cos(w2 * x[2]), np.sin(w2 * x[2]), np.cos(2 * w2 * x[2]), np.sin(2 * w2 * x[2]),
    ]  # fmt: skip
    np.testing.assert_allclose(emb(jnp.asarray(x)), expected, rtol=1e-13, atol=1e-15)
    assert jax.tree.leaves(emb) == []  # fixed periods are not parameters
    assert PeriodicEmbedding(1, axes=0, periods=1.0).out_size == 2


def test_periodic_network_and_derivatives_are_periodic(getkey, x64):
    period = 2.0
    emb = PeriodicEmbedding(2, axes=(1,), periods=(period,), harmonics=2)
    u_net = Sequential(emb, MLP(emb.out_size, 1, width=16, depth=2, key=getkey()))

    def u(t, x):
        return u_net(jnp.stack([t, x]))[0]

    du = jax.grad(u, argnums=1)
    d2u = jax.grad(du, argnums=1)
    dtdu = jax.grad(du, argnums=0)

    @jax.jit
    @jax.vmap
    def all_of(t, x):  # u, u_x, u_xx, u_tx at one point
        return jnp.stack([u(t, x), du(t, x), d2u(t, x), dtdu(t, x)])

    t, x = 0.37, -0.61
    shifts = np.array([0.0, period, -period, 3 * period, 0.5 * period])
    vals = np.asarray(all_of(jnp.full(5, t), x + jnp.asarray(shifts)))
    assert np.all(np.abs(vals[0]) > 1e-6)  # a trivially zero check would prove nothing
    for row in vals[1:4]:
        np.testing.assert_allclose(row, vals[0], rtol=1e-11, atol=1e-12)
    # not periodic with another period, and not periodic in t
    assert abs(vals[4, 0] - vals[0, 0]) > 1e-6
    assert abs(all_of(jnp.array([t + period]), jnp.array([x]))[0, 0] - vals[0, 0]) > 1e-6


def test_trainable_period(getkey, x64):
    emb = PeriodicEmbedding(2, axes=(0,), periods=(1.5,), trainable_period=True)
    assert emb.fixed_periods is None and emb.periods.shape == (1,)
    net = Sequential(emb, MLP(emb.out_size, 1, width=8, depth=1, key=getkey()))
    x = jnp.array([0.2, 0.4])
    np.testing.assert_allclose(net(x + jnp.array([1.5, 0.0])), net(x), rtol=1e-12)
    grad = eqx.filter_grad(lambda m: m(x)[0])(net).layers[0].periods

    # d/dP of the embedding at fixed x, by central differences
    def with_period(p):
        e = PeriodicEmbedding(2, axes=(0,), periods=(p,))
        return Sequential(e, net.layers[1])(x)[0]

    fd = (with_period(1.5 + 1e-6) - with_period(1.5 - 1e-6)) / 2e-6
    np.testing.assert_allclose(grad[0], fd, rtol=1e-6)


# --- modified MLP -------------------------------------------------------------------------------


def test_modified_mlp_matches_hand_written_forward(getkey, x64):
    net = ModifiedMLP(
        2, 3, width=5, depth=3, activation=jnp.tanh, final_activation=jax.nn.sigmoid, key=getkey()
    )
    assert len(net.hidden) == 3 and (net.in_size, net.out_size) == (2, 3)
    assert [(h.in_size, h.out_size) for h in net.hidden] == [(2, 5), (5, 5), (5, 5)]

    def forward(x):
        u = np.tanh(np_dense(net.encoder_u, x))
        v = np.tanh(np_dense(net.encoder_v, x))
        h = np.tanh(np_dense(net.hidden[0], x))
        for k in (1, 2):
            z = np.tanh(np_dense(net.hidden[k], h))
            h = (1 - z) * u + z * v
        return np_sigmoid(np_dense(net.output, h))

    xs = np.array([[0.5, -1.0], [0.0, 0.3], [2.0, 1.5]])
    np.testing.assert_allclose(net(jnp.asarray(xs[0])), forward(xs[0]), rtol=1e-12)
    np.testing.assert_allclose(
        jax.vmap(net)(jnp.asarray(xs)), np.stack([forward(x) for x in xs]), rtol=1e-12
    )


# --- Sequential -----------------------------------------------------------------------------------


def test_sequential_composes_in_order(getkey, x64):
    a, b = Dense(2, 4, key=getkey()), Dense(4, 3, key=getkey())
    seq = Sequential(a, jnp.tanh, b)
    x = np.array([0.3, -0.2])
    np.testing.assert_allclose(
        seq(jnp.asarray(x)), np_dense(b, np.tanh(np_dense(a, x))), rtol=1e-12
    )
    assert (seq.in_size, seq.out_size) == (2, 3)


# --- errors ----------------------------------------------------------------------------------------


def test_errors(getkey):
    k = getkey()
    for build in (
        lambda: Dense(2, 3, init="xavier", key=k),
        lambda: MLP(2, 3, width=4, depth=1, init="xavier", key=k),
        lambda: ModifiedMLP(2, 3, width=4, depth=2, init="xavier", key=k),
    ):
        with pytest.raises(ValueError, match=r"unknown init 'xavier'; allowed: glorot_normal, "):
            build()
    with pytest.raises(ValueError, match="weight_factorization must be None or a"):
        MLP(2, 3, width=4, depth=1, weight_factorization=1.0, key=k)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        FactorizedDense(2, 3, sigma=-0.1, key=k)
    with pytest.raises(ValueError, match="depth must be >= 2"):
        ModifiedMLP(2, 3, width=4, depth=1, key=k)
    with pytest.raises(ValueError, match="width must be positive"):
        ModifiedMLP(2, 3, width=0, depth=2, key=k)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        FourierFeatures(2, 4, 0.0, key=k)
    with pytest.raises(ValueError, match="sizes must be positive"):
        FourierFeatures(2, 0, 1.0, key=k)
    with pytest.raises(ValueError, match=r"axes must be distinct indices in \[0, 2\)"):
        PeriodicEmbedding(2, axes=(2,), periods=(1.0,))
    with pytest.raises(ValueError, match="axes must be distinct"):
        PeriodicEmbedding(2, axes=(0, 0), periods=(1.0, 1.0))
    with pytest.raises(ValueError, match="one period per axis"):
        PeriodicEmbedding(2, axes=(0, 1), periods=(1.0,))
    with pytest.raises(ValueError, match="periods must be positive"):
        PeriodicEmbedding(2, axes=(0,), periods=(-1.0,))
    with pytest.raises(ValueError, match="harmonics must be an integer >= 1"):
        PeriodicEmbedding(2, axes=(0,), periods=(1.0,), harmonics=0)
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential()
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\) gives out_size=4 but layer 1"):
        Sequential(Dense(2, 4, key=k), MLP(3, 1, width=4, depth=1, key=k))
    # every layer validates its one-example input
    layers = {
        "FactorizedDense": FactorizedDense(3, 2, key=k),
        "FourierFeatures": FourierFeatures(3, 2, 1.0, key=k),
        "PeriodicEmbedding": PeriodicEmbedding(3, axes=(0,), periods=(1.0,)),
        "ModifiedMLP": ModifiedMLP(3, 2, width=4, depth=2, key=k),
    }
    for name, layer in layers.items():
        with pytest.raises(ValueError, match=rf"{name}: expected input shape \(3,\), got \(5, 3\)"):
            layer(jnp.ones((5, 3)))
