"""An ensemble of models with the same structure, stored stacked and trained side by side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["Ensemble"]


class Ensemble(eqx.Module):
    """`n` models of one structure, their array leaves stacked on a leading axis.

    Training an ensemble is training one model: the trainer sees one pytree,
    and a loss that maps over the members (`Ensemble.map`) evaluates them
    side by side in one compiled program. On a CPU an ensemble of 5 small
    UDEs costs about twice one of them per gradient step (measured on the
    Lotka-Volterra UDE), not five times, because a vmapped ODE solve
    amortises the per-step overhead that dominates small networks. A joint
    line search costs more: the Lotka-Volterra recipe (Adam, then L-BFGS)
    trains 5 members in 3.7x the time of one.

    Build one with `Ensemble.init(make, key, n)`, which calls `make(key_i)`
    for `n` keys split from `key`; `members()` gives the models back one by
    one.

    Attributes:
        stacked: the members' pytree with a leading axis of size `n` on every
            array leaf (non-array leaves are shared).
    """

    stacked: Any

    @classmethod
    def init(cls, make: Callable[[jax.Array], Any], key: jax.Array, n: int) -> Ensemble:
        """`n` members `make(k)` for keys `k` split from `key`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Ensemble.init: n must be a positive int, got {n!r}")
        return cls(eqx.filter_vmap(make)(jax.random.split(key, n)))

    @property
    def size(self) -> int:
        """The number of members."""
        leaves = jax.tree.leaves(eqx.filter(self.stacked, eqx.is_array))
        if not leaves:
            raise ValueError("Ensemble: the members have no array leaves to stack")
        return int(leaves[0].shape[0])

    def map(self, fn: Callable[..., Any], *args, **kwargs):
        """`fn(member, *args, **kwargs)` for every member, side by side (vmapped).

        The extra arguments are shared by all members; the outputs are
        stacked on a leading axis.
        """
        return eqx.filter_vmap(lambda m: fn(m, *args, **kwargs))(self.stacked)

    def member(self, i: int):
        """Member `i` as a plain model."""
        n = self.size
        if not -n <= i < n:
            raise IndexError(f"Ensemble.member: index {i} out of range for {n} members")
        arrays, static = eqx.partition(self.stacked, eqx.is_array)
        return eqx.combine(jax.tree.map(lambda a: a[i], arrays), static)

    def members(self) -> list:
        """Every member as a plain model, in order."""
        return [self.member(i) for i in range(self.size)]

    def mean(self, fn: Callable[..., Any], *args, **kwargs):
        """The members' mean of `fn(member, *args, **kwargs)` (a pytree of arrays)."""
        return jax.tree.map(lambda x: jnp.mean(x, axis=0), self.map(fn, *args, **kwargs))
