"""Universal differential equations and neural ODEs on diffrax.

Library surface (usable without the trainer):

- `solve`, `solve_batch`, `check_solution`, `failure_report`, `SolveFailed`: a thin layer over
  `diffrax.diffeqsolve` with shape and tolerance checks, events (`t1=inf` until a steady
  state), gradients that stay honest at equilibria, and failures that say where and why.
- `steady_state`: the equilibrium an ODE settles to, differentiable by the implicit
  function theorem.
- `NeuralODE`, `UDE`: vector fields with learned parts; `Ensemble`: several models of
  one structure stacked and trained side by side as one model.
- `discover_missing_terms`: a UDE's (or an ensemble's) network turned into library
  terms, refitted to the data and chosen by BIC and by majority over the members.
- `add_observation_noise`: the problems' noise models (absolute, relative to each
  state's mean or spread, multiplicative; one level or one per state).
- `levenberg_marquardt`, `gauss_newton`, `scaled_residuals`: parameter
  estimation for mechanistic models (optimistix, forward-mode Jacobians).
- `PolynomialLibrary`, `FunctionLibrary`, `ConcatLibrary`, `stlsq`,
  `sindy_path`, `central_difference`, `format_equations`: equation discovery
  by sparse regression (SINDy).
- `MultipleShooting`, `shooting_loss`, `single_shooting_loss`,
  `finish_single_shooting`, `horizon_curriculum`, `sample_windows`: multiple
  shooting with learnable node states (Bock & Plitt 1984; Turan & Jäschke
  2022), growing horizons and window minibatches for hard trajectories.
- `NeuralSDE`, `simulate_sde`, `euler_maruyama_nll`: neural SDEs with
  diagonal noise, simulated on a virtual Brownian tree, fitted by likelihood.
- Problems registered for the trainer: see `sciml.ude.problems`.
"""

from sciml.ude._discovery import discover_missing_terms as discover_missing_terms
from sciml.ude._ensemble import Ensemble as Ensemble
from sciml.ude._estimation import LeastSquaresResult as LeastSquaresResult
from sciml.ude._estimation import gauss_newton as gauss_newton
from sciml.ude._estimation import levenberg_marquardt as levenberg_marquardt
from sciml.ude._estimation import scaled_residuals as scaled_residuals
from sciml.ude._fields import UDE as UDE
from sciml.ude._fields import NeuralODE as NeuralODE
from sciml.ude._library import AbstractLibrary as AbstractLibrary
from sciml.ude._library import ConcatLibrary as ConcatLibrary
from sciml.ude._library import FunctionLibrary as FunctionLibrary
from sciml.ude._library import PolynomialLibrary as PolynomialLibrary
from sciml.ude._lorenz import LorenzSINDy as LorenzSINDy
from sciml.ude._lorenz import lorenz_coefficients as lorenz_coefficients
from sciml.ude._lorenz import lorenz_dynamics as lorenz_dynamics
from sciml.ude._lotka_volterra import LotkaVolterraUDE as LotkaVolterraUDE
from sciml.ude._lotka_volterra import lotka_volterra as lotka_volterra
from sciml.ude._noise import add_observation_noise as add_observation_noise
from sciml.ude._ou import NeuralSDEOU as NeuralSDEOU
from sciml.ude._ou import ou_exact_paths as ou_exact_paths
from sciml.ude._ou import ou_mle as ou_mle
from sciml.ude._robertson import ROBERTSON_RATES as ROBERTSON_RATES
from sciml.ude._robertson import RobertsonFit as RobertsonFit
from sciml.ude._robertson import robertson_rhs as robertson_rhs
from sciml.ude._sde import NeuralSDE as NeuralSDE
from sciml.ude._sde import euler_maruyama_nll as euler_maruyama_nll
from sciml.ude._sde import simulate_sde as simulate_sde
from sciml.ude._shooting import MultipleShooting as MultipleShooting
from sciml.ude._shooting import finish_single_shooting as finish_single_shooting
from sciml.ude._shooting import shooting_loss as shooting_loss
from sciml.ude._shooting import single_shooting_loss as single_shooting_loss
from sciml.ude._sindy import SINDyPath as SINDyPath
from sciml.ude._sindy import central_difference as central_difference
from sciml.ude._sindy import format_equations as format_equations
from sciml.ude._sindy import sindy_path as sindy_path
from sciml.ude._sindy import stlsq as stlsq
from sciml.ude._solve import SolveFailed as SolveFailed
from sciml.ude._solve import check_solution as check_solution
from sciml.ude._solve import failure_report as failure_report
from sciml.ude._solve import solve as solve
from sciml.ude._solve import solve_batch as solve_batch
from sciml.ude._spiral import CubicMLPField as CubicMLPField
from sciml.ude._spiral import NeuralODESpiral as NeuralODESpiral
from sciml.ude._spiral import batch_mode_for as batch_mode_for
from sciml.ude._spiral import spiral_dynamics as spiral_dynamics
from sciml.ude._steady import steady_state as steady_state
from sciml.ude._windows import horizon_curriculum as horizon_curriculum
from sciml.ude._windows import sample_windows as sample_windows
