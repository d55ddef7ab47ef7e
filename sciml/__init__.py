"""sciml: scientific machine learning on JAX.

Importing `sciml` is cheap and has no side effects: the subpackages
(`sciml.ude`, ...) and the core modules load on first use.

Core names available from the top level:

- `fit`, `TrainState`, `FitResult`, `TrainingDiverged`, `TrainConfig`,
  `Callback`, `EarlyStopping` (from `sciml.trainer`)
- `register_optimizer`, `make_optimizer` (from `sciml.optim`)
- `AbstractProblem`, `register_problem`, `list_problems`, `get_problem_spec`,
  `build_problem` (from `sciml.problems`)
- `load_config` (from `sciml.cli_config`), `ConfigError` (from `sciml.config`)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "fit": "sciml.trainer",
    "TrainState": "sciml.trainer",
    "FitResult": "sciml.trainer",
    "TrainingDiverged": "sciml.trainer",
    "AbstractProblem": "sciml.problems",
    "register_problem": "sciml.problems",
    "list_problems": "sciml.problems",
    "get_problem_spec": "sciml.problems",
    "load_config": "sciml.cli_config",
    "ConfigError": "sciml.config",
    "TrainConfig": "sciml.trainer",
    "Callback": "sciml.trainer",
    "EarlyStopping": "sciml.trainer",
    "register_optimizer": "sciml.optim",
    "make_optimizer": "sciml.optim",
    "build_problem": "sciml.problems",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sciml' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
