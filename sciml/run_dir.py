"""The run directory on disk: what sciml writes there, who may delete it, who may write to it.

- `MARKER` (`.sciml-run`) is written first into every run directory;
  `prepare_run_dir` lets `--overwrite` delete a directory only when the
  marker is there and everything else is a name sciml writes
  (`foreign_entries` lists what is not).
- `lock_run_dir` takes an exclusive lock on the marker while a process trains
  into the directory, so a second run or resume is refused before it writes.
- `reached_step` reads the step of the newest intact checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from sciml.schema import ConfigError

__all__ = ["MARKER", "holds_run", "foreign_entries", "prepare_run_dir", "lock_run_dir", "reached_step"]

_RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints")
MARKER = ".sciml-run"
"""File written first into every run directory; `--overwrite` needs it."""
# What sciml writes into a run directory: names at the top, and per folder a
# test for the files it holds. Anything else is the user's and never deleted.
_OURS = {MARKER, "config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "figures"}
_OURS_INSIDE = {
    "checkpoints": lambda name: re.fullmatch(r"\.?step_\d+\.eqx(\..*\.tmp)?", name) is not None,
    "figures": lambda name: name.endswith(".png"),
}


def holds_run(path: Path) -> bool:
    """Whether `path` holds (part of) a sciml run: its marker or any file a run writes."""
    return any((path / m).exists() for m in (MARKER, *_RUN_FILES))


def _our_temp_file(name: str) -> bool:
    # what an atomic write killed half-way leaves: .<name>.<random>.tmp
    return any(name.startswith(f".{ours}.") and name.endswith(".tmp") for ours in _OURS)


def foreign_entries(run_dir: Path) -> list[str]:
    """What in `run_dir` sciml did not write (relative paths; the marker's absence too)."""
    found = [] if (run_dir / MARKER).is_file() else [f"(no {MARKER} marker)"]
    for entry in sorted(run_dir.iterdir()):
        if entry.is_file() and _our_temp_file(entry.name):
            continue
        if entry.name not in _OURS or (entry.name == MARKER and not entry.is_file()):
            found.append(entry.name + ("/" if entry.is_dir() else ""))
        elif entry.name in _OURS_INSIDE:
            if not entry.is_dir():
                found.append(entry.name)
                continue
            for inner in sorted(entry.iterdir()):
                if inner.is_dir() or not _OURS_INSIDE[entry.name](inner.name):
                    found.append(f"{entry.name}/{inner.name}" + ("/" if inner.is_dir() else ""))
        elif entry.is_dir():
            found.append(entry.name + "/")
    return found


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a fresh run over an existing one (or over foreign files) unless told to.

    `--overwrite` deletes the directory only when everything in it is what
    sciml writes into a run directory, the marker included; otherwise it
    refuses and lists what is not (the user's files are never touched).
    """
    if not run_dir.exists():
        return
    if holds_run(run_dir):
        if not overwrite:
            raise ConfigError(
                f"error: run directory {run_dir} already holds a run; continue it with "
                f"`python -m sciml.train --resume {run_dir}`, choose another "
                f"output.dir=..., or pass --overwrite to replace it"
            )
        foreign = foreign_entries(run_dir)
        if foreign:
            shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
            raise ConfigError(
                f"error: --overwrite: {run_dir} holds files sciml did not write ({shown}); "
                f"nothing was deleted. Remove them yourself or choose another output.dir=..."
            )
        shutil.rmtree(run_dir)
    elif any(run_dir.iterdir()):
        raise ConfigError(
            f"error: output directory {run_dir} exists and holds other files (not a sciml "
            f"run); choose another output.dir=..."
        )


def lock_run_dir(run_dir: Path) -> int:
    """Create `run_dir` with its marker and take an exclusive lock on it; returns the lock's fd.

    A second process training into the same directory at the same time is
    refused before it writes anything. Closing the fd releases the lock, and
    so does the end of the process, also when it is killed.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / MARKER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no advisory locks on this platform
        pass
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"error: run directory {run_dir} is in use: another sciml process is training "
            f"into it right now; wait for it, or choose another output.dir=..."
        ) from None
    if os.fstat(fd).st_size == 0:
        os.write(fd, b"a sciml run directory; --overwrite may delete it\n")
    return fd


def reached_step(run_dir: Path) -> int | None:
    """The step of the newest intact checkpoint in `run_dir` (by its header), or `None`."""
    from sciml.checkpoint import CheckpointDamaged, list_checkpoints, read_checkpoint_header

    for _, path in reversed(list_checkpoints(run_dir / "checkpoints")):
        try:
            return int(read_checkpoint_header(path)["step"])
        except (CheckpointDamaged, KeyError, ValueError):
            continue
    return None
