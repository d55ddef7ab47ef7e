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

# name -> (problem parameters, model parameters) for a small, fast instance
PROBLEMS: dict[str, tuple[dict, dict]] = {
    "neural_ode_spiral": (
        {"n_points": 200, "t_end": 5.0, "batch_size": 4, "batch_time": 5},
        {"width": 8},
    ),
    "robertson_fit": ({"n_obs": 10}, {}),
    "lorenz_sindy": ({"dt": 0.005, "t_end": 2.0}, {}),
    "ude_lotka_volterra": ({"t_end": 1.0, "ensemble": 2}, {"width": 3, "depth": 1}),
    "neural_sde_ou": (
        {"n_paths": 8, "n_steps": 20, "batch_paths": 4},
        {"width": 8},
    ),
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
