"""Evolution equations on a periodic interval: Allen-Cahn, convection, Korteweg-de Vries.

All three pose u(x, t) on [a, b) × [t_start, t_final] with an initial
condition and periodic boundaries. Periodicity is exact: the network sees x
only through `(cos ωmx, sin ωmx)`, ω = 2π/(b − a), m = 1..`harmonics`
(`sciml.nn.PeriodicEmbedding`), so u and all its x-derivatives are periodic
and no boundary term is needed. The network's time input is the window's
normalised time τ = (t − t0)/(t1 − t0) ∈ [0, 1]. Loss terms: `pde` and,
unless `hard_initial` (u = u_init(x) + τ·net(x, τ)), `initial`. Causal
weighting (`causal: {chunks: M, epsilon: ε}`) orders training in time.

- `pinn_allen_cahn`: u_t = 1e-4 u_xx + 5u − 5u³ on [−1,1), u0 = x² cos πx;
  reference by Fourier ETDRK4 (`reference.allen_cahn_reference`).
- `pinn_convection`: u_t + β u_x = 0 on [0, 2π), β = 40, u0 = sin x; exact
  u = sin(x − βt).
- `pinn_kdv`: u_t + u u_x + δ² u_xxx = 0 on [−1,1), δ = 0.022, u0 = cos πx;
  reference by ETDRK4 (`reference.kdv_reference`); the third derivative
  comes from the chosen engine (Taylor mode does u_xxx in one pass).

Time marching (what jaxpi does for its hardest examples). With
`windows: K` the interval [t_start, t_final] is split into K equal windows
[t0, t1]; the problem poses the first, and `time_marching` trains them one
after another, each started from the previous window's end state (and, by
default, its parameters). A window's initial condition u_init is, in this
order: the grid values in `initial_file` (an `.npz` with `u` on the uniform
periodic grid and the time `t`, as `save_initial_values` writes them,
evaluated by their trigonometric interpolant, so it stays exactly periodic
and smooth); else, for t0 > 0, the reference solution at t0; else u0. The
reference grid always holds the true solution from t = 0, so a window's
`rel_l2` includes the error carried in from earlier windows.
"""

from __future__ import annotations

import abc
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from pydantic import Field, model_validator

import sciml.pinn.operators as operators
from sciml.pinn._base import AbstractPINN
from sciml.pinn._network import make_network
from sciml.pinn._settings import (
    CausalSettings,
    Engine,
    PINNNetwork,
    ResampleSettings,
    Sampler,
    WeightingSettings,
)
from sciml.pinn.conditions import initial_residual
from sciml.pinn.geometry import Interval, SpaceTime, TimeInterval
from sciml.pinn.reference import allen_cahn_reference, kdv_reference
from sciml.problems import resolve_settings
from sciml.schema import PositiveFloat, PositiveInt, Section

__all__ = [
    "AllenCahn",
    "AllenCahnSettings",
    "Convection",
    "ConvectionSettings",
    "KdV",
    "KdVSettings",
    "MarchingResult",
    "save_initial_values",
    "time_marching",
]


def _allen_cahn_u0(x):
    return x[0] ** 2 * jnp.cos(jnp.pi * x[0])


def _convection_u0(x):
    return jnp.sin(x[0])


def _kdv_u0(x):
    return jnp.cos(jnp.pi * x[0])


class _PeriodicCommon(Section):
    n_interior: PositiveInt = 4096
    n_initial: PositiveInt = 256
    t_start: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    t_final: PositiveFloat = 1.0
    windows: PositiveInt = 1
    initial_file: str | None = None
    harmonics: Annotated[int, Field(ge=1, le=64)] = 1
    hard_initial: bool = False
    sampler: Sampler = "uniform"
    engine: Engine = "reverse"
    weights: dict[Literal["pde", "initial"], Annotated[float, Field(ge=0)]] = {}
    weighting: WeightingSettings = WeightingSettings()
    resample: ResampleSettings = ResampleSettings()
    causal: CausalSettings = CausalSettings()
    eval_nx: Annotated[int, Field(ge=4, le=4096)] = 256
    eval_nt: Annotated[int, Field(ge=2, le=4096)] = 101

    @model_validator(mode="after")
    def _window(self):
        if not self.t_start < self.t_final:
            raise ValueError(
                f"t_start={self.t_start} must be below t_final={self.t_final} (the time window)"
            )
        return self


class AllenCahnSettings(_PeriodicCommon):
    """`problem` section of `pinn_allen_cahn`: u_t = epsilon u_xx + coeff (u − u³).

    Attributes:
        epsilon, coeff: diffusion and reaction coefficients.
        n_interior, n_initial: PDE and initial-condition points.
        t_start, t_final: the time interval (t_start > 0: a later part of the evolution).
        windows: time marching: [t_start, t_final] is split into this many
            equal windows; the problem poses the first (a plain `fit` or CLI
            run trains it alone), and `time_marching` trains them in turn.
        initial_file: `.npz` with the state at t_start (`u` on the grid
            a + (b − a) j/n, j < n, and its time `t`); `null`: u0, or the
            reference solution at t_start > 0.
        harmonics: Fourier harmonics of the periodic embedding of x.
        hard_initial: u = u_init + τ·net (no initial term).
        sampler, engine, weights, weighting, resample, causal: as for every PINN.
        eval_nx, eval_nt: reference grid (periodic x without the right end,
            t in [t_start, t_final]).
    """

    epsilon: PositiveFloat = 1e-4
    coeff: PositiveFloat = 5.0


class ConvectionSettings(_PeriodicCommon):
    """`problem` section of `pinn_convection`: u_t + beta u_x = 0 on [0, 2π), u0 = sin x.

    Attributes:
        beta: the transport speed β.
        (the others as in `AllenCahnSettings`)
    """

    beta: PositiveFloat = 40.0


class KdVSettings(_PeriodicCommon):
    """`problem` section of `pinn_kdv`: u_t + u u_x + delta² u_xxx = 0, u0 = cos πx.

    Attributes:
        delta: the dispersion δ.
        (the others as in `AllenCahnSettings`)
    """

    delta: PositiveFloat = 0.022


class _AbstractPeriodic(AbstractPINN):
    """Shared pieces of the periodic evolution problems (abstract)."""

    time_dependent: ClassVar[bool] = True
    ModelSettings: ClassVar[type[Section]] = PINNNetwork
    metric_names: ClassVar[tuple[str, ...]] = ("rel_l2", "max_abs_error")
    space: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    @staticmethod
    @abc.abstractmethod
    def u0(x):
        """The initial condition at t = 0 at a space point `x` of shape (1,)."""

    @abc.abstractmethod
    def reference_on(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The true solution `(len(t), len(x))` on the periodic grid `x` at times `t` (numpy)."""

    @abc.abstractmethod
    def residual(self, u, x):
        """The PDE residual of the field `u` at one point (x, t)."""

    @property
    def grid_shape(self):
        return (self.settings.eval_nx, self.settings.eval_nt)

    @property
    def reference(self):
        return self.ref_points, self.ref_values

    @property
    def window_times(self) -> tuple[float, float]:
        """`(t0, t1)`: the time window this problem poses (the first of `windows`)."""
        s = self.settings
        return s.t_start, s.t_start + (s.t_final - s.t_start) / s.windows

    @property
    def domain(self):
        return SpaceTime(Interval(*self.space), TimeInterval(*self.window_times))

    def _setup(self):
        """`(ref_points, ref_values, window, initial_modes)` of this window (for `__init__`).

        The window's times are an array (not constants of the compiled
        program), and the initial condition's mode count is rounded up to a
        power of two, so the windows of a march share one compiled program
        (JAX's persistent cache finds it).
        """
        s = self.settings
        a, b = self.space
        t0, t1 = self.window_times
        x = a + (b - a) * np.arange(s.eval_nx) / s.eval_nx
        t = np.linspace(t0, t1, s.eval_nt)
        u = np.asarray(self.reference_on(x, t), dtype=float)
        xx, tt = np.meshgrid(x, t, indexing="ij")
        points = jnp.asarray(np.stack([xx.ravel(), tt.ravel()], axis=-1))
        values = jnp.asarray(u.T.ravel())
        if s.initial_file is not None:
            modes = _trig_modes(_load_initial(s.initial_file, s.t_start))
        elif s.t_start > 0:
            modes = _trig_modes(u[0])
        else:
            modes = None
        window = jnp.asarray([t0, t1], dtype=points.dtype)
        return points, values, window, modes

    def initial(self, x):
        """The window's initial condition u_init at a space point `x` of shape (1,)."""
        if self.initial_modes is None:
            return self.u0(x)
        a, b = self.space
        return _trig_series(self.initial_modes, 2 * jnp.pi / (b - a) * (x[0] - a))

    def make_model(self, key):
        a, b = self.space
        return make_network(
            self.model_settings,
            2,
            1,
            key=key,
            periodic={0: b - a},
            harmonics=self.settings.harmonics,
        )

    def collocation(self, key):
        ikey, ckey = jax.random.split(key)
        s, dom = self.settings, self.domain
        points = {"pde": dom.sample_interior(ikey, s.n_interior, method=s.sampler)}
        if not s.hard_initial:
            points["initial"] = dom.sample_initial(ckey, s.n_initial, method=s.sampler)
        return points

    def candidates(self, key, n):
        return self.domain.sample_interior(key, n)

    def solution(self, model, x):
        # the network sees the window's normalised time (nondimensionalised input)
        t0, t1 = self.window[0], self.window[1]
        tau = (x[1] - t0) / (t1 - t0)
        out = model(jnp.stack([x[0], tau]))[0]
        return self.initial(x[:1]) + tau * out if self.settings.hard_initial else out

    def terms(self, model, key=None):
        u = lambda x: self.solution(model, x)  # noqa: E731
        out = {"pde": lambda x: self.residual(u, x)}
        if not self.settings.hard_initial:
            out["initial"] = lambda x: initial_residual(u, x, self.initial)
        return out


class AllenCahn(_AbstractPeriodic):
    """Allen-Cahn u_t = ε u_xx + c(u − u³) on [−1,1) periodic, u0 = x² cos πx (ETDRK4 reference)."""

    Settings: ClassVar[type[Section]] = AllenCahnSettings

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    window: Float[Array, " 2"]
    initial_modes: Float[Array, "2 k"] | None
    settings: AllenCahnSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        self.ref_points, self.ref_values, self.window, self.initial_modes = self._setup()

    u0 = staticmethod(_allen_cahn_u0)

    def reference_on(self, x, t):
        s = self.settings
        _, _, u = allen_cahn_reference(
            n_x=x.size,
            save_times=t,
            t_final=float(t[-1]),
            epsilon=s.epsilon,
            coeff=s.coeff,
            domain=self.space,
            n_modes=_solver_modes(x.size, 1024),
        )
        return u

    def residual(self, u, x):
        s = self.settings
        # one call, so that Taylor mode shares its passes (u and u_xx from one 2-jet)
        v, d = operators.value_and_derivatives(u, x, [(1,), (0, 0)], engine=s.engine)
        return d[(1,)] - s.epsilon * d[(0, 0)] - s.coeff * (v - v**3)


class Convection(_AbstractPeriodic):
    """Linear convection u_t + β u_x = 0 on [0, 2π) periodic, u0 = sin x (exact sin(x − βt))."""

    Settings: ClassVar[type[Section]] = ConvectionSettings
    space: ClassVar[tuple[float, float]] = (0.0, 2 * math.pi)

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    window: Float[Array, " 2"]
    initial_modes: Float[Array, "2 k"] | None
    settings: ConvectionSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        self.ref_points, self.ref_values, self.window, self.initial_modes = self._setup()

    u0 = staticmethod(_convection_u0)

    def reference_on(self, x, t):
        return np.sin(x[None, :] - self.settings.beta * t[:, None])

    def residual(self, u, x):
        g = operators.gradient(u, x, engine=self.settings.engine)
        return g[1] + self.settings.beta * g[0]


class KdV(_AbstractPeriodic):
    """Korteweg-de Vries u_t + u u_x + δ² u_xxx = 0 on [−1,1) periodic, u0 = cos πx (ETDRK4 reference)."""

    Settings: ClassVar[type[Section]] = KdVSettings

    ref_points: Float[Array, "m 2"]
    ref_values: Float[Array, " m"]
    window: Float[Array, " 2"]
    initial_modes: Float[Array, "2 k"] | None
    settings: KdVSettings = eqx.field(static=True)
    model_settings: PINNNetwork = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        self.ref_points, self.ref_values, self.window, self.initial_modes = self._setup()

    u0 = staticmethod(_kdv_u0)

    def reference_on(self, x, t):
        _, _, u = kdv_reference(
            n_x=x.size,
            save_times=t,
            t_final=float(t[-1]),
            delta=self.settings.delta,
            domain=self.space,
            n_modes=_solver_modes(x.size, 512),
        )
        return u

    def residual(self, u, x):
        # one call, so that Taylor mode shares its passes (u, u_x, u_xxx from one 3-jet)
        v, d = operators.value_and_derivatives(
            u, x, [(0,), (1,), (0, 0, 0)], engine=self.settings.engine
        )
        return d[(1,)] + v * d[(0,)] + self.settings.delta**2 * d[(0, 0, 0)]


def _solver_modes(n_x: int, minimum: int) -> int:
    """A solver grid of at least `minimum` points that `n_x` divides (output by subsampling)."""
    return n_x * max(1, -(-minimum // n_x))


def _trig_modes(u: np.ndarray, rtol: float = 1e-14) -> Array:
    """Cosine and sine coefficients `(2, M + 1)` of the trigonometric interpolant of `u`.

    u(θ) = Σ_{m ≤ M} A_m cos mθ + B_m sin mθ, θ = 2π (x − a)/(b − a), on the
    grid θ_j = 2πj/n. For even n the Nyquist mode is a cosine (real for real
    data). The tail of modes whose coefficients are all below `rtol · max|u|`
    is dropped (a smooth state needs few modes, and each costs a cosine and a
    sine per point and derivative), which changes the interpolant by less
    than `n · rtol · max|u|`.
    """
    n = u.shape[0]
    c = np.fft.rfft(u) / n
    w = np.full(c.shape, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    modes = np.stack([w * c.real, -w * c.imag])
    big = np.flatnonzero(np.abs(modes).max(axis=0) > rtol * max(np.abs(u).max(), 1e-300))
    keep = 1 + (int(big[-1]) if big.size else 0)
    size = max(8, 1 << (keep - 1).bit_length())  # padded with zeros to a power of two
    out = np.zeros((2, size))
    out[:, :keep] = modes[:, :keep]
    return jnp.asarray(out)


def _trig_series(modes: Array, theta: Array) -> Array:
    """`Σ_m A_m cos mθ + B_m sin mθ` for `modes = (A, B)` of a power-of-two length S.

    With m = Qp + q (Q ≈ √S) the angle-addition formulas need only the
    cosines and sines of qθ and Qpθ, 2(Q + S/Q) of them instead of 2S, and
    two small matrix-vector products: a state of a few hundred modes then
    costs about as much as a small network, per point and per derivative.
    """
    size = modes.shape[1]
    q_size = 1 << ((size.bit_length() - 1 + 1) // 2)
    a, b = modes.reshape(2, size // q_size, q_size)
    q = jnp.arange(q_size, dtype=theta.dtype) * theta
    p = jnp.arange(size // q_size, dtype=theta.dtype) * (q_size * theta)
    cq, sq = jnp.cos(q), jnp.sin(q)
    return jnp.cos(p) @ (a @ cq + b @ sq) + jnp.sin(p) @ (b @ cq - a @ sq)


def _load_initial(path: str, t_start: float) -> np.ndarray:
    """The grid values `u` of an `initial_file`, checked against the window's start."""
    try:
        data = np.load(path)
    except OSError as e:
        raise ValueError(f"initial_file: cannot read {path!r}: {e}") from None
    if "u" not in data or "t" not in data:
        raise ValueError(
            f"initial_file {path!r} needs arrays 'u' (grid values) and 't' (their time), "
            f"has {sorted(data.files)}"
        )
    u = np.asarray(data["u"], dtype=float)
    t = float(data["t"])
    if u.ndim != 1 or u.size < 4 or not np.all(np.isfinite(u)):
        raise ValueError(f"initial_file {path!r}: 'u' must be >= 4 finite values, got {u.shape}")
    if not math.isclose(t, t_start, rel_tol=1e-12, abs_tol=1e-12):
        raise ValueError(
            f"initial_file {path!r} holds the state at t={t}, but the window starts at "
            f"t_start={t_start}"
        )
    return u


def save_initial_values(problem: _AbstractPeriodic, model, path, *, n: int = 1024, t=None):
    """Write the model's state at time `t` (default: the end of its window) as an `initial_file`.

    Args:
        problem: the periodic problem `model` was trained on.
        model: its model.
        path: the `.npz` to write (arrays `u` (n,) on x_j = a + (b − a) j/n and `t`).
        n: grid size (a power of two keeps the interpolant's modes aligned).
        t: the time (default `problem.window_times[1]`).

    Returns:
        The grid values `u`, shape `(n,)`.
    """
    if n < 4:
        raise ValueError(f"save_initial_values: n must be >= 4, got {n}")
    t = problem.window_times[1] if t is None else float(t)
    a, b = problem.space
    x = a + (b - a) * np.arange(n) / n
    rows = jnp.asarray(np.stack([x, np.full(n, t)], axis=-1))
    u = np.asarray(_predict_rows(problem, model, rows))
    np.savez(path, u=u, t=np.float64(t))
    return u


@dataclass
class MarchingResult:
    """What `time_marching` returns.

    Attributes:
        windows: the `(t_start, t_final)` of each window.
        models: each window's trained model.
        problems: each window's problem.
        fits: each window's `FitResult`.
        rel_l2, max_abs_error: of the marched solution on the whole
            problem's reference grid (each grid time in the window that
            contains it).
        window_rel_l2: each window's `rel_l2` (on its own grid, against the
            true solution, so it includes the error carried in).
    """

    windows: list[tuple[float, float]]
    models: list[Any]
    problems: list[Any]
    fits: list[Any] = field(repr=False)
    rel_l2: float
    max_abs_error: float
    window_rel_l2: list[float]


def time_marching(
    problem: _AbstractPeriodic,
    optimizer,
    train,
    *,
    warm_start: bool = True,
    n_grid: int = 1024,
    workdir=None,
) -> MarchingResult:
    """Train the `windows` time windows of `problem` one after another (time marching).

    Window k covers [t_k, t_{k+1}] (equal parts of [t_start, t_final]); its
    initial condition is window k−1's prediction at t_k, handed over as grid
    values (`n_grid` points, `save_initial_values`) through `initial_file`,
    and with `warm_start` its network starts from window k−1's parameters
    (the optimizer starts afresh). Each window runs `fit(window, optimizer,
    train)` for the full `train.steps`.

    Args:
        problem: a periodic evolution problem; its settings are reused for
            every window (with the window's times and `windows: 1`).
        optimizer: an optax transformation (e.g. `make_optimizer(section,
            train.steps)`: its schedule spans one window).
        train: the `TrainConfig` of every window.
        warm_start: start each window from the previous window's parameters.
        n_grid: grid size of the handed-over states.
        workdir: folder for the handed-over `.npz` files (a temporary one if `None`).

    Returns:
        A `MarchingResult`; its `rel_l2` is measured on the whole interval.

    Raises:
        ValueError: a problem that is not a periodic evolution problem.

    Example:
        >>> problem = Convection(windows=8, hard_initial=True, width=32, depth=3)
        >>> out = time_marching(problem, make_optimizer(section, 1500), TrainConfig(steps=1500))
        >>> out.rel_l2
    """
    from sciml.trainer import fit, init_train_state, split_model

    if not isinstance(problem, _AbstractPeriodic):
        raise ValueError(
            "time_marching: needs a periodic evolution problem (pinn_allen_cahn, "
            f"pinn_convection, pinn_kdv), got {type(problem).__name__}"
        )
    s = problem.settings
    edges = np.linspace(s.t_start, s.t_final, s.windows + 1)
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    folder = Path(tmp.name if tmp is not None else workdir)
    folder.mkdir(parents=True, exist_ok=True)
    spans, models, problems, fits = [], [], [], []
    try:
        initial_file, params = s.initial_file, None
        for k in range(s.windows):
            t0, t1 = float(edges[k]), float(edges[k + 1])
            window = _with(problem, t_start=t0, t_final=t1, windows=1, initial_file=initial_file)
            start = None
            if warm_start and params is not None:
                ts, _ = init_train_state(window, optimizer, train.seed)
                start = ts._replace(params=params)
            result = fit(window, optimizer, train, start_from=start)
            params = split_model(result.model)[0]
            if k + 1 < s.windows:
                initial_file = str(folder / f"window{k + 1}_t{t1:.6g}.npz")
                save_initial_values(window, result.model, initial_file, n=n_grid)
            spans.append((t0, t1))
            models.append(result.model)
            problems.append(window)
            fits.append(result)
    finally:
        if tmp is not None:
            tmp.cleanup()
    whole = problem if s.windows == 1 else _with(problem, windows=1)
    points, values = (np.asarray(a) for a in whole.reference)
    index = np.clip(np.searchsorted(edges, points[:, 1], side="left") - 1, 0, s.windows - 1)
    pred = np.empty_like(values)
    for k, (window, model) in enumerate(zip(problems, models)):
        mask = index == k
        if mask.any():
            pred[mask] = np.asarray(_predict_rows(window, model, jnp.asarray(points[mask])))
    return MarchingResult(
        windows=spans,
        models=models,
        problems=problems,
        fits=fits,
        rel_l2=float(np.linalg.norm(pred - values) / np.linalg.norm(values)),
        max_abs_error=float(np.max(np.abs(pred - values))),
        window_rel_l2=[float(f.final_eval["rel_l2"]) for f in fits],
    )


def _with(problem: _AbstractPeriodic, **changes) -> _AbstractPeriodic:
    """The same problem with some settings changed (validated again)."""
    s = problem.settings
    return type(problem)(
        type(s).model_validate({**s.model_dump(), **changes}), problem.model_settings
    )


@eqx.filter_jit
def _predict_rows(problem, model, rows):
    return jax.vmap(lambda r: problem.solution(model, r))(rows)
