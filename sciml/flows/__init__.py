"""Normalizing flows: bijections with exact log-determinants, flows as distributions,
maximum-likelihood and reverse-KL training, continuous flows (see docs/flows.md).

A bijection maps a base point z to a data point x and acts on one unbatched
point (batch with `jax.vmap`); every bijection takes an optional context.
"""

from ._autoregressive import MaskedAutoregressive as MaskedAutoregressive
from ._bijection import AbstractBijection as AbstractBijection
from ._bijection import Chain as Chain
from ._bijection import Invert as Invert
from ._bijection import Stack as Stack
from ._cnf import CNF as CNF
from ._cnf import CNFStats as CNFStats
from ._cnf import ConcatSquashField as ConcatSquashField
from ._cnf import cnf_loss as cnf_loss
from ._coupling import AffineCoupling as AffineCoupling
from ._coupling import SplineCoupling as SplineCoupling
from ._distributions import AbstractDistribution as AbstractDistribution
from ._distributions import DiagNormal as DiagNormal
from ._distributions import GaussianMixture as GaussianMixture
from ._distributions import StandardNormal as StandardNormal
from ._distributions import StudentT as StudentT
from ._distributions import Transformed as Transformed
from ._elementwise import Affine as Affine
from ._elementwise import Scale as Scale
from ._elementwise import Shift as Shift
from ._elementwise import Sigmoid as Sigmoid
from ._elementwise import Softplus as Softplus
from ._elementwise import Tanh as Tanh
from ._factories import maf as maf
from ._factories import neural_spline_flow as neural_spline_flow
from ._factories import realnvp as realnvp
from ._linear import ActNorm as ActNorm
from ._linear import LULinear as LULinear
from ._linear import Permute as Permute
from ._linear import Reverse as Reverse
from ._linear import actnorm_init as actnorm_init
from ._made import MaskedMLP as MaskedMLP
from ._made import made_degrees as made_degrees
from ._made import made_masks as made_masks
from ._objectives import ImportanceDiagnostics as ImportanceDiagnostics
from ._objectives import importance_diagnostics as importance_diagnostics
from ._objectives import maximum_likelihood_loss as maximum_likelihood_loss
from ._objectives import reverse_kl_loss as reverse_kl_loss
from ._planar import Planar as Planar
from ._spline import RationalQuadraticSpline as RationalQuadraticSpline
from ._spline import rational_quadratic_knots as rational_quadratic_knots
from ._spline import rational_quadratic_spline as rational_quadratic_spline
from ._spline import rational_quadratic_spline_inverse as rational_quadratic_spline_inverse
