"""Config sections shared by the PINN problems: the network, sampling, resampling and weighting."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from sciml.schema import PositiveFloat, PositiveInt, Section

__all__ = [
    "PINNNetwork",
    "ResampleSettings",
    "WeightingSettings",
    "CausalSettings",
    "Sampler",
    "Engine",
]

Sampler = Literal["uniform", "halton", "sobol", "lhs"]
"""How collocation points are drawn: i.i.d. uniform or a quasi-random/stratified design."""

Engine = Literal["reverse", "forward", "forward_over_reverse", "taylor", "forward_laplacian"]
"""Exact derivative engines selectable from configs (see `sciml.pinn.operators`)."""


class PINNNetwork(Section):
    """`model` section of the PINN problems: the network `u_θ`.

    Attributes:
        arch: `mlp` or `modified_mlp` (Wang et al. 2021's gated MLP).
        width, depth: hidden width and number of hidden layers.
        activation: elementwise nonlinearity (a name of `sciml.nn.ACTIVATIONS`).
        init: weight initialisation (`glorot_normal`, `glorot_uniform` or
            `uniform`, PyTorch's ±1/sqrt(fan_in)).
        fourier_features: number of random Fourier features of the
            (non-periodic) inputs (0: none).
        fourier_sigma: standard deviation of the Fourier frequencies.
        weight_factorization: random weight factorisation (Wang et al. 2022)
            of every dense layer, `W = diag(exp(s)) V`, s ~ N(rwf_mu, rwf_sigma).
    """

    arch: Literal["mlp", "modified_mlp"] = "mlp"
    width: PositiveInt = 64
    depth: PositiveInt = 1
    activation: Literal["tanh", "sin", "gelu", "silu", "softplus", "sigmoid"] = "tanh"
    init: Literal["glorot_normal", "glorot_uniform", "uniform"] = "glorot_normal"
    fourier_features: Annotated[int, Field(ge=0)] = 0
    fourier_sigma: PositiveFloat = 1.0
    weight_factorization: bool = False
    rwf_mu: float = 1.0
    rwf_sigma: PositiveFloat = 0.1


class ResampleSettings(Section):
    """Residual-based adaptive resampling of the PDE collocation points.

    Every `every` steps (until step `until`) the interior points are
    refreshed from `n_candidates` fresh uniform candidates:

    - `rad` (Wu et al. 2023): the whole set is redrawn with probability
      `p(x) ∝ |r(x)|^k / mean(|r|^k) + c`;
    - `rar` (Lu et al. 2021): the `fraction` of points with the smallest
      residual are replaced by the candidates with the largest.

    `method: none` keeps the points fixed. Resampling stops at `until` so
    that second-order phases (L-BFGS, ENGD) see a fixed objective.
    """

    method: Literal["none", "rad", "rar"] = "none"
    every: PositiveInt = 1000
    until: PositiveInt | None = None
    n_candidates: PositiveInt = 20_000
    k: Annotated[float, Field(ge=0)] = 1.0
    c: Annotated[float, Field(ge=0)] = 1.0
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.1


class WeightingSettings(Section):
    """How the loss terms are weighted.

    - `fixed`: the problem's `weights` (default 1 each);
    - `grad_norm`: `w_i ∝ Σ_j ‖∇L_j‖ / ‖∇L_i‖` (Wang et al. 2021);
    - `ntk`: `w_i ∝ Σ_j tr K_j / tr K_i` (Wang et al. 2022).

    Adaptive weights are recomputed every `every` steps (until `until`) and
    smoothed with `w ← momentum · w + (1 − momentum) · ŵ`; they enter the loss
    as constants.
    """

    method: Literal["fixed", "grad_norm", "ntk"] = "fixed"
    every: PositiveInt = 1000
    until: PositiveInt | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9


class CausalSettings(Section):
    """Causal time weighting of the PDE residual (Wang, Sankaran & Perdikaris 2024).

    The interior points are sorted by time into `chunks` equal groups with
    losses `L_k`; chunk `k` gets the weight `exp(−epsilon Σ_{j<k} L_j)`, so
    later times train only once earlier ones are resolved. `chunks: 0` turns
    it off.
    """

    chunks: Annotated[int, Field(ge=0)] = 0
    epsilon: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="after")
    def _chunks(self):
        if self.chunks == 1:
            raise ValueError("chunks: 1 chunk is no causal weighting; use 0 (off) or >= 2")
        return self
