"""Catalogues shared by the contract suites.

`PROBLEMS` lists every registered problem with small settings, so the
contract battery in `test_contract.py` runs over each one quickly. A new
problem is done when it is listed here and the battery passes.
"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

_PINN_NET = {"width": 6, "depth": 1}

# name -> (problem parameters, model parameters) for a small, fast instance
_FLOW_DATA = {"n_train": 64, "n_test": 32, "batch_size": 8, "eval_chunk": 16}
_FLOW_NET = {"layers": 1, "width": 4, "depth": 1, "knots": 3}

_NQS = {"n_samples": 16, "n_chains": 4, "n_thermalise": 20, "n_discard": 2, "eval_samples": 1024}

PROBLEMS: dict[str, tuple[dict, dict]] = {
    # K-FAC: the first images of digits, a small autoencoder
    "kfac_digits_least_squares": ({"n_images": 40}, {}),
    "kfac_digits_softmax": ({"n_images": 40}, {}),
    "kfac_digits_autoencoder": ({"n_images": 40}, {"widths": [6, 3, 6]}),
    "kfac_pinn_poisson2d": ({"n_side": 4, "n_boundary_side": 3, "eval_grid": 5}, {"width": 6}),
    # NQS: small lattices, each model kind somewhere
    "nqs_tfim_chain": ({**_NQS, "n_sites": 6}, {"kind": "rbm"}),
    "nqs_tfim_square": ({**_NQS, "side": 2}, {"kind": "symmetric_rbm"}),
    "nqs_heisenberg_chain": ({**_NQS, "n_sites": 6}, {"kind": "ffn", "width": 4, "complex": True}),
    "nqs_j1j2_chain": ({**_NQS, "n_sites": 6}, {"kind": "jastrow"}),
    "neural_ode_spiral": (
        {"n_points": 200, "t_end": 5.0, "batch_size": 4, "batch_time": 5},
        {"width": 8},
    ),
    "robertson_fit": ({"n_obs": 10}, {}),
    "lorenz_sindy": ({"dt": 0.005, "t_end": 2.0}, {}),
    "ude_lotka_volterra": (
        {"t_end": 1.0, "ensemble": 2, "rtol": 1e-5, "atol": 1e-7},
        {"width": 3, "depth": 1},
    ),
    "neural_sde_ou": (
        {"n_paths": 8, "n_steps": 20, "batch_paths": 4},
        {"width": 8},
    ),
    # PINNs: a few points, a small network, and each one's optional machinery
    # switched on somewhere (resampling, adaptive weights, causal chunks, hard
    # constraints, Taylor mode, a randomised Laplacian)
    "pinn_poisson2d": ({"n_interior": 16, "n_boundary": 8, "eval_grid": 6}, _PINN_NET),
    "pinn_heat1d": (
        {"n_interior": 16, "n_boundary": 4, "n_initial": 4, "eval_grid": 6,
         "causal": {"chunks": 4, "epsilon": 1.0}},
        _PINN_NET,
    ),
    "pinn_burgers": (
        {"n_interior": 16, "n_boundary": 4, "n_initial": 4, "eval_nx": 6, "eval_nt": 4,
         "resample": {"method": "rad", "every": 2, "n_candidates": 32}},
        _PINN_NET,
    ),
    "pinn_burgers_inverse": (
        {"n_interior": 16, "n_boundary": 4, "n_initial": 4, "n_data": 8, "eval_nx": 6,
         "eval_nt": 4, "weighting": {"method": "ntk", "every": 2}},
        _PINN_NET,
    ),
    "pinn_allen_cahn": (
        {"n_interior": 16, "n_initial": 4, "eval_nx": 8, "eval_nt": 4,
         "weighting": {"method": "grad_norm", "every": 2}},
        _PINN_NET,
    ),
    "pinn_convection": (
        {"n_interior": 16, "n_initial": 4, "eval_nx": 8, "eval_nt": 4, "hard_initial": True,
         "resample": {"method": "rar", "every": 2, "n_candidates": 32}},
        _PINN_NET,
    ),
    "pinn_kdv": (
        {"n_interior": 16, "n_initial": 4, "eval_nx": 8, "eval_nt": 4, "engine": "taylor"},
        _PINN_NET,
    ),
    "pinn_poisson_nd": (
        {"dim": 3, "n_interior": 16, "n_boundary": 8, "n_eval": 20, "engine": "forward_laplacian"},
        _PINN_NET,
    ),
    "flow_two_moons": (_FLOW_DATA, _FLOW_NET),
    "cnf_two_moons": (
        _FLOW_DATA,
        {"width": 4, "depth": 1, "trace": "hutchinson", "kinetic": 0.1, "jacobian": 0.1,
         "rtol": 1e-8, "atol": 1e-8},
    ),
    "flow_two_moons_conditional": (_FLOW_DATA, {**_FLOW_NET, "flow": "realnvp"}),
    "flow_checkerboard": (_FLOW_DATA, {**_FLOW_NET, "flow": "maf"}),
    "flow_eight_gaussians": (_FLOW_DATA, {**_FLOW_NET, "flow": "nsf_autoregressive", "base": "mixture", "components": 2}),
    "flow_digits": ({"batch_size": 4}, {**_FLOW_NET, "flow": "realnvp", "base": "student_t"}),
    "flow_vi_banana": ({"num_samples": 8, "eval_samples": 64}, _FLOW_NET),
    # (not sticking the landing: its gradient drops the score term, so it is not the
    # derivative of the loss value the battery checks by finite differences)
    "flow_vi_ring": ({"num_samples": 8, "eval_samples": 64}, {**_FLOW_NET, "flow": "realnvp"}),
}


def rk4(f, y0, ts, substeps=20):
    """Fixed-step classical RK4 in numpy: an oracle independent of diffrax."""
    ys = [np.asarray(y0, float)]
    y = ys[0]
    for t0, t1 in zip(ts[:-1], ts[1:]):
        h = (t1 - t0) / substeps
        for _ in range(substeps):
            k1 = f(y)
            k2 = f(y + h / 2 * k1)
            k3 = f(y + h / 2 * k2)
            k4 = f(y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
    return np.stack(ys)
