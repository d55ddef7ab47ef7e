"""Data parallelism: a 1-D device mesh, sharded batches, several processes.

Parameters stay replicated; a Problem marks its batch arrays with
`shard_batch` inside `loss`, and XLA inserts the reductions. Outside a
`batch_sharding` context `shard_batch` is the identity, so problems work
unchanged from research code.

Several processes (hosts) train one model with JAX's multi-controller
runtime: every process runs the same program on its own devices, after
`initialize_distributed` (the `--distributed` CLI flag). The mesh then spans
every process's devices, batch arrays are split over all of them, and only
process 0 writes the run directory.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "BATCH_AXIS",
    "make_mesh",
    "batch_sharding",
    "shard_batch",
    "batch_device_count",
    "replicate",
    "to_host",
    "is_main_process",
    "agree_with_main_process",
    "initialize_distributed",
]

BATCH_AXIS = "batch"
"""Name of the mesh axis that batch arrays are split along."""

_current_mesh: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "sciml_mesh", default=None
)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: list[int] | None = None,
) -> None:
    """Join a multi-process (multi-host) run: `jax.distributed.initialize` with checks.

    Arguments left `None` are taken from the environment as JAX does on
    clusters (SLURM, Open MPI, Kubernetes, Cloud TPU), or from the variables
    `SCIML_COORDINATOR_ADDRESS` (host:port of process 0),
    `SCIML_NUM_PROCESSES` and `SCIML_PROCESS_ID`. On CPU the cross-process
    collectives use gloo. Must run before any other JAX call that touches
    devices; calling it again is a no-op.
    """
    if jax.distributed.is_initialized():
        return
    env = os.environ
    coordinator_address = coordinator_address or env.get("SCIML_COORDINATOR_ADDRESS")
    if num_processes is None and "SCIML_NUM_PROCESSES" in env:
        num_processes = int(env["SCIML_NUM_PROCESSES"])
    if process_id is None and "SCIML_PROCESS_ID" in env:
        process_id = int(env["SCIML_PROCESS_ID"])
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"initialize_distributed: num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(
            f"initialize_distributed: process_id must be in [0, {num_processes}), got {process_id}"
        )
    if "cpu" in env.get("JAX_PLATFORMS", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes files in a multi-process run)."""
    return jax.process_index() == 0


def agree_with_main_process(flag: bool) -> bool:
    """Process 0's `flag`, on every process (a collective when there are several; else `flag`)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def make_mesh(devices: int | str = 1) -> Mesh:
    """A 1-D mesh over the first `devices` devices (`"all"`: every one).

    With several processes the mesh spans every process's devices and
    `devices` must be `"all"` or the global device count.

    Raises `ValueError` if more devices are asked for than exist.
    """
    available = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    if devices == "all":
        n = len(available)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        n = devices
    else:
        raise ValueError(f"devices must be a positive integer or 'all', got {devices!r}")
    if n > len(available):
        raise ValueError(
            f"devices={n} requested but only {len(available)} device(s) exist "
            f"({available[0].platform}); use devices: all or a smaller number"
        )
    if jax.process_count() > 1 and n != len(available):
        raise ValueError(
            f"devices={n}: a run over {jax.process_count()} processes uses all "
            f"{len(available)} devices; use devices: all"
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


def batch_device_count() -> int:
    """How many devices `shard_batch` splits over at this point of tracing (1 outside a mesh).

    Problems use it to check, with their own words, that a batch dimension
    they control (e.g. the number of Markov chains) divides over the devices.
    """
    mesh = _current_mesh.get()
    return 1 if mesh is None else int(mesh.size)


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


def _put(a, sharding: NamedSharding):
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    # A mesh over several processes: each process supplies its own devices'
    # copies (the value is the same everywhere: same seed, same program).
    host = np.asarray(to_host(a))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree, mesh: Mesh | None):
    """Place every array leaf of `tree` (JAX or NumPy) on all devices of `mesh` (no-op for `None`)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda a: _put(a, sharding) if isinstance(a, (jax.Array, np.ndarray)) else a, tree
    )


def to_host(tree):
    """Every JAX array of `tree` as a NumPy array on this host.

    Arrays spread over several processes are gathered (a collective: every
    process must call this on the same arrays); replicated ones are read
    from a local copy.
    """

    def get(a):
        if not isinstance(a, jax.Array):
            return a
        if a.is_fully_addressable:
            return np.asarray(a)
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(get, tree)
