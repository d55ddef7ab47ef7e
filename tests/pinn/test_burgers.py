"""`pinn_burgers`: the residual vanishes on the exact (Cole-Hopf) solution, hard constraints
hold exactly, the derivative engines agree, and `points_file` loads or fails clearly."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import roots_hermite

from sciml.pinn import Burgers
from sciml.pinn.reference import burgers_cole_hopf

NU = 0.01 / math.pi
NET = {"width": 8, "depth": 2}


class ColeHopf(eqx.Module):
    """A fake "model": the exact solution u(x, t) by Cole-Hopf, written in JAX so that the
    problem's operators can differentiate it. With y = x − 2√(νt)η,
    u = −Σ_k w_k sin(πy_k) φ₀(y_k) / Σ_k w_k φ₀(y_k), φ₀(y) = exp(−cos(πy)/(2πν)) (Gauss-Hermite
    nodes η_k, weights w_k). The exponents stay below 1/(2πν) = 50 here, so no shift is needed."""

    nu: float
    eta: jax.Array
    log_w: jax.Array

    def __init__(self, nu, n_nodes=120):
        eta, w = roots_hermite(n_nodes)
        self.nu, self.eta, self.log_w = nu, jnp.asarray(eta), jnp.asarray(np.log(w))

    def __call__(self, p):
        x, t = p[0], p[1]
        y = x - 2 * jnp.sqrt(self.nu * t) * self.eta
        weight = jnp.exp(self.log_w - jnp.cos(jnp.pi * y) / (2 * jnp.pi * self.nu))
        return jnp.stack([-jnp.sum(jnp.sin(jnp.pi * y) * weight) / jnp.sum(weight)])


def _points(key, n, t_min, t_max):
    kx, kt = jax.random.split(key)
    return jnp.stack(
        [
            jax.random.uniform(kx, (n,), minval=-1, maxval=1),
            jax.random.uniform(kt, (n,), minval=t_min, maxval=t_max),
        ],
        axis=1,
    )


def test_fake_model_is_the_reference():
    # the JAX Cole-Hopf used below agrees with the package's reference (numpy, its own
    # nodes), and it is what the problem's evaluation grid holds
    problem = Burgers(n_interior=8, n_boundary=4, n_initial=4, eval_nx=9, eval_nt=4)
    grid, values = problem.reference
    pts = jnp.concatenate([_points(jax.random.key(0), 32, 0.05, 1.0), grid])
    ours = np.asarray(jax.jit(jax.vmap(ColeHopf(NU)))(pts)[:, 0])
    ref = burgers_cole_hopf(np.asarray(pts[:, 0]), np.asarray(pts[:, 1]), nu=NU)
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    np.testing.assert_allclose(ours[32:], values, atol=1e-9)
    assert problem.grid_shape == (9, 4) and grid.shape == (36, 2)


@pytest.mark.parametrize(
    ("nu", "t_max"),
    [(NU, 0.25), (0.05, 1.0)],  # before the shock at the benchmark's ν; a smooth front at ν = 0.05
)
def test_residual_vanishes_on_cole_hopf(nu, t_max):
    kwargs = dict(n_interior=8, n_boundary=4, n_initial=4, eval_nx=5, eval_nt=3)
    terms = Burgers(nu=nu, **kwargs).terms
    wrong = Burgers(nu=2 * nu, **kwargs).terms  # the same field does not solve it with 2ν
    pts = _points(jax.random.key(1), 64, 0.02, t_max)
    walls = jnp.stack([jnp.array([-1.0, 1.0, -1.0, 1.0]), jnp.array([0.1, 0.3, 0.7, 0.9])], 1)
    start = jnp.stack([jnp.linspace(-0.9, 0.9, 7), jnp.zeros(7)], 1)

    @jax.jit
    def check(exact):
        shifted = lambda p: exact(p) + 0.01  # noqa: E731
        u_t = jax.vmap(lambda p: jax.grad(lambda q: exact(q)[0])(p)[1])(pts)
        return (
            jax.vmap(terms(exact)["pde"])(pts),
            jax.vmap(wrong(exact)["pde"])(pts),
            jnp.max(jnp.abs(u_t)),
            jax.vmap(terms(exact)["boundary"])(walls),
            jax.vmap(terms(exact)["initial"])(start),
            jax.vmap(terms(shifted)["initial"])(start),
        )

    r, r_wrong, scale, boundary, initial, initial_shifted = check(ColeHopf(nu))
    # relative to the size of the residual's terms (|u_t| reaches π and more before the shock)
    assert scale > 1.0
    assert float(jnp.max(jnp.abs(r))) < 1e-8 * float(scale)
    assert float(jnp.max(jnp.abs(r_wrong))) > 1e-3  # the check can fail
    # the wall and initial conditions hold for the exact solution, and fail for a shifted one
    assert float(jnp.max(jnp.abs(boundary))) < 1e-12
    assert float(jnp.max(jnp.abs(initial))) < 1e-12
    assert float(jnp.min(jnp.abs(initial_shifted))) > 0.009


@pytest.fixture(scope="module")
def engine_residuals():
    """The PDE residual of one random soft-constrained network on 16 points, per engine."""
    out = {}
    pts = _points(jax.random.key(2), 16, 0.0, 1.0)
    for engine in ("reverse", "forward_over_reverse", "taylor", "forward_laplacian"):
        problem = Burgers(
            engine=engine,
            n_interior=16,
            n_boundary=4,
            n_initial=4,
            eval_nx=5,
            eval_nt=3,
            model_settings=NET,
        )
        model, _ = problem.init(jax.random.key(3))
        out[engine] = jax.jit(jax.vmap(problem.terms(model)["pde"]))(pts)
    return out, pts, model


def test_engines_agree(engine_residuals):
    res, pts, model = engine_residuals
    # an independent residual: u_xx by central differences of u_x (reverse mode), step 1e-4
    u = lambda p: model(p)[0]  # noqa: E731
    g = jax.jit(jax.vmap(jax.grad(u)))
    h = 1e-4
    e = jnp.array([h, 0.0])
    u_xx = (g(pts + e)[:, 0] - g(pts - e)[:, 0]) / (2 * h)
    grad = g(pts)
    fd = grad[:, 1] + jax.vmap(u)(pts) * grad[:, 0] - NU * u_xx
    np.testing.assert_allclose(res["reverse"], fd, rtol=1e-6, atol=1e-8)
    for engine, r in res.items():
        np.testing.assert_allclose(r, res["reverse"], rtol=1e-10, atol=1e-12, err_msg=engine)


def test_hard_constraints_hold_for_random_parameters():
    problem = Burgers(
        hard_constraints=True, n_interior=16, eval_nx=5, eval_nt=3, model_settings=NET
    )
    x = jnp.linspace(-1.0, 1.0, 9)
    t = jnp.linspace(0.0, 1.0, 5)
    rows = jnp.concatenate(
        [
            jnp.stack([x, 0 * x], 1),  # t = 0
            jnp.stack([0 * t - 1, t], 1),
            jnp.stack([0 * t + 1, t], 1),  # the walls
            jnp.stack([x[1:-1], 0 * x[1:-1] + 0.5], 1),  # inside
        ]
    )
    u = eqx.filter_jit(lambda m: jax.vmap(lambda p: problem.solution(m, p))(rows))
    for seed in range(3):
        model, state = problem.init(jax.random.key(seed))
        assert sorted(state.points) == ["pde"]  # no boundary or initial term
        assert sorted(problem.terms(model)) == ["pde"]
        values = u(model)
        np.testing.assert_allclose(values[:9], -np.sin(np.pi * x), atol=1e-15)
        np.testing.assert_allclose(values[9:19], 0.0, atol=1e-15)
        # and the model is not trivially the initial condition inside
        assert float(jnp.max(jnp.abs(values[19:] + jnp.sin(jnp.pi * x[1:-1])))) > 1e-4


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_points_file(tmp_path):
    rng = np.random.default_rng(0)
    interior = np.column_stack([rng.uniform(-1, 1, 12), rng.uniform(0, 1, 12)])
    boundary = np.column_stack([np.repeat([-1.0, 1.0], 3), rng.uniform(0, 1, 6)])
    initial = np.column_stack([rng.uniform(-1, 1, 5), np.zeros(5)])
    path = _write(tmp_path / "pts.npz", interior=interior, boundary=boundary, initial=initial)
    problem = Burgers(points_file=path, eval_nx=5, eval_nt=3, model_settings=NET)
    _, state = problem.init(jax.random.key(0))
    np.testing.assert_array_equal(state.points["pde"], interior)
    np.testing.assert_array_equal(state.points["boundary"], boundary)
    np.testing.assert_array_equal(state.points["initial"], initial)
    # with hard constraints only the interior points are needed (and used)
    only = _write(tmp_path / "interior.npz", interior=interior)
    hard = Burgers(
        points_file=only, hard_constraints=True, eval_nx=5, eval_nt=3, model_settings=NET
    )
    assert sorted(hard.init(jax.random.key(0))[1].points) == ["pde"]


_OK = {"interior": np.zeros((4, 2)), "boundary": np.ones((2, 2)), "initial": np.zeros((2, 2))}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"interior": np.zeros((4, 2))}, r"lacks array\(s\) \['boundary', 'initial'\]"),
        ({**_OK, "interior": np.zeros((4, 3))}, r"interior must have shape \(N, 2\)"),
        ({**_OK, "interior": np.zeros((0, 2))}, r"interior must have shape \(N, 2\)"),
        ({**_OK, "interior": np.array([[0.0, 1.5]])}, "outside"),
        ({**_OK, "boundary": np.full((2, 2), 0.5)}, "boundary rows must have x = -1 or 1"),
        ({**_OK, "initial": np.full((2, 2), 0.5)}, "initial rows must have t = 0"),
    ],
)
def test_points_file_errors(tmp_path, arrays, message):
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        Burgers(points_file=path, eval_nx=5, eval_nt=3)


def test_points_file_unreadable(tmp_path):
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="cannot read"):
        Burgers(points_file=missing, eval_nx=5, eval_nt=3)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="cannot read"):
        Burgers(points_file=str(text), eval_nx=5, eval_nt=3)


def test_resample_at_redraws_at_those_steps_only():
    problem = Burgers(
        hard_constraints=True,
        n_interior=16,
        eval_nx=5,
        eval_nt=3,
        resample={"method": "rad", "every": 3, "until": 4, "n_candidates": 64},
        resample_at=(5, 6),
        model_settings=NET,
    )
    model, state = problem.init(jax.random.key(0))
    advance = eqx.filter_jit(problem.advance)
    changed = []
    for step in range(1, 9):
        new = advance(model, state, jax.random.key(step))
        assert int(new.step) == step
        changed.append(not np.array_equal(new.points["pde"], state.points["pde"]))
        state = new
    # the cadence redraws at step 3 (every 3, below until=4), resample_at at 5 and 6
    assert [k for k, c in zip(range(1, 9), changed) if c] == [3, 5, 6]


def test_resample_at_needs_a_rule():
    with pytest.raises(ValueError, match="resample_at=\\[100\\] needs a resampling rule"):
        Burgers(resample_at=(100,), eval_nx=5, eval_nt=3)


def test_shipped_config_builds_the_recipe():
    # the recipe's pieces fit together: every L-BFGS phase starts on the step that redraws
    # the points (so its curvature pairs all come from one objective), and the last phase
    # keeps its points
    from pathlib import Path

    from sciml.config import load_config
    from sciml.problems import get_problem_spec

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "pinn_burgers.yaml")
    problem = get_problem_spec(cfg.problem_name).build(cfg.problem, cfg.model)
    assert isinstance(problem, Burgers)
    s, steps = problem.settings, cfg.train.steps
    assert s.hard_constraints and cfg.train.dtype == "float64"
    np.testing.assert_allclose(s.nu, 0.01 / np.pi, rtol=1e-15)
    # `advance` counts steps from 1 and redraws at multiples of `every` below `until` and at
    # `resample_at`; a `sequence` boundary b is the step with index b (0-based), i.e. step b + 1
    r = s.resample
    redraws = {k for k in range(1, steps + 1) if k % r.every == 0 and k < r.until}
    redraws |= set(s.resample_at)
    starts = [b + 1 for b in cfg.optimizer.boundaries]
    assert set(starts) <= redraws  # every L-BFGS phase starts on new points ...
    assert max(redraws) == starts[-1]  # ... and keeps them to its end
    assert not any(a < k < b for a, b in zip(starts, starts[1:]) for k in redraws)
    assert [p.name for p in cfg.optimizer.phases] == ["adam"] + ["lbfgs"] * len(starts)
    assert all(k < starts[0] for k in redraws - set(starts))  # the rest during Adam
