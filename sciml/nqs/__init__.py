"""Neural quantum states: spin Hilbert spaces, lattice Hamiltonians, Monte Carlo sampling,
variational Monte Carlo with stochastic reconfiguration, exact checks (see docs/nqs.md).

Conventions: configurations are arrays of ±1 (σᶻ eigenvalues) of shape `(N,)`;
models map ONE configuration to log ψ (batch with `jax.vmap`).
"""

from ._exact import ground_state as ground_state
from ._exact import tfim_chain_energy as tfim_chain_energy
from ._hilbert import SpinHilbert as SpinHilbert
from ._lattice import Lattice as Lattice
from ._lattice import chain as chain
from ._lattice import square as square
from ._models import FFN as FFN
from ._models import PARAM_DTYPES as PARAM_DTYPES
from ._models import RBM as RBM
from ._models import Jastrow as Jastrow
from ._models import SymmetricFFN as SymmetricFFN
from ._models import SymmetricRBM as SymmetricRBM
from ._models import log_cosh as log_cosh
from ._operators import J1J2 as J1J2
from ._operators import AbstractOperator as AbstractOperator
from ._operators import Heisenberg as Heisenberg
from ._operators import Ising as Ising
from ._operators import PauliStrings as PauliStrings
from ._sampler import AbstractSampler as AbstractSampler
from ._sampler import ExactSampler as ExactSampler
from ._sampler import MetropolisExchange as MetropolisExchange
from ._sampler import MetropolisLocal as MetropolisLocal
from ._sampler import SamplerState as SamplerState
from ._stats import ConvergenceWarning as ConvergenceWarning
from ._stats import Stats as Stats
from ._stats import check_convergence as check_convergence
from ._stats import statistics as statistics
from ._vmc import SRState as SRState
from ._vmc import exact_energy as exact_energy
from ._vmc import local_energies as local_energies
from ._vmc import log_amplitude_jacobian as log_amplitude_jacobian
from ._vmc import stochastic_reconfiguration as stochastic_reconfiguration
from ._vmc import vmc_loss as vmc_loss
