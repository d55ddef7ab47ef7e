"""Named problems of the normalizing-flow pillar, registered with sciml's registry."""

from __future__ import annotations

from sciml.flows._problems import (
    Checkerboard,
    CNFTwoMoons,
    Digits,
    EightGaussians,
    TwoMoons,
    TwoMoonsConditional,
    VIBanana,
    VIRing,
)
from sciml.problems import register_problem

register_problem(
    "flow_two_moons",
    TwoMoons,
    description="flow: density of scikit-learn's two moons; reports test_nll beside the exact oracle (≈1.01)",
)
register_problem(
    "flow_two_moons_conditional",
    TwoMoonsConditional,
    description="conditional flow: two moons given the moon label; reports test_nll (oracle ≈0.316)",
)
register_problem(
    "flow_checkerboard",
    Checkerboard,
    description="flow: FFJORD's checkerboard; reports test_nll (oracle log 32 = 3.466)",
)
register_problem(
    "flow_eight_gaussians",
    EightGaussians,
    description="flow: FFJORD's 8 Gaussians; reports test_nll (oracle ≈2.83)",
)
register_problem(
    "flow_digits",
    Digits,
    description="flow: 8x8 digits (64-dim, dequantised); test_nll per image vs Gaussian/mixture baselines",
)
register_problem(
    "flow_vi_banana",
    VIBanana,
    description="flow VI: reverse KL to a banana density (exact log Z); reports kl and ess_fraction",
)
register_problem(
    "flow_vi_ring",
    VIRing,
    description="flow VI: reverse KL to the U1 ring energy (log Z by quadrature); reports kl and ess_fraction",
)
register_problem(
    "cnf_two_moons",
    CNFTwoMoons,
    description="continuous flow (FFJORD): two moons; reports test_nll (exact trace), nfe, Hutchinson NLL",
)
