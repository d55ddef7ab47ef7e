"""MADE: masked networks whose output for dimension `i` depends only on `x_{<i}`.

Degrees (Germain et al. 2015, REFERENCES §3.2): input `j` has degree
`j + 1` (1..D, the natural order); hidden units get degrees cycled over
`1..D−1`; an output parameterising dimension `i` has degree `i + 1`, repeated
`params_per_dim` times (outputs are laid out dimension-major, so
`out.reshape(D, params_per_dim)[i]` belongs to dimension `i`). Masks:

    hidden  M[k, j] = 1  iff  m_h(k) ≥ m_prev(j)
    output  M[o, k] = 1  iff  m_out(o) > m_h(k)

Context inputs get degree 0, so every hidden unit sees them. Departure from
the plain recipe: with a context, hidden degrees cycle over `0..D−1`
instead. A unit of degree 0 sees only the context, and it is the only path by
which the context reaches the parameters of dimension 1 (degree 1 outputs
see only hidden units of degree 0). Without a context such units would be
constants, so they are left out.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from sciml.nn import Dense

from ._elementwise import _cond_shape, zero_last_layer

__all__ = ["MaskedMLP", "made_degrees", "made_masks"]


def _check_sizes(name, dim, params_per_dim, width, depth, cond_dim) -> None:
    for label, value, low in (
        ("dim", dim, 1),
        ("params_per_dim", params_per_dim, 1),
        ("width", width, 1),
        ("depth", depth, 0),
    ):
        if not (isinstance(value, int | np.integer) and value >= low):
            raise ValueError(f"{name}: {label} must be an integer >= {low}, got {value!r}")
    _cond_shape(cond_dim, name)
    lo = 0 if cond_dim else 1
    needed = max(dim - lo, 1)
    if depth > 0 and width < needed:
        raise ValueError(
            f"{name}: width {width} is too small to cover the {needed} hidden degrees "
            f"{list(range(lo, lo + needed))} of dim={dim}; use width >= {needed}"
        )


def made_degrees(
    dim: int,
    *,
    width: int,
    depth: int,
    params_per_dim: int = 1,
    cond_dim: int | None = None,
) -> list[np.ndarray]:
    """Degrees of every layer of a MADE network, input first, output last.

    Args:
        dim: `D`, the number of autoregressive inputs.
        width, depth: hidden width and number of hidden layers.
        params_per_dim: outputs per dimension (2 for affine, `3K − 1` for splines).
        cond_dim: number of context inputs (appended after `x`, degree 0), or `None`.

    Returns:
        `depth + 2` integer arrays: the input degrees (`D + cond_dim`), one
        array of `width` per hidden layer, and the output degrees
        (`D · params_per_dim`).

    Raises:
        ValueError: non-positive sizes, or `width` smaller than the number of
            hidden degrees needed (`D − 1`, or `D` with a context).
    """
    _check_sizes("made_degrees", dim, params_per_dim, width, depth, cond_dim)
    inputs = np.concatenate([np.arange(1, dim + 1), np.zeros(cond_dim or 0, int)])
    lo = 0 if cond_dim else 1
    span = dim - lo
    if span == 0:  # D = 1 without context: nothing to see, any degree >= 1 will do
        hidden = np.ones(width, int)
    else:
        hidden = lo + np.arange(width) % span
    outputs = np.repeat(np.arange(1, dim + 1), params_per_dim)
    return [inputs] + [hidden] * depth + [outputs]


def made_masks(
    dim: int,
    *,
    width: int,
    depth: int,
    params_per_dim: int = 1,
    cond_dim: int | None = None,
) -> list[np.ndarray]:
    """Boolean MADE masks, one `(out_size, in_size)` array per layer.

    Arguments as for `made_degrees`. With `x` followed by the context as input,
    a network `h = act(W_l ⊙ M_l h + b_l)` built on these masks has outputs for
    dimension `i` (rows `i·P … i·P + P − 1`) independent of `x_j` for `j ≥ i`.
    """
    degrees = made_degrees(
        dim, width=width, depth=depth, params_per_dim=params_per_dim, cond_dim=cond_dim
    )
    masks = [degrees[k + 1][:, None] >= degrees[k][None, :] for k in range(len(degrees) - 2)]
    masks.append(degrees[-1][:, None] > degrees[-2][None, :])
    return masks


class MaskedMLP(eqx.Module):
    """A MADE network: an MLP with masked weights, `(x, context) -> (D, params_per_dim)`.

    The weights are multiplied by fixed boolean masks in the forward pass, so
    a masked weight has no effect and receives a zero gradient. The masks are
    stored as boolean arrays: not inexact, hence never trained by optimizers
    that filter on `eqx.is_inexact_array`. The last layer starts at zero, so
    the output is 0 everywhere at first.

    Args:
        dim: `D`.
        params_per_dim: outputs per dimension.
        key: PRNG key.
        cond_dim: context size or `None`.
        width, depth: hidden width and number of hidden layers (`depth >= 0`;
            `width >= D − 1`, or `D` with a context).
        activation: hidden nonlinearity.

    Returns (when called on `x` of shape `(D,)` and `context` of shape
    `(cond_dim,)` or `None`): an array `(D, params_per_dim)` whose row `i`
    depends only on `x[:i]` and the context.

    Reference: Germain et al., "MADE: Masked Autoencoder for Distribution
    Estimation", ICML 2015.
    """

    layers: tuple[Dense, ...]
    masks: tuple[Array, ...]
    activation: Callable[[Array], Array]
    dim: int = eqx.field(static=True)
    params_per_dim: int = eqx.field(static=True)
    cond_dim: int | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        params_per_dim: int,
        *,
        key: PRNGKeyArray,
        cond_dim: int | None = None,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jnp.tanh,
    ):
        masks = made_masks(
            dim, width=width, depth=depth, params_per_dim=params_per_dim, cond_dim=cond_dim
        )
        keys = jax.random.split(key, len(masks))
        layers = [Dense(m.shape[1], m.shape[0], key=k) for m, k in zip(masks, keys)]
        layers[-1] = zero_last_layer(layers[-1])  # the output is 0 everywhere at first
        self.layers = tuple(layers)
        self.masks = tuple(jnp.asarray(m, bool) for m in masks)
        self.activation = activation
        self.dim = int(dim)
        self.params_per_dim = int(params_per_dim)
        self.cond_dim = None if cond_dim is None else int(cond_dim)

    def __call__(self, x: Array, context: Array | None = None) -> Array:
        if x.shape != (self.dim,):
            raise ValueError(f"MaskedMLP: expected x of shape ({self.dim},), got {x.shape}")
        if self.cond_dim is None:
            if context is not None:
                raise ValueError("MaskedMLP: built without cond_dim, got a context")
            h = x
        else:
            if context is None or jnp.shape(context) != (self.cond_dim,):
                got = None if context is None else jnp.shape(context)
                raise ValueError(f"MaskedMLP: expected context shape ({self.cond_dim},), got {got}")
            h = jnp.concatenate([x, jnp.asarray(context).astype(x.dtype)])
        n = len(self.layers)
        for i, (layer, mask) in enumerate(zip(self.layers, self.masks)):
            w = jnp.where(mask, layer.weight, 0).astype(h.dtype)
            h = w @ h + layer.bias.astype(h.dtype)
            if i < n - 1:
                h = self.activation(h)
        return h.reshape(self.dim, self.params_per_dim)
