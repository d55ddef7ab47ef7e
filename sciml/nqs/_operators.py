"""Spin Hamiltonians as pytrees with fixed-width connected elements.

Conventions (see also `sciml.nqs._hilbert`):

- Pauli matrices σˣ = [[0, 1], [1, 0]], σʸ = [[0, −i], [i, 0]], σᶻ = diag(1, −1)
  in the basis (↑, ↓): spin up (`s_i = +1`) is the first basis vector, so
  σᶻ|s⟩ = s|s⟩. Couplings multiply Pauli matrices, not spin-½ operators
  (S = σ/2): the Heisenberg bond σ⃗_i·σ⃗_j = 4 S_i·S_j.
- Matrix elements are rows of H: `get_conn_padded(s)` returns the
  configurations `s'` with `H[s, s'] = ⟨s|H|s'⟩ ≠ 0` and those elements, so
  the local energy is `E_loc(s) = Σ_{s'} H[s, s'] ψ(s')/ψ(s)`.
- The number of connected elements is the same for every configuration
  (`max_conn`, M). Unused slots hold `s' = s` with element 0: a valid
  configuration, so ψ(s') is finite and the slot adds exactly 0 (NetKet #477
  for why a fixed width matters: no recompilation).
- Every slot flips a fixed set of sites (slot 0 is the diagonal); whether the
  slot is used depends on the configuration (an exchange needs s_i ≠ s_j).
- Coefficients (h, J, ...) are array leaves of the pytree: a jitted function
  taking the operator compiles once for all their values.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from ._hilbert import SpinHilbert
from ._lattice import Lattice

__all__ = ["AbstractOperator", "Ising", "Heisenberg", "J1J2", "PauliStrings"]

# Largest space `to_dense` builds (a 2¹⁴ × 2¹⁴ float64 matrix is 2 GiB).
_DENSE_LIMIT = 2**14
# States per block in `to_sparse` (bounds its memory to a few hundred MB for N = 20).
_SPARSE_CHUNK = 2**15


class AbstractOperator(eqx.Module):
    """An operator on a `SpinHilbert` with a fixed number of connected elements per row.

    Subclasses define which sites each of the `M` slots flips (`_flip_masks`)
    and the matrix element of each slot (`_elements`); this class turns them
    into `get_conn_padded` (jit/vmap-able, one configuration) and `to_sparse`
    (vectorised numpy over all states, in float64/complex128 whatever the JAX
    precision).

    Attributes:
        hilbert: the space the operator acts on.
    """

    hilbert: eqx.AbstractVar[SpinHilbert]

    @property
    @abc.abstractmethod
    def dtype(self):
        """Dtype of the matrix elements at the coefficients' precision (real or complex)."""

    @abc.abstractmethod
    def _flip_masks(self) -> np.ndarray:
        """Which sites each slot flips: bool `(M, N)`, row 0 all False (the diagonal)."""

    @abc.abstractmethod
    def _elements(self, s, xp, dtype):
        """Slot usage and matrix elements for configurations `s` `(..., N)` of ±1.

        `xp` is `numpy` or `jax.numpy`; returns `(active (..., M) bool, mels (..., M) dtype)`.
        An inactive slot stands for `s' = s` with element 0 whatever `mels` holds there.
        """

    @property
    def max_conn(self) -> int:
        """The number M of connected elements per configuration (including the diagonal)."""
        return int(self._flip_masks().shape[0])

    @property
    def is_complex(self) -> bool:
        """Whether the matrix elements are complex."""
        return bool(jnp.issubdtype(self.dtype, jnp.complexfloating))

    def _mel_dtype(self, s_dtype):
        # The elements follow the configuration's precision (float32 models get float32 local
        # energies); integer configurations fall back to the coefficients' precision.
        if jnp.issubdtype(s_dtype, jnp.floating):
            real = jnp.dtype(s_dtype)
        else:
            real = jnp.finfo(self.dtype).dtype
        if self.is_complex:
            return jnp.result_type(real, jnp.complex64)
        return real

    def get_conn_padded(self, s):
        """Connected configurations and matrix elements of ONE configuration (jit/vmap-able).

        Args:
            s: a configuration, shape `(N,)`, entries ±1 (any float dtype).

        Returns:
            `(s_primes, mels)`: `s_primes` of shape `(M, N)` (dtype of `s`) and
            `mels` of shape `(M,)` with `mels[m] = ⟨s|H|s_primes[m]⟩`; slot 0 is
            the diagonal; unused slots hold `s' = s` and 0. Real elements take
            the precision of `s`, complex ones its complex counterpart. On a
            magnetisation sector, slots that would leave the sector are unused
            (`to_sparse` raises if such an element is nonzero).

        Raises:
            ValueError: `s` is not of shape `(N,)` (batch with `jax.vmap`).
        """
        s = jnp.asarray(s)
        n = self.hilbert.n_sites
        if s.shape != (n,):
            raise ValueError(
                f"{type(self).__name__}.get_conn_padded: expected one configuration of shape "
                f"({n},), got {s.shape}; batch with jax.vmap"
            )
        masks = self._flip_masks()
        active, mels = self._elements(s, jnp, self._mel_dtype(s.dtype))
        if self.hilbert.constrained:
            active = active & (jnp.sum(jnp.where(masks, s, 0), axis=-1) == 0)
        s_primes = jnp.where(masks & active[:, None], -s, s)
        return s_primes, jnp.where(active, mels, 0)

    def to_sparse(self) -> sp.csr_matrix:
        """The matrix in the Hilbert space's ED basis (`hilbert.all_codes()` order).

        Built block-wise with numpy from the same connected elements as
        `get_conn_padded`, in float64 (complex128 for complex operators)
        whatever the JAX precision; `H[i, j] = ⟨s_i|H|s_j⟩`. N = 20 (2²⁰ states)
        takes a few seconds. The coefficients are used as stored: an operator
        built without x64 holds float32 coefficients (0.2 becomes 0.2000000030),
        so build it under x64 for ED to 1e-10.

        Returns:
            `scipy.sparse.csr_matrix` of shape `(n_states, n_states)`.

        Raises:
            ValueError: the operator has a nonzero element leaving the
                magnetisation sector of a constrained space, or the space is too
                large to enumerate.
        """
        hilbert = self.hilbert
        codes = hilbert.all_codes()
        n_states, n = codes.size, hilbert.n_sites
        masks = self._flip_masks()
        weights = np.left_shift(np.int64(1), np.arange(n - 1, -1, -1, dtype=np.int64))
        mask_codes = (masks.astype(np.int64) * weights).sum(axis=1)
        dtype = np.complex128 if self.is_complex else np.float64
        rows, cols, vals = [], [], []
        for start in range(0, n_states, _SPARSE_CHUNK):
            block = codes[start : start + _SPARSE_CHUNK]
            states = hilbert.codes_to_states(block, np.float64)
            active, mels = self._elements(states, np, dtype)
            mels = np.where(active, mels, 0)
            keep = mels != 0
            row = np.broadcast_to(np.arange(start, start + block.size)[:, None], keep.shape)[keep]
            new = (block[:, None] ^ mask_codes[None, :])[keep]
            if hilbert.constrained:
                col = np.minimum(np.searchsorted(codes, new), n_states - 1)
                lost = codes[col] != new
                if np.any(lost):
                    bad = hilbert.codes_to_states(new[lost][:1], np.int64)[0]
                    raise ValueError(
                        f"{type(self).__name__}.to_sparse: the operator does not conserve the "
                        f"magnetisation {hilbert.magnetization}: it connects a configuration to "
                        f"{bad.tolist()} outside the sector; use an unconstrained SpinHilbert"
                    )
            else:
                col = new
            rows.append(row)
            cols.append(col)
            vals.append(mels[keep])
        matrix = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_states, n_states),
            dtype=dtype,
        )
        return matrix.tocsr()

    def to_dense(self) -> np.ndarray:
        """The matrix as a dense numpy array (small spaces only, up to 2¹⁴ states).

        Raises:
            ValueError: more than 2¹⁴ states (use `to_sparse`).
        """
        if self.hilbert.n_states > _DENSE_LIMIT:
            raise ValueError(
                f"{type(self).__name__}.to_dense: {self.hilbert.n_states} states is too many "
                f"for a dense matrix (limit {_DENSE_LIMIT}); use to_sparse()"
            )
        return self.to_sparse().toarray()


# ----------------------------------------------------------------------------------------------
# helpers


def _real_coefficient(owner: str, name: str, value) -> jnp.ndarray:
    """A real scalar coefficient as a non-weakly-typed float array (a pytree leaf)."""
    arr = jnp.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{owner}: {name} must be a scalar, got shape {arr.shape}")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"{owner}: {name} must be real (the operator is Hermitian), got {value!r}")
    dtype = arr.dtype if jnp.issubdtype(arr.dtype, jnp.floating) else jnp.result_type(float)
    return jnp.asarray(arr, dtype=dtype)


def _check_sizes(owner: str, hilbert, lattice) -> None:
    if not isinstance(hilbert, SpinHilbert):
        raise TypeError(f"{owner}: hilbert must be a SpinHilbert, got {type(hilbert).__name__}")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"{owner}: lattice must be a Lattice, got {type(lattice).__name__}")
    if lattice.n_sites != hilbert.n_sites:
        raise ValueError(
            f"{owner}: the lattice has {lattice.n_sites} sites but the Hilbert space has "
            f"{hilbert.n_sites}; they must match"
        )


def _marshall_signs(owner: str, lattice: Lattice, bonds: np.ndarray, marshall: bool) -> np.ndarray:
    """−1 for bonds joining the two sublattices when the Marshall rotation is on, else +1."""
    if not marshall:
        return np.ones(len(bonds))
    if not lattice.bipartite:
        raise ValueError(
            f"{owner}: marshall_sign=True needs a bipartite lattice, got a periodic "
            f"{lattice.name} of odd length {lattice.extent}; use marshall_sign=False"
        )
    sub = lattice.sublattice()
    return np.where(sub[bonds[:, 0]] != sub[bonds[:, 1]], -1.0, 1.0)


def _bond_masks(n: int, bonds: np.ndarray) -> np.ndarray:
    masks = np.zeros((len(bonds), n), dtype=bool)
    masks[np.arange(len(bonds)), bonds[:, 0]] = True
    masks[np.arange(len(bonds)), bonds[:, 1]] = True
    return masks


def _zz(s, xp, bonds: np.ndarray):
    """Σ_b s_i s_j over `bonds` for configurations `(..., N)`."""
    if len(bonds) == 0:
        return xp.zeros(s.shape[:-1], s.dtype)
    return xp.sum(s[..., bonds[:, 0]] * s[..., bonds[:, 1]], axis=-1)


def _exchange_elements(s, xp, dtype, groups):
    """Elements of Σ_g J_g Σ_{b∈g} σ⃗_i·σ⃗_j: slot 0 diagonal, then one exchange slot per bond.

    `groups` holds `(bonds (n_b, 2), J_g, signs (n_b,))`; `signs` are the Marshall signs of
    the exchange terms. On ↑↓ the exchange σˣσˣ + σʸσʸ gives 2 (σʸσʸ|↑↓⟩ = +|↓↑⟩).
    """
    diag = 0
    active, mels = [], []
    for bonds, coupling, signs in groups:
        j = xp.asarray(coupling, dtype=dtype)
        diag = diag + j * _zz(s, xp, bonds).astype(dtype)
        active.append(s[..., bonds[:, 0]] != s[..., bonds[:, 1]])
        mels.append(xp.broadcast_to(2 * j * xp.asarray(signs, dtype), s.shape[:-1] + signs.shape))
    batch = s.shape[:-1]
    active = xp.concatenate([xp.ones(batch + (1,), bool)] + active, axis=-1)
    mels = xp.concatenate([xp.broadcast_to(diag, batch)[..., None]] + mels, axis=-1)
    return active, mels


# ----------------------------------------------------------------------------------------------
# operators


class Ising(AbstractOperator):
    """Transverse-field Ising model H = −J Σ_⟨ij⟩ σᶻ_i σᶻ_j − h Σ_i σˣ_i.

    Ferromagnetic for J > 0 (the issue's convention; NetKet's `Ising(h, J)`
    is `−hΣσˣ + JΣσᶻσᶻ`, antiferromagnetic for J > 0, with the same spectrum
    on bipartite lattices). Bonds are the lattice's nearest neighbours.
    Connected elements: slot 0 is the diagonal `−J Σ s_i s_j`, slot `1 + i`
    flips site `i` with element `−h`; M = N + 1.

    Args:
        hilbert: an unconstrained `SpinHilbert` (σˣ changes the magnetisation).
        lattice: a `Lattice` with as many sites.
        h: transverse field (real scalar, a pytree leaf).
        J: coupling (real scalar, a pytree leaf).

    Raises:
        ValueError: a constrained Hilbert space, mismatched sizes, non-scalar or
            complex coefficients.

    Example:
        >>> H = Ising(SpinHilbert(20), chain(20), h=1.0)
        >>> s_primes, mels = H.get_conn_padded(jnp.ones(20))  # (21, 20), (21,)
    """

    hilbert: SpinHilbert
    lattice: Lattice
    h: jnp.ndarray
    J: jnp.ndarray

    def __init__(self, hilbert: SpinHilbert, lattice: Lattice, h, J=1.0):
        _check_sizes("Ising", hilbert, lattice)
        if hilbert.constrained:
            raise ValueError(
                f"Ising: the transverse field σˣ changes the magnetisation, so it cannot act on "
                f"the sector magnetization={hilbert.magnetization}; use SpinHilbert"
                f"({hilbert.n_sites})"
            )
        self.hilbert, self.lattice = hilbert, lattice
        self.h = _real_coefficient("Ising", "h", h)
        self.J = _real_coefficient("Ising", "J", J)

    @property
    def dtype(self):
        """Real: `result_type(h, J)`."""
        return jnp.result_type(self.h, self.J)

    def _flip_masks(self) -> np.ndarray:
        n = self.hilbert.n_sites
        return np.concatenate([np.zeros((1, n), bool), np.eye(n, dtype=bool)])

    def _elements(self, s, xp, dtype):
        j = xp.asarray(self.J, dtype=dtype)
        h = xp.asarray(self.h, dtype=dtype)
        batch = s.shape[:-1]
        diag = -j * _zz(s, xp, self.lattice.bonds(1)).astype(dtype)
        flips = xp.broadcast_to(-h, batch + (self.hilbert.n_sites,))
        mels = xp.concatenate([diag[..., None], flips], axis=-1)
        return xp.ones(mels.shape, bool), mels


class Heisenberg(AbstractOperator):
    """Heisenberg model in Pauli units, H = J Σ_⟨ij⟩ σ⃗_i·σ⃗_j = 4J Σ_⟨ij⟩ S_i·S_j.

    One bond in the basis (↑↑, ↑↓, ↓↑, ↓↓) has diagonal (1, −1, −1, 1) and
    ⟨↑↓|σ⃗_i·σ⃗_j|↓↑⟩ = 2. Connected elements: slot 0 is the diagonal
    `J Σ s_i s_j`; slot `1 + b` exchanges the spins of bond `b` with element
    `2J` when they differ (else it is unused: `s' = s`, 0); M = 1 + n_bonds.

    With `marshall_sign=True` the operator is conjugated by Π_{i∈A} σᶻ_i
    (sublattice A = `lattice.sublattice() == 0`): the exchange elements of
    bonds joining the two sublattices change sign (−2J), the diagonal does
    not. The spectrum is unchanged; for J > 0 the rotated H is stoquastic, so
    its ground state has amplitudes of one sign (ψ gains (−1)^{#↑ on A}).

    Args:
        hilbert: a `SpinHilbert`, full or a magnetisation sector (H conserves it).
        lattice: a `Lattice` with as many sites; its nearest-neighbour bonds are used.
        J: coupling (real scalar, a pytree leaf).
        marshall_sign: apply the Marshall sign rotation (needs a bipartite lattice).

    Raises:
        ValueError: mismatched sizes, `marshall_sign=True` on a non-bipartite
            lattice, non-scalar or complex J.
    """

    hilbert: SpinHilbert
    lattice: Lattice
    J: jnp.ndarray
    marshall_sign: bool = eqx.field(static=True)

    def __init__(self, hilbert: SpinHilbert, lattice: Lattice, J=1.0, marshall_sign: bool = False):
        _check_sizes("Heisenberg", hilbert, lattice)
        marshall_sign = bool(marshall_sign)
        _marshall_signs("Heisenberg", lattice, lattice.bonds(1), marshall_sign)
        self.hilbert, self.lattice, self.marshall_sign = hilbert, lattice, marshall_sign
        self.J = _real_coefficient("Heisenberg", "J", J)

    @property
    def dtype(self):
        """Real: the dtype of J."""
        return jnp.result_type(self.J)

    def _flip_masks(self) -> np.ndarray:
        n = self.hilbert.n_sites
        return np.concatenate([np.zeros((1, n), bool), _bond_masks(n, self.lattice.bonds(1))])

    def _elements(self, s, xp, dtype):
        bonds = self.lattice.bonds(1)
        signs = _marshall_signs("Heisenberg", self.lattice, bonds, self.marshall_sign)
        return _exchange_elements(s, xp, dtype, [(bonds, self.J, signs)])


class J1J2(AbstractOperator):
    """J1-J2 Heisenberg model, H = J1 Σ_⟨ij⟩ σ⃗_i·σ⃗_j + J2 Σ_⟨⟨ij⟩⟩ σ⃗_i·σ⃗_j (Pauli units).

    J1 acts on the lattice's nearest-neighbour bonds (`bonds(1)`), J2 on the
    next-nearest ones (`bonds(2)`: i, i+2 on a chain, the diagonals on a
    square lattice). Connected elements as in `Heisenberg`: slot 0 is the
    diagonal, then one exchange slot per J1 bond, then one per J2 bond;
    M = 1 + n_J1_bonds + n_J2_bonds.

    `marshall_sign=True` conjugates by Π_{i∈A} σᶻ_i as in `Heisenberg`: the
    exchange elements of bonds joining the sublattices (all J1 bonds; no J2
    bond on chains and square lattices) change sign. The spectrum is
    unchanged, but the J2 exchange keeps a positive element, so the rotated H
    is not stoquastic for J2 > 0 and its ground state is not sign-free (the
    Marshall rule is only approximate there).

    Args:
        hilbert: a `SpinHilbert`, full or a magnetisation sector.
        lattice: a `Lattice` with as many sites.
        j1, j2: couplings (real scalars, pytree leaves).
        marshall_sign: apply the Marshall sign rotation (needs a bipartite lattice).

    Raises:
        ValueError: mismatched sizes, `marshall_sign=True` on a non-bipartite
            lattice, non-scalar or complex couplings.
    """

    hilbert: SpinHilbert
    lattice: Lattice
    j1: jnp.ndarray
    j2: jnp.ndarray
    marshall_sign: bool = eqx.field(static=True)

    def __init__(self, hilbert: SpinHilbert, lattice: Lattice, j1, j2, marshall_sign=False):
        _check_sizes("J1J2", hilbert, lattice)
        marshall_sign = bool(marshall_sign)
        _marshall_signs("J1J2", lattice, lattice.bonds(1), marshall_sign)
        self.hilbert, self.lattice, self.marshall_sign = hilbert, lattice, marshall_sign
        self.j1 = _real_coefficient("J1J2", "j1", j1)
        self.j2 = _real_coefficient("J1J2", "j2", j2)

    @property
    def dtype(self):
        """Real: `result_type(j1, j2)`."""
        return jnp.result_type(self.j1, self.j2)

    def _flip_masks(self) -> np.ndarray:
        n = self.hilbert.n_sites
        return np.concatenate(
            [
                np.zeros((1, n), bool),
                _bond_masks(n, self.lattice.bonds(1)),
                _bond_masks(n, self.lattice.bonds(2)),
            ]
        )

    def _elements(self, s, xp, dtype):
        groups = []
        for order, coupling in ((1, self.j1), (2, self.j2)):
            bonds = self.lattice.bonds(order)
            signs = _marshall_signs("J1J2", self.lattice, bonds, self.marshall_sign)
            groups.append((bonds, coupling, signs))
        return _exchange_elements(s, xp, dtype, groups)


_PAULI_LETTERS = "IXYZ"


class PauliStrings(AbstractOperator):
    """A sum of Pauli strings, H = Σ_k c_k P_k with P_k = ⊗_i σ^{a_ki} (a ∈ I, X, Y, Z).

    A string such as `"XXIZ"` names the Pauli matrix on each site, site 0
    first. Each string connects s to one configuration s' with a phase: on row s
    its element is ⟨s|P|s'⟩ with s' = s flipped on the X and Y sites and
    ⟨s|P|s'⟩ = Π_{Z sites} s_i · Π_{Y sites} (−i s_i) (⟨↑|σʸ|↓⟩ = −i,
    ⟨↓|σʸ|↑⟩ = i). Strings flipping the same sites share one slot (their
    elements add); slot 0 holds all diagonal strings (I, Z only) and is always
    present, so M = 1 + the number of distinct off-diagonal flip patterns.

    Real coefficients give a Hermitian H. Elements are complex when a string
    has an odd number of Y (or a coefficient is complex), real otherwise.

    On a magnetisation sector, strings flipping an odd number of sites are
    refused; for the others, `get_conn_padded` leaves flips out of the sector
    unused, and `to_sparse` raises if any such element is nonzero (e.g. XX
    alone; XX + YY conserves the magnetisation).

    Args:
        hilbert: a `SpinHilbert`.
        strings: a sequence of K strings of length N over the letters `IXYZ`.
        coefficients: K coefficients (an array `(K,)`, a pytree leaf).

    Raises:
        TypeError: `strings` is a single string.
        ValueError: empty `strings`, a string of the wrong length or with other
            letters, a coefficient count different from K, an odd-flip string on
            a constrained space.

    Example:
        >>> H = PauliStrings(SpinHilbert(2), ["XX", "YY", "ZZ"], [1.0, 1.0, 1.0])  # σ⃗·σ⃗
    """

    hilbert: SpinHilbert
    strings: tuple[str, ...] = eqx.field(static=True)
    coefficients: jnp.ndarray
    _slot_masks: tuple = eqx.field(static=True)  # (M,) tuples of N bools
    _slot_of: tuple = eqx.field(static=True)  # slot index of each string
    _complex_structure: bool = eqx.field(static=True)

    def __init__(self, hilbert: SpinHilbert, strings: Sequence[str], coefficients):
        if not isinstance(hilbert, SpinHilbert):
            raise TypeError(
                f"PauliStrings: hilbert must be a SpinHilbert, got {type(hilbert).__name__}"
            )
        if isinstance(strings, str):
            raise TypeError(
                f"PauliStrings: strings must be a sequence of strings, got the single string "
                f"{strings!r}; write [{strings!r}]"
            )
        strings = tuple(strings)
        n = hilbert.n_sites
        if not strings:
            raise ValueError("PauliStrings: strings is empty; give at least one Pauli string")
        for p in strings:
            if not isinstance(p, str) or len(p) != n:
                raise ValueError(
                    f"PauliStrings: each string must have one letter per site ({n}), got {p!r}"
                )
            bad = sorted(set(p) - set(_PAULI_LETTERS))
            if bad:
                raise ValueError(
                    f"PauliStrings: string {p!r} has letters {bad}; allowed are I, X, Y, Z"
                )
        coefficients = jnp.asarray(coefficients)
        if coefficients.shape != (len(strings),):
            raise ValueError(
                f"PauliStrings: expected {len(strings)} coefficients (one per string), got shape "
                f"{coefficients.shape}"
            )
        if not jnp.issubdtype(coefficients.dtype, jnp.inexact):
            coefficients = jnp.asarray(coefficients, dtype=jnp.result_type(float))
        else:
            coefficients = jnp.asarray(coefficients, dtype=coefficients.dtype)
        slots = [tuple([False] * n)]
        slot_of = []
        for p in strings:
            mask = tuple(c in "XY" for c in p)
            if hilbert.constrained and sum(mask) % 2:
                raise ValueError(
                    f"PauliStrings: string {p!r} flips {sum(mask)} sites, which changes the "
                    f"magnetisation; it cannot act on the sector magnetization="
                    f"{hilbert.magnetization}"
                )
            if mask not in slots:
                slots.append(mask)
            slot_of.append(slots.index(mask))
        self.hilbert, self.strings, self.coefficients = hilbert, strings, coefficients
        self._slot_masks, self._slot_of = tuple(slots), tuple(slot_of)
        self._complex_structure = any(p.count("Y") % 2 for p in strings)

    @property
    def dtype(self):
        """Complex if a string has an odd number of Y or a coefficient is complex, else real."""
        if self._complex_structure:
            return jnp.result_type(self.coefficients, jnp.complex64)
        return jnp.result_type(self.coefficients)

    def _flip_masks(self) -> np.ndarray:
        return np.asarray(self._slot_masks, dtype=bool)

    def _elements(self, s, xp, dtype):
        letters = np.asarray([list(p) for p in self.strings])  # (K, N)
        sign_sites = (letters == "Z") | (letters == "Y")
        n_y = (letters == "Y").sum(axis=1)
        phases = np.asarray([(-1j) ** int(k) for k in n_y])
        if not self.is_complex:
            phases = phases.real  # an even number of Y: (−i)^{n_Y} = ±1
        c = xp.asarray(self.coefficients, dtype=dtype) * xp.asarray(phases, dtype=dtype)
        signs = xp.prod(xp.where(sign_sites, s[..., None, :], 1), axis=-1).astype(dtype)
        assign = np.zeros((len(self.strings), len(self._slot_masks)))
        assign[np.arange(len(self.strings)), self._slot_of] = 1
        mels = (signs * c) @ xp.asarray(assign, dtype=dtype)
        return xp.ones(mels.shape, bool), mels
