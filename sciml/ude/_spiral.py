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
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sciml.nn import MLP, activation_by_name
from sciml.parallel import shard_batch
from sciml.problems import AbstractProblem
from sciml.ude._solve import failure_report, solve, solve_batch

__all__ = ["CubicMLPField", "NeuralODESpiral", "spiral_dynamics"]

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


class NeuralODESpiral(AbstractProblem):
    """Fit a neural ODE to the spiral trajectory.

    Args:
        n_points: samples of the true trajectory on [0, t_end].
        t_end: final time.
        batch_size: windows per training batch.
        batch_time: samples per window.
        rtol, atol: tolerances of the PID step-size controller (Tsit5).
        max_steps: solver step budget per solve.
        loss_kind: `"l1"` (mean absolute error, as torchdiffeq's demo) or `"mse"`.
        adjoint: how training differentiates the solve (a diffrax adjoint;
            `None`: `RecursiveCheckpointAdjoint()`).
        batch_solve: `"vmap"` (each window its own solve and step sizes) or
            `"joint"` (the batch as one system with shared steps, as
            torchdiffeq does; much faster with `BacksolveAdjoint`); see
            `sciml.ude.solve_batch`.
        width, depth, activation: the MLP vector field (2-width-...-2).

    `evaluate` reports `mse`: mean squared error of the whole trajectory
    solved from y0 against the truth.
    """

    ts: Float[Array, " n"]
    ys: Float[Array, "n 2"]
    batch_size: int = eqx.field(static=True)
    batch_time: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    loss_kind: str = eqx.field(static=True)
    adjoint: dfx.AbstractAdjoint | None = eqx.field(static=True)
    batch_solve: str = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = ("mse",)

    def __init__(
        self,
        *,
        n_points: int = 1000,
        t_end: float = 25.0,
        batch_size: int = 20,
        batch_time: int = 10,
        rtol: float = 1e-3,
        atol: float = 1e-4,
        max_steps: int = 4096,
        loss_kind: str = "l1",
        adjoint: dfx.AbstractAdjoint | None = None,
        batch_solve: str = "vmap",
        width: int = 50,
        depth: int = 1,
        activation: str = "tanh",
    ):
        if batch_time < 2 or n_points <= batch_time:
            raise ValueError(
                f"NeuralODESpiral: need 2 <= batch_time < n_points, got batch_time={batch_time}, "
                f"n_points={n_points}"
            )
        if loss_kind not in ("l1", "mse"):
            raise ValueError(f"NeuralODESpiral: loss_kind must be 'l1' or 'mse', got {loss_kind!r}")
        if batch_solve not in ("vmap", "joint"):
            raise ValueError(
                f"NeuralODESpiral: batch_solve must be 'vmap' or 'joint', got {batch_solve!r}"
            )
        activation_by_name(activation)  # validates the name
        self.ts = jnp.linspace(0.0, t_end, n_points)
        y0 = jnp.array([2.0, 0.0])
        # The reference trajectory, solved far more accurately than training does.
        self.ys = dfx.diffeqsolve(
            dfx.ODETerm(spiral_dynamics),
            dfx.Tsit5(),
            0.0,
            t_end,
            None,
            y0,
            saveat=dfx.SaveAt(ts=self.ts),
            stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-8),
            max_steps=None,
        ).ys
        self.batch_size = batch_size
        self.batch_time = batch_time
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps
        self.loss_kind = loss_kind
        self.adjoint = adjoint
        self.batch_solve = batch_solve
        self.width = width
        self.depth = depth
        self.activation = activation

    def init(self, key):
        mlp = MLP(
            2,
            2,
            width=self.width,
            depth=self.depth,
            activation=activation_by_name(self.activation),
            dtype=self.ys.dtype,
            key=key,
        )
        return CubicMLPField(mlp), None

    def _windows(self, key):
        n = self.ts.shape[0]
        starts = jax.random.randint(key, (self.batch_size,), 0, n - self.batch_time + 1)
        return starts, self.ys[starts[:, None] + jnp.arange(self.batch_time)]

    def loss(self, model, state, key):
        _, windows = self._windows(key)
        windows = shard_batch(windows)
        # The grid is uniform and the field autonomous: every window reuses ts[:batch_time].
        t_window = self.ts[: self.batch_time]
        pred = _solve(
            model,
            windows[:, 0],
            t_window,
            self.rtol,
            self.atol,
            self.max_steps,
            self.adjoint,
            self.batch_solve,
        )
        err = pred - windows
        loss = jnp.mean(jnp.abs(err)) if self.loss_kind == "l1" else jnp.mean(err**2)
        return loss, (state, {"mse": jnp.mean(err**2)})

    def diagnose(self, model, state, key):
        """Name the training window whose solve failed at this step's batch."""
        starts, windows = self._windows(key)
        t_window = self.ts[: self.batch_time]
        sol = eqx.filter_jit(_solution)(
            model, windows[:, 0], t_window, self.rtol, self.atol, self.max_steps,
            None, self.batch_solve,
        )
        starts = jax.device_get(starts)
        t0 = jax.device_get(self.ts)[starts]

        def describe(i):
            return (
                f"training window {i} (samples {starts[i]}..{starts[i] + self.batch_time - 1}, "
                f"starting at t = {t0[i]:.4g}; times relative to its start)"
            )

        what = (
            f"the solve (max_steps={self.max_steps})"
            if self.batch_solve == "vmap"
            else f"the joint solve of all {self.batch_size} windows (max_steps={self.max_steps}), "
            f"windows starting at t = {', '.join(f'{t:.4g}' for t in t0)},"
        )
        report = failure_report(sol, what=what, describe=describe)
        return None if report is None else report[0]

    def trajectory(self, model) -> Float[Array, "n 2"]:
        """The model's trajectory from y0 over the whole time grid."""
        # One solve over all of [0, t_end] takes many more steps than a
        # training window, so it gets a larger budget than `max_steps`.
        return _trajectory(model, self.ys[0], self.ts, self.rtol, self.atol, self.max_steps * 16)

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
