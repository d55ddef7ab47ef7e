"""Operators: hand-computed 2-site matrices, connected elements vs Kronecker-product Hamiltonians.

The independent Hamiltonians are built with `np.kron` of the Pauli matrices, site 0 the
leftmost factor (most significant), spin up = first basis vector.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.nqs._hilbert import SpinHilbert
from sciml.nqs._lattice import chain, square
from sciml.nqs._operators import J1J2, AbstractOperator, Heisenberg, Ising, PauliStrings

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.array([[1, 0], [0, -1]], dtype=complex)
PAULI = {"I": I2, "X": X, "Y": Y, "Z": Z}


def kron_string(letters: str) -> np.ndarray:
    out = np.ones((1, 1), dtype=complex)
    for c in letters:
        out = np.kron(out, PAULI[c])
    return out


def kron_sites(n: int, ops: dict) -> np.ndarray:
    return kron_string("".join(ops.get(i, "I") for i in range(n)))


def dense_bonds(n, bonds, coupling, letters):
    """coupling · Σ_b Σ_{P in letters} P_i P_j (Kronecker products)."""
    h = np.zeros((2**n, 2**n), dtype=complex)
    for i, j in bonds:
        for p in letters:
            h += coupling * kron_sites(n, {int(i): p, int(j): p})
    return h


def dense_ising(lattice, h, J):
    n = lattice.n_sites
    out = -dense_bonds(n, lattice.bonds(1), J, "Z")
    for i in range(n):
        out -= h * kron_sites(n, {i: "X"})
    return out


def dense_heisenberg(lattice, j1, j2=0.0, marshall=False):
    n = lattice.n_sites
    out = dense_bonds(n, lattice.bonds(1), j1, "XYZ") + dense_bonds(n, lattice.bonds(2), j2, "XYZ")
    if marshall:  # conjugate by the product of σᶻ over sublattice A (independent of the code)
        u = np.diag(kron_sites(n, {i: "Z" for i in range(n) if lattice.sublattice()[i] == 0}))
        out = u[:, None] * out * u[None, :]
    return out


def dense_pauli(n, strings, coefficients):
    return sum(c * kron_string(p) for p, c in zip(strings, coefficients))


def codes_of(states):
    """ED index of ±1 configurations `(..., N)`, site 0 most significant (independent of hilbert)."""
    states = np.asarray(states)
    n = states.shape[-1]
    bits = (states < 0).astype(np.int64)
    return bits @ (2 ** np.arange(n - 1, -1, -1))


def sector_indices(n, magnetization):
    states = np.array([[1 - 2 * ((c >> (n - 1 - i)) & 1) for i in range(n)] for c in range(2**n)])
    return np.flatnonzero(states.sum(1) == magnetization)


# ------------------------------------------------------------------------------------------------
# 2-site matrices by hand (basis ↑↑, ↑↓, ↓↑, ↓↓)


def test_two_site_ising_by_hand():
    h, J = 0.5, 0.75
    op = Ising(SpinHilbert(2), chain(2), h=h, J=J)
    expected = np.array(
        [[-J, -h, -h, 0], [-h, J, 0, -h], [-h, 0, J, -h], [0, -h, -h, -J]], dtype=float
    )
    np.testing.assert_allclose(op.to_dense(), expected, atol=1e-7)
    np.testing.assert_allclose(expected, dense_ising(chain(2), h, J).real, atol=1e-12)
    assert op.max_conn == 3


@pytest.mark.parametrize("marshall", [False, True])
def test_two_site_heisenberg_by_hand(marshall):
    J = 0.75
    op = Heisenberg(SpinHilbert(2), chain(2), J=J, marshall_sign=marshall)
    off = -2 * J if marshall else 2 * J
    expected = np.array([[J, 0, 0, 0], [0, -J, off, 0], [0, off, -J, 0], [0, 0, 0, J]])
    np.testing.assert_allclose(op.to_dense(), expected, atol=1e-7)
    np.testing.assert_allclose(expected, dense_heisenberg(chain(2), J, marshall=marshall).real)
    assert op.max_conn == 2


def test_two_site_pauli_strings_by_hand():
    strings, coefficients = ["XY", "YZ", "ZI", "YY"], [0.5, -1.5, 0.25, 2.0]
    op = PauliStrings(SpinHilbert(2), strings, coefficients)
    i = 1j
    xy = np.array([[0, 0, 0, -i], [0, 0, i, 0], [0, -i, 0, 0], [i, 0, 0, 0]])
    yz = np.array([[0, 0, -i, 0], [0, 0, 0, i], [i, 0, 0, 0], [0, -i, 0, 0]])
    zi = np.diag([1, 1, -1, -1])
    yy = np.array([[0, 0, 0, -1], [0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0]])
    expected = 0.5 * xy - 1.5 * yz + 0.25 * zi + 2.0 * yy
    np.testing.assert_allclose(op.to_dense(), expected, atol=1e-7)
    np.testing.assert_allclose(expected, dense_pauli(2, strings, coefficients), atol=1e-12)
    # XY and YY flip both sites: one slot; YZ flips site 0; plus the diagonal slot.
    assert op.max_conn == 3
    assert op.is_complex


# ------------------------------------------------------------------------------------------------
# connected elements vs rows of the Kronecker-product matrix


def _cases():
    """name -> builder of (operator, dense matrix); built inside the test, under x64."""
    c6, sq2, sq3, open6 = chain(6), square(2), square(3), chain(6, pbc=False)
    full6, full4, full9 = SpinHilbert(6), SpinHilbert(4), SpinHilbert(9)
    sec6, sec4 = SpinHilbert(6, 0), SpinHilbert(4, 0)
    strings6 = ["XXIIIZ", "YYIIII", "ZZZIII", "IXIYIZ", "IIIIYI", "XIIIIX", "ZIIIIZ"]
    coeff6 = [0.3, -0.7, 1.1, 0.4, -0.9, 0.6, 0.2]
    hop = ["XIXIII", "YIYIII", "IIXXII", "IIYYII", "ZIIIIZ"]  # conserves the magnetisation
    hop_c = [1.0, 1.0, 0.5, 0.5, -2.0]
    return {
        "ising-chain": lambda: (Ising(full6, c6, h=0.7, J=1.3), dense_ising(c6, 0.7, 1.3)),
        "ising-open": lambda: (Ising(full6, open6, h=-0.4, J=0.9), dense_ising(open6, -0.4, 0.9)),
        "ising-sq2": lambda: (Ising(full4, sq2, h=1.1), dense_ising(sq2, 1.1, 1.0)),
        "ising-sq3": lambda: (Ising(full9, sq3, h=3.0, J=-0.5), dense_ising(sq3, 3.0, -0.5)),
        "heis-chain": lambda: (Heisenberg(full6, c6, J=0.8), dense_heisenberg(c6, 0.8)),
        "heis-sector": lambda: (Heisenberg(sec6, c6, J=0.8), dense_heisenberg(c6, 0.8)),
        "heis-marshall": lambda: (
            Heisenberg(full6, c6, J=1.2, marshall_sign=True),
            dense_heisenberg(c6, 1.2, marshall=True),
        ),
        "heis-sq2-sector": lambda: (Heisenberg(sec4, sq2), dense_heisenberg(sq2, 1.0)),
        "heis-sq3": lambda: (Heisenberg(full9, sq3, J=0.6), dense_heisenberg(sq3, 0.6)),
        "j1j2-chain": lambda: (J1J2(full6, c6, 1.0, 0.45), dense_heisenberg(c6, 1.0, 0.45)),
        "j1j2-marshall-sector": lambda: (
            J1J2(sec6, c6, 0.9, 0.3, marshall_sign=True),
            dense_heisenberg(c6, 0.9, 0.3, marshall=True),
        ),
        "j1j2-sq3": lambda: (J1J2(full9, sq3, 1.0, 0.5), dense_heisenberg(sq3, 1.0, 0.5)),
        "pauli": lambda: (PauliStrings(full6, strings6, coeff6), dense_pauli(6, strings6, coeff6)),
        "pauli-sector": lambda: (PauliStrings(sec6, hop, hop_c), dense_pauli(6, hop, hop_c)),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_conn_matches_dense_rows(name, x64, getkey):
    op, dense = CASES[name]()
    hilbert = op.hilbert
    n = hilbert.n_sites
    states = np.asarray(hilbert.random_states(getkey(), 12, jnp.float64))
    s_primes, mels = jax.vmap(op.get_conn_padded)(jnp.asarray(states))
    s_primes, mels = np.asarray(s_primes), np.asarray(mels)
    assert s_primes.shape == (12, op.max_conn, n) and mels.shape == (12, op.max_conn)
    assert bool(np.all(hilbert.is_valid(s_primes)))  # padding and all s' stay in the space
    for s, sp_, mel in zip(states, s_primes, mels):
        row = np.zeros(2**n, dtype=complex)
        np.add.at(row, codes_of(sp_), mel)
        np.testing.assert_allclose(row, dense[codes_of(s)], atol=1e-12)
        unused = mel == 0
        if not isinstance(op, PauliStrings):  # padding is s' = s (Pauli groups may cancel)
            np.testing.assert_array_equal(sp_[unused], np.broadcast_to(s, sp_[unused].shape))
    # The whole matrix, restricted to the sector if any.
    idx = np.arange(2**n) if not hilbert.constrained else sector_indices(n, hilbert.magnetization)
    np.testing.assert_allclose(op.to_sparse().toarray(), dense[np.ix_(idx, idx)], atol=1e-12)
    if hilbert.constrained:  # the operator conserves the magnetisation: nothing leaks out
        out = np.setdiff1d(np.arange(2**n), idx)
        assert np.abs(dense[np.ix_(out, idx)]).max() == 0


def test_widths():
    c6 = chain(6)
    assert Ising(SpinHilbert(6), c6, h=1.0).max_conn == 7
    assert Heisenberg(SpinHilbert(6), c6).max_conn == 7
    assert Heisenberg(SpinHilbert(6), chain(6, pbc=False)).max_conn == 6
    assert J1J2(SpinHilbert(6), c6, 1.0, 0.5).max_conn == 13
    assert Heisenberg(SpinHilbert(9), square(3)).max_conn == 19


# ------------------------------------------------------------------------------------------------
# dtypes, jit and pytree leaves


def test_dtypes_follow_configuration():
    s32 = jnp.ones(2, jnp.float32)
    ising = Ising(SpinHilbert(2), chain(2), h=1.0)
    assert not ising.is_complex
    s_primes, mels = ising.get_conn_padded(s32)
    assert s_primes.dtype == jnp.float32 and mels.dtype == jnp.float32
    y = PauliStrings(SpinHilbert(2), ["XY", "ZZ"], [1.0, 1.0])
    assert y.get_conn_padded(s32)[1].dtype == jnp.complex64
    yy = PauliStrings(SpinHilbert(2), ["YY"], [1.0])
    assert not yy.is_complex and yy.get_conn_padded(s32)[1].dtype == jnp.float32


def test_dtypes_x64(x64):
    s64 = jnp.ones(2, jnp.float64)
    assert Heisenberg(SpinHilbert(2), chain(2)).get_conn_padded(s64)[1].dtype == jnp.float64
    y = PauliStrings(SpinHilbert(2), ["XY"], [1.0])
    assert y.get_conn_padded(s64)[1].dtype == jnp.complex128
    assert y.to_sparse().dtype == np.complex128


def test_coefficients_are_leaves_no_recompile():
    hilbert, lattice = SpinHilbert(4), chain(4)
    traces = []

    @jax.jit
    def energy_rows(op, s):
        traces.append(1)
        return jax.vmap(op.get_conn_padded)(s)[1].sum()

    s = jnp.asarray(hilbert.all_states())
    values = []
    for h, J in [(1.0, 1.0), (0.3, 2.0), (2, -1)]:
        op = Ising(hilbert, lattice, h=h, J=J)
        values.append(float(energy_rows(op, s)))
        np.testing.assert_allclose(values[-1], op.to_sparse().sum(), rtol=1e-6)
    assert len(traces) == 1
    assert len(set(values)) == 3  # the new coefficients are used, not baked in
    leaves = jax.tree_util.tree_leaves(Ising(hilbert, lattice, h=0.5))
    assert len(leaves) == 2
    strings = ["XXII", "ZIZI"]
    op_a = PauliStrings(hilbert, strings, [1.0, 2.0])
    op_b = eqx.tree_at(lambda o: o.coefficients, op_a, jnp.array([-1.0, 0.5]))
    energy_rows(op_a, s)
    energy_rows(op_b, s)
    assert len(traces) == 2  # one more trace for the new operator type, not for the coefficients


def test_marshall_sign_rotation_flips_cross_bonds_only():
    lattice = chain(6)
    plain = J1J2(SpinHilbert(6), lattice, 1.0, 0.4).to_dense()
    rotated = J1J2(SpinHilbert(6), lattice, 1.0, 0.4, marshall_sign=True).to_dense()
    u = np.diag(kron_sites(6, {0: "Z", 2: "Z", 4: "Z"})).real
    np.testing.assert_allclose(rotated, u[:, None] * plain * u[None, :], atol=1e-7)
    # The J2 exchange keeps its positive sign: the rotated H is not stoquastic.
    off = rotated - np.diag(np.diag(rotated))
    assert off.max() > 0 and off.min() < 0


# ------------------------------------------------------------------------------------------------
# errors


def test_errors():
    with pytest.raises(ValueError, match="magnetisation"):
        Ising(SpinHilbert(4, 0), chain(4), h=1.0)
    with pytest.raises(ValueError, match="4 sites but the Hilbert space has 6"):
        Heisenberg(SpinHilbert(6), chain(4))
    with pytest.raises(ValueError, match="bipartite"):
        Heisenberg(SpinHilbert(5), chain(5), marshall_sign=True)
    with pytest.raises(ValueError, match="bipartite"):
        J1J2(SpinHilbert(3), chain(3), 1.0, 0.2, marshall_sign=True)
    Heisenberg(SpinHilbert(5), chain(5, pbc=False), marshall_sign=True)  # open: bipartite
    with pytest.raises(ValueError, match="h must be a scalar"):
        Ising(SpinHilbert(4), chain(4), h=jnp.ones(4))
    with pytest.raises(ValueError, match="real"):
        Ising(SpinHilbert(4), chain(4), h=1j)
    with pytest.raises(TypeError, match="Lattice"):
        Ising(SpinHilbert(4), 4, h=1.0)
    with pytest.raises(ValueError, match=r"one letter per site \(3\)"):
        PauliStrings(SpinHilbert(3), ["XX"], [1.0])
    with pytest.raises(ValueError, match=r"letters \['A'\]"):
        PauliStrings(SpinHilbert(2), ["XA"], [1.0])
    with pytest.raises(ValueError, match="expected 2 coefficients"):
        PauliStrings(SpinHilbert(2), ["XX", "ZZ"], [1.0])
    with pytest.raises(TypeError, match="single string"):
        PauliStrings(SpinHilbert(2), "XX", [1.0])
    with pytest.raises(ValueError, match="empty"):
        PauliStrings(SpinHilbert(2), [], [])
    with pytest.raises(ValueError, match="flips 1 sites"):
        PauliStrings(SpinHilbert(4, 0), ["XIII"], [1.0])
    leaky = PauliStrings(SpinHilbert(4, 0), ["XXII"], [1.0])
    with pytest.raises(ValueError, match="does not conserve the magnetisation 0"):
        leaky.to_sparse()
    # get_conn_padded keeps within the sector: the leaking flip becomes padding.
    s_primes, mels = leaky.get_conn_padded(jnp.array([1.0, 1.0, -1.0, -1.0]))
    np.testing.assert_array_equal(s_primes[1], [1, 1, -1, -1])
    assert mels[1] == 0
    op = Ising(SpinHilbert(4), chain(4), h=1.0)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(3, 4\); batch with jax.vmap"):
        op.get_conn_padded(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="to_sparse"):
        Ising(SpinHilbert(15), chain(15), h=1.0).to_dense()
    with pytest.raises(TypeError):
        AbstractOperator()
