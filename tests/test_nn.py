"""Shared layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.nn import ACTIVATIONS, MLP, Dense, activation_by_name


def test_dense_matches_its_formula_and_init_bounds(getkey):
    layer = Dense(3, 4, key=getkey())
    x = jax.random.normal(getkey(), (3,))
    np.testing.assert_allclose(layer(x), layer.weight @ x + layer.bias, rtol=1e-6)
    assert layer.weight.shape == (4, 3) and layer.bias.shape == (4,)
    assert float(jnp.max(jnp.abs(layer.weight))) <= 1 / np.sqrt(3)
    assert Dense(3, 4, use_bias=False, key=getkey()).bias is None


def test_mlp_shapes_depth_and_vmap(getkey):
    mlp = MLP(2, 3, width=16, depth=2, activation=jnp.tanh, key=getkey())
    assert len(mlp.layers) == 3
    assert mlp(jnp.ones(2)).shape == (3,)
    assert jax.vmap(mlp)(jnp.ones((5, 2))).shape == (5, 3)
    linear = MLP(2, 3, width=16, depth=0, key=getkey())
    x = jnp.array([0.3, -0.2])
    np.testing.assert_allclose(linear(x), linear.layers[0](x))


def test_mlp_equals_hand_written_network(getkey):
    mlp = MLP(2, 2, width=5, depth=1, activation=jnp.tanh, key=getkey())
    x = jnp.array([0.5, -1.0])
    (l1, l2) = mlp.layers
    expected = l2.weight @ jnp.tanh(l1.weight @ x + l1.bias) + l2.bias
    np.testing.assert_allclose(mlp(x), expected, rtol=1e-6)


def test_clear_errors(getkey):
    layer = Dense(3, 4, key=getkey())
    with pytest.raises(ValueError, match=r"Dense: expected input shape \(3,\), got \(5, 3\)"):
        layer(jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="depth must be >= 0"):
        MLP(2, 2, width=4, depth=-1, key=getkey())
    with pytest.raises(ValueError, match="unknown activation 'tahn'; allowed: .*tanh"):
        activation_by_name("tahn")


def test_activations_by_name():
    x = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(activation_by_name("rbf")(x), np.exp(-np.asarray(x) ** 2), rtol=1e-6)
    for name, fn in ACTIVATIONS.items():
        assert fn(x).shape == x.shape, name
