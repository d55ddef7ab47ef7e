"""Atomic checkpoint files."""

import jax.numpy as jnp
import numpy as np
import pytest

from sciml.checkpoint import (
    atomic_write_bytes,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
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


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_bytes(target, b"old")

    class Boom:
        def __bytes__(self):
            raise RuntimeError

    with pytest.raises(TypeError):
        atomic_write_bytes(target, Boom())  # the write itself fails
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_mismatched_template_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="does not match the expected training state"):
        load_checkpoint(path, {"w": jnp.ones(4)})
    with pytest.raises(ValueError, match="step must be >= 0"):
        save_checkpoint(tmp_path, -1, {})
