"""The periodic evolution problems (`sciml.pinn._periodic`): exact periodicity, hard initial
conditions, the PDE residuals on independent solutions, causal weights, and time windows."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.pinn._periodic import (
    AllenCahn,
    Convection,
    KdV,
    _predict_rows,
    save_initial_values,
    time_marching,
)
from sciml.pinn.reference import allen_cahn_reference, kdv_reference

SMALL = {"n_interior": 32, "n_initial": 8, "eval_nx": 16, "eval_nt": 3}
NET = {"width": 8, "depth": 2}


def _at(problem, model, x, t):
    """The problem's solution at the points (x_i, t), jitted."""
    x = jnp.asarray(x)
    return _predict_rows(problem, model, jnp.stack([x, jnp.full_like(x, t)], axis=-1))


def _random_params(model, key, scale=1.0):
    """`model` with every floating leaf replaced by N(0, scale²) draws (not an initialisation)."""
    leaves, treedef = jax.tree.flatten(model)
    keys = jax.random.split(key, len(leaves))
    out = [
        scale * jax.random.normal(k, x.shape, x.dtype) if eqx.is_inexact_array(x) else x
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, out)


@pytest.fixture(scope="module")
def convection():
    return Convection(**SMALL, t_final=0.5, hard_initial=True, harmonics=2, **NET)


@pytest.fixture(scope="module")
def kdv_short():
    return KdV(**SMALL, t_final=0.25, **NET)


def test_model_exactly_periodic_with_derivatives():
    # a later window with a hard initial condition: the network and the interpolated state
    problem = Convection(**SMALL, t_start=0.2, t_final=0.7, hard_initial=True, harmonics=3, **NET)
    a, b = problem.space
    model = _random_params(problem.make_model(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))

    @jax.jit
    @jax.vmap
    def derivatives(x, t):
        u = lambda x, t: problem.solution(model, jnp.stack([x, t]))  # noqa: E731
        u_x = jax.grad(u, 0)
        u_xx = jax.grad(u_x, 0)
        u_xxx = jax.grad(u_xx, 0)
        return jnp.stack([u(x, t), u_x(x, t), u_xx(x, t), u_xxx(x, t), jax.grad(u, 1)(x, t)])

    t = jnp.asarray([0.2, 0.45, 0.7])
    left, right, inside = (derivatives(jnp.full(3, x), t) for x in (a, b, a + 0.37))
    np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-12)
    assert np.min(np.max(np.abs(inside - left), axis=1)) > 1e-3  # and the field does vary in x


def test_hard_initial_condition_is_exact(convection):
    model = _random_params(convection.make_model(jax.random.PRNGKey(2)), jax.random.PRNGKey(3))
    x = jnp.linspace(0.0, 2 * math.pi, 13)
    got = _at(convection, model, x, 0.0)
    np.testing.assert_allclose(got, np.sin(np.asarray(x)), rtol=0, atol=1e-14)
    assert "initial" not in convection.collocation(jax.random.PRNGKey(0))
    # later times are not pinned
    later = _at(convection, model, x, 0.3)
    assert np.max(np.abs(later - np.sin(np.asarray(x)))) > 1e-2


class _Exact(eqx.Module):
    """A fake model returning sin(x − β t) from the network inputs (x, τ) of a window."""

    beta: float
    t0: float
    t1: float

    def __call__(self, z):
        t = self.t0 + z[1] * (self.t1 - self.t0)
        return jnp.sin(z[0] - self.beta * t)[None]


@pytest.mark.parametrize("window", [(0.0, 1.0), (0.3, 0.55)])
def test_convection_residual_vanishes_on_the_exact_solution(window):
    beta = 17.0
    problem = Convection(**SMALL, beta=beta, t_start=window[0], t_final=window[1], **NET)
    points = problem.collocation(jax.random.PRNGKey(4))
    fake = _Exact(beta, *window)
    res = eqx.filter_jit(problem.residual_vectors)(fake, points)
    assert np.max(np.abs(res["pde"])) < 1e-12
    # the initial term compares with the exact state at t_start (the reference there)
    assert np.max(np.abs(res["initial"])) < 1e-10
    # and a wrong speed leaves a residual of the size of the error
    wrong = eqx.filter_jit(problem.residual_vectors)(_Exact(beta + 1.0, *window), points)
    assert np.sqrt(np.mean(wrong["pde"] ** 2)) > 0.3
    pred = _predict_rows(problem, fake, problem.ref_points)
    np.testing.assert_allclose(pred, problem.ref_values, atol=1e-12)


def _spectral_field(snapshots, times, length, x0):
    """u(x, t): trigonometric interpolant in x of each snapshot, quadratic Lagrange in t."""
    n = snapshots.shape[1]
    c = np.fft.rfft(snapshots, axis=1) / n
    w = np.full(c.shape[1], 2.0)
    w[0] = 1.0
    w[-1] = 1.0  # n even: Nyquist mode
    cos_c, sin_c = jnp.asarray(w * c.real), jnp.asarray(-w * c.imag)
    m = jnp.arange(c.shape[1])
    ts = jnp.asarray(times)

    def u(p):
        theta = 2 * jnp.pi / length * (p[0] - x0) * m
        values = cos_c @ jnp.cos(theta) + sin_c @ jnp.sin(theta)
        d = [(p[1] - ts[k]) for k in range(3)]
        lag = jnp.stack(
            [
                d[1] * d[2] / ((ts[0] - ts[1]) * (ts[0] - ts[2])),
                d[0] * d[2] / ((ts[1] - ts[0]) * (ts[1] - ts[2])),
                d[0] * d[1] / ((ts[2] - ts[0]) * (ts[2] - ts[1])),
            ]
        )
        return lag @ values

    return u


def _residual_on_reference(problem, solver, t_star, h, n, **kw):
    a, b = problem.space
    _, _, snaps = solver(
        n_x=n, save_times=[t_star - h, t_star, t_star + h], t_final=t_star + h, domain=(a, b), **kw
    )
    u = _spectral_field(snaps, [t_star - h, t_star, t_star + h], b - a, a)
    x = jnp.asarray(a + (b - a) * np.random.default_rng(0).random(24))
    pts = jnp.stack([x, jnp.full_like(x, t_star)], axis=-1)
    res, u_t = jax.jit(jax.vmap(lambda p: (problem.residual(u, p), jax.grad(u)(p)[1])))(pts)
    return np.asarray(res), np.asarray(u_t)


def test_allen_cahn_residual_vanishes_on_the_etdrk4_solution():
    problem = AllenCahn(**SMALL, t_final=0.05, **NET)
    res, u_t = _residual_on_reference(
        problem, allen_cahn_reference, 0.3, 1e-3, 256, n_modes=1024, dt=5e-4
    )
    scale = np.sqrt(np.mean(u_t**2))
    assert scale > 0.1
    assert np.sqrt(np.mean(res**2)) < 1e-4 * scale
    # the same field against another diffusion coefficient does not fit
    other = AllenCahn(**SMALL, t_final=0.05, epsilon=1e-2, **NET)
    bad, _ = _residual_on_reference(
        other, allen_cahn_reference, 0.3, 1e-3, 256, n_modes=1024, dt=5e-4
    )
    assert np.sqrt(np.mean(bad**2)) > 1e-2 * scale


@pytest.mark.parametrize("engine", ["reverse", "taylor"])
def test_kdv_residual_vanishes_on_the_etdrk4_solution(engine):
    problem = KdV(**SMALL, t_final=0.05, engine=engine, **NET)
    res, u_t = _residual_on_reference(problem, kdv_reference, 0.2, 1e-3, 256, n_modes=512)
    scale = np.sqrt(np.mean(u_t**2))
    assert scale > 0.1
    assert np.sqrt(np.mean(res**2)) < 1e-4 * scale
    other = KdV(**SMALL, t_final=0.05, delta=0.05, engine=engine, **NET)
    bad, _ = _residual_on_reference(other, kdv_reference, 0.2, 1e-3, 256, n_modes=512)
    assert np.sqrt(np.mean(bad**2)) > 1e-2 * scale


def test_causal_weights_follow_the_chunk_losses():
    eps = 0.3
    problem = Convection(**{**SMALL, "n_interior": 64}, causal={"chunks": 4, "epsilon": eps}, **NET)
    model = _random_params(problem.make_model(jax.random.PRNGKey(5)), jax.random.PRNGKey(6), 0.5)
    _, state = eqx.filter_jit(problem.init)(jax.random.PRNGKey(7))
    state = eqx.filter_jit(problem.advance)(model, state, jax.random.PRNGKey(8))
    t = np.asarray(state.points["pde"][:, 1])
    assert np.all(np.diff(t) >= 0)  # sorted by time: the chunks are time slabs
    # independently: chunk losses of the residuals of the sorted points
    r = np.asarray(jax.jit(jax.vmap(problem.terms(model)["pde"]))(state.points["pde"]))
    chunk = (r**2).reshape(4, -1).mean(axis=1)
    expected = np.exp(-eps * np.concatenate([[0.0], np.cumsum(chunk[:-1])]))
    np.testing.assert_allclose(state.causal, expected, rtol=1e-10)
    assert state.causal[0] == 1.0 and np.all(np.diff(np.asarray(state.causal)) <= 0)
    assert state.causal[-1] < 0.99  # the test exercises non-trivial weights


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="t_start"):
        Convection(**SMALL, t_start=0.5, t_final=0.5)
    with pytest.raises(ValueError, match="windows"):
        Convection(**SMALL, windows=0)


def test_initial_file_hands_over_the_state(tmp_path, kdv_short):
    model = _random_params(kdv_short.make_model(jax.random.PRNGKey(9)), jax.random.PRNGKey(10), 0.3)
    path = tmp_path / "state.npz"
    save_initial_values(kdv_short, model, path, n=256)
    nxt = KdV(**SMALL, t_start=0.25, t_final=0.5, initial_file=str(path), hard_initial=True, **NET)
    other = _random_params(nxt.make_model(jax.random.PRNGKey(11)), jax.random.PRNGKey(12))
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, 9))
    before = _at(kdv_short, model, x, 0.25)
    after = _at(nxt, other, x, 0.25)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="t_start=0.3"):
        KdV(**SMALL, t_start=0.3, t_final=0.5, initial_file=str(path), **NET)
    with pytest.raises(ValueError, match="cannot read"):
        KdV(**SMALL, t_start=0.25, t_final=0.5, initial_file=str(tmp_path / "none.npz"), **NET)


def test_window_without_file_starts_from_the_reference():
    nxt = KdV(**SMALL, t_start=0.25, t_final=0.5, hard_initial=True, **NET)
    _, _, u = kdv_reference(n_x=64, save_times=[0.25], t_final=0.25)
    x = -1 + 2 * np.arange(64) / 64
    got = _at(nxt, nxt.make_model(jax.random.PRNGKey(0)), x, 0.25)
    # the state comes from the problem's 16-point reference grid: a coarse but exact interpolant
    np.testing.assert_allclose(got[::4], u[0][::4], atol=1e-10)


def test_time_marching_chains_windows():
    import optax

    from sciml.trainer import TrainConfig

    problem = Convection(**SMALL, beta=2.0, hard_initial=True, windows=2, **NET)
    assert problem.window_times == (0.0, 0.5)  # alone, the problem poses the first window
    train = TrainConfig(
        steps=3, log_every=3, checkpoint_every=None, progress=False, dtype="float64"
    )
    out = time_marching(problem, optax.adam(1e-3), train, n_grid=32)
    assert out.windows == [(0.0, 0.5), (0.5, 1.0)]
    first, second = out.problems
    x = jnp.linspace(0.0, 2 * math.pi, 7)
    end = _at(first, out.models[0], x, 0.5)
    start = _at(second, out.models[1], x, 0.5)
    np.testing.assert_allclose(start, end, atol=1e-9)  # continuous across the windows
    assert np.isfinite(out.rel_l2) and len(out.window_rel_l2) == 2
    with pytest.raises(ValueError, match="periodic evolution problem"):
        time_marching(object(), optax.adam(1e-3), train)
