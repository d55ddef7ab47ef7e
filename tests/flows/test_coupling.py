"""Coupling layers: `AffineCoupling` and `SplineCoupling` (battery from test_spline.py)."""

from __future__ import annotations

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

from sciml.flows._bijection import Chain, Invert, Stack
from sciml.flows._coupling import AffineCoupling, SplineCoupling

CASES = [
    BatteryCase("affine", lambda k: AffineCoupling(3, key=k, width=8, depth=1), dim=3),
    BatteryCase(
        "affine_ctx_flip",
        lambda k: AffineCoupling(4, key=k, cond_dim=2, width=8, depth=2, flip=True),
        dim=4,
        cond_dim=2,
    ),
    BatteryCase(
        "spline_flip",
        lambda k: SplineCoupling(3, key=k, knots=4, width=8, depth=1, flip=True),
        dim=3,
        spline=True,
        scale=0.3,
    ),
    BatteryCase(
        "spline_ctx",
        lambda k: SplineCoupling(
            4, key=k, knots=4, cond_dim=2, width=8, depth=1, untransformed_dim=1
        ),
        dim=4,
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


@pytest.mark.parametrize("cls", [AffineCoupling, SplineCoupling])
def test_fresh_layer_is_identity(cls):
    z = jnp.array([0.3, -1.0, 2.0, 5.0])

    @fast_jit
    def run(k):
        layer = cls(4, key=k, cond_dim=1, width=8, depth=1)
        return layer.transform_and_log_det(z, jnp.ones(1))

    x, ld = run(jax.random.key(0))
    np.testing.assert_allclose(x, z, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


@fast_jit
def _value_and_jacobian(layer, z, c):
    return layer.transform(z, c), jax.jacfwd(layer.transform)(z, c)


@pytest.mark.parametrize("cls, flip", [(AffineCoupling, False), (SplineCoupling, True)])
def test_blocks_and_context(cls, flip):
    """x[:n] (or x[n:] when flipped) passes unchanged, the other block moves with x_A and c."""
    layer = perturb(
        build(
            lambda k: cls(5, key=k, cond_dim=1, width=8, depth=1, untransformed_dim=2, flip=flip)
        ),
        jax.random.key(1),
        0.3,
    )
    read, moved = (slice(2, None), slice(None, 2)) if flip else (slice(None, 2), slice(2, None))
    z = jnp.array([0.3, -1.0, 2.0, 0.5, -0.7])
    x, jac = _value_and_jacobian(layer, z, jnp.ones(1))
    np.testing.assert_array_equal(x[read], z[read])
    assert np.min(np.abs(x[moved] - z[moved])) > 1e-4
    # the moved block depends on the read block and the context, each entry only on its own z
    np.testing.assert_array_equal(jac[read][:, moved], 0.0)
    sub = np.asarray(jac[moved][:, moved])
    np.testing.assert_array_equal(sub - np.diag(np.diag(sub)), 0.0)  # elementwise transformer
    assert np.max(np.abs(jac[moved][:, read])) > 1e-4
    x_other = _value_and_jacobian(layer, z, -jnp.ones(1))[0]
    assert np.max(np.abs(x_other - x)) > 1e-4


def test_alternating_stack_and_chain(getkey):
    """Flip-alternating layers in a Chain (and a Stack of those) invert, with matching log-dets."""

    def pair(k):
        k1, k2 = jax.random.split(k)
        return Chain(
            [
                AffineCoupling(3, key=k1, width=8, depth=1),
                SplineCoupling(3, key=k2, knots=4, width=8, depth=1, flip=True),
            ]
        )

    flow = perturb(build(lambda k: Stack(pair, jax.random.split(k, 2)), getkey()), getkey(), 0.3)
    z = jnp.array([0.4, -1.2, 2.2])
    run = fast_jit(lambda f, v: f.transform_and_log_det(v))
    x, ld = run(flow, z)
    z_back, ld_inv = run(Invert(flow), x)
    np.testing.assert_allclose(z_back, z, atol=1e-4)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-4)
    assert np.all(np.abs(x - z) > 1e-4)  # every coordinate moved


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dim=1), "dim must be"),
        (dict(dim=3, untransformed_dim=3), "untransformed_dim"),
        (dict(dim=3, untransformed_dim=0), "untransformed_dim"),
        (dict(dim=3, cond_dim=0), "cond_dim"),
    ],
)
@pytest.mark.parametrize("cls", [AffineCoupling, SplineCoupling])
def test_constructor_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(key=jax.random.key(0), **kwargs)


def test_spline_coupling_bad_knots():
    with pytest.raises(ValueError, match="knots"):
        SplineCoupling(3, key=jax.random.key(0), knots=0)
