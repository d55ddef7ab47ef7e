"""Atomic checkpoint files."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from sciml.checkpoint import (
    CheckpointDamaged,
    CheckpointMismatch,
    atomic_write_bytes,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest_intact,
    save_checkpoint,
)


def test_save_load_and_keep(tmp_path):
    tree = {"w": jnp.arange(3.0), "n": jnp.array(4, jnp.int32)}
    for step in (0, 10, 20, 30):
        save_checkpoint(tmp_path, step, {"w": tree["w"] + step, "n": tree["n"]}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 30]
    step, path = latest_checkpoint(tmp_path)
    assert step == 30 and path.name == "step_000000030.eqx"
    out = load_checkpoint(path, tree)
    np.testing.assert_array_equal(out["w"], np.arange(3.0) + 30)
    assert out["n"].dtype == jnp.int32


def test_partial_writes_are_invisible(tmp_path):
    save_checkpoint(tmp_path, 5, {"w": jnp.ones(2)})
    (tmp_path / ".step_000000010.eqx.abc.tmp").write_bytes(b"cut short")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert latest_checkpoint(tmp_path)[0] == 5
    assert latest_checkpoint(tmp_path / "missing") is None


class _SerialisationFailed(Exception):
    pass


class _FailsWhenPickled:
    """Object-array element whose serialisation raises after earlier bytes were written.

    `np.save` writes an object array's header and then pickles it, so a
    checkpoint holding this after a large array fails mid-file.
    """

    def __init__(self, directory):
        self.directory = directory
        self.temp_sizes = None

    def __reduce__(self):
        self.temp_sizes = {
            p.name: p.stat().st_size for p in self.directory.iterdir() if p.name.endswith(".tmp")
        }
        raise _SerialisationFailed("serialisation failed mid-file")


def test_failed_checkpoint_write_leaves_previous_checkpoint_and_no_temp(tmp_path):
    before = save_checkpoint(tmp_path, 5, {"w": jnp.arange(4.0)})
    old_bytes = before.read_bytes()
    bomb = _FailsWhenPickled(tmp_path)
    # leaves in key order: "a" (400 kB, flushed to the temp file) then "b" (raises)
    tree = {"a": jnp.ones(100_000, jnp.float32), "b": np.array([bomb], dtype=object)}
    with pytest.raises(Exception) as info:
        save_checkpoint(tmp_path, 10, tree, keep=1)
    # equinox wraps leaf errors (naming the leaf's path); ours must be the root cause
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(e, _SerialisationFailed) for e in chain), chain
    # the failure happened mid-write: one temp file existed and already held data
    assert bomb.temp_sizes is not None and len(bomb.temp_sizes) == 1
    ((temp_name, temp_size),) = bomb.temp_sizes.items()
    assert temp_name.startswith(".step_000000010.eqx.") and temp_size >= 100_000 * 4
    # afterwards: no new checkpoint, no temp file, the earlier one untouched (not pruned)
    assert [p.name for p in tmp_path.iterdir()] == [before.name]
    assert before.read_bytes() == old_bytes
    assert latest_checkpoint(tmp_path) == (5, before)
    np.testing.assert_array_equal(load_checkpoint(before, {"w": jnp.zeros(4)})["w"], np.arange(4.0))


def test_failed_atomic_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_bytes(target, b"old")
    seen = {}

    def failing_fsync(fd):
        # the new data is in the temp file when the flush to disk fails
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        seen[tmp.name] = tmp.read_bytes()
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.undo()
    assert list(seen.values()) == [b"new contents"]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_mismatched_template_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="holds a different training state"):
        load_checkpoint(path, {"w": jnp.ones(4)})
    with pytest.raises(ValueError, match="step must be >= 0"):
        save_checkpoint(tmp_path, -1, {})


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b"", "empty"),
        (lambda b: b[:-80] + bytes([b[-80] ^ 1]) + b[-79:], "checksum mismatch"),
        (lambda b: b"\x93NUMPY" + b[20:], "not a sciml checkpoint"),
    ],
    ids=["truncated", "empty", "bit-flip", "foreign"],
)
def test_damage_is_recognised_and_skipped(tmp_path, damage, why):
    tree = {"w": jnp.arange(50.0), "n": jnp.array(4, jnp.int32)}
    save_checkpoint(tmp_path, 1, tree)
    path = save_checkpoint(tmp_path, 2, {"w": tree["w"] + 1, "n": tree["n"]})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointDamaged, match=why):
        load_checkpoint(path, tree)
    skipped = []
    step, used, out = load_latest_intact(tmp_path, tree, on_skip=lambda p, r: skipped.append((p, r)))
    assert step == 1 and used.name == "step_000000001.eqx"
    np.testing.assert_array_equal(out["w"], np.arange(50.0))
    assert skipped and skipped[0][0] == path and why in skipped[0][1]


def test_mismatch_names_the_leaves_that_differ(tmp_path):
    path = save_checkpoint(tmp_path, 3, {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
    with pytest.raises(CheckpointMismatch) as info:
        load_checkpoint(path, {"w": jnp.zeros((4, 3)), "c": jnp.zeros(3)})
    msg = str(info.value)
    assert "['w']: saved (2, 3) float32, expected (4, 3) float32" in msg
    assert "['c']: not in the checkpoint" in msg and "['b']: in the checkpoint but not expected" in msg
    # a mismatch is not damage: falling back to older files would not help
    with pytest.raises(CheckpointMismatch):
        load_latest_intact(tmp_path, {"w": jnp.zeros((4, 3)), "c": jnp.zeros(3)})
