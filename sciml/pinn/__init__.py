"""Physics-informed neural networks: a PDE posed as a loss, trained to high accuracy.

Submodules, each usable on its own:

- `sciml.pinn.operators`: gradient, Hessian, Laplacian, divergence, mixed
  partials of any order, on one point, with switchable derivative engines
  (nested reverse mode, forward-over-reverse, Taylor mode, the forward
  Laplacian, Hutchinson and stochastic-dimension estimators);
- `sciml.pinn.geometry`: intervals, boxes, disks, space-time products, with
  interior/boundary/initial sampling (uniform, Halton, Sobol, Latin hypercube)
  and outward normals;
- `sciml.pinn.sampling`: residual-based adaptive resampling (RAD, RAR) with
  fixed shapes;
- `sciml.pinn.conditions`: Dirichlet, Neumann, Robin, periodic, initial and
  data residuals, and hard constraints;
- `sciml.pinn.weighting`: grad-norm and NTK-trace balancing, causal weights;
- `sciml.pinn.reference`: offline reference solutions (Fourier ETDRK4,
  Cole-Hopf);
- the energy natural gradient optimizer `engd` (config name `engd`) and the
  registered problems (`pinn_poisson2d`, `pinn_heat1d`, `pinn_burgers`,
  `pinn_burgers_inverse`, `pinn_allen_cahn`, `pinn_convection`, `pinn_kdv`,
  `pinn_poisson_nd`), all built on `AbstractPINN`.

Networks live in `sciml.nn` (MLP, modified MLP, Fourier features, periodic
embedding, random weight factorisation). See `docs/pinn.md`.

Importing this package does no work: precision (PINNs want float64) is set
per run by the config's `train.dtype`, which defaults to float64 for these
problems, or by the caller (`jax.config.update("jax_enable_x64", True)`).
"""

from sciml.pinn import conditions as conditions
from sciml.pinn import geometry as geometry
from sciml.pinn import operators as operators
from sciml.pinn import reference as reference
from sciml.pinn import sampling as sampling
from sciml.pinn import weighting as weighting
from sciml.pinn._base import AbstractPINN as AbstractPINN
from sciml.pinn._base import PINNState as PINNState
from sciml.pinn._burgers import Burgers as Burgers
from sciml.pinn._burgers_inverse import BurgersInverse as BurgersInverse
from sciml.pinn._burgers_inverse import InverseModel as InverseModel
from sciml.pinn._engd import EngdConfig as EngdConfig
from sciml.pinn._engd import EngdState as EngdState
from sciml.pinn._engd import engd as engd
from sciml.pinn._engd import scale_by_engd as scale_by_engd
from sciml.pinn._heat import Heat1D as Heat1D
from sciml.pinn._network import make_network as make_network
from sciml.pinn._periodic import AllenCahn as AllenCahn
from sciml.pinn._periodic import Convection as Convection
from sciml.pinn._periodic import KdV as KdV
from sciml.pinn._poisson import Poisson2D as Poisson2D
from sciml.pinn._poisson_nd import PoissonND as PoissonND
from sciml.pinn._settings import CausalSettings as CausalSettings
from sciml.pinn._settings import PINNNetwork as PINNNetwork
from sciml.pinn._settings import ResampleSettings as ResampleSettings
from sciml.pinn._settings import WeightingSettings as WeightingSettings
from sciml.pinn.conditions import HardConstraint as HardConstraint
from sciml.pinn.operators import divergence as divergence
from sciml.pinn.operators import gradient as gradient
from sciml.pinn.operators import hessian as hessian
from sciml.pinn.operators import laplacian as laplacian
from sciml.pinn.operators import partial as partial
from sciml.pinn.operators import time_derivative as time_derivative
