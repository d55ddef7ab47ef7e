"""Lattices: sites, nearest and next-nearest neighbour bonds, translations, sublattices.

`chain(L)` numbers sites 0..L−1 along the chain; `square(L)` numbers site
`(x, y)` as `x·L + y`. Bonds are pairs `(i, j)` with `i < j`, each listed
once; periodic boundaries join the ends (a chain of 2 sites with periodic
boundaries has one bond, not two). Translations are the permutations `g`
with `g[i]` the image of site `i`, used to build translation-symmetric
models.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np

__all__ = ["Lattice", "chain", "square"]


class Lattice(eqx.Module):
    """A finite lattice: its sites, bonds by neighbour order, translations and sublattices.

    Build it with `chain(L)` or `square(L)`.

    Attributes:
        n_sites: number of sites.
        name: `"chain"` or `"square"`; `extent`: side length; `pbc`: periodic boundaries.
    """

    n_sites: int = eqx.field(static=True)
    name: str = eqx.field(static=True)
    extent: int = eqx.field(static=True)
    pbc: bool = eqx.field(static=True)
    _bonds: tuple = eqx.field(static=True)  # order -> ((i, j), ...)
    _translations: tuple = eqx.field(static=True)
    _sublattice: tuple = eqx.field(static=True)

    def __init__(self, name, extent, pbc, n_sites, bonds, translations, sublattice):
        self.name, self.extent, self.pbc, self.n_sites = name, extent, pbc, n_sites
        self._bonds = tuple(tuple(tuple(int(v) for v in b) for b in order) for order in bonds)
        self._translations = tuple(tuple(int(v) for v in g) for g in translations)
        self._sublattice = None if sublattice is None else tuple(int(v) for v in sublattice)

    def bonds(self, order: int = 1) -> np.ndarray:
        """Bonds of neighbour `order` (1: nearest, 2: next-nearest) as an int array `(n_bonds, 2)`."""
        if order not in (1, 2):
            raise ValueError(f"Lattice.bonds: order must be 1 or 2, got {order!r}")
        return np.asarray(self._bonds[order - 1], dtype=np.int64).reshape(-1, 2)

    def translations(self) -> np.ndarray:
        """The translation group as permutations, shape `(n_translations, n_sites)` (identity first).

        Open boundaries have no translations but the identity."""
        return np.asarray(self._translations, dtype=np.int64)

    @property
    def bipartite(self) -> bool:
        """Whether nearest-neighbour bonds always join the two sublattices."""
        return self._sublattice is not None

    def sublattice(self) -> np.ndarray:
        """0/1 per site (A/B) for a bipartite lattice; `ValueError` otherwise."""
        if self._sublattice is None:
            raise ValueError(
                f"Lattice: this {self.name} ({self.extent}, pbc={self.pbc}) is not bipartite "
                "(periodic with an odd length): it has no sublattices"
            )
        return np.asarray(self._sublattice, dtype=np.int64)


def _check_extent(name: str, extent, least: int) -> int:
    if not isinstance(extent, int | np.integer) or extent < least:
        raise ValueError(f"{name}: the length must be an integer >= {least}, got {extent!r}")
    return int(extent)


def _unique(pairs) -> list[tuple[int, int]]:
    out = []
    for i, j in pairs:
        b = (min(i, j), max(i, j))
        if i != j and b not in out:
            out.append(b)
    return out


def chain(length: int, pbc: bool = True) -> Lattice:
    """A chain of `length` sites; bonds `(i, i+1)` and next-nearest `(i, i+2)`, wrapped if `pbc`."""
    n = _check_extent("chain", length, 2)
    if pbc:
        nn = _unique((i, (i + 1) % n) for i in range(n))
        nnn = _unique((i, (i + 2) % n) for i in range(n)) if n > 2 else []
        shifts = [[(i + t) % n for i in range(n)] for t in range(n)]
    else:
        nn = [(i, i + 1) for i in range(n - 1)]
        nnn = [(i, i + 2) for i in range(n - 2)]
        shifts = [list(range(n))]
    bipartite = not pbc or n % 2 == 0
    sub = [i % 2 for i in range(n)] if bipartite else None
    return Lattice("chain", n, bool(pbc), n, (nn, nnn), shifts, sub)


def square(length: int, pbc: bool = True) -> Lattice:
    """A `length × length` square lattice; next-nearest bonds are the diagonals."""
    n = _check_extent("square", length, 2)

    def site(x, y):
        return (x % n) * n + (y % n)

    inside = (lambda x, y: True) if pbc else (lambda x, y: 0 <= x < n and 0 <= y < n)
    nn, nnn = [], []
    for x in range(n):
        for y in range(n):
            for dx, dy, out in ((1, 0, nn), (0, 1, nn), (1, 1, nnn), (1, -1, nnn)):
                if inside(x + dx, y + dy):
                    out.append((site(x, y), site(x + dx, y + dy)))
    if pbc:
        shifts = [
            [site(x + tx, y + ty) for x in range(n) for y in range(n)]
            for tx in range(n)
            for ty in range(n)
        ]
    else:
        shifts = [list(range(n * n))]
    bipartite = not pbc or n % 2 == 0
    sub = [(x + y) % 2 for x in range(n) for y in range(n)] if bipartite else None
    return Lattice("square", n, bool(pbc), n * n, (_unique(nn), _unique(nnn)), shifts, sub)
