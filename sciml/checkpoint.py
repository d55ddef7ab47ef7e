"""Atomic save and restore of training state, with damage detection.

A checkpoint is one file, `step_<step>.eqx`:

    SCIMLCKPT 1\n                      magic and format version
    {"step": ..., "leaves": [...]}\n   header: the step and every array leaf's
                                      path, shape and dtype
    <payload>                         equinox serialisation of the array leaves
    \nSHA256 <hex> <length>\n          footer: checksum and length of the payload

It is written to a temporary file in the same directory, flushed to disk and
renamed over its final name, so a process killed mid-write leaves the
previous checkpoints intact and never a partial file under a checkpoint name.
A file damaged afterwards (cut short by a full disk or a copy, bits flipped)
fails its checksum and raises `CheckpointDamaged`; an intact file saved from
a different training state raises `CheckpointMismatch` naming the leaves
that differ.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import equinox as eqx
import jax

__all__ = [
    "CheckpointDamaged",
    "CheckpointMismatch",
    "atomic_write_bytes",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "load_latest_intact",
    "read_checkpoint_header",
]

_NAME = re.compile(r"^step_(\d+)\.eqx$")
MAGIC = b"SCIMLCKPT 1\n"
_FOOTER = re.compile(rb"\nSHA256 ([0-9a-f]{64}) (\d+)\n\Z")


class CheckpointDamaged(ValueError):
    """A checkpoint file is not intact (cut short, altered, or not a sciml checkpoint)."""


class CheckpointMismatch(ValueError):
    """An intact checkpoint holds a different training state than the one expected."""


def _leaf_specs(tree) -> list[list]:
    """`[path, shape, dtype]` of every array leaf (what the payload stores)."""
    return [
        [jax.tree_util.keystr(path), list(x.shape), str(x.dtype)]
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(x, "shape") and hasattr(x, "dtype")
    ]


class _Hashing:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


def _write_checkpoint(f, step: int, tree) -> None:
    f.write(MAGIC)
    f.write(json.dumps({"step": step, "leaves": _leaf_specs(tree)}).encode() + b"\n")
    payload = _Hashing(f)
    eqx.tree_serialise_leaves(payload, tree)
    f.write(f"\nSHA256 {payload.sha.hexdigest()} {payload.size}\n".encode())


def read_checkpoint_header(path: str | Path) -> dict:
    """The header (`step`, `leaves`) of an intact checkpoint; `CheckpointDamaged` otherwise."""
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        what = "empty" if not data else "not a sciml checkpoint (or from an older sciml)"
        raise CheckpointDamaged(f"checkpoint {str(path)!r} is damaged: {what}")
    end = data.find(b"\n", len(MAGIC))
    footer = _FOOTER.search(data)
    if end < 0 or footer is None:
        raise CheckpointDamaged(
            f"checkpoint {str(path)!r} is damaged: cut short ({len(data)} bytes, no checksum footer)"
        )
    payload = data[end + 1 : footer.start()]
    if len(payload) != int(footer.group(2)) or hashlib.sha256(payload).hexdigest() != footer.group(1).decode():
        raise CheckpointDamaged(f"checkpoint {str(path)!r} is damaged: checksum mismatch")
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError:
        raise CheckpointDamaged(f"checkpoint {str(path)!r} is damaged: unreadable header") from None
    return header, payload


def _differences(saved: list, expected: list) -> list[str]:
    saved_by = {p: (tuple(s), d) for p, s, d in saved}
    expected_by = {p: (tuple(s), d) for p, s, d in expected}
    out = [f"{p}: not in the checkpoint" for p in expected_by if p not in saved_by]
    out += [f"{p}: in the checkpoint but not expected" for p in saved_by if p not in expected_by]
    out += [
        f"{p}: saved {saved_by[p][0]} {saved_by[p][1]}, expected {expected_by[p][0]} {expected_by[p][1]}"
        for p in expected_by
        if p in saved_by and saved_by[p] != expected_by[p]
    ]
    return out


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
    _atomic_write(path, lambda f: _write_checkpoint(f, step, tree))
    if keep is not None:
        for _, old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, like):
    """Load a checkpoint into the structure of template pytree `like`.

    Raises:
        CheckpointDamaged: the file is not intact (truncated, altered, empty).
        CheckpointMismatch: it is intact but holds another structure, shapes
            or dtypes than `like` (different problem, model or optimizer
            settings); the message names the leaves that differ.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    header, payload = _read(path)
    diff = _differences(header.get("leaves", []), _leaf_specs(like))
    if diff:
        shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise CheckpointMismatch(
            f"checkpoint {str(path)!r} holds a different training state than this run "
            f"expects (different problem, model or optimizer settings?): {shown}"
        )
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as e:  # the checksum held, so the template is what differs
        raise CheckpointMismatch(
            f"checkpoint {str(path)!r} does not fit the expected training state: {e}"
        ) from e


def load_latest_intact(directory: str | Path, like, *, on_skip=None):
    """The newest checkpoint in `directory` that is intact, loaded into `like`.

    Damaged files are skipped (newest first); `on_skip(path, reason)` is
    called for each. A `CheckpointMismatch` is raised at once: older files
    would not match either.

    Returns:
        `(step, path, tree)`, or `None` when there is no intact checkpoint.
    """
    for step, path in reversed(list_checkpoints(directory)):
        try:
            return step, path, load_checkpoint(path, like)
        except CheckpointDamaged as e:
            if on_skip is not None:
                on_skip(path, str(e))
    return None
