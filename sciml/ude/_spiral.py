"""The neural-ODE spiral: the classic torchdiffeq demo as a Problem.

True dynamics dy/dt = (y**3) @ A with A = [[-0.1, 2.0], [-2.0, -0.1]] and
y0 = [2, 0], sampled at `n_points` times on [0, t_end]. The model is an MLP
vector field applied to y**3. Training fits random windows of `batch_time`
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
from pydantic import Field, model_validator

from sciml.nn import ACTIVATIONS, MLP, activation_by_name
from sciml.parallel import shard_batch
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import Section
from sciml.ude._solve import failure_report, solve, solve_batch

__all__ = [
    "CubicMLPField",
    "MLPModel",
    "NeuralODESpiral",
    "SpiralParams",
    "adjoint_by_name",
    "spiral_dynamics",
]

SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))


def spiral_dynamics(t, y: Float[Array, " 2"], args=None) -> Float[Array, " 2"]:
    """True spiral vector field (y**3) @ A."""
    return (y**3) @ jnp.asarray(SPIRAL_A, dtype=y.dtype)


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


class SpiralParams(Section):
    """`problem` section of `neural_ode_spiral`: the settings of `NeuralODESpiral`.

    Attributes:
        n_points: samples of the true trajectory on [0, t_end].
        t_end: final time.
        batch_size: windows per training batch.
        batch_time: samples per window (fewer than `n_points`).
        rtol, atol: tolerances of the PID step-size controller (Tsit5).
        max_steps: solver step budget per solve.
        loss: `"l1"` (mean absolute error, as torchdiffeq's demo) or `"mse"`.
        adjoint: how training differentiates the solve (see `adjoint_by_name`):
            `"recursive_checkpoint"`, `"backsolve"` (O(1) memory; the backward
            solve gets `rtol`/`atol`) or `"direct"`.
        batch_solve: `"vmap"` (each window its own solve and step sizes) or
            `"joint"` (the batch as one system with shared steps, as
            torchdiffeq does; much faster with `"backsolve"`); see
            `sciml.ude.solve_batch`.
    """

    n_points: Annotated[int, Field(ge=3, le=10**6)] = 1000
    t_end: Annotated[float, Field(gt=0, le=1e4)] = 25.0
    batch_size: Annotated[int, Field(gt=0)] = 20
    batch_time: Annotated[int, Field(ge=2)] = 10
    rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    atol: Annotated[float, Field(gt=0)] = 1e-4
    max_steps: Annotated[int, Field(gt=0)] = 4096
    loss: Literal["l1", "mse"] = "l1"
    adjoint: Literal["recursive_checkpoint", "backsolve", "direct"] = "recursive_checkpoint"
    batch_solve: Literal["vmap", "joint"] = "vmap"

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

    `evaluate` reports `mse`: mean squared error of the whole trajectory
    solved from y0 against the truth.
    """

    Settings: ClassVar[type[Section]] = SpiralParams
    ModelSettings: ClassVar[type[Section]] = MLPModel

    ts: Float[Array, " n"]
    ys: Float[Array, "n 2"]
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
        y0 = jnp.array([2.0, 0.0])
        # The reference trajectory, solved far more accurately than training does.
        self.ys = dfx.diffeqsolve(
            dfx.ODETerm(spiral_dynamics),
            dfx.Tsit5(),
            0.0,
            s.t_end,
            None,
            y0,
            saveat=dfx.SaveAt(ts=self.ts),
            stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-8),
            max_steps=None,
        ).ys

    @property
    def adjoint(self) -> dfx.AbstractAdjoint:
        """The diffrax adjoint training differentiates the solve with."""
        if self.adjoint_override is not None:
            return self.adjoint_override
        s = self.settings
        return adjoint_by_name(s.adjoint, s.rtol, s.atol)

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
        return starts, self.ys[starts[:, None] + jnp.arange(s.batch_time)]

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
            s.batch_solve,
        )
        err = pred - windows
        loss = jnp.mean(jnp.abs(err)) if s.loss == "l1" else jnp.mean(err**2)
        return loss, (state, {"mse": jnp.mean(err**2)})

    def diagnose(self, model, state, key):
        """Name the training window whose solve failed at this step's batch."""
        s = self.settings
        starts, windows = self._windows(key)
        t_window = self.ts[: s.batch_time]
        sol = eqx.filter_jit(_solution)(
            model, windows[:, 0], t_window, s.rtol, s.atol, s.max_steps, None, s.batch_solve
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
            if s.batch_solve == "vmap"
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
