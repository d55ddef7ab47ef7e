"""The ude problems' physical settings: they reach the data and the evaluation, and bad ones are refused.

Every problem takes its system's parameters, initial state, sampling and
noise model from its `problem` section (docs/ude_problems.md). Oracles: an
independent numpy RK4 for the trajectories, the noise formula with the
seed's own draws, sample statistics for the noise scale, and recovery of the
configured (non-default) values by the problems' own pipelines.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO, rk4
from sciml.cli_config import load_yaml
from sciml.problems import get_problem_spec
from sciml.schema import ConfigError, validate_section
from sciml.ude import (
    UDE,
    LorenzSINDy,
    LotkaVolterraUDE,
    NeuralODESpiral,
    NeuralSDEOU,
    RobertsonFit,
    lorenz_coefficients,
    ou_mle,
)
from sciml.ude._noise import add_observation_noise
from sciml.ude._spiral import SpiralField
from sciml.ude.problems import (
    LorenzParams,
    LotkaVolterraParams,
    OUParams,
    RobertsonParams,
    SpiralParams,
)

# Non-default Lotka-Volterra system: (alpha, beta, gamma, delta) and (x0, y0)
LV_SETTINGS = dict(prey_growth=1.0, predation=0.6, conversion=0.5, predator_death=1.2, u0=(1.0, 2.0))




# ---------------------------------------------------------------- Lotka-Volterra


@pytest.mark.slow  # accuracy run
def test_lv_configured_system_reaches_the_data_the_known_part_and_evaluate(x64):
    problem = LotkaVolterraUDE(noise=0.0, t_end=1.0, **LV_SETTINGS)
    a, b, c, d = 1.0, 0.6, 0.5, 1.2
    np.testing.assert_array_equal(problem.data[0], [1.0, 2.0])
    expected = rk4(lambda u: np.array([a * u[0] - b * u[0] * u[1], c * u[0] * u[1] - d * u[1]]),
                   [1.0, 2.0], np.asarray(problem.ts))
    np.testing.assert_allclose(problem.data, expected, rtol=1e-8)
    # the UDE's known part is alpha x, -delta y at the configured rates
    model = problem.init(jax.random.PRNGKey(0))[0].member(0)  # an ensemble by default
    np.testing.assert_allclose(model.known(0.0, jnp.array([2.0, 3.0])), [a * 2.0, -d * 3.0])
    # evaluate judges against the configured -beta, +gamma: an exact network scores 0
    exact = UDE(model.known, lambda u: jnp.stack([-b * u[0] * u[1], c * u[0] * u[1]]))
    out = problem.evaluate(exact, None, None)
    assert out["recovered_equations"] == "dx/dt = 1.000 x - 0.600 x y; dy/dt = -1.200 y + 0.500 x y"
    assert out["exact_terms_recovered"] == 1
    assert out["interaction_coef_rel_error"] < 1e-4  # 0.5 if judged against the defaults 0.9, 0.8
    assert out["extrapolation_rel_error"] < 1e-4


@pytest.mark.slow
def test_lv_training_at_non_default_parameters_recovers_them(x64):
    # The published recipe (Adam 2000 steps, then L-BFGS) on the non-default
    # system with 1% noise; measured: -0.602 x y and +0.499 x y (0.3% error), ~60 s.
    from sciml.config import AdamConfig, LBFGSConfig, SequenceConfig, TrainConfig
    from sciml.optim import make_optimizer
    from sciml.trainer import fit

    problem = LotkaVolterraUDE(noise=0.01, **LV_SETTINGS)
    cfg = SequenceConfig(name="sequence", phases=[AdamConfig(name="adam", lr=0.01),
                                                  LBFGSConfig(name="lbfgs", initial_guess="one")],
                         boundaries=[2000])
    train = TrainConfig(steps=3000, log_every=500, checkpoint_every=None, progress=False)
    summary = fit(problem, make_optimizer(cfg, 3000), train).summary
    assert summary["exact_terms_recovered"] == 1, summary
    assert summary["interaction_coef_rel_error"] < 0.03, summary
    got = re.findall(r"([-+]) ([\d.]+) x y", summary["recovered_equations"])
    assert [(s, float(v)) for s, v in got] == [("-", pytest.approx(0.6, abs=0.02)),
                                               ("+", pytest.approx(0.5, abs=0.02))]
    assert summary["extrapolation_rel_error"] < 0.05, summary


def test_lv_noise_is_the_documented_formula_with_the_seeds_draws(x64):
    clean = np.asarray(LotkaVolterraUDE(noise=0.0).data)
    # the default: 5% of each state's mean, bit for bit the formula of the original problem
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(0), clean.shape, clean.dtype))
    np.testing.assert_array_equal(LotkaVolterraUDE().data, clean + 0.05 * clean.mean(axis=0) * eps)
    # per-state levels, each noise model
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(7), clean.shape, clean.dtype))
    levels = np.array([0.05, 0.02])
    for noise_model, scale in (("relative_std", clean.std(axis=0)), ("absolute", 1.0),
                               ("multiplicative", clean)):
        noisy = LotkaVolterraUDE(noise=levels.tolist(), noise_model=noise_model, noise_seed=7).data
        np.testing.assert_allclose(noisy - clean, levels * scale * eps, rtol=1e-10, atol=1e-14)


def test_lv_a_system_the_reference_solve_cannot_handle_is_refused(x64):
    with pytest.raises(ValueError, match=r"cannot make the data at alpha, beta, gamma, delta = "
                                         r"\(10000\.0, 0\.9, 0\.8, 1\.8\).*maximum number of solver steps"):
        LotkaVolterraUDE(prey_growth=1e4)


# ---------------------------------------------------------------- noise models


@pytest.mark.parametrize("model", ["absolute", "relative_mean", "relative_std", "multiplicative"])
def test_noise_models_have_the_documented_scale(model):
    # 20000 samples per state: the sample std of the added noise is within ~1% of its scale
    t = np.linspace(0.0, 10.0, 20000)
    clean = jnp.asarray(np.stack([2.0 + np.sin(t), 5.0 * np.cos(3 * t), 0.1 + 0.01 * t], 1), jnp.float32)
    levels = (0.1, 0.02, 0.3)
    noisy = add_observation_noise(clean, levels, model, seed=3)
    c, n = np.asarray(clean, float), np.asarray(noisy, float)
    if model == "multiplicative":
        measured = np.std(n / c - 1.0, axis=0)
        expected = np.asarray(levels)
    else:
        measured = np.std(n - c, axis=0)
        scale = {"absolute": 1.0, "relative_mean": np.mean(np.abs(c), 0), "relative_std": np.std(c, 0)}
        expected = np.asarray(levels) * scale[model]
    np.testing.assert_allclose(measured, expected, rtol=0.04)
    assert add_observation_noise(clean, 0.0, model, seed=3) is clean
    with pytest.raises(ValueError, match="noise has 2 entries for 3 states"):
        add_observation_noise(clean, (0.1, 0.2), model, seed=3)


# ---------------------------------------------------------------- Lorenz


def test_lorenz_configured_system_is_the_data_and_is_recovered(x64, getkey):
    problem = LorenzSINDy(sigma=12.0, rho=35.0, beta=2.5, x0=[1.0, -2.0, 20.0], t_end=4.0)
    np.testing.assert_array_equal(problem.xs[0], [1.0, -2.0, 20.0])
    np.testing.assert_array_equal(problem.true_coefficients,
                                  lorenz_coefficients(problem.library, 12.0, 35.0, 2.5))
    model, state = problem.init(getkey())
    out = problem.evaluate(model, state, getkey())
    assert out["n_active_terms"] == 7
    assert (out["sigma"], out["rho"], out["beta"]) == (
        pytest.approx(12.0, abs=0.02), pytest.approx(35.0, abs=0.02), pytest.approx(2.5, abs=0.02))
    assert out["max_coef_error"] < 0.05  # against the configured system


def test_lorenz_relative_std_noise_per_state(x64):
    problem = LorenzSINDy(t_end=4.0, noise=[0.01, 0.02, 0.05], noise_model="relative_std", noise_seed=1)
    names = problem.library.feature_names(["x", "y", "z"])
    cols = [names.index(v) for v in "xyz"]
    added = np.asarray(problem.theta[:, cols] - problem.xs)  # the linear columns are the noisy states
    expected = np.array([0.01, 0.02, 0.05]) * np.std(np.asarray(problem.xs), axis=0)
    np.testing.assert_allclose(added.std(axis=0), expected, rtol=0.1)  # 2000 samples: ~1.6% sd


# ---------------------------------------------------------------- Ornstein-Uhlenbeck


def test_ou_configured_process_is_the_data_and_the_reference():
    problem = NeuralSDEOU(kappa=1.0, mean=-0.5, vol=0.5, x0=0.25, n_paths=512, n_steps=200, dt=0.02)
    np.testing.assert_array_equal(problem.paths[:, 0], 0.25)
    kappa, mean, vol = ou_mle(problem.paths, 0.02)
    assert (kappa, mean, vol) == (pytest.approx(1.0, rel=0.1), pytest.approx(-0.5, abs=0.1),
                                  pytest.approx(0.5, rel=0.05))
    model, _ = problem.init(jax.random.PRNGKey(0))
    out = problem.evaluate(model, None, None)
    assert out["kappa_mle_rel_error"] == pytest.approx(abs(kappa - 1.0) / 1.0)  # vs the configured kappa
    assert out["vol_mle_rel_error"] == pytest.approx(abs(vol - 0.5) / 0.5)


# ---------------------------------------------------------------- Robertson


def test_robertson_configured_rates_and_initial_state(x64, getkey):
    rates = (0.1, 1.0e7, 3.0e3)
    problem = RobertsonFit(k1=rates[0], k2=rates[1], k3=rates[2], y0=[0.8, 0.0, 0.2], noise=0.0, n_obs=10)
    np.testing.assert_allclose(problem.data.sum(axis=1), 1.0, rtol=1e-9)  # y1 + y2 + y3 = 0.8 + 0.2
    assert float(problem.data[0, 0]) == pytest.approx(0.8 * np.exp(-0.1 * 1e-5), rel=1e-6)
    log_k = jnp.log(jnp.asarray(rates))
    assert problem.evaluate(log_k, None, None)["max_rel_error"] < 1e-12
    assert problem.evaluate(jnp.log(jnp.array([0.04, 3e7, 1e4])), None, None)["max_rel_error"] > 0.5
    guess, _ = problem.init(getkey())
    assert np.all(np.abs(guess - log_k) <= np.log(3.0))  # spread around the configured rates


def test_robertson_default_noise_is_multiplicative_and_per_species_levels_work(x64):
    clean = np.asarray(RobertsonFit(n_obs=10, noise=0.0).data)
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(0), clean.shape, clean.dtype))
    np.testing.assert_array_equal(RobertsonFit(n_obs=10).data, clean * (1.0 + 0.01 * eps))
    levels = np.array([0.0, 0.05, 0.01])
    noisy = RobertsonFit(n_obs=10, noise=levels.tolist()).data
    np.testing.assert_allclose(noisy, clean * (1.0 + levels * eps), rtol=1e-14)
    np.testing.assert_array_equal(noisy[:, 0], clean[:, 0])


# ---------------------------------------------------------------- spiral


def test_spiral_configured_system_is_the_reference_and_evaluate_uses_it(x64):
    a = ((-0.2, 1.5), (-1.0, -0.3))
    problem = NeuralODESpiral(dynamics_matrix=[list(r) for r in a], y0=[1.5, 0.5], n_points=200,
                              t_end=5.0, rtol=1e-8, atol=1e-10)
    assert problem.settings.dynamics_matrix == a
    np.testing.assert_array_equal(problem.ys[0], [1.5, 0.5])
    expected = rk4(lambda y: (y**3) @ np.asarray(a), [1.5, 0.5], np.asarray(problem.ts))
    np.testing.assert_allclose(problem.ys, expected, atol=1e-6)
    assert problem.data is problem.ys  # no noise by default
    # exact for the configured field (the default A's field scores mse 1.1 here)
    assert problem.evaluate(SpiralField(a), None, None)["mse"] < 1e-12


def test_spiral_noise_goes_to_the_training_data_only(x64):
    problem = NeuralODESpiral(noise=[0.05, 0.1], noise_model="relative_std", noise_seed=2, n_points=2000)
    clean = NeuralODESpiral(n_points=2000)
    np.testing.assert_array_equal(problem.ys, clean.ys)  # evaluate's reference stays exact
    added = np.asarray(problem.data - problem.ys)
    np.testing.assert_allclose(added.std(axis=0), np.array([0.05, 0.1]) * np.asarray(clean.ys).std(axis=0),
                               rtol=0.1)  # 2000 samples: ~1.6% sd
    _, windows = problem._windows(jax.random.PRNGKey(0))
    assert not np.any(np.isin(np.asarray(windows[:, 0, 0]), np.asarray(problem.ys[:, 0])))


# ---------------------------------------------------------------- refused values


BAD = [
    (LotkaVolterraParams, {"u0": [1.0]}, r"problem\.u0: .*must have 2 entries \(x, y\)"),
    (LotkaVolterraParams, {"u0": [1.0, 0.0]}, r"problem\.u0\[1\]: must be greater than 0, got 0\.0"),
    (LotkaVolterraParams, {"predation": 0.0}, r"problem\.predation: must be greater than 0"),
    (LotkaVolterraParams, {"prey_growth": float("inf")}, r"problem\.prey_growth: must be a finite number"),
    (LotkaVolterraParams, {"noise": [0.1, 0.2, 0.3]}, r"problem\.noise: .*must have 2 entries"),
    (LotkaVolterraParams, {"noise": [0.1, -0.2]}, r"problem\.noise\[1\]: must be greater than or equal to 0"),
    (LotkaVolterraParams, {"noise": -0.1}, r"problem\.noise: must be greater than or equal to 0, got -0\.1"),
    (LotkaVolterraParams, {"noise_model": "relative"},
     r"problem\.noise_model: must be 'absolute', 'relative_mean', 'relative_std' or 'multiplicative'"),
    (LorenzParams, {"sigma": -10.0}, r"problem\.sigma: must be greater than 0"),
    (LorenzParams, {"beta": 0.0}, r"problem\.beta: must be greater than 0"),
    (LorenzParams, {"rho": float("nan")}, r"problem\.rho: must be a finite number"),
    (LorenzParams, {"x0": [1.0, float("nan"), 2.0]}, r"problem\.x0\[1\]: must be a finite number"),
    (LorenzParams, {"noise": [0.1, 0.1]}, r"problem\.noise: .*must have 3 entries \(x, y, z\)"),
    (OUParams, {"kappa": 0.0}, r"problem\.kappa: must be greater than 0"),
    (OUParams, {"mean": float("inf")}, r"problem\.mean: must be a finite number"),
    (OUParams, {"x0": float("nan")}, r"problem\.x0: must be a finite number"),
    (OUParams, {"n_paths": 10**6, "n_steps": 10**3, "batch_paths": 8}, r"problem: .*at most 10\*\*8"),
    (RobertsonParams, {"k2": -3e7}, r"problem\.k2: must be greater than 0"),
    (RobertsonParams, {"y0": [0.0, 0.0, 0.0]}, r"problem\.y0: value error, at least one initial concentration must be positive"),
    (RobertsonParams, {"y0": [1.0, -0.1, 0.0]}, r"problem\.y0\[1\]: must be greater than or equal to 0"),
    (RobertsonParams, {"y0": [1.0, 0.0]}, r"problem\.y0: .*must have 3 entries \(y1, y2, y3\)"),
    (RobertsonParams, {"noise": [0.01, 0.01]}, r"problem\.noise: .*must have 3 entries"),
    (SpiralParams, {"dynamics_matrix": [[-0.1, 2.0]]}, r"problem\.dynamics_matrix: .*2 x 2 matrix"),
    (SpiralParams, {"dynamics_matrix": [[-0.1, 2.0], [1.0, "a"]]},
     r"problem\.dynamics_matrix\[1\]\[1\]: must be a valid number"),
    (SpiralParams, {"y0": [2.0, 0.0, 1.0]}, r"problem\.y0: .*must have 2 entries \(y1, y2\)"),
    (SpiralParams, {"batch_solve": "scan"}, r"problem\.batch_solve: must be 'auto', 'vmap' or 'joint'"),
]


@pytest.mark.parametrize("section, data, message", BAD, ids=[f"{c.__name__}-{next(iter(d))}" for c, d, _ in BAD])
def test_bad_physical_settings_are_config_errors_naming_the_key(section, data, message):
    with pytest.raises(ConfigError, match=message):
        validate_section(section, data, "problem")


def test_the_constructors_refuse_them_too():
    with pytest.raises(ConfigError, match=r"problem\.u0: .*must have 2 entries"):
        LotkaVolterraUDE(u0=(1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match=r"problem\.dynamics_matrix"):
        NeuralODESpiral(dynamics_matrix=[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


# ---------------------------------------------------------------- configs and docs

PHYSICAL = {
    "ude_lotka_volterra": ("prey_growth", "predation", "conversion", "predator_death", "u0", "t_end",
                           "dt", "noise", "noise_model", "noise_seed"),
    "lorenz_sindy": ("sigma", "rho", "beta", "x0", "dt", "t_end", "noise", "noise_model", "noise_seed"),
    "neural_sde_ou": ("kappa", "mean", "vol", "x0", "n_paths", "n_steps", "dt", "data_seed"),
    "robertson_fit": ("k1", "k2", "k3", "y0", "n_obs", "t_min", "t_max", "noise", "noise_model",
                      "data_seed"),
    "neural_ode_spiral": ("dynamics_matrix", "y0", "n_points", "t_end", "noise", "noise_model",
                          "noise_seed", "batch_solve"),
}


@pytest.mark.parametrize("name", sorted(PHYSICAL))
def test_shipped_configs_spell_out_the_physical_defaults(name):
    section = load_yaml((REPO / "configs" / f"{name}.yaml").read_text())["problem"]
    assert section.pop("name") == name
    params = get_problem_spec(name).params
    missing = [k for k in PHYSICAL[name] if k not in section]
    assert not missing, f"configs/{name}.yaml lacks {missing}"
    assert validate_section(params, section, "problem") == params()


def test_docs_list_every_key_of_every_problem():
    text = (REPO / "docs" / "ude_problems.md").read_text()
    for name in PHYSICAL:
        spec = get_problem_spec(name)
        assert f"`{name}` (`{spec.params.__name__}`)" in text
        for key in (*spec.params.model_fields, *spec.model.model_fields):
            assert f"`{key}`" in text, (name, key)
