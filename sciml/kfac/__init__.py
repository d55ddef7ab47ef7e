"""K-FAC: Kronecker-factored curvature preconditioning as an optax transformation (docs/kfac.md).

K-FAC sees the `sciml.nn.Dense` layers that a problem's `per_sample` hook runs
inside `sciml.nn.batch_apply`; every other parameter takes the reported
fallback step (`describe`).
"""

from ._kfac import KFACFallbackWarning as KFACFallbackWarning
from ._kfac import KFACState as KFACState
from ._kfac import curvature_factors as curvature_factors
from ._kfac import describe as describe
from ._kfac import kfac as kfac
from ._kfac import kfac_layers as kfac_layers
from ._kfac import precondition as precondition
from ._taylor import mlp_laplacian as mlp_laplacian
