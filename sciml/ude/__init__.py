"""Universal differential equations and neural ODEs on diffrax.

Library surface (usable without the trainer):

- `solve`, `check_solution`, `SolveFailed`: a thin layer over
  `diffrax.diffeqsolve` with shape checks and clear failure reports.
- `NeuralODE`, `UDE`: vector fields with learned parts.
- `NeuralSDE`, `simulate_sde`, `euler_maruyama_nll`: neural SDEs with
  diagonal noise, simulated on a virtual Brownian tree, fitted by likelihood.
- Problems registered for the trainer: see `sciml.ude.problems`.
"""

from sciml.ude._fields import UDE as UDE
from sciml.ude._fields import NeuralODE as NeuralODE
from sciml.ude._ou import NeuralSDEOU as NeuralSDEOU
from sciml.ude._ou import ou_exact_paths as ou_exact_paths
from sciml.ude._ou import ou_mle as ou_mle
from sciml.ude._sde import NeuralSDE as NeuralSDE
from sciml.ude._sde import euler_maruyama_nll as euler_maruyama_nll
from sciml.ude._sde import simulate_sde as simulate_sde
from sciml.ude._solve import SolveFailed as SolveFailed
from sciml.ude._solve import check_solution as check_solution
from sciml.ude._solve import solve as solve
from sciml.ude._spiral import CubicMLPField as CubicMLPField
from sciml.ude._spiral import NeuralODESpiral as NeuralODESpiral
from sciml.ude._spiral import spiral_dynamics as spiral_dynamics
