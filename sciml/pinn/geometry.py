"""Domains for physics-informed training: intervals, boxes, balls and space-time products.

Every domain is a frozen `eqx.Module` whose settings are static Python floats, so a
domain can be closed over (or passed) inside `jax.jit` without becoming a traced value.
Each offers

- `dim`, `volume` (Lebesgue measure), `bounds` (`(lo, hi)` arrays) and
  `contains(x)` for points of shape `(..., dim)`;
- `sample_interior(key, n, method)` -> `(n, dim)` points;
- `sample_boundary(key, n, method)` -> `(points, normals)`, both `(n, dim)`, with outward
  unit normals. The `n` points are split over the boundary pieces (the faces of a box,
  the two ends of an interval, the sphere of a ball; the lateral boundary of a
  space-time domain) in proportion to their measure, by largest remainder, so the count
  on each piece is fixed and differs from `n * measure / total` by less than one.
  Points are returned grouped by piece. `"lhs"` and `"grid"` stratify each piece on its
  own; `"uniform"`, `"halton"` and `"sobol"` cut one sequence into consecutive runs.

Sampling methods (`METHODS`), all jit-able with a traced key (`n` is static):

- `"uniform"`: i.i.d. uniform (`jax.random.uniform`).
- `"lhs"`: Latin hypercube; in each unit-cube coordinate exactly one point per stratum
  `[j/n, (j+1)/n)`.
- `"halton"`: Halton sequence (radical inverse in the first primes, indices 0..n-1) with
  random linear digit scrambling from the key (each point exactly uniform; the
  stratification of the sequence is kept). Best in a few dimensions (up to ~10).
- `"sobol"`: Sobol' sequence (Joe-Kuo direction numbers, read once per (dimension, bit
  count) from `scipy.stats.qmc.Sobol` on the host at trace time and cached) with a random
  digital shift (XOR of one random 32-bit word per coordinate) from the key. The digital
  shift keeps the net structure: for `n = 2**m` each coordinate has exactly one point in
  every `[j/n, (j+1)/n)`. Use powers of two for `n`.
- `"grid"`: the midpoints of a tensor grid of cells in the unit cube (the key is
  ignored); `n` must be `m**k` for the `k` unit-cube coordinates the domain maps from
  (`k = dim` for boxes). On boundaries it is allowed where every piece is at most one
  dimensional (interval ends, rectangle edges, the circle, interval x time).

Non-box domains map unit-cube samples with measure-preserving maps, so quasi-random
points stay uniformly spread: a disk uses `r = R sqrt(u1)`, `phi = 2 pi u2`; a 3-ball
`r = R u1^(1/3)` and Archimedes' map `z = 1 - 2 u2`, `phi = 2 pi u3` for the direction;
in `d >= 4` the direction is a normalised vector of inverse-normal-CDF coordinates
(uniform in distribution, but the low discrepancy of quasi-random points is weakened).

Space-time points are `(x..., t)` with time LAST. A `SpaceTime` samples its interior, its
lateral boundary (spatial boundary x time, normals `(n_x, 0)`) and, separately, its
initial slice `t = t0` (`sample_initial`).

Example:
    >>> omega = Rectangle((0.0, 0.0), (1.0, 2.0)) * TimeInterval(0.0, 1.0)
    >>> x = omega.sample_interior(key, 1024, "sobol")          # (1024, 3)
    >>> xb, nb = omega.sample_boundary(key, 256, "halton")     # lateral, (256, 3) each
    >>> x0 = omega.sample_initial(key, 256)                    # t = 0, (256, 3)

Reference: Wu et al., "A comprehensive study of non-adaptive and residual-based adaptive
sampling for physics-informed neural networks", CMAME 2023.
"""

from __future__ import annotations

import abc
import functools
import math
import operator
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

__all__ = [
    "METHODS",
    "AbstractDomain",
    "Ball",
    "Box",
    "Disk",
    "Interval",
    "Rectangle",
    "SpaceTime",
    "TimeInterval",
    "product",
    "sample_unit_cube",
]

METHODS = ("uniform", "lhs", "halton", "sobol", "grid")
"""Names accepted by the `method=` argument of every sampler."""


# --------------------------------------------------------------------------- validation


def _check_n(n, where: str) -> int:
    try:
        n_int = operator.index(n)
    except TypeError:
        raise TypeError(
            f"{where}: n must be a Python int (the number of points is a static shape), "
            f"got {n!r} of type {type(n).__name__}"
        ) from None
    if n_int < 1:
        raise ValueError(f"{where}: n must be >= 1, got {n_int}")
    return n_int


def _check_method(method, where: str) -> str:
    if method not in METHODS:
        raise ValueError(f"{where}: unknown method {method!r}; allowed: {', '.join(METHODS)}")
    return method


def _as_floats(value, name: str, where: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(
            f"{where}: {name} must be concrete numbers (domains hold static floats), got {value!r}"
        ) from err
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: {name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: {name} must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def _as_float(value, name: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"{where}: {name} must be a concrete number, got {value!r}") from err
    if not math.isfinite(out):
        raise ValueError(f"{where}: {name} must be finite, got {out}")
    return out


def _check_points(x, dim: int, where: str) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{where}: expected points of shape (..., {dim}), got shape {x.shape}")
    return x


def _float_dtype():
    return jnp.result_type(float)


# --------------------------------------------------------------------- unit-cube sampling


def _first_primes(k: int) -> tuple[int, ...]:
    primes: list[int] = []
    candidate = 2
    while len(primes) < k:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return tuple(primes)


def _n_digits(n: int) -> int:
    # Base 2 needs the most digits to tell indices 0..n-1 apart; larger bases add zeros.
    return max(1, (n - 1).bit_length())


def _digits(index: Array, bases: Sequence[int], n_digits: int) -> Array:
    """Base-b digits d_j(i) of `index` `(n,)`, least significant first: `(n_digits, n, k)`."""
    n_max = int(index.shape[0])
    # b**j capped at n_max: any power above the largest index gives digit 0 (and no overflow).
    powers = np.array([[min(b**j, n_max) for b in bases] for j in range(n_digits)])
    powers = jnp.asarray(powers, index.dtype)[:, None, :]
    return (index[None, :, None] // powers) % jnp.asarray(bases, index.dtype)[None, None, :]


def _digit_scales(bases: Sequence[int], n_digits: int, dtype) -> Array:
    """b^-(j+1) per digit and base: `(n_digits, 1, k)`."""
    return jnp.asarray([[float(b) ** -(j + 1) for b in bases] for j in range(n_digits)], dtype)[
        :, None, :
    ]


def _radical_inverse(index: Array, bases: Sequence[int], n_digits: int) -> Array:
    """Radical inverse phi_b(i) = sum_j d_j(i) b^-(j+1) of `index` `(n,)` per base: `(n, k)`.

    Exact for indices below `2**n_digits`.
    """
    dtype = _float_dtype()
    digits = _digits(index, bases, n_digits).astype(dtype)
    return jnp.sum(digits * _digit_scales(bases, n_digits, dtype), axis=0)


def _halton(key: PRNGKeyArray, n: int, k: int) -> Array:
    """Halton points 0..n-1 with random linear digit scrambling.

    Digit j of coordinate c (prime base b) is mapped by d -> (h d + g) mod b with random
    h in {1..b-1}, g in {0..b-1} per (digit, coordinate): a permutation of the digits
    because b is prime (Matousek's random linear scrambling, positional form); the
    digits below the last one are a uniform tail. Each point is then exactly uniform, and
    the stratification of the radical inverse is kept: b^m points put one point in every
    [i/b^m, (i+1)/b^m) of the base-b coordinate. (A random shift modulo 1,
    Cranley-Patterson, also randomises, but wraps non-periodic integrands and loses
    accuracy.)
    """
    dtype = _float_dtype()
    bases = _first_primes(k)
    n_digits = _n_digits(n)
    index = jnp.arange(n)
    base = jnp.asarray(bases, dtype)[None, None, :]
    # One draw for everything: each jax.random call adds a PRNG kernel to compile.
    draw = jax.random.uniform(key, (2 * n_digits * k + n * k,), dtype)
    u_h, u_g = draw[: 2 * n_digits * k].reshape(2, n_digits, 1, k)
    h = jnp.clip(jnp.floor(1.0 + u_h * (base - 1.0)), 1.0, base - 1.0)
    g = jnp.clip(jnp.floor(u_g * base), 0.0, base - 1.0)
    digits = _digits(index, bases, n_digits).astype(dtype)
    scrambled = jnp.mod(h * digits + g, base)  # exact: small integers in floating point
    out = jnp.sum(scrambled * _digit_scales(bases, n_digits, dtype), axis=0)
    tail = jnp.asarray([float(b) ** -n_digits for b in bases], dtype)
    out = out + tail * draw[2 * n_digits * k :].reshape(n, k)
    return jnp.minimum(out, 1.0 - jnp.finfo(dtype).epsneg)


@functools.lru_cache(maxsize=64)
def _sobol_directions(k: int, n_bits: int) -> np.ndarray:
    """Sobol' direction numbers v_j (as 32-bit integers), shape `(n_bits, k)`.

    scipy draws points in Gray-code order, x_i = XOR of v_j over the set bits of
    gray(i) = i ^ (i >> 1); gray(2**(j+1) - 1) = 2**j, so v_j is point 2**(j+1) - 1.
    Reading them through the public `fast_forward` keeps the tables out of this file.
    """
    from scipy.stats import qmc  # host-only, imported on first use

    if k > 21201:
        raise ValueError(f"sobol: at most 21201 dimensions are supported, got {k}")
    sampler = qmc.Sobol(k, scramble=False, bits=32)
    rows = []
    for j in range(n_bits):
        sampler.reset()
        sampler.fast_forward(2 ** (j + 1) - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "balance properties" advice for n = 1
            rows.append(sampler.random(1)[0])
    return np.rint(np.asarray(rows) * 2.0**32).astype(np.uint32)


def _sobol_integers(n: int, k: int) -> Array:
    """Unscrambled Sobol' points 0..n-1 as 32-bit integers (x = value / 2**32), `(n, k)`."""
    if n > 2**32:
        raise ValueError(f"sobol: at most 2**32 points are supported, got n={n}")
    n_bits = _n_digits(n)
    directions = jnp.asarray(_sobol_directions(k, n_bits))
    index = jnp.arange(n, dtype=jnp.uint32)
    gray = index ^ (index >> 1)
    out = jnp.zeros((n, k), jnp.uint32)
    for j in range(n_bits):
        bit = ((gray >> j) & 1).astype(bool)[:, None]
        out = jnp.where(bit, out ^ directions[j][None, :], out)
    return out


def _sobol(key: PRNGKeyArray, n: int, k: int) -> Array:
    dtype = _float_dtype()
    shift = jax.random.bits(key, (k,), jnp.uint32)
    words = _sobol_integers(n, k) ^ shift[None, :]
    # Keep only the bits the float type represents exactly, so the result stays below 1.
    keep = min(32, jnp.finfo(dtype).nmant + 1)
    return (words >> (32 - keep)).astype(dtype) * (2.0**-keep)


def _block_ranks(counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the concatenated blocks: block id, rank inside the block, block size."""
    block = np.repeat(np.arange(len(counts)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(sum(counts)) - offsets[block]
    return block, rank, np.asarray(counts)[block]


def _lhs(key: PRNGKeyArray, counts: Sequence[int], k: int) -> Array:
    """A Latin hypercube of each block's size, blocks stacked: `(sum(counts), k)`."""
    dtype = _float_dtype()
    n = sum(counts)
    block, _, size = _block_ranks(counts)
    # argsort of (block id + uniform) orders each block's rows randomly inside the block,
    # so one sort gives an independent random permutation of every block per coordinate.
    noise, jitter = jax.random.uniform(key, (2, n, k), dtype)
    # (noise / 2 < 0.5 so rounding never carries a row into the next block.)
    order = jnp.argsort(jnp.asarray(block, dtype)[:, None] + noise / 2, axis=0)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    start = jnp.asarray(offsets[block])[:, None]
    strata = (
        jnp.zeros((n, k), jnp.int32)
        .at[order, jnp.arange(k)[None, :]]
        .set(jnp.arange(n, dtype=jnp.int32)[:, None] - start.astype(jnp.int32))
    )
    u = (strata.astype(dtype) + jitter) / jnp.asarray(size, dtype)[:, None]
    # Rounding can reach 1.0 in low precision; the largest float below 1 keeps the stratum.
    return jnp.minimum(u, 1.0 - jnp.finfo(dtype).epsneg)


def _grid_side(n: int, k: int, where: str) -> int:
    side = max(1, round(n ** (1.0 / k)))
    for m in (side - 1, side, side + 1):
        if m >= 1 and m**k == n:
            return m
    raise ValueError(
        f"{where}: method 'grid' needs n = m**{k} points (a full tensor grid in {k} "
        f"unit-cube coordinates), got n={n}; e.g. n={side**k} or n={(side + 1) ** k}"
    )


def _grid(counts: Sequence[int], k: int, where: str) -> Array:
    dtype = _float_dtype()
    if k == 1:  # one 1-D grid of cell midpoints per block
        _, rank, size = _block_ranks(counts)
        return jnp.asarray((rank + 0.5) / size, dtype)[:, None]
    if len(counts) != 1:
        raise ValueError(f"{where}: method 'grid' on several pieces needs pieces of dim <= 1")
    m = _grid_side(counts[0], k, where)
    axis = (jnp.arange(m, dtype=dtype) + 0.5) / m
    mesh = jnp.meshgrid(*([axis] * k), indexing="ij")
    return jnp.stack([g.reshape(-1) for g in mesh], axis=-1)


def _unit_blocks(key, counts: Sequence[int], k: int, method: str, where: str) -> Array:
    """Unit-cube samples for consecutive blocks of rows, `(sum(counts), k)`.

    `"lhs"` and `"grid"` build each block on its own (a Latin hypercube / grid of the
    block's size); `"uniform"`, `"halton"` and `"sobol"` draw one sequence and cut it into
    consecutive blocks (consecutive runs of a low-discrepancy sequence stay well spread).
    """
    n = sum(counts)
    if k == 0:
        return jnp.zeros((n, 0), _float_dtype())
    if method == "uniform":
        return jax.random.uniform(key, (n, k), _float_dtype())
    if method == "lhs":
        return _lhs(key, counts, k)
    if method == "halton":
        return _halton(key, n, k)
    if method == "sobol":
        return _sobol(key, n, k)
    return _grid(counts, k, where)


def sample_unit_cube(
    key: PRNGKeyArray, n: int, dim: int, method: str = "uniform"
) -> Float[Array, "n dim"]:
    """Sample `n` points in the unit cube `[0, 1)^dim`.

    Args:
        key: PRNG key (may be traced under `jax.jit`; ignored by `"grid"`).
        n: number of points, a static Python int >= 1.
        dim: number of coordinates, a static Python int >= 0 (0 gives shape `(n, 0)`).
        method: one of `METHODS` (see the module docstring); all are jit-able.

    Returns:
        `(n, dim)` array of the default float dtype, entries in `[0, 1)` (`"grid"`: cell
        midpoints, `"lhs"`: one point per stratum `[j/n, (j+1)/n)` in every coordinate).

    Raises:
        ValueError: `n < 1`, `dim < 0`, an unknown method, or `"grid"` with `n` not a
            perfect `dim`-th power.
    """
    where = "sample_unit_cube"
    n = _check_n(n, where)
    method = _check_method(method, where)
    dim = operator.index(dim)
    if dim < 0:
        raise ValueError(f"{where}: dim must be >= 0, got {dim}")
    return _unit_blocks(key, (n,), dim, method, where)


# ---------------------------------------------------------------------------- domains


class _Piece(NamedTuple):
    """One boundary piece: its measure, unit-cube dimension and the map to (points, normals)."""

    measure: float
    unit_dim: int
    to_points: Callable[[Array], tuple[Array, Array]]


def _allocate(n: int, measures: Sequence[float]) -> list[int]:
    """Split `n` over pieces in proportion to `measures` (largest remainder, ties by order)."""
    total = math.fsum(measures)
    exact = [n * m / total for m in measures]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


class AbstractDomain(eqx.Module):
    """Interface of a domain; concrete domains are final classes below.

    Subclasses define `dim`, `volume`, `bounds`, `contains`, and the private maps from
    unit-cube samples to interior points and to boundary pieces; the samplers are shared.
    """

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of coordinates of a point."""

    @property
    @abc.abstractmethod
    def volume(self) -> float:
        """Lebesgue measure of the domain (length, area, volume, ...)."""

    @property
    @abc.abstractmethod
    def bounds(self) -> tuple[Float[Array, " dim"], Float[Array, " dim"]]:
        """`(lo, hi)`: the corners of the smallest axis-aligned box holding the domain."""

    @abc.abstractmethod
    def contains(self, x, *, atol: float = 0.0) -> Bool[Array, "*batch"]:
        """Whether points `x` of shape `(..., dim)` lie in the closed domain (within `atol`)."""

    @property
    @abc.abstractmethod
    def _interior_unit_dim(self) -> int: ...

    @abc.abstractmethod
    def _interior_map(self, u: Array) -> Array: ...

    @abc.abstractmethod
    def _boundary_pieces(self) -> tuple[_Piece, ...]: ...

    def sample_interior(
        self, key: PRNGKeyArray, n: int, method: str = "uniform"
    ) -> Float[Array, "n dim"]:
        """Sample `n` points in the domain.

        Args:
            key: PRNG key; may be traced (all methods are jit-able).
            n: static Python int >= 1.
            method: one of `METHODS`.

        Returns:
            `(n, dim)` points (default float dtype).

        Raises:
            ValueError: `n < 1`, unknown method, `"grid"` with `n` not a full grid.
        """
        where = f"{type(self).__name__}.sample_interior"
        n = _check_n(n, where)
        method = _check_method(method, where)
        k = self._interior_unit_dim
        if method == "grid":
            _grid_side(n, k, where)
        return self._interior_map(sample_unit_cube(key, n, k, method))

    def sample_boundary(
        self, key: PRNGKeyArray, n: int, method: str = "uniform"
    ) -> tuple[Float[Array, "n dim"], Float[Array, "n dim"]]:
        """Sample `n` boundary points with their outward unit normals.

        The points are split over the boundary pieces in proportion to their measure
        (largest remainder, so each piece's count is fixed) and returned grouped by piece.

        Args:
            key: PRNG key; may be traced.
            n: static Python int >= 1.
            method: one of `METHODS`; `"grid"` only where every piece is at most
                one-dimensional.

        Returns:
            `(points, normals)`, both `(n, dim)`; normals have unit length.

        Raises:
            ValueError: `n < 1`, unknown method, `"grid"` on higher-dimensional pieces.
        """
        where = f"{type(self).__name__}.sample_boundary"
        n = _check_n(n, where)
        method = _check_method(method, where)
        pieces = self._boundary_pieces()
        counts = _allocate(n, [p.measure for p in pieces])
        if method == "grid" and any(p.unit_dim > 1 for p, c in zip(pieces, counts) if c):
            raise ValueError(
                f"{where}: method 'grid' needs boundary pieces of dimension <= 1, but this "
                f"boundary has pieces of dimension {max(p.unit_dim for p in pieces)}; "
                f"use one of {', '.join(m for m in METHODS if m != 'grid')}"
            )
        active = [(p, c) for p, c in zip(pieces, counts) if c]
        k = max(p.unit_dim for p, _ in active)
        u = _unit_blocks(key, [c for _, c in active], k, method, where)
        points, normals = [], []
        offset = 0
        for piece, count in active:
            x, nrm = piece.to_points(u[offset : offset + count, : piece.unit_dim])
            points.append(x)
            normals.append(nrm)
            offset += count
        return jnp.concatenate(points, axis=0), jnp.concatenate(normals, axis=0)

    def __mul__(self, other):
        if isinstance(other, TimeInterval):
            return SpaceTime(self, other)
        return NotImplemented


# Box-like helpers shared by Box, Interval and TimeInterval (no concrete subclassing).


def _check_lo_hi(lo: tuple[float, ...], hi: tuple[float, ...], where: str) -> None:
    if len(lo) != len(hi):
        raise ValueError(
            f"{where}: lo and hi must have the same length, got {len(lo)} and {len(hi)}"
        )
    bad = [i for i, (a, b) in enumerate(zip(lo, hi)) if not a < b]
    if bad:
        raise ValueError(
            f"{where}: need lo < hi in every coordinate; violated at index {bad}: "
            f"lo={list(lo)}, hi={list(hi)}"
        )


def _box_map(lo, hi, u: Array) -> Array:
    lo_a = jnp.asarray(lo, u.dtype)
    return lo_a + (jnp.asarray(hi, u.dtype) - lo_a) * u


def _box_contains(lo, hi, x, atol: float, where: str) -> Array:
    x = _check_points(x, len(lo), where)
    lo_a = jnp.asarray(lo) - atol
    hi_a = jnp.asarray(hi) + atol
    return jnp.all((x >= lo_a) & (x <= hi_a), axis=-1)


def _box_face(lo, hi, axis: int, upper: bool) -> Callable[[Array], tuple[Array, Array]]:
    d = len(lo)
    others = [j for j in range(d) if j != axis]
    value = hi[axis] if upper else lo[axis]

    def to_points(u: Array) -> tuple[Array, Array]:
        m = u.shape[0]
        inner = _box_map([lo[j] for j in others], [hi[j] for j in others], u)
        cols = [None] * d
        for c, j in enumerate(others):
            cols[j] = inner[:, c]
        cols[axis] = jnp.full((m,), value, u.dtype)
        normal = jnp.zeros((m, d), u.dtype).at[:, axis].set(1.0 if upper else -1.0)
        return jnp.stack(cols, axis=-1), normal

    return to_points


def _box_pieces(lo, hi) -> tuple[_Piece, ...]:
    d = len(lo)
    sides = [hi[j] - lo[j] for j in range(d)]
    pieces = []
    for axis in range(d):
        # Measure of a face: product of the other side lengths (1 for the ends of an interval).
        area = math.prod(sides[j] for j in range(d) if j != axis)
        for upper in (False, True):
            pieces.append(_Piece(area, d - 1, _box_face(lo, hi, axis, upper)))
    return tuple(pieces)


def _box_grid(lo, hi, shape, where: str) -> Array:
    d = len(lo)
    if isinstance(shape, int | np.integer):
        shape = (int(shape),) * d
    shape = tuple(shape)
    if len(shape) != d or any(not isinstance(s, int | np.integer) or s < 2 for s in shape):
        raise ValueError(
            f"{where}: shape must be an int or {d} ints, each >= 2 (both ends are included), "
            f"got {shape!r}"
        )
    axes = [jnp.linspace(lo[j], hi[j], int(shape[j]), dtype=_float_dtype()) for j in range(d)]
    mesh = jnp.meshgrid(*axes, indexing="ij")
    return jnp.stack([g.reshape(-1) for g in mesh], axis=-1)


class Box(AbstractDomain):
    """Axis-aligned box `[lo_1, hi_1] x ... x [lo_d, hi_d]` in any dimension `d >= 1`.

    Boundary pieces are the `2d` faces, ordered `(axis 0 lo, axis 0 hi, axis 1 lo, ...)`,
    with normals `-e_i` on the `lo` face and `+e_i` on the `hi` face.

    Args:
        lo: sequence of `d` floats.
        hi: sequence of `d` floats, `hi[i] > lo[i]`.

    Raises:
        ValueError: mismatched lengths, `lo >= hi` anywhere, non-finite entries.
    """

    lo: tuple[float, ...] = eqx.field(static=True)
    hi: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, lo, hi):
        self.lo = _as_floats(lo, "lo", "Box")
        self.hi = _as_floats(hi, "hi", "Box")
        _check_lo_hi(self.lo, self.hi, "Box")

    @property
    def dim(self) -> int:
        return len(self.lo)

    @property
    def volume(self) -> float:
        return math.prod(b - a for a, b in zip(self.lo, self.hi))

    @property
    def bounds(self):
        dtype = _float_dtype()
        return jnp.asarray(self.lo, dtype), jnp.asarray(self.hi, dtype)

    def contains(self, x, *, atol: float = 0.0):
        return _box_contains(self.lo, self.hi, x, atol, "Box.contains")

    def grid(self, shape) -> Float[Array, "N dim"]:
        """Tensor grid including both ends: `shape` = int or `d` ints (each >= 2).

        Returns `(prod(shape), d)` points in `"ij"` order (the last axis varies fastest),
        so `values.reshape(shape)` recovers the grid layout.
        """
        return _box_grid(self.lo, self.hi, shape, "Box.grid")

    @property
    def _interior_unit_dim(self) -> int:
        return self.dim

    def _interior_map(self, u):
        return _box_map(self.lo, self.hi, u)

    def _boundary_pieces(self):
        return _box_pieces(self.lo, self.hi)


def Rectangle(lo, hi) -> Box:
    """A 2-D `Box`: `[lo[0], hi[0]] x [lo[1], hi[1]]`.

    Raises:
        ValueError: `lo`/`hi` not of length 2, or `lo >= hi`.
    """
    lo_t = _as_floats(lo, "lo", "Rectangle")
    hi_t = _as_floats(hi, "hi", "Rectangle")
    if len(lo_t) != 2 or len(hi_t) != 2:
        raise ValueError(
            f"Rectangle: lo and hi must have length 2, got {len(lo_t)} and {len(hi_t)}; "
            "use Box for other dimensions"
        )
    return Box(lo_t, hi_t)


class Interval(AbstractDomain):
    """Closed interval `[a, b]`, `dim = 1`; points have shape `(n, 1)`.

    The boundary is the two ends (normals -1 at `a`, +1 at `b`); `n` boundary points are
    split evenly, the extra one (odd `n`) going to `a`.

    Raises:
        ValueError: `a >= b` or non-finite ends.
    """

    a: float = eqx.field(static=True)
    b: float = eqx.field(static=True)

    def __init__(self, a, b):
        self.a = _as_float(a, "a", "Interval")
        self.b = _as_float(b, "b", "Interval")
        if not self.a < self.b:
            raise ValueError(f"Interval: need a < b, got a={self.a}, b={self.b}")

    dim = property(lambda self: 1)
    volume = property(lambda self: self.b - self.a)

    @property
    def bounds(self):
        dtype = _float_dtype()
        return jnp.asarray([self.a], dtype), jnp.asarray([self.b], dtype)

    def contains(self, x, *, atol: float = 0.0):
        return _box_contains((self.a,), (self.b,), x, atol, "Interval.contains")

    def grid(self, n: int) -> Float[Array, "n 1"]:
        """`n >= 2` equispaced points including both ends, shape `(n, 1)`."""
        return _box_grid((self.a,), (self.b,), n, "Interval.grid")

    _interior_unit_dim = property(lambda self: 1)

    def _interior_map(self, u):
        return _box_map((self.a,), (self.b,), u)

    def _boundary_pieces(self):
        return _box_pieces((self.a,), (self.b,))


class TimeInterval(AbstractDomain):
    """Time interval `[t0, t1]` (`dim = 1`), the time factor of a `SpaceTime`.

    On its own it behaves like `Interval(t0, t1)`.

    Raises:
        ValueError: `t0 >= t1` or non-finite ends.
    """

    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, t0, t1):
        self.t0 = _as_float(t0, "t0", "TimeInterval")
        self.t1 = _as_float(t1, "t1", "TimeInterval")
        if not self.t0 < self.t1:
            raise ValueError(f"TimeInterval: need t0 < t1, got t0={self.t0}, t1={self.t1}")

    dim = property(lambda self: 1)
    volume = property(lambda self: self.t1 - self.t0)

    @property
    def bounds(self):
        dtype = _float_dtype()
        return jnp.asarray([self.t0], dtype), jnp.asarray([self.t1], dtype)

    def contains(self, x, *, atol: float = 0.0):
        return _box_contains((self.t0,), (self.t1,), x, atol, "TimeInterval.contains")

    def grid(self, n: int) -> Float[Array, "n 1"]:
        """`n >= 2` equispaced times including both ends, shape `(n, 1)`."""
        return _box_grid((self.t0,), (self.t1,), n, "TimeInterval.grid")

    _interior_unit_dim = property(lambda self: 1)

    def _interior_map(self, u):
        return _box_map((self.t0,), (self.t1,), u)

    def _boundary_pieces(self):
        return _box_pieces((self.t0,), (self.t1,))


def _inverse_normal(u: Array) -> Array:
    eps = jnp.finfo(u.dtype).eps
    return jax.scipy.special.ndtri(jnp.clip(u, eps, 1.0 - eps))


def _sphere_unit_dim(d: int) -> int:
    return d - 1 if d <= 3 else d


def _sphere_direction(u: Array, d: int) -> Array:
    """Map unit-cube samples to unit vectors, uniformly on the sphere S^{d-1}."""
    if d == 2:
        phi = 2.0 * jnp.pi * u[:, 0]
        return jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=-1)
    if d == 3:
        z = 1.0 - 2.0 * u[:, 0]  # Archimedes: z uniform <=> area uniform
        phi = 2.0 * jnp.pi * u[:, 1]
        rho = jnp.sqrt(jnp.maximum(1.0 - z**2, 0.0))
        return jnp.stack([rho * jnp.cos(phi), rho * jnp.sin(phi), z], axis=-1)
    g = _inverse_normal(u)
    return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


class Ball(AbstractDomain):
    """Closed ball `|x - center| <= radius` in `d >= 2` dimensions (`Disk` for `d = 2`).

    The boundary is the sphere, normals `(x - center) / radius`. Unit-cube samples map
    with measure-preserving maps (module docstring), so `"halton"`, `"sobol"`, `"lhs"` and
    `"grid"` (an equal-area polar grid for the disk) stay uniform in volume; they need
    `d` unit coordinates for the interior (`d + 1` for `d >= 4`).

    Raises:
        ValueError: `radius <= 0`, `center` of length < 2, non-finite values.
    """

    center: tuple[float, ...] = eqx.field(static=True)
    radius: float = eqx.field(static=True)

    def __init__(self, center, radius):
        self.center = _as_floats(center, "center", "Ball")
        self.radius = _as_float(radius, "radius", "Ball")
        if len(self.center) < 2:
            raise ValueError(
                f"Ball: center must have at least 2 coordinates, got {len(self.center)}; "
                "use Interval in one dimension"
            )
        if not self.radius > 0:
            raise ValueError(f"Ball: radius must be > 0, got {self.radius}")

    @property
    def dim(self) -> int:
        return len(self.center)

    @property
    def volume(self) -> float:
        d = self.dim
        return math.pi ** (d / 2) / math.gamma(d / 2 + 1) * self.radius**d

    @property
    def surface(self) -> float:
        """Measure of the boundary sphere."""
        d = self.dim
        return 2 * math.pi ** (d / 2) / math.gamma(d / 2) * self.radius ** (d - 1)

    @property
    def bounds(self):
        c = jnp.asarray(self.center, _float_dtype())
        return c - self.radius, c + self.radius

    def contains(self, x, *, atol: float = 0.0):
        x = _check_points(x, self.dim, "Ball.contains")
        r2 = jnp.sum((x - jnp.asarray(self.center)) ** 2, axis=-1)
        return r2 <= (self.radius + atol) ** 2

    @property
    def _interior_unit_dim(self) -> int:
        return _sphere_unit_dim(self.dim) + 1

    def _interior_map(self, u):
        d = self.dim
        r = self.radius * u[:, 0] ** (1.0 / d)  # P(|x| <= r) = (r / R)^d
        direction = _sphere_direction(u[:, 1:], d)
        return jnp.asarray(self.center, u.dtype) + r[:, None] * direction

    def _boundary_pieces(self):
        d = self.dim

        def to_points(u):
            direction = _sphere_direction(u, d)
            return jnp.asarray(self.center, u.dtype) + self.radius * direction, direction

        return (_Piece(self.surface, _sphere_unit_dim(d), to_points),)


def Disk(center, radius) -> Ball:
    """The 2-D `Ball`: `|x - center| <= radius`, `center` of length 2.

    Interior samples use `r = R sqrt(u1)`, `phi = 2 pi u2`; boundary samples `phi = 2 pi u`.

    Raises:
        ValueError: `center` not of length 2, `radius <= 0`.
    """
    c = _as_floats(center, "center", "Disk")
    if len(c) != 2:
        raise ValueError(f"Disk: center must have length 2, got {len(c)}; use Ball in d dims")
    return Ball(c, radius)


class SpaceTime(AbstractDomain):
    """Product `space x [t0, t1]`; points are `(x..., t)` with time last.

    `sample_boundary` samples the lateral boundary `boundary(space) x [t0, t1]` (normals
    `(n_x, 0)`, pieces weighted by `measure(piece) * (t1 - t0)`); `sample_initial` the
    slice `t = t0`. Also written `space * time` or `product(space, time)`.

    Raises:
        TypeError: `time` not a `TimeInterval`, or `space` a `TimeInterval`/`SpaceTime`.
    """

    space: AbstractDomain
    time: TimeInterval

    def __init__(self, space: AbstractDomain, time: TimeInterval):
        if not isinstance(time, TimeInterval):
            raise TypeError(f"SpaceTime: time must be a TimeInterval, got {type(time).__name__}")
        if not isinstance(space, AbstractDomain) or isinstance(space, SpaceTime | TimeInterval):
            raise TypeError(
                "SpaceTime: space must be a spatial domain (Interval, Box, Ball, ...), "
                f"got {type(space).__name__}"
            )
        self.space = space
        self.time = time

    @property
    def dim(self) -> int:
        return self.space.dim + 1

    @property
    def volume(self) -> float:
        return self.space.volume * self.time.volume

    @property
    def bounds(self):
        lo_x, hi_x = self.space.bounds
        lo_t, hi_t = self.time.bounds
        return jnp.concatenate([lo_x, lo_t]), jnp.concatenate([hi_x, hi_t])

    def contains(self, x, *, atol: float = 0.0):
        x = _check_points(x, self.dim, "SpaceTime.contains")
        return self.space.contains(x[..., :-1], atol=atol) & self.time.contains(
            x[..., -1:], atol=atol
        )

    def sample_initial(
        self, key: PRNGKeyArray, n: int, method: str = "uniform"
    ) -> Float[Array, "n dim"]:
        """Sample `n` points of the initial slice: `space` interior points with `t = t0`.

        Same arguments, errors and jit-ability as `sample_interior`; returns `(n, dim)`.
        """
        x = self.space.sample_interior(key, n, method)
        t = jnp.full((x.shape[0], 1), self.time.t0, x.dtype)
        return jnp.concatenate([x, t], axis=-1)

    def grid(self, shape) -> Float[Array, "N dim"]:
        """Tensor grid including both ends over a box-shaped space and time.

        `shape` is an int or `dim` ints (space axes, then time), each >= 2; points in
        `"ij"` order, so `values.reshape(shape)` recovers the layout (time fastest).

        Raises:
            TypeError: the space is not a `Box` or `Interval`.
        """
        if not isinstance(self.space, Box | Interval):
            raise TypeError(
                f"SpaceTime.grid: needs a Box or Interval space, got {type(self.space).__name__}"
            )
        lo_x, hi_x = (
            (self.space.lo, self.space.hi)
            if isinstance(self.space, Box)
            else ((self.space.a,), (self.space.b,))
        )
        return _box_grid(lo_x + (self.time.t0,), hi_x + (self.time.t1,), shape, "SpaceTime.grid")

    @property
    def _interior_unit_dim(self) -> int:
        return self.space._interior_unit_dim + 1

    def _interior_map(self, u):
        x = self.space._interior_map(u[:, :-1])
        t = _box_map((self.time.t0,), (self.time.t1,), u[:, -1:])
        return jnp.concatenate([x, t], axis=-1)

    def _boundary_pieces(self):
        duration = self.time.volume
        return tuple(
            _Piece(p.measure * duration, p.unit_dim + 1, self._lateral(p))
            for p in self.space._boundary_pieces()
        )

    def _lateral(self, piece: _Piece) -> Callable[[Array], tuple[Array, Array]]:
        def to_points(u):
            x, normal = piece.to_points(u[:, :-1])
            t = _box_map((self.time.t0,), (self.time.t1,), u[:, -1:])
            zero = jnp.zeros_like(t)
            return jnp.concatenate([x, t], axis=-1), jnp.concatenate([normal, zero], axis=-1)

        return to_points


def product(space: AbstractDomain, time: TimeInterval) -> SpaceTime:
    """`SpaceTime(space, time)`: points `(x..., t)` with time last."""
    return SpaceTime(space, time)
