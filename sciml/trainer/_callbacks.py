"""Callbacks: what `fit` calls between compiled chunks.

`fit` itself only runs chunks, evaluates and keeps the history. Everything
else that happens between chunks (the run directory's files, the progress
bar, early stopping, a user's own logger) is a `Callback`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sciml.trainer._state import TrainState, join_model

__all__ = ["Callback", "RunInfo", "EarlyStopping", "ProgressBar"]


@dataclass
class RunInfo:
    """What a callback can see of the run.

    Attributes:
        problem: the problem being trained.
        train: the `TrainConfig`.
        start_step: the step the run (or its resumption) started from.
        model_static: the non-array part of the model (see `split_model`).
        compile_time_s: seconds spent compiling the training chunk.
    """

    problem: Any
    train: Any
    start_step: int
    model_static: Any
    compile_time_s: float = 0.0

    def model(self, ts: TrainState):
        """The model held by training state `ts`."""
        return join_model(ts.params, ts.buffers, self.model_static)


class Callback:
    """Base class of `fit` callbacks; override the hooks you need (all optional).

    The order of calls: `on_start` once (after compiling), `on_chunk` after
    every chunk of steps, then `on_end` after the final evaluation, or
    `on_diverged` when a step turns NaN/Inf; `close` always, last.
    """

    def on_start(self, run: RunInfo, ts: TrainState) -> None:
        """The run starts (or resumes) at `ts`."""

    def on_chunk(self, run: RunInfo, record: dict[str, Any], ts: TrainState) -> bool | None:
        """A chunk ended at `record["step"]`; `record` is its `metrics.jsonl` line.

        Return `True` to stop training after this chunk (the run then ends
        normally: final evaluation, final checkpoint, summary with status
        `"stopped"`).
        """

    def on_end(self, run: RunInfo, result) -> None:
        """The run ended (completed or stopped) with `FitResult` `result`."""

    def on_diverged(self, run: RunInfo, error) -> None:
        """The run is about to raise `TrainingDiverged` `error`."""

    def close(self) -> None:
        """Release resources; called in every case, after the other hooks."""


class EarlyStopping(Callback):
    """Stop when a logged metric has not improved for `patience` checks.

    Args:
        monitor: a key of the chunk records, e.g. `"loss"` or `"eval/mse"`
            (evaluated every `train.eval_every` steps); records without it
            are skipped.
        patience: how many checks without improvement to tolerate.
        min_delta: the least decrease (increase with `mode="max"`) that
            counts as an improvement.
        mode: `"min"` or `"max"`.
        threshold: stop as soon as the metric is below (`"max"`: above) it.

    Attributes:
        best: the best value seen; `improved_at`: the step it was seen at;
        `stopped_at`: the step it stopped at, or `None`.
    """

    def __init__(
        self,
        monitor: str = "loss",
        *,
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        threshold: float | None = None,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if mode == "min" else -1.0
        self.threshold = threshold
        self.best = math.inf if mode == "min" else -math.inf
        self.waited = 0
        self.stopped_at: int | None = None
        self.improved_at: int | None = None

    def on_chunk(self, run, record, ts):
        value = record.get(self.monitor)
        if value is None:
            return None
        if self.sign * (self.best - value) > self.min_delta:
            self.best, self.waited, self.improved_at = value, 0, record["step"]
        else:
            self.waited += 1
        reached = self.threshold is not None and self.sign * (value - self.threshold) < 0
        if reached or self.waited >= self.patience:
            self.stopped_at = record["step"]
            return True
        return None


class ProgressBar(Callback):
    """A tqdm progress bar with the chunk's mean loss and steps per second."""

    def __init__(self):
        self.bar = None

    def on_start(self, run, ts):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=run.train.steps,
            initial=min(run.start_step, run.train.steps),
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self._last = run.start_step

    def on_chunk(self, run, record, ts):
        self.bar.update(record["step"] - self._last)
        self._last = record["step"]
        self.bar.set_postfix(
            loss=f"{record['loss']:.3e}", steps_per_s=f"{record['steps_per_s']:.0f}"
        )

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
