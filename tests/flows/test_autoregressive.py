"""MADE masks, `MaskedMLP` and `MaskedAutoregressive` (MAF, and IAF via `Invert`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_spline import (  # noqa: F401
    BatteryCase,
    battery_tests,
    build,
    dtype,
    fast_jit,
    perturb,
)

from sciml.flows._autoregressive import MaskedAutoregressive
from sciml.flows._bijection import Invert
from sciml.flows._made import MaskedMLP, made_degrees, made_masks

# Affine without and spline with context (through Invert: the IAF), so the class
# is covered in both settings; the spline without context and the affine with
# one run through the same code (the transformer and the MADE input are
# independent) and are exercised by the MAF tests below.
CASES = [
    BatteryCase(
        "maf_affine",
        lambda k: MaskedAutoregressive(3, key=k, width=8, depth=2),
        dim=3,
    ),
    BatteryCase(
        "iaf_spline_ctx",
        lambda k: Invert(
            MaskedAutoregressive(
                3, key=k, transformer="spline", knots=4, cond_dim=2, width=8, depth=1
            )
        ),
        dim=3,
        cond_dim=2,
        spline=True,
        scale=0.3,
    ),
]

(
    test_round_trip,
    test_log_det_matches_jacobian,
    test_far_out_inputs_finite,
    test_shape_and_context_errors,
) = battery_tests(CASES)


# ------------------------------------------------------------------ MADE masks


def test_degrees_and_masks_follow_the_recipe():
    deg = made_degrees(3, width=5, depth=2, params_per_dim=2)
    np.testing.assert_array_equal(deg[0], [1, 2, 3])
    np.testing.assert_array_equal(deg[1], [1, 2, 1, 2, 1])  # cycled over 1..D-1
    np.testing.assert_array_equal(deg[3], [1, 1, 2, 2, 3, 3])  # repeated per parameter
    masks = made_masks(3, width=5, depth=2, params_per_dim=2)
    assert [m.shape for m in masks] == [(5, 3), (5, 5), (6, 5)]
    for k, m in enumerate(masks[:-1]):  # hidden: m_h(k) >= m_prev(j)
        for a in range(m.shape[0]):
            for b in range(m.shape[1]):
                assert m[a, b] == (deg[k + 1][a] >= deg[k][b])
    out = masks[-1]  # output: m_out(o) > m_h(k)
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            assert out[a, b] == (deg[3][a] > deg[2][b])
    # context: degree 0 inputs, hidden degrees from 0 so dimension 1 can see the context
    deg_c = made_degrees(3, width=4, depth=1, cond_dim=2)
    np.testing.assert_array_equal(deg_c[0], [1, 2, 3, 0, 0])
    np.testing.assert_array_equal(deg_c[1], [0, 1, 2, 0])


@pytest.fixture(scope="module")
def made_jacobians():
    """Jacobians of a perturbed MaskedMLP (D = 4, 3 params per dim, context 2) in x and c."""
    net = build(lambda k: MaskedMLP(4, 3, key=k, cond_dim=2, width=8, depth=2))
    net = perturb(net, jax.random.key(1), 0.5)
    x, c = jnp.array([0.3, -0.8, 1.1, 0.4]), jnp.array([0.5, -1.0])
    jx, jc = fast_jit(lambda n, a, b: jax.jacfwd(n, argnums=(0, 1))(a, b))(net, x, c)
    return net, np.asarray(jx), np.asarray(jc)


def test_made_autoregressive_property(made_jacobians):
    """∂(outputs of dim i)/∂x_j = 0 exactly for j >= i, and nonzero for some j < i."""
    _, jx, _ = made_jacobians
    assert jx.shape == (4, 3, 4)
    for i in range(4):
        np.testing.assert_array_equal(jx[i, :, i:], 0.0)
        for j in range(i):
            assert np.max(np.abs(jx[i, :, j])) > 1e-6, (i, j)


def test_made_context_reaches_every_dimension(made_jacobians):
    _, _, jc = made_jacobians
    assert jc.shape == (4, 3, 2)
    for i in range(4):
        assert np.max(np.abs(jc[i])) > 1e-6, i


def test_masked_weights_get_no_gradient(made_jacobians):
    net, _, _ = made_jacobians
    grads = fast_jit(eqx.filter_grad(lambda n: jnp.sum(jnp.sin(n(jnp.ones(4), jnp.ones(2))))))(net)
    for layer, mask in zip(grads.layers, net.masks):
        np.testing.assert_array_equal(np.asarray(layer.weight)[~np.asarray(mask)], 0.0)
        assert np.max(np.abs(np.asarray(layer.weight)[np.asarray(mask)])) > 0
    assert grads.masks == (None,) * len(net.masks)  # boolean masks are not trained


def test_fresh_made_outputs_zero():
    out = build(lambda k: MaskedMLP(3, 2, key=k, width=4, depth=1)(jnp.ones(3)))
    np.testing.assert_array_equal(out, 0.0)


def test_made_errors():
    with pytest.raises(ValueError, match="width 2 is too small"):
        made_masks(4, width=2, depth=1)
    with pytest.raises(ValueError, match="dim must be"):
        made_masks(0, width=4, depth=1)
    net = build(lambda k: MaskedMLP(3, 2, key=k, width=4, depth=1, cond_dim=1))
    with pytest.raises(ValueError, match="context shape"):
        net(jnp.ones(3))
    with pytest.raises(ValueError, match="expected x of shape"):
        net(jnp.ones(2), jnp.ones(1))


# ------------------------------------------------------------- MAF behaviour


@pytest.mark.parametrize("transformer", ["affine", "spline"])
def test_maf_jacobian_is_triangular_and_directions_agree(transformer):
    """x_i depends on z_{<=i} only; round trip and log-det; IAF sampling = MAF density pass."""
    maf = build(lambda k: MaskedAutoregressive(4, key=k, transformer=transformer, knots=4, width=8))
    maf = perturb(maf, jax.random.key(1), 0.3)
    z = jnp.array([0.2, -1.1, 0.7, 1.9])

    @fast_jit
    def run(m, v):
        jac = jax.jacfwd(m.transform)(v)
        x, ld = m.transform_and_log_det(v)
        return (
            jac,
            x,
            ld,
            m.inverse_and_log_det(x),
            Invert(m).transform_and_log_det(v),
            (m.inverse_and_log_det(v)),
        )

    jac, x, ld, (z_back, ld_inv), iaf, maf_inv = run(maf, z)
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-5)
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(np.triu(np.asarray(jac), k=1), 0.0)
    assert np.all(np.abs(np.diag(np.asarray(jac))) > 0)
    assert np.max(np.abs(np.tril(np.asarray(jac), k=-1))) > 1e-4
    for a, b in zip(iaf, maf_inv):
        np.testing.assert_array_equal(a, b)


def test_maf_fresh_identity_and_one_dim():
    x, ld = build(
        lambda k: MaskedAutoregressive(1, key=k, width=4, depth=1).transform_and_log_det(
            jnp.array([0.7])
        )
    )
    np.testing.assert_allclose(x, [0.7], atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


def test_maf_constructor_errors():
    with pytest.raises(ValueError, match="allowed: affine, spline"):
        MaskedAutoregressive(3, key=jax.random.key(0), transformer="cubic")
    with pytest.raises(ValueError, match="dim must be"):
        MaskedAutoregressive(0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="knots"):
        MaskedAutoregressive(3, key=jax.random.key(0), transformer="spline", knots=0)
    with pytest.raises(ValueError, match="cond_dim"):
        MaskedAutoregressive(3, key=jax.random.key(0), cond_dim=0)
