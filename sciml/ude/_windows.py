"""Horizon curricula and window minibatches for fitting long trajectories.

Two remedies for training stuck on long or oscillatory time series, usable
with single or multiple shooting: grow the fitted time span in stages
(`horizon_curriculum`), or fit random windows of consecutive samples
(`sample_windows`).
"""

from __future__ import annotations

import jax
import numpy as np
from jaxtyping import Array, Int

__all__ = ["horizon_curriculum", "sample_windows"]



def horizon_curriculum(ts, n_stages: int, *, multiple_of: int = 1) -> tuple[int, ...]:
    """Growing time-window end indices for fitting ever longer spans.

    Returns `n_stages` increasing integers `ends`, the last equal to len(ts),
    with `ends[i] - 1` a multiple of `multiple_of` and spaced roughly evenly.
    Stage i fits `ts[:ends[i]]`, `data[:ends[i]]`, warm-started from stage
    i - 1 (SciMLSensitivity's "grow the time span" recipe against training
    stuck on long horizons). With multiple shooting pass
    `multiple_of=ms.segment_length`: stage i then uses the first
    (ends[i] - 1) / L segments.

    Example (a plain optax loop; with `sciml.trainer.fit`, build one problem
    per stage and pass the previous stage's model on):

        >>> opt = optax.adam(1e-2)
        >>> for end in horizon_curriculum(ts, 4, multiple_of=ms.segment_length):
        ...     state = opt.init(eqx.filter(ms, eqx.is_inexact_array))
        ...     for _ in range(200):
        ...         ms, state = step(ms, state, ts[:end], data[:end])

    Args:
        ts: 1-D time grid (only its length matters).
        n_stages: number of stages (>= 1).
        multiple_of: granularity of the ends, in grid intervals.

    Returns:
        A tuple of `n_stages` strictly increasing Python ints (duplicates
        dropped if the grid is too short for that many stages).
    """
    n_times = int(np.shape(ts)[0])
    if n_stages < 1:
        raise ValueError(f"horizon_curriculum: n_stages must be >= 1, got {n_stages}")
    if multiple_of < 1 or (n_times - 1) % multiple_of != 0:
        raise ValueError(
            f"horizon_curriculum: len(ts) - 1 = {n_times - 1} must be a positive multiple of "
            f"multiple_of = {multiple_of}"
        )
    blocks = (n_times - 1) // multiple_of
    # Stage i covers ceil(blocks * (i + 1) / n_stages) blocks (at least one).
    counts = [max(1, -(-blocks * (i + 1) // n_stages)) for i in range(n_stages)]
    ends = sorted({c * multiple_of + 1 for c in counts})
    return tuple(ends)


def sample_windows(
    key, n_times: int, batch: int, length: int, *, stride: int = 1
) -> Int[Array, " batch"]:
    """Random start indices of `batch` windows of `length` consecutive samples.

    Every start i satisfies 0 <= i <= n_times - length and i % stride == 0,
    so `ts[i : i + length]` and `data[i : i + length]` are full windows
    (gather them with `i[:, None] + jnp.arange(length)` and vmap the loss
    over windows). Minibatching over trajectory windows is SciMLSensitivity's
    remedy for long series; with `stride=ms.segment_length` windows start at
    node times. Starts are drawn uniformly with replacement.

    Args:
        key: a JAX PRNG key.
        n_times: length of the time series.
        batch: number of windows.
        length: samples per window (2 <= length <= n_times).
        stride: starts are multiples of `stride`.

    Returns:
        Integer array of shape (batch,).
    """
    if not 2 <= length <= n_times:
        raise ValueError(
            f"sample_windows: need 2 <= length <= n_times, got length={length}, "
            f"n_times={n_times}"
        )
    if stride < 1:
        raise ValueError(f"sample_windows: stride must be >= 1, got {stride}")
    n_starts = (n_times - length) // stride + 1
    return jax.random.randint(key, (batch,), 0, n_starts) * stride
