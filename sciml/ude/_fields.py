"""Vector fields with learned parts: `NeuralODE` and the universal differential equation `UDE`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["NeuralODE", "UDE"]


class NeuralODE(eqx.Module):
    """dy/dt = net(y) (autonomous) or net(concat(t, y)) (with `time_dependent=True`).

    Args:
        net: a module mapping one state of shape (n,) (or (n + 1,) with time)
            to dy/dt of shape (n,), e.g. `sciml.nn.MLP`.
        time_dependent: feed the time as an extra first input.

    Use as the `vector_field` of `sciml.ude.solve`.
    """

    net: eqx.Module
    time_dependent: bool = eqx.field(static=True, default=False)

    def __call__(self, t, y, args=None):
        if self.time_dependent:
            return self.net(jnp.concatenate([jnp.reshape(t, (1,)).astype(y.dtype), y]))
        return self.net(y)


class UDE(eqx.Module):
    """Universal differential equation: known physics combined with a network.

    dy/dt = combine(known(t, y, p), net(y), y), by default known + net.

    Args:
        known: `known(t, y, p) -> dy/dt`, the mechanistic part, with physical
            parameters `p` (any pytree).
        net: network for the missing part, mapping y (n,) to (n,) (or to what
            `combine` expects).
        params: initial physical parameters (pytree of arrays). With
            `positive=True` they are given as positive values and stored as
            their softplus inverse, so training keeps them positive.
        combine: `combine(known_out, net_out, y) -> dy/dt`; `None` adds them.
        positive: constrain every physical parameter to be positive.
        learn_params: `False` freezes the physical parameters (they are
            stop-gradiented, but stay leaves of the pytree, so an optimizer
            with weight decay would still move them; for true constants,
            close over them in `known` and pass `params=None`).

    Attributes:
        raw_params: the unconstrained stored parameters; `physical_params()`
            gives the values used.

    Reference: Rackauckas et al., "Universal Differential Equations for
    Scientific Machine Learning", arXiv:2001.04385 (2020).
    """

    known: Callable[[Any, Any, Any], Any] = eqx.field(static=True)
    net: eqx.Module
    raw_params: Any
    combine: Callable | None = eqx.field(static=True, default=None)
    positive: bool = eqx.field(static=True, default=False)
    learn_params: bool = eqx.field(static=True, default=True)

    def __init__(self, known, net, params=None, *, combine=None, positive=False, learn_params=True):
        self.known = known
        self.net = net
        params = jax.tree.map(jnp.asarray, params)
        if positive:
            for leaf in jax.tree.leaves(params):
                if not bool(jnp.all(leaf > 0)):
                    raise ValueError(f"UDE: positive=True needs positive initial parameters, got {leaf}")
            # inverse softplus, stable for large values
            params = jax.tree.map(lambda p: p + jnp.log(-jnp.expm1(-p)), params)
        self.raw_params = params
        self.combine = combine
        self.positive = positive
        self.learn_params = learn_params

    def physical_params(self):
        """The physical parameters as used in `known` (positive if constrained)."""
        p = self.raw_params
        if not self.learn_params:
            p = jax.lax.stop_gradient(p)
        return jax.tree.map(jax.nn.softplus, p) if self.positive else p

    def __call__(self, t, y, args=None):
        k = self.known(t, y, self.physical_params())
        n = self.net(y)
        if self.combine is None:
            return jax.tree.map(jnp.add, k, n)
        return self.combine(k, n, y)
