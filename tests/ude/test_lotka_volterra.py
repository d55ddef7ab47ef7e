"""ude_lotka_volterra: discovery pipeline on an exact network, and the full recipe (slow)."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from sciml.ude import UDE, LotkaVolterraUDE, PolynomialLibrary, discover_missing_terms


def exact_missing(u):
    return jnp.stack([-0.9 * u[0] * u[1], 0.8 * u[0] * u[1]])


def test_discovery_recovers_exact_terms_from_an_exact_network(x64):
    problem = LotkaVolterraUDE(noise=0.0)
    ude = UDE(lambda t, u, p: jnp.stack([1.3 * u[0], -1.8 * u[1]]), exact_missing)
    found = discover_missing_terms(
        ude, problem.u0, problem.ts, problem.data, library=PolynomialLibrary(2, 2),
        thresholds=np.logspace(-3, 0.5, 20),
    )
    support = found["support"]
    assert support.sum() == 2 and support[4, 0] and support[4, 1]  # "x y" in both equations
    np.testing.assert_allclose(found["coefficients"][4], [-0.9, 0.8], rtol=1e-5)
    assert found["sse"] < 1e-10


def test_evaluate_reports_exact_recovery_for_exact_network(x64):
    problem = LotkaVolterraUDE(noise=0.0)
    ude = UDE(lambda t, u, p: jnp.stack([1.3 * u[0], -1.8 * u[1]]), exact_missing)
    out = problem.evaluate(ude, None, None)
    assert out["exact_terms_recovered"] == 1 and out["n_active_terms"] == 2
    assert out["interaction_coef_rel_error"] < 1e-4
    assert out["extrapolation_rel_error"] < 1e-4
    assert out["recovered_equations"] == "dx/dt = 1.300 x - 0.900 x y; dy/dt = -1.800 y + 0.800 x y"


def test_invalid_settings():
    with pytest.raises(ValueError, match="problem.noise: must be greater than or equal to 0"):
        LotkaVolterraUDE(noise=-0.1)
    with pytest.raises(ValueError, match="problem.selection: must be 'bic' or 'tol', got 'aic'"):
        LotkaVolterraUDE(selection="aic")
    with pytest.raises(ValueError, match="model.width"):
        LotkaVolterraUDE(width=0)


def test_float32_with_a_tolerance_it_cannot_resolve_is_refused_up_front():
    import jax

    if jax.config.jax_enable_x64:
        pytest.skip("needs the float32 default")
    with pytest.raises(ValueError, match=r"problem.rtol = 1e-07 is below the resolution of float32"):
        LotkaVolterraUDE()
    assert LotkaVolterraUDE(rtol=1e-5, ensemble=1).data.dtype == jnp.float32


@pytest.mark.slow
def test_default_recipe_recovers_the_interaction(x64):
    from sciml.config import AdamConfig, LBFGSConfig, SequenceConfig, TrainConfig
    from sciml.optim import make_optimizer
    from sciml.trainer import fit

    problem = LotkaVolterraUDE()
    cfg = SequenceConfig(name="sequence", phases=[AdamConfig(name="adam", lr=0.01), LBFGSConfig(name="lbfgs", initial_guess="one")],
                         boundaries=[2000])
    result = fit(problem, make_optimizer(cfg, 3000), TrainConfig(steps=3000, log_every=500, progress=False))
    assert result.summary["exact_terms_recovered"] == 1
    assert result.summary["interaction_coef_rel_error"] < 0.1
    assert result.summary["extrapolation_rel_error"] < 0.2


def test_diagnose_names_a_blown_up_solve(x64):
    problem = LotkaVolterraUDE()
    healthy = UDE(lambda t, u, p: jnp.stack([1.3 * u[0], -1.8 * u[1]]), exact_missing)
    assert problem.diagnose(healthy, None, None) is None
    # y' = y^2 from y(0) = 4.63 blows up at t = 1/4.63 = 0.216, inside [0, 3]
    blowup = UDE(lambda t, u, p: jnp.zeros(2), lambda u: jnp.stack([0.0 * u[0], u[1] ** 2]))
    reason = problem.diagnose(blowup, None, None)
    assert "the UDE solve from u0 over t = [0, 3] (max_steps=10000) failed" in reason
    t_reached = float(re.search(r"last saved time reached: ([0-9.e+-]+?)\.? ", reason).group(1))
    assert t_reached == pytest.approx(0.2)  # the last save time before the blow-up at 0.216
    assert "larger max_steps" in reason


@pytest.mark.parametrize("normalize", [pytest.param(None, marks=pytest.mark.slow), False])
def test_degree_3_library_on_an_exact_network(normalize, x64):
    # Above degree 2 the columns are normalised by default; either way an
    # exact network gives exactly the two x y terms once the ridge is off
    # (with alpha = 0.05 the near-collinear degree-3 columns share the fit).
    problem = LotkaVolterraUDE(noise=0.0)
    ude = UDE(lambda t, u, p: jnp.stack([1.3 * u[0], -1.8 * u[1]]), exact_missing)
    lib = PolynomialLibrary(2, 3)
    found = discover_missing_terms(ude, problem.u0, problem.ts, problem.data, library=lib,
                                   thresholds=np.logspace(-3, 0.5, 20), normalize_columns=normalize,
                                   alpha=0.0)
    support = found["support"]
    ixy = lib.feature_names(["x", "y"]).index("x y")
    assert support.sum() == 2 and support[ixy, 0] and support[ixy, 1]
    np.testing.assert_allclose(found["coefficients"][ixy], [-0.9, 0.8], rtol=1e-5)
