"""Data parallelism over the local devices: a 1-D mesh, sharded batches.

Parameters stay replicated; a Problem marks its batch arrays with
`shard_batch` inside `loss`, and XLA inserts the reductions. Outside a
`batch_sharding` context `shard_batch` is the identity, so problems work
unchanged from research code.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["BATCH_AXIS", "make_mesh", "batch_sharding", "shard_batch", "replicate"]

BATCH_AXIS = "batch"
"""Name of the mesh axis that batch arrays are split along."""

_current_mesh: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "sciml_mesh", default=None
)


def make_mesh(devices: int | str = 1) -> Mesh:
    """Return a 1-D mesh over the first `devices` local devices (`"all"`: every one).

    Raises `ValueError` if more devices are asked for than exist.
    """
    available = jax.local_devices()
    if devices == "all":
        n = len(available)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        n = devices
    else:
        raise ValueError(f"devices must be a positive integer or 'all', got {devices!r}")
    if n > len(available):
        raise ValueError(
            f"devices={n} requested but only {len(available)} local device(s) exist "
            f"({available[0].platform}); use devices: all or a smaller number"
        )
    return Mesh(np.asarray(available[:n]), (BATCH_AXIS,))


@contextlib.contextmanager
def batch_sharding(mesh: Mesh | None):
    """Within this context (at trace time), `shard_batch` splits arrays over `mesh`."""
    token = _current_mesh.set(mesh)
    try:
        yield mesh
    finally:
        _current_mesh.reset(token)


def shard_batch(x):
    """Constrain the leading axis of every array in pytree `x` to the batch mesh axis.

    Identity outside `batch_sharding` or on a one-device mesh. The leading
    dimension must divide evenly by the number of devices.
    """
    mesh = _current_mesh.get()
    if mesh is None or mesh.size == 1:
        return x
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))

    def constrain(a):
        if a.ndim == 0 or a.shape[0] % mesh.size:
            raise ValueError(
                f"shard_batch: leading dimension {a.shape[:1]} of an array of shape "
                f"{a.shape} does not divide over {mesh.size} devices; choose a batch "
                f"size that is a multiple of {mesh.size}"
            )
        return jax.lax.with_sharding_constraint(a, sharding)

    return jax.tree.map(constrain, x)


def replicate(tree, mesh: Mesh | None):
    """Place every array of `tree` on all devices of `mesh` (no-op for `None`)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda a: jax.device_put(a, sharding) if isinstance(a, jax.Array) else a, tree
    )
