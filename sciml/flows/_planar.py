"""Planar flow layer (Rezende & Mohamed 2015, REFERENCES §3.2)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP
from ._bijection import AbstractBijection, check_input
from ._elementwise import _as_shape, context_network, float_dtype, log_sech2

__all__ = ["Planar"]


def _slope(y, sp):
    """`1 + wᵀû sech²(y) = tanh²(y) + softplus(wᵀu) sech²(y)`, with wᵀû = softplus(wᵀu) − 1.

    Written as a sum of non-negative terms it stays positive (and accurate)
    even where wᵀû rounds to −1, i.e. wᵀu ≪ 0.
    """
    return jnp.tanh(y) ** 2 + sp * jnp.exp(log_sech2(y))


class Planar(AbstractBijection):
    """Planar layer `x = z + û tanh(wᵀz + b)` with the invertibility reparametrisation û.

    `û = u + (m(wᵀu) − wᵀu) w/‖w‖²` with `m(a) = −1 + softplus(a)`, so
    `wᵀû = m(wᵀu) > −1` and the map is invertible for every parameter value.
    `log|det ∂x/∂z| = log(1 + wᵀû (1 − tanh²(wᵀz + b)))` (matrix determinant
    lemma), computed as `log(tanh² + softplus(wᵀu) sech²)`, positive even where
    `wᵀû` rounds to −1.

    The inverse has no closed form. Since `a = wᵀz` solves the scalar
    equation `a + wᵀû tanh(a + b) = wᵀx`, whose left side is strictly
    increasing, and the root lies in `[wᵀx − |wᵀû|, wᵀx + |wᵀû|]`, the inverse
    bisects that bracket `bisection_steps` times (64 by default: machine
    precision in float64 for |wᵀû| up to ~10³), polishes with four Newton
    steps kept inside the final bracket, then sets `z = x − û tanh(a + b)`. Gradients
    through the inverse use the implicit function theorem (one Newton step
    from the stopped root), not the unrolled loop. The inverse is therefore
    accurate but much slower than the forward pass: planar layers are meant
    for variational inference, where only `transform_and_log_det` (sampling
    with log-density) is needed.

    With `cond_dim`, a context network (`MLP`, last layer zero) adds offsets
    to `w`, `u` and `b`.

    Args:
        dim: dimension `D` (points have shape `(D,)`).
        key: PRNG key.
        cond_dim: context dimension, or `None`.
        width, depth: size of the context network.
        init_scale: standard deviation of the initial `w` and `u` entries.
        bisection_steps: bisection iterations of the inverse root find.
        dtype: parameter dtype (default float dtype if `None`).

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing
    Flows", ICML 2015 (Appendix A for û).
    """

    w: Array
    u: Array
    b: Array
    net: MLP | None
    bisection_steps: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        cond_dim: int | None = None,
        width: int = 32,
        depth: int = 1,
        init_scale: float = 0.5,
        bisection_steps: int = 64,
        dtype=None,
    ):
        (dim,) = _as_shape(dim, "Planar")
        self.shape = (dim,)
        if bisection_steps < 1:
            raise ValueError(f"Planar: bisection_steps must be >= 1, got {bisection_steps}")
        self.bisection_steps = int(bisection_steps)
        dtype = float_dtype(dtype)
        wkey, ukey, nkey = jax.random.split(key, 3)
        self.w = init_scale * jax.random.normal(wkey, (dim,), dtype)
        self.u = init_scale * jax.random.normal(ukey, (dim,), dtype)
        self.b = jnp.zeros((), dtype)
        self.cond_shape, self.net = context_network(
            "Planar", cond_dim, 2 * dim + 1, width=width, depth=depth, dtype=dtype, key=nkey
        )

    def _params(self, dtype, context):
        """`(w, û, b, wᵀû)` in `dtype`."""
        w, u, b = self.w.astype(dtype), self.u.astype(dtype), self.b.astype(dtype)
        if self.net is not None:
            out = self.net(context.astype(self.net.layers[0].weight.dtype)).astype(dtype)
            dim = self.shape[0]
            w, u, b = w + out[:dim], u + out[dim : 2 * dim], b + out[2 * dim]
        wu = jnp.dot(w, u)
        sp = jax.nn.softplus(wu)
        m = sp - 1.0
        # guard ‖w‖ = 0 (then the correction is 0·w/tiny = 0)
        w2 = jnp.maximum(jnp.dot(w, w), jnp.finfo(dtype).tiny)
        u_hat = u + (m - wu) * w / w2
        return w, u_hat, b, m, sp

    def transform_and_log_det(self, z, context=None):
        check_input("Planar", z, self.shape, context, self.cond_shape)
        w, u_hat, b, _, sp = self._params(z.dtype, context)
        y = jnp.dot(w, z) + b
        x = z + u_hat * jnp.tanh(y)
        return x, jnp.log(_slope(y, sp))

    def inverse_and_log_det(self, x, context=None):
        check_input("Planar", x, self.shape, context, self.cond_shape)
        w, u_hat, b, m, sp = self._params(x.dtype, context)
        target = jnp.dot(w, x)

        def g(a, m, b, target):  # increasing in a; its root is a = wᵀz
            return a + m * jnp.tanh(a + b) - target

        m_, sp_, b_, t_ = jax.lax.stop_gradient((m, sp, b, target))

        def bisect(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            below = g(mid, m_, b_, t_) < 0
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        def newton(_, state):  # polish, kept inside the final bracket
            a, lo, hi = state
            step = a - g(a, m_, b_, t_) / _slope(a + b_, sp_)
            return jnp.where((step >= lo) & (step <= hi), step, a), lo, hi

        radius = jnp.abs(m_)  # |tanh| ≤ 1 brackets the root
        lo, hi = jax.lax.fori_loop(0, self.bisection_steps, bisect, (t_ - radius, t_ + radius))
        a_star, _, _ = jax.lax.fori_loop(0, 4, newton, (0.5 * (lo + hi), lo, hi))
        a_star = jax.lax.stop_gradient(a_star)
        # one Newton step from the stopped root: exact first derivatives (implicit function)
        a = a_star - g(a_star, m, b, target) / _slope(a_star + b, sp)
        y = a + b
        z = x - u_hat * jnp.tanh(y)
        return z, -jnp.log(_slope(y, sp))
