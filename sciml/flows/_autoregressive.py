"""Masked autoregressive flow layer (MAF); `Invert(MaskedAutoregressive(...))` is an IAF.

A MADE network (`MaskedMLP`) gives the transformer parameters of dimension
`i` from `x_{<i}` (and the context): `x_i = τ(z_i; θ_i(x_{<i}, c))`.

Direction convention (REFERENCES §3.2):

- `inverse_and_log_det` (data `x` → base `z`, density evaluation) is ONE
  parallel pass: all `θ_i` come from the known `x` at once.
- `transform_and_log_det` (base → data, sampling) takes `D` sequential
  passes: pass `i` fixes `x_i`, which the next pass reads. Each pass
  recomputes the MADE network (a `lax.fori_loop`, so compile time does not
  grow with `D`).

So a MAF is fast for maximum likelihood and slow to sample. Wrapping it in
`Invert` gives an inverse autoregressive flow (IAF): sampling (and the
reverse-KL objective) in one pass, density of outside data in `D` passes.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ._bijection import AbstractBijection, check_input
from ._coupling import affine_forward, affine_inverse
from ._elementwise import _cond_shape
from ._made import MaskedMLP
from ._spline import (
    _check_spline_settings,
    rational_quadratic_knots,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_param_count,
)

__all__ = ["MaskedAutoregressive", "TRANSFORMERS"]

TRANSFORMERS: tuple[str, ...] = ("affine", "spline")
"""Elementwise transformers of `MaskedAutoregressive`."""


class MaskedAutoregressive(AbstractBijection):
    """Masked autoregressive layer `x_i = τ(z_i; θ(x_{<i}, c))` with a MADE conditioner.

    Density evaluation (`inverse_and_log_det`, x → z) is one pass; sampling
    (`transform_and_log_det`, z → x) is `dim` sequential passes. Use
    `Invert(MaskedAutoregressive(...))` for an IAF, whose sampling is one
    pass. Fresh layers are the identity (the MADE output starts at zero).

    Args:
        dim: size of a point (shape `(dim,)`).
        key: PRNG key of the MADE network.
        transformer: `"affine"` (`x_i = z_i · scale_i + shift_i`, scale
            `softplus(r + c₀) + 1e-2` as in `AffineCoupling`) or `"spline"`
            (a rational-quadratic spline per dimension, identity outside
            `[-interval, interval]`).
        knots, interval: spline settings (ignored for `"affine"`).
        cond_dim: context size, or `None`; the context is a MADE input of
            degree 0 and reaches every dimension's parameters.
        width, depth: MADE hidden width and number of hidden layers
            (`width >= dim − 1`, or `dim` with a context).
        activation: MADE hidden nonlinearity.

    Raises:
        ValueError: an unknown transformer (the allowed ones are listed), bad
            sizes; when called, wrong input or context shapes.

    Example:
        >>> maf = MaskedAutoregressive(3, key=jax.random.key(0), transformer="spline")
        >>> z, logdet = maf.inverse_and_log_det(jnp.ones(3))  # density direction: one pass
        >>> iaf = Invert(maf)  # sampling in one pass

    References: Papamakarios et al., "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017; Kingma et al., "Improved Variational Inference
    with Inverse Autoregressive Flow", NeurIPS 2016; Durkan et al., "Neural
    Spline Flows", NeurIPS 2019.
    """

    made: MaskedMLP
    transformer: str = eqx.field(static=True)
    knots: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        transformer: str = "affine",
        knots: int = 8,
        interval: float = 3.0,
        cond_dim: int | None = None,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jnp.tanh,
    ):
        if transformer not in TRANSFORMERS:
            raise ValueError(
                f"MaskedAutoregressive: unknown transformer {transformer!r}; "
                f"allowed: {', '.join(TRANSFORMERS)}"
            )
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"MaskedAutoregressive: dim must be an integer >= 1, got {dim!r}")
        self.cond_shape = _cond_shape(cond_dim, "MaskedAutoregressive")
        if transformer == "spline":
            _check_spline_settings("MaskedAutoregressive", knots, interval)
            per_dim = spline_param_count(knots)
        else:
            per_dim = 2
        self.made = MaskedMLP(
            dim,
            per_dim,
            key=key,
            cond_dim=cond_dim,
            width=width,
            depth=depth,
            activation=activation,
        )
        self.transformer = transformer
        self.knots = int(knots)
        self.interval = float(interval)
        self.shape = (dim,)

    def _forward(self, z, params):
        if self.transformer == "affine":
            return affine_forward(z, params)
        knots = rational_quadratic_knots(params, self.interval)
        x, logd = rational_quadratic_spline(z, knots, self.interval)
        return x, jnp.sum(logd)

    def _inverse(self, x, params):
        if self.transformer == "affine":
            return affine_inverse(x, params)
        knots = rational_quadratic_knots(params, self.interval)
        z, logd = rational_quadratic_spline_inverse(x, knots, self.interval)
        return z, jnp.sum(logd)

    def _params(self, x, context):
        return self.made(x, context).astype(x.dtype)

    def inverse_and_log_det(self, x, context=None):
        """Data → base in one parallel pass (density evaluation)."""
        check_input("MaskedAutoregressive", x, self.shape, context, self.cond_shape)
        return self._inverse(x, self._params(x, context))

    def transform_and_log_det(self, z, context=None):
        """Base → data in `dim` sequential passes (sampling)."""
        check_input("MaskedAutoregressive", z, self.shape, context, self.cond_shape)

        # After pass i the coordinates 0..i are final: the parameters of
        # dimension i read only x[:i], fixed by the earlier passes. The last
        # pass reads a final x[:D-1], so its log-det is that of the output.
        def one_pass(_, carry):
            x, _ = carry
            return self._forward(z, self._params(x, context))

        init = (jnp.zeros_like(z), jnp.zeros((), jnp.result_type(z)))
        return jax.lax.fori_loop(0, self.shape[0], one_pass, init)
