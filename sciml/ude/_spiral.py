"""The neural-ODE spiral: the classic torchdiffeq demo as a Problem.

True dynamics dy/dt = (y**3) @ A with A = [[-0.1, 2.0], [-2.0, -0.1]] and
y0 = [2, 0] by default (each a key of the `problem` section, `SpiralParams`),
sampled at `n_points` times on [0, t_end] (without noise by default). The
model is an MLP vector field applied to y**3. Training fits random windows of `batch_time`
consecutive samples, each solved from its own true first point (Chen et al.,
"Neural Ordinary Differential Equations", NeurIPS 2018; torchdiffeq's
`examples/ode_demo.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from pydantic import Field, field_validator, model_validator

from sciml.nn import ACTIVATIONS, MLP, activation_by_name
from sciml.parallel import shard_batch
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import Section
from sciml.ude._noise import (
    FiniteFloat,
    NoiseLevel,
    NoiseModel,
    add_observation_noise,
    state_tuple,
)
from sciml.ude._solve import failure_report, solve, solve_batch

__all__ = [
    "CubicMLPField",
    "MLPModel",
    "NeuralODESpiral",
    "SpiralParams",
    "SpiralField",
    "adjoint_by_name",
    "batch_mode_for",
    "spiral_dynamics",
]

SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))
"""The default matrix A of dy/dt = (y**3) @ A (torchdiffeq's demo)."""
SPIRAL_Y0 = (2.0, 0.0)
"""The default initial state."""
_REFERENCE_MAX_STEPS = 10**6  # ~500 steps at the defaults; a blow-up stops here


class SpiralField(eqx.Module):
    """The true spiral vector field (y**3) @ A for one state y of shape (2,).

    Attributes:
        matrix: A as a 2 x 2 tuple of floats (static: a compile-time constant).
    """

    matrix: tuple[tuple[float, float], tuple[float, float]] = eqx.field(static=True)

    def __call__(self, t, y: Float[Array, " 2"], args=None) -> Float[Array, " 2"]:
        return (y**3) @ jnp.asarray(self.matrix, dtype=y.dtype)


def spiral_dynamics(t, y: Float[Array, " 2"], args=None) -> Float[Array, " 2"]:
    """The default spiral vector field (y**3) @ A with A = `SPIRAL_A`."""
    return SpiralField(SPIRAL_A)(t, y, args)


class CubicMLPField(eqx.Module):
    """Vector field f(t, y) = MLP(y**3) on a single state y of shape (2,)."""

    mlp: MLP

    def __call__(self, t, y, args=None):
        return self.mlp(y**3)


def _solve(field, y0, ts, rtol, atol, max_steps, adjoint=None, mode=None):
    """Solve from `y0` (a batch when `mode` is given) saving at `ts`; failures give non-finite values."""
    return _solution(field, y0, ts, rtol, atol, max_steps, adjoint, mode).ys


def _solution(field, y0, ts, rtol, atol, max_steps, adjoint=None, mode=None):
    # Inside training a failed solve must not abort the host: diffrax then
    # returns inf, the loss is non-finite, the trainer stops with the step
    # and the last good checkpoint, and `diagnose` names the failed window.
    kw = dict(
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        adjoint=adjoint,
        throw=False,
    )
    if mode is None:
        return solve(field, y0, ts, **kw)
    return solve_batch(field, y0, ts, mode=mode, **kw)


def adjoint_by_name(name: str, rtol: float = 1e-3, atol: float = 1e-6) -> dfx.AbstractAdjoint:
    """The diffrax adjoint for a config name (the one place these strings become objects)."""
    if name == "recursive_checkpoint":
        return dfx.RecursiveCheckpointAdjoint()
    if name == "backsolve":
        # the backward solve gets the forward tolerances (diffrax's default is 1e-3/1e-6)
        return dfx.BacksolveAdjoint(stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol))
    if name == "direct":
        return dfx.DirectAdjoint()
    raise ValueError(f"unknown adjoint {name!r}; allowed: recursive_checkpoint, backsolve, direct")


def batch_mode_for(adjoint: dfx.AbstractAdjoint) -> str:
    """The batching `batch_solve: auto` picks for `adjoint`: `"joint"` or `"vmap"`.

    `"joint"` for `BacksolveAdjoint`: the backward solve then carries one
    parameter adjoint for the whole batch instead of one per window, 5-7x
    faster on the spiral (`benchmarks/ude_vs_torchdiffeq.py`). `"vmap"` for
    every other adjoint (`RecursiveCheckpointAdjoint`, `DirectAdjoint`, ...):
    there both cost about the same, and vmap keeps each window's own step
    sizes and a per-window failure report.
    """
    return "joint" if isinstance(adjoint, dfx.BacksolveAdjoint) else "vmap"


class SpiralParams(Section):
    """`problem` section of `neural_ode_spiral`: the settings of `NeuralODESpiral`.

    Attributes:
        dynamics_matrix: A in dy/dt = (y**3) @ A, as two rows
            (default [[-0.1, 2.0], [-2.0, -0.1]]: a slowly decaying spiral).
        y0: the initial state (y1, y2) at t = 0.
        n_points: samples of the true trajectory on [0, t_end].
        t_end: final time.
        noise: observation noise on the training data, one number or one per
            state (default 0: exact samples, as torchdiffeq's demo); `evaluate`
            always compares with the exact trajectory.
        noise_model: how `noise` scales the N(0, 1) draws (see `NoiseModel`):
            `"absolute"` (default), `"relative_std"`, `"relative_mean"` or
            `"multiplicative"`.
        noise_seed: seed of the noise draw.
        batch_size: windows per training batch.
        batch_time: samples per window (fewer than `n_points`).
        rtol, atol: tolerances of the PID step-size controller (Tsit5).
        max_steps: solver step budget per solve.
        loss: `"l1"` (mean absolute error, as torchdiffeq's demo) or `"mse"`.
        adjoint: how training differentiates the solve (see `adjoint_by_name`):
            `"recursive_checkpoint"`, `"backsolve"` (O(1) memory; the backward
            solve gets `rtol`/`atol`) or `"direct"`.
        batch_solve: how the batch of windows is solved (see
            `sciml.ude.solve_batch`): `"vmap"` (each window its own solve and
            step sizes), `"joint"` (the batch as one system with shared steps,
            as torchdiffeq does) or `"auto"` (default: `batch_mode_for` the
            adjoint, i.e. `"joint"` with `"backsolve"`, 5-7x faster there,
            and `"vmap"` with `"recursive_checkpoint"` and `"direct"`, where
            both cost the same). The two give the same loss and gradient up
            to the solver tolerance, not bit for bit.
    """

    dynamics_matrix: tuple[tuple[FiniteFloat, FiniteFloat], tuple[FiniteFloat, FiniteFloat]] = SPIRAL_A
    y0: tuple[FiniteFloat, FiniteFloat] = SPIRAL_Y0
    noise: NoiseLevel = 0.0
    noise_model: NoiseModel = "absolute"
    noise_seed: Annotated[int, Field(ge=0)] = 0
    n_points: Annotated[int, Field(ge=3, le=10**6)] = 1000
    t_end: Annotated[float, Field(gt=0, le=1e4)] = 25.0
    batch_size: Annotated[int, Field(gt=0)] = 20
    batch_time: Annotated[int, Field(ge=2)] = 10
    rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    atol: Annotated[float, Field(gt=0)] = 1e-4
    max_steps: Annotated[int, Field(gt=0)] = 4096
    loss: Literal["l1", "mse"] = "l1"
    adjoint: Literal["recursive_checkpoint", "backsolve", "direct"] = "recursive_checkpoint"
    batch_solve: Literal["auto", "vmap", "joint"] = "auto"

    @field_validator("dynamics_matrix", mode="before")
    @classmethod
    def _two_by_two(cls, value):
        # YAML gives nested lists; the section keeps (hashable) tuples
        if isinstance(value, (list, tuple)):
            if len(value) != 2 or not all(isinstance(r, (list, tuple)) and len(r) == 2 for r in value):
                raise ValueError("must be a 2 x 2 matrix given as two rows, e.g. [[-0.1, 2.0], [-2.0, -0.1]]")
            return tuple(tuple(r) for r in value)
        return value

    @field_validator("y0", mode="before")
    @classmethod
    def _y0_pair(cls, value):
        return state_tuple(value, 2, "y1, y2", "the initial state")

    @field_validator("noise", mode="before")
    @classmethod
    def _noise_per_state(cls, value):
        return state_tuple(value, 2, "y1, y2", "one noise level per state (or give one number)")

    @model_validator(mode="after")
    def _window_fits(self):
        if self.batch_time >= self.n_points:
            raise ValueError(
                f"batch_time ({self.batch_time}) must be smaller than n_points ({self.n_points})"
            )
        return self


class MLPModel(Section):
    """`model` section of `neural_ode_spiral`: the MLP vector field 2-width^depth-2 on y**3."""

    width: Annotated[int, Field(gt=0)] = 50
    depth: Annotated[int, Field(ge=0)] = 1
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"


class NeuralODESpiral(AbstractProblem):
    """Fit a neural ODE to the spiral trajectory.

    Settings: `SpiralParams` (the `problem` section) and `MLPModel` (the
    `model` section), given as sections or as keyword arguments, e.g.
    `NeuralODESpiral(n_points=200, batch_solve="joint", width=16)`.

    Two keywords besides the settings:

    - `loss_kind`: the older name of the `loss` setting.
    - `adjoint`: a setting name (`"backsolve"`, ...) or a diffrax adjoint
      object. An object is kept as `adjoint_override` and used instead of
      `settings.adjoint` (for adjoints no name covers, e.g. a
      `BacksolveAdjoint` with its own solver).

    Attributes (besides the settings): `ts` the sample times, `ys` (n, 2) the
    exact trajectory of the configured system, `data` (n, 2) the training
    observations (`ys` plus the configured noise; `ys` itself without noise).

    The batch of windows is solved as `batch_mode` says: the `batch_solve`
    setting, where `"auto"` (the default) picks from the adjoint in use
    (`batch_mode_for`: joint with `BacksolveAdjoint`, vmap otherwise).

    `evaluate` reports `mse`: mean squared error of the whole trajectory
    solved from y0 against the exact trajectory `ys`.
    """

    Settings: ClassVar[type[Section]] = SpiralParams
    ModelSettings: ClassVar[type[Section]] = MLPModel

    ts: Float[Array, " n"]
    ys: Float[Array, "n 2"]
    data: Float[Array, "n 2"]
    settings: SpiralParams = eqx.field(static=True)
    model_settings: MLPModel = eqx.field(static=True)
    adjoint_override: dfx.AbstractAdjoint | None = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = ("mse",)

    def __init__(
        self,
        settings: SpiralParams | dict | None = None,
        model_settings: MLPModel | dict | None = None,
        *,
        loss_kind: str | None = None,
        adjoint: str | dfx.AbstractAdjoint | None = None,
        **kwargs,
    ):
        if loss_kind is not None:
            if "loss" in kwargs:
                raise TypeError("NeuralODESpiral: give `loss` or its older name `loss_kind`, not both")
            kwargs["loss"] = loss_kind
        if isinstance(adjoint, dfx.AbstractAdjoint):
            self.adjoint_override = adjoint
        else:
            self.adjoint_override = None
            if adjoint is not None:
                kwargs["adjoint"] = adjoint
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        self.ts = jnp.linspace(0.0, s.t_end, s.n_points)
        y0 = jnp.asarray(s.y0)
        # The reference trajectory, solved far more accurately than training does.
        sol = dfx.diffeqsolve(
            dfx.ODETerm(SpiralField(s.dynamics_matrix)),
            dfx.Tsit5(),
            0.0,
            s.t_end,
            None,
            y0,
            saveat=dfx.SaveAt(ts=self.ts),
            stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-8),
            max_steps=_REFERENCE_MAX_STEPS,
            throw=False,
        )
        report = failure_report(sol, what="the reference spiral solve (rtol 1e-8)")
        if report is not None:
            raise ValueError(
                f"NeuralODESpiral: cannot make the data for dynamics_matrix = "
                f"{[list(r) for r in s.dynamics_matrix]}, y0 = {list(s.y0)} on [0, {s.t_end:g}] "
                f"(does the spiral blow up?): {report[0]}"
            )
        self.ys = sol.ys
        self.data = add_observation_noise(self.ys, s.noise, s.noise_model, s.noise_seed)

    @property
    def adjoint(self) -> dfx.AbstractAdjoint:
        """The diffrax adjoint training differentiates the solve with."""
        if self.adjoint_override is not None:
            return self.adjoint_override
        s = self.settings
        return adjoint_by_name(s.adjoint, s.rtol, s.atol)

    @property
    def batch_mode(self) -> str:
        """How the batch of windows is solved, `"vmap"` or `"joint"` (`"auto"` resolved)."""
        mode = self.settings.batch_solve
        return batch_mode_for(self.adjoint) if mode == "auto" else mode

    def init(self, key):
        m = self.model_settings
        mlp = MLP(
            2,
            2,
            width=m.width,
            depth=m.depth,
            activation=activation_by_name(m.activation),
            dtype=self.ys.dtype,
            key=key,
        )
        return CubicMLPField(mlp), None

    def _windows(self, key):
        n, s = self.ts.shape[0], self.settings
        starts = jax.random.randint(key, (s.batch_size,), 0, n - s.batch_time + 1)
        return starts, self.data[starts[:, None] + jnp.arange(s.batch_time)]

    def loss(self, model, state, key):
        s = self.settings
        _, windows = self._windows(key)
        windows = shard_batch(windows)
        # The grid is uniform and the field autonomous: every window reuses ts[:batch_time].
        t_window = self.ts[: s.batch_time]
        pred = _solve(
            model,
            windows[:, 0],
            t_window,
            s.rtol,
            s.atol,
            s.max_steps,
            self.adjoint,
            self.batch_mode,
        )
        err = pred - windows
        loss = jnp.mean(jnp.abs(err)) if s.loss == "l1" else jnp.mean(err**2)
        return loss, (state, {"mse": jnp.mean(err**2)})

    def diagnose(self, model, state, key):
        """Name the training window whose solve failed at this step's batch."""
        s = self.settings
        starts, windows = self._windows(key)
        t_window = self.ts[: s.batch_time]
        mode = self.batch_mode
        sol = eqx.filter_jit(_solution)(
            model, windows[:, 0], t_window, s.rtol, s.atol, s.max_steps, None, mode
        )
        starts = jax.device_get(starts)
        t0 = jax.device_get(self.ts)[starts]

        def describe(i):
            return (
                f"training window {i} (samples {starts[i]}..{starts[i] + s.batch_time - 1}, "
                f"starting at t = {t0[i]:.4g}; times relative to its start)"
            )

        what = (
            f"the solve (max_steps={s.max_steps})"
            if mode == "vmap"
            else f"the joint solve of all {s.batch_size} windows (max_steps={s.max_steps}), "
            f"windows starting at t = {', '.join(f'{t:.4g}' for t in t0)},"
        )
        report = failure_report(sol, what=what, describe=describe)
        return None if report is None else report[0]

    def trajectory(self, model) -> Float[Array, "n 2"]:
        """The model's trajectory from y0 over the whole time grid."""
        # One solve over all of [0, t_end] takes many more steps than a
        # training window, so it gets a larger budget than `max_steps`.
        s = self.settings
        return _trajectory(model, self.ys[0], self.ts, s.rtol, s.atol, s.max_steps * 16)

    def evaluate(self, model, state, key):
        pred = self.trajectory(model)
        return {"mse": float(jnp.mean((pred - self.ys) ** 2))}

    def figures(self, model, state, outdir):
        from matplotlib.figure import Figure

        pred = jax.device_get(self.trajectory(model))
        ys, ts = jax.device_get(self.ys), jax.device_get(self.ts)
        fig = Figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(ys[:, 0], ys[:, 1], "k-", lw=1.5, label="true")
        ax1.plot(pred[:, 0], pred[:, 1], "C1--", lw=1.5, label="learned")
        ax1.set_xlabel("y1")
        ax1.set_ylabel("y2")
        ax1.set_title("phase portrait")
        ax1.legend()
        for i in range(2):
            ax2.plot(ts, ys[:, i], "k-", lw=1)
            ax2.plot(ts, pred[:, i], f"C{i}--", lw=1, label=f"learned y{i + 1}")
        ax2.set_xlabel("t")
        ax2.set_title("trajectories (black: true)")
        ax2.legend()
        fig.tight_layout()
        path = Path(outdir) / "trajectory.png"
        fig.savefig(path, dpi=100)
        return [str(path)]


@eqx.filter_jit
def _trajectory(model, y0, ts, rtol, atol, max_steps):
    return _solve(model, y0, ts, rtol, atol, max_steps)
