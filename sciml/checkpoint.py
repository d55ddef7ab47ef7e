"""Atomic save and restore of training state.

A checkpoint is one file, `step_<step>.eqx`, holding every array leaf of a
pytree (equinox serialisation). It is written to a temporary file in the same
directory, flushed to disk and renamed over its final name, so a process
killed mid-write leaves the previous checkpoints intact and never a partial
file under a checkpoint name.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import equinox as eqx

__all__ = [
    "atomic_write_bytes",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
]

_NAME = re.compile(r"^step_(\d+)\.eqx$")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    _atomic_write(Path(path), lambda f: f.write(data))


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """`(step, path)` of every complete checkpoint in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> tuple[int, Path] | None:
    """`(step, path)` of the newest checkpoint in `directory`, or `None`."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(
    directory: str | Path, step: int, tree, *, keep: int | None = None
) -> Path:
    """Atomically save pytree `tree` as `directory/step_<step>.eqx`.

    Args:
        directory: checkpoint folder (created if missing).
        step: training step the state belongs to.
        tree: pytree of arrays (non-array leaves are not stored; they come
            from the template at load time).
        keep: if given, delete all but the `keep` newest checkpoints afterwards.

    Returns:
        The checkpoint's path.
    """
    if step < 0:
        raise ValueError(f"save_checkpoint: step must be >= 0, got {step}")
    directory = Path(directory)
    path = directory / f"step_{step:09d}.eqx"
    _atomic_write(path, lambda f: eqx.tree_serialise_leaves(f, tree))
    if keep is not None:
        for _, old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, like):
    """Load a checkpoint into the structure of template pytree `like`.

    `like` must have the same structure, shapes and dtypes as the saved tree
    (build it the same way the saved one was built); a mismatch raises
    `ValueError` naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return eqx.tree_deserialise_leaves(f, like)
    except FileNotFoundError:
        raise
    except Exception as e:  # equinox raises assorted errors on mismatched templates
        raise ValueError(
            f"checkpoint {str(path)!r} does not match the expected training state "
            f"(different problem, model or optimizer settings?): {e}"
        ) from e
