"""The Hilbert space of N spin-1/2 sites, optionally restricted to one magnetisation sector.

Conventions (used across `sciml.nqs`):

- A configuration is an array `s` of shape `(N,)` with entries `+1` (spin up)
  or `−1` (spin down): the eigenvalues of σᶻ on each site. Configurations are
  stored as floating-point arrays (the model's dtype), so that models take
  them directly.
- The exact-diagonalisation basis orders the 2ᴺ configurations by the
  integer code `Σ_i b_i 2^(N−1−i)` with bit `b_i = (1 − s_i)/2`: site 0 is the
  most significant bit, code 0 is all spins up.
- A sector fixes the magnetisation `M = Σ_i s_i` (in units of σᶻ; `M = 0`
  is the zero-magnetisation sector of an even chain, `S^z_total = M/2`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SpinHilbert"]


class SpinHilbert(eqx.Module):
    """N spin-1/2 sites; with `magnetization=M` only configurations with `Σ s_i = M`.

    Args:
        n_sites: number of sites N (1 to 63).
        magnetization: `None` (all 2ᴺ configurations) or the sector's
            `M = Σ s_i`: an integer in `[−N, N]` with the parity of N.

    Raises:
        ValueError: `n_sites` or `magnetization` out of range.
    """

    n_sites: int = eqx.field(static=True)
    magnetization: int | None = eqx.field(static=True)

    def __init__(self, n_sites: int, magnetization: int | None = None):
        if not isinstance(n_sites, int | np.integer) or not 1 <= n_sites <= 63:
            raise ValueError(f"SpinHilbert: n_sites must be an integer in [1, 63], got {n_sites!r}")
        n_sites = int(n_sites)
        if magnetization is not None:
            if not isinstance(magnetization, int | np.integer):
                raise ValueError(
                    f"SpinHilbert: magnetization must be an integer or None, got {magnetization!r}"
                )
            m = int(magnetization)
            if abs(m) > n_sites or (m - n_sites) % 2:
                raise ValueError(
                    f"SpinHilbert: magnetization {m} is impossible for {n_sites} sites: allowed "
                    f"are -{n_sites}, -{n_sites - 2}, ..., {n_sites} (sum of N values +-1)"
                )
            magnetization = m
        self.n_sites, self.magnetization = n_sites, magnetization

    @property
    def constrained(self) -> bool:
        """Whether the space is one magnetisation sector."""
        return self.magnetization is not None

    @property
    def n_states(self) -> int:
        """Number of configurations: 2ᴺ, or `C(N, n_down)` in a sector."""
        if self.magnetization is None:
            return 2**self.n_sites
        return math.comb(self.n_sites, self.n_down)

    @property
    def n_down(self) -> int:
        """Number of down spins in the sector (`(N − M)/2`)."""
        if self.magnetization is None:
            raise ValueError("SpinHilbert: n_down is defined only for a magnetisation sector")
        return (self.n_sites - self.magnetization) // 2

    def all_codes(self) -> np.ndarray:
        """Integer codes of every configuration, increasing (numpy int64, shape `(n_states,)`)."""
        self._check_enumerable()
        codes = np.arange(2**self.n_sites, dtype=np.int64)
        if self.magnetization is not None:
            n_down = np.zeros_like(codes)
            for i in range(self.n_sites):
                n_down += (codes >> i) & 1
            codes = codes[n_down == self.n_down]
        return codes

    def codes_to_states(self, codes, dtype=None) -> np.ndarray:
        """Configurations of integer codes: shape `codes.shape + (N,)`, entries ±1 (numpy)."""
        codes = np.asarray(codes, dtype=np.int64)
        shifts = np.arange(self.n_sites - 1, -1, -1, dtype=np.int64)
        bits = (codes[..., None] >> shifts) & 1
        return (1 - 2 * bits).astype(dtype or jnp.result_type(float))

    def states_to_codes(self, states) -> jax.Array:
        """Integer codes of configurations `(..., N)` (jit-able; int64 under x64, else int32 up to N = 31)."""
        states = jnp.asarray(states)
        self.check(states)
        n = self.n_sites
        if n > 31 and not jax.config.jax_enable_x64:
            raise ValueError(f"SpinHilbert: codes of {n} sites need 64-bit integers (enable x64)")
        int_t = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        bits = ((1 - states) // 2).astype(int_t)
        weights = jnp.asarray(2 ** np.arange(n - 1, -1, -1), int_t)
        return jnp.sum(bits * weights, axis=-1)

    def all_states(self, dtype=None) -> np.ndarray:
        """Every configuration in the ED basis order: shape `(n_states, N)` (numpy)."""
        return self.codes_to_states(self.all_codes(), dtype)

    def random_states(self, key, n: int, dtype=None) -> jax.Array:
        """`n` uniformly random configurations of the space (in the sector if constrained)."""
        dtype = dtype or jnp.result_type(float)
        if self.magnetization is None:
            return jax.random.rademacher(key, (n, self.n_sites), dtype)
        base = jnp.where(jnp.arange(self.n_sites) < self.n_down, -1, 1).astype(dtype)
        keys = jax.random.split(key, n)
        return jax.vmap(lambda k: jax.random.permutation(k, base))(keys)

    def is_valid(self, states) -> jax.Array:
        """Whether each configuration `(..., N)` has entries ±1 (and lies in the sector)."""
        states = jnp.asarray(states)
        ok = jnp.all((states == 1) | (states == -1), axis=-1)
        if self.magnetization is not None:
            ok = ok & (jnp.sum(states, axis=-1) == self.magnetization)
        return ok

    def check(self, states) -> None:
        """Raise `ValueError` unless `states` has shape `(..., N)` (a trace-time check)."""
        shape = jnp.shape(states)
        if len(shape) < 1 or shape[-1] != self.n_sites:
            raise ValueError(
                f"SpinHilbert: configurations must have shape (..., {self.n_sites}), got {shape}"
            )

    def _check_enumerable(self) -> None:
        if self.n_sites > 30:
            raise ValueError(
                f"SpinHilbert: enumerating {self.n_sites} sites is out of reach (2^{self.n_sites} "
                "states); exact methods go to about 30 sites"
            )
