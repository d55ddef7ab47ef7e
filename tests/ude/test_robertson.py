"""RobertsonFit: the kinetics, rate recovery by Levenberg-Marquardt and by the trainer, settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO
from sciml.config import EmptyModel, LBFGSConfig, TrainConfig, load_yaml, validate_section
from sciml.optim import make_optimizer
from sciml.trainer import fit
from sciml.ude import ROBERTSON_RATES, RobertsonFit, robertson_rhs
from sciml.ude.problems import RobertsonParams

TRUE_LOG_K = np.log(ROBERTSON_RATES)


def test_rhs_conserves_mass_and_matches_hand_values(x64):
    y = jnp.array([0.7, 2e-5, 0.3])
    dy = robertson_rhs(0.0, y, jnp.asarray(TRUE_LOG_K))
    k1, k2, k3 = ROBERTSON_RATES
    expected = [-k1 * 0.7 + k3 * 2e-5 * 0.3, k1 * 0.7 - k2 * 4e-10 - k3 * 2e-5 * 0.3, k2 * 4e-10]
    np.testing.assert_allclose(dy, expected, rtol=1e-12)
    assert abs(float(jnp.sum(dy))) < 1e-15


def test_data_and_initial_guess(x64, getkey):
    problem = RobertsonFit(n_obs=12, noise=0.0)
    assert problem.ts.shape == (12,) and problem.data.shape == (12, 3)
    np.testing.assert_allclose(problem.ts[jnp.array([0, -1])], [1e-5, 100.0], rtol=1e-12)
    np.testing.assert_allclose(problem.data.sum(axis=1), 1.0, rtol=1e-9)  # y1 + y2 + y3 = 1
    assert 1e-5 < float(problem.scale[1]) < 5e-5  # y2 is tiny: why residuals are scaled
    model, state = problem.init(getkey())
    assert state is None and model.shape == (3,) and model.dtype == jnp.float64
    assert np.all(np.abs(model - TRUE_LOG_K) <= np.log(3.0))
    zero = problem.evaluate(jnp.asarray(TRUE_LOG_K), None, None)
    assert zero == {name: pytest.approx(0.0, abs=1e-12) for name in problem.metric_names}


@pytest.mark.slow  # accuracy run
def test_lm_recovers_rates_from_noise_free_data(x64, getkey):
    problem = RobertsonFit(noise=0.0)
    guess, _ = problem.init(getkey())
    assert problem.evaluate(guess, None, None)["max_rel_error"] > 0.1
    fitted = problem.fit_lm(guess)
    out = problem.evaluate(fitted, None, None)
    # The data comes from a 100x tighter solve, so the fit sees only solver error.
    assert out["max_rel_error"] < 1e-6, out


@pytest.mark.slow
def test_lm_recovers_rates_from_noisy_data(x64, getkey):
    problem = RobertsonFit(noise=0.01)
    fitted = problem.fit_lm(problem.init(getkey())[0])
    out = problem.evaluate(fitted, None, None)
    assert out["max_rel_error"] < 0.03, out  # measured 2.6e-3 with data_seed 0


@pytest.mark.slow
@pytest.mark.parametrize("noise, tol", [(0.0, 1e-6), (0.01, 0.03)])
def test_lbfgs_through_the_trainer_recovers_rates(x64, noise, tol):
    problem = RobertsonFit(noise=noise)
    result = fit(
        problem,
        make_optimizer(LBFGSConfig(name="lbfgs"), 30),
        TrainConfig(steps=30, log_every=10, checkpoint_every=None, progress=False),
    )
    assert result.summary["max_rel_error"] < tol, result.summary


def test_needs_float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="needs float64"):
            RobertsonFit()
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_invalid_settings(x64):
    with pytest.raises(ValueError, match="t_min"):
        RobertsonFit(t_min=10.0, t_max=1.0)
    with pytest.raises(ValueError, match="n_obs"):
        RobertsonFit(n_obs=1)
    with pytest.raises(ValueError, match="t_min"):
        validate_section(RobertsonParams, {"t_min": 10.0, "t_max": 1.0}, "problem")


def test_config_file_sections_validate(x64):
    data = load_yaml((REPO / "configs/robertson_fit.yaml").read_text())
    assert data["problem"].pop("name") == "robertson_fit"
    params = validate_section(RobertsonParams, data["problem"], "problem")
    model = validate_section(EmptyModel, data["model"], "model")
    assert params == RobertsonParams()  # the file spells out the defaults
    assert data["train"]["dtype"] == "float64" and data["optimizer"]["name"] == "lbfgs"
    problem = RobertsonFit(params.model_copy(update={"n_obs": 12}), model)
    assert isinstance(problem, RobertsonFit) and problem.data.shape == (12, 3)
    assert problem.settings == RobertsonParams(n_obs=12) and problem.model_settings == model


def test_diagnose_names_a_failed_solve(x64):
    # 800 steps: enough for the reference solve's budget (4x), too few for the fit's own solve
    problem = RobertsonFit(n_obs=10, max_steps=800)
    assert RobertsonFit(n_obs=10).diagnose(jnp.asarray(TRUE_LOG_K), None, None) is None
    reason = problem.diagnose(jnp.asarray(TRUE_LOG_K), None, None)
    assert "the Robertson solve at rates k = (0.04, 3e+07, 1e+04) (max_steps=800) failed" in reason
    assert "maximum number of solver steps" in reason


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_gauss_newton_through_the_trainer_lands_on_the_lm_solution(x64, seed):
    # The per_sample residuals drive sciml's Gauss-Newton optimizer; it must
    # reach the least-squares minimum that optimistix's Levenberg-Marquardt
    # finds on the same noisy data (different code, same optimum).
    from sciml.optim import GaussNewtonConfig

    problem = RobertsonFit(noise=0.01, data_seed=seed)
    train = TrainConfig(steps=8, log_every=8, checkpoint_every=None, progress=False, seed=seed)
    result = fit(problem, make_optimizer(GaussNewtonConfig(name="gauss_newton"), 8), train)
    lm = problem.fit_lm(problem.init(jax.random.split(jax.random.PRNGKey(seed), 3)[0])[0])
    np.testing.assert_allclose(np.exp(result.model), np.exp(lm), rtol=1e-5)
    assert result.summary["max_rel_error"] < 0.03, result.summary
