"""Networks of the PINN problems, built from a `PINNNetwork` section (the config edge)."""

from __future__ import annotations

import jax
from jaxtyping import PRNGKeyArray

from sciml import nn
from sciml.pinn._settings import PINNNetwork

__all__ = ["make_network"]


def make_network(
    ms: PINNNetwork,
    in_size: int,
    out_size: int = 1,
    *,
    key: PRNGKeyArray,
    periodic: dict[int, float] | None = None,
    harmonics: int = 1,
):
    """The network `R^in_size -> R^out_size` that `ms` describes, on one point.

    Args:
        ms: the `model` section.
        in_size, out_size: input and output dimension.
        periodic: `{axis: period}` of inputs that get the exact periodic
            embedding `(cos(2πmx/P), sin(2πmx/P))`, m = 1..`harmonics`, so
            the network and all its derivatives are exactly periodic in them.
        key: PRNG key.
    """
    fkey, nkey = jax.random.split(key)
    embeddings = []
    size = in_size
    if periodic:
        axes = tuple(sorted(periodic))
        emb = nn.PeriodicEmbedding(
            in_size, axes=axes, periods=tuple(periodic[a] for a in axes), harmonics=harmonics
        )
        embeddings.append(emb)
        size = emb.out_size
    if ms.fourier_features:
        ff = nn.FourierFeatures(size, ms.fourier_features, ms.fourier_sigma, key=fkey)
        embeddings.append(ff)
        size = 2 * ms.fourier_features
    activation = nn.activation_by_name(ms.activation)
    rwf = (ms.rwf_mu, ms.rwf_sigma) if ms.weight_factorization else None
    cls = nn.MLP if ms.arch == "mlp" else nn.ModifiedMLP
    net = cls(
        size,
        out_size,
        width=ms.width,
        depth=ms.depth,
        activation=activation,
        init=ms.init,
        weight_factorization=rwf,
        key=nkey,
    )
    return nn.Sequential(*embeddings, net) if embeddings else net
