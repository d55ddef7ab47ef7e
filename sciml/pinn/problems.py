"""Named problems and optimizers of the PINN pillar, registered with sciml's registries."""

from __future__ import annotations

from sciml.optim import register_optimizer
from sciml.pinn._burgers import Burgers
from sciml.pinn._burgers_inverse import BurgersInverse
from sciml.pinn._engd import EngdConfig, build_engd
from sciml.pinn._heat import Heat1D
from sciml.pinn._periodic import AllenCahn, Convection, KdV
from sciml.pinn._poisson import Poisson2D
from sciml.pinn._poisson_nd import PoissonND
from sciml.problems import register_problem

register_optimizer(
    "engd",
    EngdConfig,
    build_engd,
    description="energy natural gradient / Gauss-Newton on PDE residuals with a grid line search",
)
register_problem(
    "pinn_poisson2d",
    Poisson2D,
    description="PINN: -Δu = 2π² sin πx sin πy on the unit square, zero walls; reports rel_l2",
)
register_problem(
    "pinn_heat1d",
    Heat1D,
    description="PINN: u_t = u_xx/4, u(x,0) = sin πx, zero walls; reports rel_l2",
)
register_problem(
    "pinn_burgers",
    Burgers,
    description="PINN: viscous Burgers (ν = 0.01/π) with a shock, Cole-Hopf reference; reports rel_l2",
)
register_problem(
    "pinn_burgers_inverse",
    BurgersInverse,
    description="PINN inverse problem: Burgers' viscosity from 500 noisy observations; reports nu_rel_error",
)
register_problem(
    "pinn_allen_cahn",
    AllenCahn,
    description="PINN: periodic Allen-Cahn (causal weighting, periodic embedding), ETDRK4 reference",
)
register_problem(
    "pinn_convection",
    Convection,
    description="PINN: periodic convection u_t + 40 u_x = 0; exact sin(x - 40t)",
)
register_problem(
    "pinn_kdv",
    KdV,
    description="PINN: periodic Korteweg-de Vries (third-order operator), ETDRK4 reference",
)
register_problem(
    "pinn_poisson_nd",
    PoissonND,
    description="PINN: -Δu = π² Σ cos πx_i in d dimensions (Laplacian engines by dimension)",
)
