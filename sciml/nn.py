"""Shared equinox layers used by every pillar.

Layers act on a single unbatched example; batch with `jax.vmap`. Dense layers
are explicit `Dense` modules (weight and bias as plain arrays) so that
curvature-aware optimizers such as K-FAC can find them in the pytree.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["ACTIVATIONS", "Dense", "MLP", "activation_by_name"]


def _rbf(x):
    return jnp.exp(-(x**2))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "sin": jnp.sin,
    "rbf": _rbf,
    "identity": lambda x: x,
}
"""Activation functions selectable by name from config files."""


def activation_by_name(name: str) -> Callable[[Array], Array]:
    """Return the activation function called `name` (a key of `ACTIVATIONS`).

    Raises `ValueError` naming the allowed choices for an unknown name.
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r}; allowed: {allowed}") from None


class Dense(eqx.Module):
    """Affine layer `y = W x + b` on one example.

    Attributes:
        weight: `(out_size, in_size)` array.
        bias: `(out_size,)` array, or `None` when built with `use_bias=False`.

    Initialisation is uniform on ±1/sqrt(in_size) for both weight and bias
    (PyTorch's `nn.Linear` default, which the classic neural-ODE demos use).
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        use_bias: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if in_size < 1 or out_size < 1:
            raise ValueError(
                f"Dense: sizes must be positive, got in_size={in_size}, out_size={out_size}"
            )
        dtype = jnp.result_type(float) if dtype is None else dtype
        wkey, bkey = jax.random.split(key)
        lim = 1.0 / math.sqrt(in_size)
        self.weight = jax.random.uniform(wkey, (out_size, in_size), dtype, -lim, lim)
        self.bias = (
            jax.random.uniform(bkey, (out_size,), dtype, -lim, lim) if use_bias else None
        )
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        if x.shape != (self.in_size,):
            raise ValueError(
                f"Dense: expected input shape ({self.in_size},), got {x.shape}; "
                "layers act on one example, use jax.vmap for batches"
            )
        y = self.weight @ x
        return y if self.bias is None else y + self.bias


class MLP(eqx.Module):
    """Multilayer perceptron `in_size -> width x depth -> out_size` on one example.

    Args:
        in_size: input dimension.
        out_size: output dimension.
        width: hidden width.
        depth: number of hidden layers (0 gives a single affine map).
        activation: elementwise nonlinearity applied after each hidden layer.
        final_activation: applied to the output (identity by default).
        dtype: parameter dtype (the default float dtype if `None`).
        key: PRNG key.

    Example:
        >>> mlp = MLP(2, 2, width=50, depth=1, activation=jnp.tanh, key=jax.random.key(0))
        >>> mlp(jnp.ones(2)).shape
        (2,)
    """

    layers: tuple[Dense, ...]
    activation: Callable[[Array], Array]
    final_activation: Callable[[Array], Array]

    def __init__(
        self,
        in_size: int,
        out_size: int,
        *,
        width: int,
        depth: int,
        activation: Callable[[Array], Array] = jnp.tanh,
        final_activation: Callable[[Array], Array] = lambda x: x,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if depth < 0:
            raise ValueError(f"MLP: depth must be >= 0, got {depth}")
        if width < 1:
            raise ValueError(f"MLP: width must be positive, got {width}")
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            Dense(a, b, dtype=dtype, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.final_activation = final_activation

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))
