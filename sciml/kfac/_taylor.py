"""The forward Laplacian of an MLP written with `sciml.nn.affine`: K-FAC's weight-sharing view of a PINN.

For one point `x ∈ R^d`, the pass carries the value `z`, the `d` gradient
channels `∂z/∂x_i` and the Laplacian channel `Δz` through the network (Li et
al. 2024's forward Laplacian). A dense layer applies the SAME weight to all
`d + 2` channels, the bias only to the value:

    z ← W z + b,    ∂_i z ← W ∂_i z,    Δz ← W Δz,

and an elementwise activation σ maps them to `σ(z)`, `σ'(z) ∂_i z` and
`σ'(z) Δz + σ''(z) Σ_i (∂_i z)²`. Every layer is therefore a weight-sharing
layer with `d + 2` calls per point (Dangel, Müller & Zeinhofer 2024); because
each call goes through `sciml.nn.affine`, K-FAC records the input of every
channel (homogeneous coordinate 1 for the value, 0 for the derivative
channels) and its output gradient, and sums them into the layer's factors
("expand": the channels count as extra examples in `A`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from sciml import nn

__all__ = ["mlp_laplacian"]


def _derivatives(act, z):
    """`σ(z), σ'(z), σ''(z)` elementwise."""
    first = jax.grad(act)
    second = jax.grad(first)
    flat = z.ravel()
    return act(z), jax.vmap(first)(flat).reshape(z.shape), jax.vmap(second)(flat).reshape(z.shape)


def mlp_laplacian(mlp: nn.MLP, x: Array) -> tuple[Array, Array, Array]:
    """`(u(x), ∇u(x), Δu(x))` of an `sciml.nn.MLP` by one forward-Laplacian pass through `affine`.

    Args:
        mlp: an `MLP` of plain `Dense` layers (no weight factorisation) whose
            activations act elementwise.
        x: ONE point, shape `(d,)`.

    Returns:
        The value `(m,)`, the gradient `(m, d)` and the Laplacian `(m,)`.

    Raises:
        ValueError: a layer that is not a plain `Dense`, or `x` not of shape `(d,)`.
    """
    if any(not isinstance(layer, nn.Dense) for layer in mlp.layers):
        raise ValueError("mlp_laplacian: every layer must be a plain sciml.nn.Dense")
    x = jnp.asarray(x)
    d = mlp.layers[0].in_size
    if x.shape != (d,):
        raise ValueError(f"mlp_laplacian: x must have shape ({d},), got {x.shape}")
    z = x
    grads = [jnp.zeros_like(x).at[i].set(1.0) for i in range(d)]
    lap = jnp.zeros_like(x)
    last = len(mlp.layers) - 1
    for k, layer in enumerate(mlp.layers):
        z = nn.affine(layer.weight, layer.bias, z)
        grads = [nn.affine(layer.weight, None, g) for g in grads]
        lap = nn.affine(layer.weight, None, lap)
        act = mlp.final_activation if k == last else mlp.activation
        z, s1, s2 = _derivatives(act, z)
        lap = s1 * lap + s2 * sum(g**2 for g in grads)
        grads = [s1 * g for g in grads]
    return z, jnp.stack(grads, axis=-1), lap
