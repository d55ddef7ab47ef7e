"""The `train` section of a config: the training loop's settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sciml.schema import PositiveInt, Section

__all__ = ["EarlyStoppingConfig", "TrainConfig"]


class EarlyStoppingConfig(Section):
    """Stop when a monitored metric stops improving (`train.early_stopping`).

    Attributes:
        monitor: a key of the `metrics.jsonl` records: `loss`, a loss metric,
            or `eval/NAME` for a metric of the problem's `evaluate` (checked
            every `train.eval_every` steps; monitor a validation metric, never
            the test set).
        patience: checks without improvement before the run stops.
        min_delta: the least change that counts as an improvement.
        mode: `min` or `max`.
        restore_best: end the run on the best checked state (its model is
            evaluated, returned and checkpointed last), not the last one.
    """

    monitor: str
    patience: PositiveInt = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    mode: Literal["min", "max"] = "min"
    restore_best: bool = True


class TrainConfig(Section):
    """Training-loop settings.

    Attributes:
        steps: total optimizer steps.
        seed: seed of the run's PRNG key (model init and every batch).
        log_every: steps per compiled chunk (one host round-trip), and per
            line of `metrics.jsonl`.
        eval_every: steps between calls of the problem's `evaluate` (`null`:
            only at the end).
        checkpoint_every: steps between checkpoints (`null`: only at the end).
        keep_checkpoints: how many recent checkpoints to keep (`null`: all).
        devices: `1`, a device count, or `all` devices (data parallel; with
            several processes, `all` spans every process's devices).
        dtype: `float64` switches JAX to double precision for this run.
        progress: show a progress bar.
        compilation_cache: keep compiled programs in JAX's persistent cache
            (`$SCIML_CACHE_DIR`, else `~/.cache/sciml/jax`), so a repeated run
            of the same program skips compilation.
        init_from: a checkpoint file of an earlier run to start from (the
            CLI's `--init-from RUN_DIR [--from-step N]` fills it in): its
            model, problem state, PRNG key and step are taken over, the
            optimizer starts afresh with this config's settings. Recorded so
            that the run's history stays honest (`null`: start from `init`).
        early_stopping: stop on a plateau of a monitored metric and keep the
            best state (`EarlyStoppingConfig`; `null`: run all `steps`).
    """

    steps: PositiveInt = 1000
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    log_every: PositiveInt = 100
    eval_every: PositiveInt | None = None
    checkpoint_every: PositiveInt | None = 1000
    keep_checkpoints: PositiveInt | None = 3
    devices: PositiveInt | Literal["all"] = 1
    dtype: Literal["float32", "float64"] = "float32"
    progress: bool = True
    compilation_cache: bool = True
    init_from: str | None = None
    early_stopping: EarlyStoppingConfig | None = None
