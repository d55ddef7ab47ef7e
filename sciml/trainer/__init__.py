"""The generic training loop shared by every pillar.

- `fit(problem, optimizer, train, run_dir=..., callbacks=...)`: the loop.
- `TrainState`, `split_model`, `join_model`, `init_train_state`: the state a
  checkpoint holds, and how a model splits into trained leaves (floating and
  complex arrays), carried buffers (integer and boolean arrays) and the rest.
- `Callback`, `RunInfo`, `EarlyStopping`, `ProgressBar`: what runs between
  compiled chunks; the run directory's writers are callbacks too
  (`Checkpoints`, `MetricsLog`, `SummaryFile`, `Figures`).
- `TrainingDiverged`: a NaN/Inf loss, gradient or problem state.
- `make_loss_and_grad`: the jitted loss and gradient `fit` uses, for checks.
- `TrainConfig`: the `train` config section.

The hooks a problem can define and what optimizers receive are described in
`docs/core.md`.
"""

from sciml.trainer._callbacks import Callback as Callback
from sciml.trainer._callbacks import EarlyStopping as EarlyStopping
from sciml.trainer._callbacks import ProgressBar as ProgressBar
from sciml.trainer._callbacks import RunInfo as RunInfo
from sciml.trainer._config import EarlyStoppingConfig as EarlyStoppingConfig
from sciml.trainer._config import TrainConfig as TrainConfig
from sciml.trainer._diverge import TrainingDiverged as TrainingDiverged
from sciml.trainer._fit import FitResult as FitResult
from sciml.trainer._fit import fit as fit
from sciml.trainer._run_dir import Checkpoints as Checkpoints
from sciml.trainer._run_dir import Figures as Figures
from sciml.trainer._run_dir import MetricsLog as MetricsLog
from sciml.trainer._run_dir import SummaryFile as SummaryFile
from sciml.trainer._state import TrainState as TrainState
from sciml.trainer._state import init_train_state as init_train_state
from sciml.trainer._state import join_model as join_model
from sciml.trainer._state import split_model as split_model
from sciml.trainer._step import make_loss_and_grad as make_loss_and_grad
