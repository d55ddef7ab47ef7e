"""Robertson's stiff chemical kinetics: recover three rate constants from noisy data.

    y1' = -k1 y1 + k3 y2 y3
    y2' =  k1 y1 - k2 y2² - k3 y2 y3
    y3' =  k2 y2²

with k1 = 0.04, k2 = 3e7, k3 = 1e4 and y(0) = (1, 0, 0) by default (each a key
of the `problem` section, `RobertsonParams`). The rates span nine
decades and y2 never exceeds ~4e-5, so the problem is fitted in log-rates with
per-state scaled residuals (see `scaled_residuals`), and solved with the
ESDIRK solver Kvaerno5 in float64 (H. H. Robertson, "The solution of a set of
reaction rate equations", 1966; Hairer & Wanner, *Solving ODEs II*, §IV.1).

The model is the array of log-rates, shape (3,). It can be trained by the
generic trainer (L-BFGS or Adam through reverse-mode gradients of `loss`) or
fitted directly by Levenberg-Marquardt with forward-mode Jacobians (`fit_lm`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from pydantic import Field, field_validator, model_validator

from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import EmptyModel, PositiveFloat, Section
from sciml.ude._estimation import levenberg_marquardt, scaled_residuals
from sciml.ude._noise import (
    NoiseLevel,
    NoiseModel,
    NonNegativeFloat,
    add_observation_noise,
    state_tuple,
)
from sciml.ude._solve import failure_report

__all__ = [
    "ROBERTSON_RATES",
    "ROBERTSON_Y0",
    "robertson_rhs",
    "RobertsonFit",
    "RobertsonParams",
]

ROBERTSON_RATES = (0.04, 3.0e7, 1.0e4)
"""The default true rate constants (k1, k2, k3)."""
ROBERTSON_Y0 = (1.0, 0.0, 0.0)
"""The default initial concentrations (y1, y2, y3)."""


def robertson_rhs(t, y: Float[Array, " 3"], log_k: Float[Array, " 3"]) -> Float[Array, " 3"]:
    """Robertson's vector field for one state `y` and log-rates `log_k` (as diffrax `args`)."""
    k1, k2, k3 = jnp.exp(log_k)
    y1, y2, y3 = y
    return jnp.stack([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2])


def _solve(log_k, y0, ts, rtol, atol, max_steps, adjoint):
    """Solve from y(0) = `y0` and return y at `ts`, shape (len(ts), 3).

    A failed solve (e.g. max_steps at wild rates) returns non-finite values
    instead of raising: a least-squares step then gets rejected, and the
    trainer stops with `TrainingDiverged` and the last good checkpoint.
    """
    return _solution(log_k, y0, ts, rtol, atol, max_steps, adjoint).ys


def _solution(log_k, y0, ts, rtol, atol, max_steps, adjoint):
    y0 = jnp.asarray(y0, dtype=log_k.dtype)
    return dfx.diffeqsolve(
        dfx.ODETerm(robertson_rhs),
        dfx.Kvaerno5(),
        0.0,
        ts[-1],
        None,
        y0,
        args=log_k,
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        max_steps=max_steps,
        throw=False,
    )


class RobertsonParams(Section):
    """`problem` section of `robertson_fit`: the settings of `RobertsonFit`.

    Attributes:
        k1, k2, k3: the true rate constants (> 0): A -> B (k1), 2B -> B + C
            (k2), B + C -> A + C (k3).
        y0: the initial concentrations (y1, y2, y3) at t = 0 (each >= 0,
            not all 0).
        n_obs: observation times, log-spaced on [t_min, t_max].
        noise: noise level, one number or one per species (see `noise_model`).
        noise_model: how `noise` scales the N(0, 1) draws (see `NoiseModel`):
            `"multiplicative"` (default: data = y * (1 + noise * N(0, 1)), a
            fraction of each value), `"relative_std"`, `"relative_mean"` or
            `"absolute"`.
        t_min, t_max: first and last observation times (the solve starts at 0).
        rtol, atol: Kvaerno5 + PID controller tolerances of the fit. The data
            comes from a reference solve 100 times tighter.
        max_steps: solver step budget (about 1000 steps at the true rates).
        data_seed: seed of the observation noise.
        guess_spread: `init(key)` starts from k_true times factors drawn
            log-uniformly from [1/guess_spread, guess_spread].
    """

    k1: PositiveFloat = ROBERTSON_RATES[0]
    k2: PositiveFloat = ROBERTSON_RATES[1]
    k3: PositiveFloat = ROBERTSON_RATES[2]
    y0: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat] = ROBERTSON_Y0
    n_obs: Annotated[int, Field(ge=2)] = 40
    noise: NoiseLevel = 0.01
    noise_model: NoiseModel = "multiplicative"
    t_min: Annotated[float, Field(gt=0)] = 1e-5
    t_max: Annotated[float, Field(gt=0)] = 100.0
    rtol: Annotated[float, Field(gt=0, lt=1)] = 1e-8
    atol: Annotated[float, Field(gt=0)] = 1e-12
    max_steps: Annotated[int, Field(gt=0)] = 20_000
    data_seed: Annotated[int, Field(ge=0)] = 0
    guess_spread: Annotated[float, Field(ge=1)] = 3.0

    @field_validator("y0", mode="before")
    @classmethod
    def _y0_triple(cls, value):
        return state_tuple(value, 3, "y1, y2, y3", "the initial concentrations")

    @field_validator("y0", mode="after")
    @classmethod
    def _y0_not_empty(cls, value):
        if not any(v > 0 for v in value):
            raise ValueError("at least one initial concentration must be positive")
        return value

    @field_validator("noise", mode="before")
    @classmethod
    def _noise_per_state(cls, value):
        return state_tuple(value, 3, "y1, y2, y3", "one noise level per species (or give one number)")

    @model_validator(mode="after")
    def _ordered_times(self):
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be smaller than t_max ({self.t_max})")
        return self

    @property
    def rates(self) -> tuple[float, float, float]:
        """The true (k1, k2, k3)."""
        return (self.k1, self.k2, self.k3)


class RobertsonFit(AbstractProblem):
    """Fit the log-rates of Robertson's kinetics to noisy observations of all three species.

    Settings: `RobertsonParams` (the `problem` section; the model has none),
    given as a section or as keyword arguments, e.g. `RobertsonFit(n_obs=12)`.

    Needs float64 (atol ~ 1e-12 on a species of size 1e-5).

    `loss` is the mean squared per-state-scaled residual (scale: max |data|
    of each species); it uses `RecursiveCheckpointAdjoint`, so reverse mode
    (`jax.grad`) works. `fit_lm` uses `ForwardMode` and `jax.jacfwd`.
    `evaluate` reports each rate's relative error |k/k_true − 1| (k_true the
    configured `k1`, `k2`, `k3`) and their max.
    """

    Settings: ClassVar[type[Section]] = RobertsonParams

    ts: Float[Array, " n"]
    data: Float[Array, "n 3"]
    scale: Float[Array, " 3"]
    settings: RobertsonParams = eqx.field(static=True)
    model_settings: EmptyModel = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = (
        "k1_rel_error",
        "k2_rel_error",
        "k3_rel_error",
        "max_rel_error",
    )

    def __init__(
        self,
        settings: RobertsonParams | dict | None = None,
        model_settings: EmptyModel | dict | None = None,
        **kwargs,
    ):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        if not jax.config.jax_enable_x64:
            raise ValueError(
                "RobertsonFit needs float64 (y2 ~ 1e-5, atol ~ 1e-12): set train.dtype: float64 "
                "in the config, or call jax.config.update('jax_enable_x64', True) first"
            )
        s = self.settings
        self.ts = jnp.logspace(math.log10(s.t_min), math.log10(s.t_max), s.n_obs)
        true_log_k = jnp.log(jnp.asarray(s.rates))
        clean = _solve(
            true_log_k, s.y0, self.ts, s.rtol * 1e-2, s.atol * 1e-2, s.max_steps * 4,
            dfx.ForwardMode(),
        )
        if not bool(jnp.all(jnp.isfinite(clean))):
            raise ValueError(
                f"RobertsonFit: the reference solve at k = {s.rates}, y0 = {s.y0} failed; raise "
                "max_steps or loosen rtol/atol"
            )
        self.data = add_observation_noise(clean, s.noise, s.noise_model, s.data_seed)
        self.scale = jnp.max(jnp.abs(self.data), axis=0)

    def solve(self, log_k: Float[Array, " 3"], adjoint=None) -> Float[Array, "n 3"]:
        """Species at the observation times for log-rates `log_k`.

        `adjoint` defaults to `RecursiveCheckpointAdjoint()` (reverse mode);
        pass `diffrax.ForwardMode()` for `jax.jacfwd`.
        """
        adjoint = dfx.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        s = self.settings
        return _solve(log_k, s.y0, self.ts, s.rtol, s.atol, s.max_steps, adjoint)

    def residuals(self, log_k: Float[Array, " 3"], adjoint=None) -> Float[Array, " n3"]:
        """Per-state-scaled residuals, flattened to shape (3 n_obs,)."""
        return scaled_residuals(self.solve(log_k, adjoint), self.data, self.scale).reshape(-1)

    def init(self, key):
        true_log_k = jnp.log(jnp.asarray(self.settings.rates))
        spread = math.log(self.settings.guess_spread)
        offset = jax.random.uniform(key, (3,), true_log_k.dtype, -spread, spread)
        return true_log_k + offset, None

    def per_sample(self, model, state, key):
        """Residuals for Gauss-Newton optimizers, scaled so that `loss == 0.5 * sum(r**2)`.

        Solved with `ForwardMode`, so that `jax.jacfwd` (3 tangents for 3
        rates) gives the Jacobian.
        """
        r = self.residuals(model, dfx.ForwardMode())
        return {"residuals": r * jnp.sqrt(2.0 / r.size)}

    def loss(self, model, state, key):
        r = self.residuals(model)
        errors = _rel_errors(model, self.settings.rates)
        return jnp.mean(r**2), (state, {"max_rel_error": jnp.max(errors)})

    def diagnose(self, model, state, key):
        """Report a failed Kvaerno5 solve at these log-rates."""
        s = self.settings
        sol = eqx.filter_jit(_solution)(
            jnp.asarray(model), s.y0, self.ts, s.rtol, s.atol, s.max_steps,
            dfx.RecursiveCheckpointAdjoint(),
        )
        k = ", ".join(f"{v:.3g}" for v in np.exp(np.asarray(model)))
        report = failure_report(
            sol, what=f"the Robertson solve at rates k = ({k}) (max_steps={s.max_steps})"
        )
        return None if report is None else report[0]

    def fit_lm(
        self,
        model: Float[Array, " 3"],
        *,
        rtol: float = 1e-10,
        atol: float = 1e-10,
        max_steps: int = 100,
    ) -> Float[Array, " 3"]:
        """Fit the log-rates by Levenberg-Marquardt from `model`; returns the fitted log-rates.

        Jacobians are forward mode through the solver (`ForwardMode` adjoint):
        three JVPs per step for three rates. Raises if LM does not converge.
        """
        fit = levenberg_marquardt(
            lambda log_k, _: self.residuals(log_k, dfx.ForwardMode()),
            jnp.asarray(model),
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
        )
        return fit.params

    def evaluate(self, model, state, key):
        errors = [float(e) for e in _rel_errors(jnp.asarray(model), self.settings.rates)]
        out = {f"k{i + 1}_rel_error": e for i, e in enumerate(errors)}
        out["max_rel_error"] = max(errors)
        return out

    def figures(self, model, state, outdir):
        from matplotlib.figure import Figure

        s = self.settings
        fine = jnp.logspace(jnp.log10(self.ts[0]), jnp.log10(self.ts[-1]), 200)
        pred = _solve(jnp.asarray(model), s.y0, fine, s.rtol, s.atol, s.max_steps, dfx.ForwardMode())
        pred, ts, data = jax.device_get((pred, self.ts, self.data))
        fine = jax.device_get(fine)
        fig = Figure(figsize=(12, 3.6))
        axes = fig.subplots(1, 3)
        for i, ax in enumerate(axes):
            ax.semilogx(ts, data[:, i], "k.", ms=4, label="data")
            ax.semilogx(fine, pred[:, i], f"C{i}-", lw=1.5, label="fit")
            ax.set_xlabel("t")
            ax.set_title(f"y{i + 1}")
            ax.legend()
        fig.tight_layout()
        path = Path(outdir) / "robertson_fit.png"
        fig.savefig(path, dpi=100)
        return [str(path)]


def _rel_errors(log_k: Float[Array, " 3"], rates: tuple[float, float, float]) -> Float[Array, " 3"]:
    k_true = jnp.asarray(rates, dtype=log_k.dtype)
    return jnp.abs(jnp.exp(log_k) / k_true - 1.0)
