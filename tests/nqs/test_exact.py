"""Exact diagonalisation against closed forms, the issue's reference energies and dense eigh."""

import math

import numpy as np
import pytest

from sciml.nqs._exact import ground_state, tfim_chain_energy
from sciml.nqs._hilbert import SpinHilbert
from sciml.nqs._lattice import chain, square
from sciml.nqs._operators import J1J2, Heisenberg, Ising, PauliStrings


@pytest.mark.parametrize("h, J", [(1.0, 1.0), (0.5, 1.0), (2.0, 1.0), (1.0, -1.0), (0.7, -1.3)])
def test_tfim_chain_ed_matches_free_fermions(h, J, x64):
    energies, vectors = ground_state(Ising(SpinHilbert(10), chain(10), h=h, J=J), k=1)
    assert energies.shape == (1,) and vectors.shape == (1024, 1)
    assert abs(energies[0] - tfim_chain_energy(10, h, J)) < 1e-10


def test_tfim_formula_closed_forms():
    # h = J: E0 = −2J/sin(π/2N); the value for N = 20.
    assert abs(tfim_chain_energy(20, 1.0) - (-2 / math.sin(math.pi / 40))) < 1e-12
    assert abs(tfim_chain_energy(20, 1.0) - (-25.4909896864)) < 1e-10
    assert abs(tfim_chain_energy(12, 0.8, 0.8) - (-1.6 / math.sin(math.pi / 24))) < 1e-12
    # h = 0: classical ferromagnet, −J N; J = 0: free spins, −|h| N.
    assert abs(tfim_chain_energy(8, 0.0, 1.5) + 12.0) < 1e-12
    assert abs(tfim_chain_energy(8, 2.0, 0.0) + 16.0) < 1e-12
    # Thermodynamic limit at h = J: E0/N → −4J/π.
    assert abs(tfim_chain_energy(4000, 1.0) / 4000 + 4 / math.pi) < 1e-6


@pytest.mark.slow
def test_tfim_chain_n20_ed(x64):
    energies, _ = ground_state(Ising(SpinHilbert(20), chain(20), h=1.0))
    assert abs(energies[0] - (-25.4909896864)) < 1e-9
    assert abs(energies[0] - tfim_chain_energy(20, 1.0)) < 1e-10


def test_heisenberg_chain_n20_sector(x64):
    energies, vectors = ground_state(Heisenberg(SpinHilbert(20, 0), chain(20)))
    assert vectors.shape == (math.comb(20, 10), 1)
    assert abs(energies[0] - (-35.6175461195)) < 1e-9


def test_j1j2_chain_l14(x64):
    energies, _ = ground_state(J1J2(SpinHilbert(14, 0), chain(14), 1.0, 0.2))
    assert abs(energies[0] - (-23.0640144807)) < 1e-9


def test_tfim_square_4x4(x64):
    energies, _ = ground_state(Ising(SpinHilbert(16), square(4), h=3.0))
    assert abs(energies[0] - (-51.4481291332)) < 1e-9


def test_sector_contains_heisenberg_ground_state(x64):
    lattice = chain(10)
    full, _ = ground_state(Heisenberg(SpinHilbert(10), lattice), k=1)
    sector, _ = ground_state(Heisenberg(SpinHilbert(10, 0), lattice), k=1)
    assert abs(full[0] - sector[0]) < 1e-10


def test_lanczos_matches_dense(x64):
    op = J1J2(SpinHilbert(10), chain(10), 1.0, 0.3)  # 1024 states: the Lanczos path
    energies, vectors = ground_state(op, k=3)
    dense = op.to_dense()
    np.testing.assert_allclose(energies, np.linalg.eigvalsh(dense)[:3], atol=1e-10)
    assert np.all(np.diff(energies) >= 0)
    np.testing.assert_allclose(dense @ vectors, vectors * energies, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=0), 1.0, atol=1e-12)


def test_complex_pauli_strings(x64):
    # A 3-site Hermitian sum with Y's (complex elements) on the dense path.
    strings, coefficients = ["XYZ", "YXI", "ZZZ", "IYY"], [0.4, -0.7, 1.0, 0.3]
    op = PauliStrings(SpinHilbert(3), strings, coefficients)
    energies, vectors = ground_state(op, k=2)
    dense = op.to_dense()
    np.testing.assert_allclose(energies, np.linalg.eigvalsh(dense)[:2], atol=1e-12)
    np.testing.assert_allclose(dense @ vectors, vectors * energies, atol=1e-10)


def test_marshall_ground_state_has_one_sign(x64):
    lattice = chain(8)
    hilbert = SpinHilbert(8, 0)
    e_plain, v_plain = ground_state(Heisenberg(hilbert, lattice))
    e_rot, v_rot = ground_state(Heisenberg(hilbert, lattice, marshall_sign=True))
    assert abs(e_plain[0] - e_rot[0]) < 1e-10
    psi = v_rot[:, 0] * np.sign(v_rot[np.argmax(np.abs(v_rot[:, 0])), 0])
    assert psi.min() > 1e-8  # every amplitude of the rotated ground state is positive
    plain = v_plain[:, 0]
    assert plain.min() < -1e-8 and plain.max() > 1e-8  # the plain one has both signs
    # ψ_rot(s) = (−1)^{#↑ on A} ψ(s) up to a global sign (A = even sites).
    states = hilbert.all_states(np.float64)
    up_on_a = np.sum(states[:, ::2] > 0, axis=1)
    expected = (-1.0) ** up_on_a * plain
    expected *= np.sign(expected @ psi)
    np.testing.assert_allclose(expected, psi, atol=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="even integer >= 2, got 7"):
        tfim_chain_energy(7, 1.0)
    with pytest.raises(ValueError, match="even integer"):
        tfim_chain_energy(0, 1.0)
    op = Heisenberg(SpinHilbert(4), chain(4))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 16\], got 17"):
        ground_state(op, k=17)
    with pytest.raises(ValueError, match="k must be"):
        ground_state(op, k=0)
    with pytest.raises(TypeError, match="AbstractOperator"):
        ground_state(np.eye(4))
    with pytest.raises(ValueError, match="not Hermitian"):
        ground_state(PauliStrings(SpinHilbert(2), ["XX"], [1j]))
