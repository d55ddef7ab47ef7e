"""The bijection interface and its combinators: `AbstractBijection`, `Chain`, `Invert`, `Stack`.

Convention (REFERENCES §3.1): a bijection `T` maps a base point `z` to a data
point `x`. `transform_and_log_det(z)` returns `(x, log|det ∂T/∂z|)` and
`inverse_and_log_det(x)` returns `(z, log|det ∂T⁻¹/∂x|) = (z, −log|det ∂T/∂z|)`.
Both act on ONE unbatched point of shape `shape` (batch with `jax.vmap`) and
take an optional conditioning `context` of shape `cond_shape` (`None` when the
bijection is unconditional). Log-determinants are scalars and add under
composition.
"""

from __future__ import annotations

from abc import abstractmethod

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["AbstractBijection", "Chain", "Invert", "Stack", "check_input"]


def _shape_str(shape) -> str:
    return "None" if shape is None else str(tuple(shape))


def check_input(name: str, x, shape, context, cond_shape) -> None:
    """Raise a clear `ValueError` when `x` or `context` do not have the expected shapes.

    Called at trace time by every bijection on its inputs: `x` must have
    exactly `shape` (one unbatched point: batch with `jax.vmap`); `context`
    must be `None` for an unconditional bijection and have `cond_shape`
    otherwise.
    """
    x_shape = jnp.shape(x)
    if x_shape != tuple(shape):
        hint = " (one point: batch with jax.vmap)" if len(x_shape) == len(shape) + 1 else ""
        raise ValueError(f"{name}: expected input shape {tuple(shape)}, got {x_shape}{hint}")
    if cond_shape is None:
        if context is not None:
            raise ValueError(
                f"{name}: this bijection takes no context (cond_shape None), got one of shape "
                f"{jnp.shape(context)}"
            )
    else:
        if context is None:
            raise ValueError(f"{name}: expected a context of shape {tuple(cond_shape)}, got None")
        if jnp.shape(context) != tuple(cond_shape):
            raise ValueError(
                f"{name}: expected context shape {tuple(cond_shape)}, got {jnp.shape(context)}"
            )
    for what, arr in (("input", x), ("context", context)):
        if arr is not None and not jnp.issubdtype(jnp.result_type(arr), jnp.floating):
            raise TypeError(
                f"{name}: {what} must be floating point, got dtype {jnp.result_type(arr)}"
            )


class AbstractBijection(eqx.Module):
    """A differentiable bijection with an exact log-determinant.

    Attributes:
        shape: the shape of one point (e.g. `(2,)`).
        cond_shape: the shape of the context, or `None` for an unconditional bijection.

    Subclasses implement `transform_and_log_det` and `inverse_and_log_det`
    (both on one unbatched point, `context` keyword), and call
    `check_input(...)` on their inputs. `transform` and `inverse` drop the
    log-determinant.
    """

    shape: eqx.AbstractVar[tuple[int, ...]]
    cond_shape: eqx.AbstractVar[tuple[int, ...] | None]

    @abstractmethod
    def transform_and_log_det(self, z: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`(T(z), log|det ∂T/∂z|)` for one point `z` of shape `shape`."""

    @abstractmethod
    def inverse_and_log_det(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`(T⁻¹(x), log|det ∂T⁻¹/∂x|)` for one point `x` of shape `shape`."""

    def transform(self, z: Array, context: Array | None = None) -> Array:
        """`T(z)` (see `transform_and_log_det`)."""
        return self.transform_and_log_det(z, context)[0]

    def inverse(self, x: Array, context: Array | None = None) -> Array:
        """`T⁻¹(x)` (see `inverse_and_log_det`)."""
        return self.inverse_and_log_det(x, context)[0]


def _common_shapes(name: str, bijections) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    if not bijections:
        raise ValueError(f"{name}: needs at least one bijection")
    shape = tuple(bijections[0].shape)
    conds = {tuple(b.cond_shape) for b in bijections if b.cond_shape is not None}
    for i, b in enumerate(bijections):
        if not isinstance(b, AbstractBijection):
            raise TypeError(f"{name}: item {i} is a {type(b).__name__}, not an AbstractBijection")
        if tuple(b.shape) != shape:
            raise ValueError(f"{name}: bijection {i} has shape {tuple(b.shape)}, the first {shape}")
    if len(conds) > 1:
        raise ValueError(f"{name}: the bijections take different context shapes {sorted(conds)}")
    return shape, (conds.pop() if conds else None)


def _ctx(b: AbstractBijection, context):
    # a conditional chain hands its context only to the members that take one
    return None if b.cond_shape is None else context


class Chain(AbstractBijection):
    """Composition `T = T_n ∘ ... ∘ T_1`: `transform` applies `bijections` in order.

    The log-determinants add. Members without a context ignore the chain's
    context; all conditional members must share one `cond_shape`.
    """

    bijections: tuple[AbstractBijection, ...]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijections):
        self.bijections = tuple(bijections)
        self.shape, self.cond_shape = _common_shapes("Chain", self.bijections)

    def transform_and_log_det(self, z, context=None):
        check_input("Chain", z, self.shape, context, self.cond_shape)
        total = jnp.zeros((), jnp.result_type(z))
        for b in self.bijections:
            z, ld = b.transform_and_log_det(z, _ctx(b, context))
            total = total + ld
        return z, total

    def inverse_and_log_det(self, x, context=None):
        check_input("Chain", x, self.shape, context, self.cond_shape)
        total = jnp.zeros((), jnp.result_type(x))
        for b in reversed(self.bijections):
            x, ld = b.inverse_and_log_det(x, _ctx(b, context))
            total = total + ld
        return x, total


class Invert(AbstractBijection):
    """The inverse bijection: swaps `transform_and_log_det` and `inverse_and_log_det`.

    Use it to choose the fast direction: e.g. a masked autoregressive flow
    evaluates densities in one pass and samples in `D` passes; `Invert` of it
    (an inverse autoregressive flow) samples in one pass.
    """

    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(
                f"Invert: expected an AbstractBijection, got a {type(bijection).__name__}"
            )
        self.bijection = bijection
        self.shape, self.cond_shape = bijection.shape, bijection.cond_shape

    def transform_and_log_det(self, z, context=None):
        return self.bijection.inverse_and_log_det(z, context)

    def inverse_and_log_det(self, x, context=None):
        return self.bijection.transform_and_log_det(x, context)


class Stack(AbstractBijection):
    """`n` layers of identical structure, stored stacked and applied with `lax.scan`.

    Build it from a function of a key: `Stack(make_layer, keys)` calls
    `make_layer` under `eqx.filter_vmap` over `keys` (shape `(n,)` of keys),
    so the parameters carry a leading axis of length `n`; `transform` scans
    over it. Compile time is that of ONE layer whatever `n` is (a `Chain` of
    `n` layers traces `n` copies).
    """

    layers: AbstractBijection  # leaves stacked along axis 0
    n: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, make_layer, keys):
        keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
        self.n = int(keys.shape[0])
        if self.n < 1:
            raise ValueError(f"Stack: needs at least one key, got {self.n}")
        self.layers = eqx.filter_vmap(make_layer)(keys)
        one = self._layer(0)
        if not isinstance(one, AbstractBijection):
            raise TypeError(f"Stack: make_layer returned a {type(one).__name__}, not a bijection")
        self.shape, self.cond_shape = tuple(one.shape), one.cond_shape

    def _layer(self, i):
        arrays, static = eqx.partition(self.layers, eqx.is_array)
        return eqx.combine(jax.tree.map(lambda a: a[i], arrays), static)

    def _scan(self, method: str, x, context, reverse: bool):
        arrays, static = eqx.partition(self.layers, eqx.is_array)

        def body(carry, layer_arrays):
            y, total = carry
            layer = eqx.combine(layer_arrays, static)
            y, ld = getattr(layer, method)(y, context)
            return (y, total + ld), None

        init = (x, jnp.zeros((), jnp.result_type(x)))
        (y, total), _ = jax.lax.scan(body, init, arrays, reverse=reverse)
        return y, total

    def transform_and_log_det(self, z, context=None):
        check_input("Stack", z, self.shape, context, self.cond_shape)
        return self._scan("transform_and_log_det", z, context, reverse=False)

    def inverse_and_log_det(self, x, context=None):
        check_input("Stack", x, self.shape, context, self.cond_shape)
        return self._scan("inverse_and_log_det", x, context, reverse=True)
