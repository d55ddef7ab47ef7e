"""Shared layers: initialisation statistics, forward passes against numpy, activations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.nn import ACTIVATIONS, MLP, Dense, activation_by_name


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_dense(layer, x):
    """`W x + b` written out with numpy sums, in float64."""
    w = np.asarray(layer.weight, np.float64)
    out = np.array([sum(w[i, j] * x[j] for j in range(w.shape[1])) for i in range(w.shape[0])])
    return out if layer.bias is None else out + np.asarray(layer.bias, np.float64)


# --- Dense initialisation ---------------------------------------------------------


@pytest.mark.parametrize("in_size", [16, 400])
def test_dense_init_is_uniform_on_plus_minus_one_over_sqrt_in(getkey, in_size):
    out_size = 800_000 // in_size  # 800k weights either way
    layer = Dense(in_size, out_size, key=getkey())
    bound = 1 / math.sqrt(in_size)
    w = np.asarray(layer.weight, np.float64).ravel()
    b = np.asarray(layer.bias, np.float64)
    assert layer.weight.shape == (out_size, in_size) and layer.bias.shape == (out_size,)
    for name, v in (("weight", w), ("bias", b)):
        n = v.size
        # every value inside [-bound, bound] ...
        assert np.all(np.abs(v) <= bound * (1 + 1e-6)), name
        # ... and both ends reached: for n uniform draws the gap to each end is
        # ~ 2 bound / n; 40 / n of the width is missed with probability ~e^-20
        gap = min(40 / n, 0.5) * 2 * bound
        assert v.min() < -bound + gap and v.max() > bound - gap, (name, v.min(), v.max())
        # mean 0 and variance bound^2 / 3, within 6 standard errors
        var = bound**2 / 3
        assert abs(v.mean()) < 6 * math.sqrt(var / n), (name, v.mean())
        var_se = math.sqrt((bound**4 / 5 - var**2) / n)  # std of the mean of v^2
        assert abs(np.mean(v**2) - var) < 6 * var_se, (name, np.mean(v**2), var)


def test_dense_init_depends_on_key_and_dtype(getkey, x64):
    key = getkey()
    a, b = Dense(3, 4, key=key), Dense(3, 4, key=key)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert not np.allclose(a.weight, Dense(3, 4, key=getkey()).weight)
    assert a.weight.dtype == jnp.float64  # default float dtype under x64
    c = Dense(3, 4, dtype=jnp.float32, key=key)
    assert c.weight.dtype == jnp.float32 and c.bias.dtype == jnp.float32
    assert Dense(3, 4, use_bias=False, key=getkey()).bias is None


# --- forward passes against numpy ----------------------------------------------------


def test_dense_matches_numpy_forward(getkey, x64):
    layer = Dense(3, 4, key=getkey())
    x = np.array([0.3, -1.2, 2.5])
    np.testing.assert_allclose(layer(jnp.asarray(x)), np_dense(layer, x), rtol=1e-12)
    no_bias = Dense(3, 4, use_bias=False, key=getkey())
    np.testing.assert_allclose(no_bias(jnp.asarray(x)), np_dense(no_bias, x), rtol=1e-12)
    # float32 layer: same formula to float32 accuracy
    layer32 = Dense(3, 4, dtype=jnp.float32, key=getkey())
    np.testing.assert_allclose(
        layer32(jnp.asarray(x, jnp.float32)), np_dense(layer32, x), rtol=1e-5, atol=1e-6
    )


def test_mlp_matches_numpy_forward(getkey, x64):
    mlp = MLP(
        2,
        3,
        width=16,
        depth=2,
        activation=activation_by_name("tanh"),
        final_activation=activation_by_name("sigmoid"),
        key=getkey(),
    )
    assert [(layer.in_size, layer.out_size) for layer in mlp.layers] == [(2, 16), (16, 16), (16, 3)]
    x = np.array([0.5, -1.0])
    l1, l2, l3 = mlp.layers
    expected = np_sigmoid(np_dense(l3, np.tanh(np_dense(l2, np.tanh(np_dense(l1, x))))))
    np.testing.assert_allclose(mlp(jnp.asarray(x)), expected, rtol=1e-12)
    # batched with vmap: the same network on every row
    xs = np.array([[0.5, -1.0], [0.0, 0.0], [2.0, 3.0]])
    rows = [np_sigmoid(np_dense(l3, np.tanh(np_dense(l2, np.tanh(np_dense(l1, r)))))) for r in xs]
    np.testing.assert_allclose(jax.vmap(mlp)(jnp.asarray(xs)), np.stack(rows), rtol=1e-12)


def test_mlp_default_final_activation_is_identity_and_depth_zero_is_affine(getkey, x64):
    mlp = MLP(2, 2, width=5, depth=1, activation=jax.nn.relu, key=getkey())
    l1, l2 = mlp.layers
    x = np.array([0.7, -0.4])
    expected = np_dense(l2, np.maximum(np_dense(l1, x), 0.0))
    np.testing.assert_allclose(mlp(jnp.asarray(x)), expected, rtol=1e-12)
    linear = MLP(2, 3, width=16, depth=0, activation=jnp.tanh, key=getkey())
    assert len(linear.layers) == 1  # no hidden layer, so no activation is applied
    x = np.array([3.0, -2.0])
    np.testing.assert_allclose(linear(jnp.asarray(x)), np_dense(linear.layers[0], x), rtol=1e-12)


# --- activations ----------------------------------------------------------------------


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# name -> (the jax function it must be, an independent numpy formula)
EXPECTED_ACTIVATIONS = {
    "tanh": (jnp.tanh, np.tanh),
    "relu": (jax.nn.relu, lambda x: np.maximum(x, 0.0)),
    "gelu": (jax.nn.gelu, np_gelu_tanh),  # jax's default: the tanh approximation
    "silu": (jax.nn.silu, lambda x: x * np_sigmoid(x)),
    "softplus": (jax.nn.softplus, lambda x: np.log1p(np.exp(x))),
    "sigmoid": (jax.nn.sigmoid, np_sigmoid),
    "sin": (jnp.sin, np.sin),
    "rbf": (lambda x: jnp.exp(-(x**2)), lambda x: np.exp(-(x**2))),
    "identity": (lambda x: x, lambda x: x),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ACTIVATIONS))
def test_activation_by_name_is_the_right_function(name, x64):
    assert name in ACTIVATIONS
    fn = activation_by_name(name)
    jax_fn, np_fn = EXPECTED_ACTIVATIONS[name]
    x = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    got = np.asarray(fn(jnp.asarray(x)))
    np.testing.assert_allclose(got, np.asarray(jax_fn(jnp.asarray(x))), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got, np_fn(x), rtol=1e-12, atol=1e-15)


def test_every_registered_activation_is_checked():
    # a new activation needs its entry in EXPECTED_ACTIVATIONS
    assert set(ACTIVATIONS) == set(EXPECTED_ACTIVATIONS)


@pytest.mark.parametrize("bad", ["tahn", "Tanh", "", "leaky_relu"])
def test_unknown_activation_raises_naming_the_allowed_ones(bad):
    with pytest.raises(ValueError) as info:
        activation_by_name(bad)
    msg = str(info.value)
    assert msg.startswith(f"unknown activation {bad!r}; allowed: ")
    allowed = msg.split("allowed: ", 1)[1].split(", ")
    assert sorted(allowed) == sorted(ACTIVATIONS)
    assert set(EXPECTED_ACTIVATIONS) <= set(allowed)


# --- other errors -----------------------------------------------------------------------


def test_clear_errors(getkey):
    layer = Dense(3, 4, key=getkey())
    with pytest.raises(ValueError, match=r"Dense: expected input shape \(3,\), got \(5, 3\)"):
        layer(jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="sizes must be positive"):
        Dense(0, 4, key=getkey())
    with pytest.raises(ValueError, match="depth must be >= 0"):
        MLP(2, 2, width=4, depth=-1, key=getkey())
    with pytest.raises(ValueError, match="width must be positive"):
        MLP(2, 2, width=0, depth=1, key=getkey())
