"""The run directory's writers: checkpoints, metrics.jsonl, summary.json, figures.

Each is a `Callback`. Only process 0 writes (several processes train one
model in a multi-host run); every process takes part in gathering arrays
that are spread over processes.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import jax

from sciml.checkpoint import atomic_write_bytes, load_latest_intact, save_checkpoint
from sciml.parallel import is_main_process, to_host
from sciml.trainer._callbacks import Callback

__all__ = [
    "Checkpoints",
    "MetricsLog",
    "SummaryFile",
    "Figures",
    "run_directory",
    "json_safe",
    "eval_record",
]


def json_safe(value: Any) -> Any:
    """`value` with every NaN/Inf float replaced by `None` (strict JSON has no such tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _dumps(record: dict) -> str:
    return json.dumps(json_safe(record), allow_nan=False)


def eval_record(step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """The `metrics.jsonl` line of an evaluation at `step`."""
    return {"step": step, **{f"eval/{k}": v for k, v in metrics.items()}}


class Checkpoints(Callback):
    """Saves the training state every `train.checkpoint_every` steps, at step 0 and at the end.

    Attributes:
        last: path of the newest checkpoint written or restored (the last
            good one when a run diverges).
    """

    def __init__(self, directory: Path, train):
        self.directory = Path(directory)
        self.every = train.checkpoint_every
        self.keep = train.keep_checkpoints
        self.last: Path | None = None
        self.last_step: int | None = None

    def restore(self, template):
        """The newest intact checkpoint loaded into `template`, or `None` when there is none.

        Damaged files (cut short, altered) are skipped with a warning on the
        `sciml` logger naming the file and why; a checkpoint of a different
        training state raises `CheckpointMismatch`.
        """

        def skip(path, reason):
            logging.getLogger("sciml").warning("skipped %s: %s", path.name, reason)

        found = load_latest_intact(self.directory, template, on_skip=skip)
        if found is None:
            return None
        self.last_step, self.last, tree = found
        return tree

    def save(self, ts) -> None:
        step = int(to_host(ts.step))
        host = to_host(ts)  # every process joins any gather; process 0 writes
        if is_main_process():
            self.last = save_checkpoint(self.directory, step, host, keep=self.keep)
        self.last_step = step

    def on_start(self, run, ts):
        if self.last is None:  # a fresh run: a step-0 checkpoint to fall back to
            self.save(ts)

    def on_chunk(self, run, record, ts):
        step = record["step"]
        if self.every is not None and step % self.every == 0:
            self.save(ts)

    def on_end(self, run, result):
        if self.last_step != result.step:
            self.save(result.train_state)


class MetricsLog(Callback):
    """Appends one JSON line per chunk (and the final evaluation) to `metrics.jsonl`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate(self, max_step: int) -> list[dict]:
        """Keep the records up to `max_step` (a resumed run drops those past its checkpoint)."""
        if not self.path.exists():
            return []
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            step = rec.get("step", 0)
            # keep the training records up to the checkpoint, not a final
            # evaluation logged at that step (the resumed run logs its own)
            if step < max_step or (step == max_step and "loss" in rec):
                kept.append(rec)
        if is_main_process():
            atomic_write_bytes(self.path, "".join(_dumps(r) + "\n" for r in kept).encode())
        return kept

    def append(self, record: dict) -> None:
        if is_main_process():
            with open(self.path, "a") as f:
                f.write(_dumps(record) + "\n")

    def on_chunk(self, run, record, ts):
        self.append(record)

    def on_end(self, run, result):
        if result.final_eval:
            self.append(eval_record(result.step, result.final_eval))

    def on_diverged(self, run, error):
        self.append({"step": error.step, "diverged": True})


class SummaryFile(Callback):
    """Writes `summary.json` (strict JSON: NaN/Inf become `null`)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, summary: dict) -> None:
        if is_main_process():
            text = json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n"
            atomic_write_bytes(self.path, text.encode())

    def on_end(self, run, result):
        self.write(result.summary)

    def on_diverged(self, run, error):
        self.write(
            {
                "status": "diverged",
                "diverged_at_step": error.step,
                "last_good_checkpoint": str(error.checkpoint) if error.checkpoint else None,
                "reason": error.reason,
            }
        )


class Figures(Callback):
    """Saves `figures/loss.png` and the problem's own figures at the end of the run."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def on_end(self, run, result):
        # Every process joins the gather (arrays spread over processes), so
        # that process 0 plots from local copies without waiting on the others.
        model, state = result.model, result.state
        if jax.process_count() > 1:
            model, state = to_host((model, state))
        if not is_main_process():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        save_loss_figure(result.history, self.directory / "loss.png")
        run.problem.figures(model, state, self.directory)


def save_loss_figure(history, path: Path) -> None:
    """Plot the logged training loss against the step (log scale when positive)."""
    from matplotlib.figure import Figure

    steps = [r["step"] for r in history if r.get("loss") is not None]
    losses = [r["loss"] for r in history if r.get("loss") is not None]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if steps:
        ax.plot(steps, losses)
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over logged chunk)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_directory(run_dir: Path, train) -> tuple[Checkpoints, MetricsLog, list[Callback]]:
    """The writers of a run directory: `(checkpoints, metrics, all of them in call order)`."""
    run_dir = Path(run_dir)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpoints(run_dir / "checkpoints", train)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    # The metrics line of a step is written before its checkpoint: a process killed between the
    # two then resumes from the previous checkpoint and truncates the log to it, so no step's
    # record is ever missing (in the other order a kill there lost that step's line for good).
    writers = [metrics, checkpoints, SummaryFile(run_dir / "summary.json"), Figures(run_dir / "figures")]
    return checkpoints, metrics, writers

