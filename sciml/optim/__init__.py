"""Optimizers: the registry of named optimizers and the built-in ones.

Every optimizer is an optax transformation. The trainer calls its `update`
with optax's extra keyword arguments (`value`, `grad`, `value_fn`), and with
`per_sample_fn` and `key` when the optimizer asked for them with
`request_extra_args` (see `docs/core.md`); plain optax optimizers work
unchanged.

A pillar (or another package) adds an optimizer to configs with
`register_optimizer(name, ConfigSection, build)`.
"""

from sciml.optim._builtin import SequenceState as SequenceState
from sciml.optim._builtin import gauss_newton as gauss_newton
from sciml.optim._builtin import make_schedule as make_schedule
from sciml.optim._builtin import scale_by_gauss_newton as scale_by_gauss_newton
from sciml.optim._builtin import sequence as sequence
from sciml.optim._configs import AdamConfig as AdamConfig
from sciml.optim._configs import AdamWConfig as AdamWConfig
from sciml.optim._configs import ConstantSchedule as ConstantSchedule
from sciml.optim._configs import CosineSchedule as CosineSchedule
from sciml.optim._configs import ExponentialSchedule as ExponentialSchedule
from sciml.optim._configs import GaussNewtonConfig as GaussNewtonConfig
from sciml.optim._configs import LBFGSConfig as LBFGSConfig
from sciml.optim._configs import Schedule as Schedule
from sciml.optim._configs import SequenceConfig as SequenceConfig
from sciml.optim._configs import SGDConfig as SGDConfig
from sciml.optim._extras import EXTRA_ARGS as EXTRA_ARGS
from sciml.optim._extras import ExtraArgsTransformation as ExtraArgsTransformation
from sciml.optim._extras import chain as chain
from sciml.optim._extras import request_extra_args as request_extra_args
from sciml.optim._extras import requested_extra_args as requested_extra_args
from sciml.optim._registry import OptimizerSpec as OptimizerSpec
from sciml.optim._registry import get_optimizer_spec as get_optimizer_spec
from sciml.optim._registry import list_optimizers as list_optimizers
from sciml.optim._registry import make_optimizer as make_optimizer
from sciml.optim._registry import register_optimizer as register_optimizer
from sciml.optim._registry import validate_optimizer as validate_optimizer
