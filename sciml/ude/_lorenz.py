"""SINDy on the Lorenz system: recover its equations from one trajectory.

    dx/dt = σ (y - x),   dy/dt = x (ρ - z) - y,   dz/dt = x y - β z

with σ = 10, ρ = 28, β = 8/3 and x0 = (-8, 8, 27) by default (each a key of
the `problem` section, `LorenzParams`), sampled every dt = 0.002 on [0, 10)
from an accurate solve. Derivatives by 2nd-order central
differences, a degree-2 polynomial library (10 terms) and STLSQ with
threshold 0.1 recover exactly the seven true terms; this is the example of
Brunton, Proctor & Kutz (PNAS 2016) and of pysindy's README, which reports
-9.999 x + 9.999 y, 27.992 x - 0.999 y - 1.000 x z, -2.666 z + 1.000 x y.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float
from pydantic import Field, field_validator, model_validator

from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import EmptyModel, PositiveFloat, Section
from sciml.ude._library import PolynomialLibrary
from sciml.ude._noise import (
    FiniteFloat,
    NoiseLevel,
    NoiseModel,
    add_observation_noise,
    state_tuple,
)
from sciml.ude._sindy import central_difference, format_equations, stlsq
from sciml.ude._solve import failure_report

__all__ = [
    "LorenzSINDy",
    "LorenzParams",
    "lorenz_dynamics",
    "lorenz_coefficients",
]

VAR_NAMES = ("x", "y", "z")


def lorenz_dynamics(t, u: Float[Array, " 3"], args) -> Float[Array, " 3"]:
    """Lorenz vector field at one state u = (x, y, z); `args = (σ, ρ, β)`."""
    sigma, rho, beta = args
    x, y, z = u
    return jnp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])


def lorenz_coefficients(
    library: PolynomialLibrary, sigma: float, rho: float, beta: float
) -> np.ndarray:
    """The true Ξ (L, 3) of the Lorenz system in a polynomial `library` on (x, y, z)."""
    names = library.feature_names(VAR_NAMES)
    for needed in ("x", "y", "z", "x y", "x z"):
        if needed not in names:
            raise ValueError(f"lorenz_coefficients: library lacks the term {needed!r}")
    xi = np.zeros((library.n_features, 3))
    row = names.index
    xi[row("x"), 0], xi[row("y"), 0] = -sigma, sigma
    xi[row("x"), 1], xi[row("y"), 1], xi[row("x z"), 1] = rho, -1.0, -1.0
    xi[row("x y"), 2], xi[row("z"), 2] = 1.0, -beta
    return xi


_REFERENCE_MAX_STEPS = 10**6  # ~50 steps per unit time at the defaults


def _solve(field, args, u0, ts):
    # Dopri8 at tight tolerances: the data's own error must sit far below the
    # O(dt²) error of the finite differences, which then dominates.
    # throw=False: a failure (extreme parameters) is reported by the caller.
    return dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx.Dopri8(),
        ts[0],
        ts[-1],
        None,
        u0,
        args=args,
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=_REFERENCE_MAX_STEPS,
        throw=False,
    )


def _model_field(t, u, args):
    library, xi = args
    return library(u) @ xi


class LorenzParams(Section):
    """`problem` section of `lorenz_sindy`: the settings of `LorenzSINDy`.

    Attributes:
        dt: sampling interval of the data.
        t_end: samples at 0, dt, ..., on [0, t_end) (5000 by default; at least 3).
        degree: polynomial library degree.
        threshold, alpha, max_iter, normalize_columns: STLSQ settings (see `stlsq`).
        noise: level of the Gaussian noise added to the samples before
            differentiating, one number or one per state (x, y, z); 0 for clean data.
        noise_model: how `noise` scales the N(0, 1) draws (see `NoiseModel`):
            `"absolute"` (default: `noise` is the standard deviation in the
            states' units), `"relative_std"` (a fraction of each state's
            standard deviation over the samples), `"relative_mean"` (of its
            mean |value|) or `"multiplicative"`.
        noise_seed: seed of that noise.
        sigma: σ, the Prandtl number (> 0).
        rho: ρ, the Rayleigh number ratio (> 0; chaotic at the default 28).
        beta: β, the geometric factor (> 0).
        x0: the initial state (x, y, z).
    """

    dt: Annotated[float, Field(gt=0)] = 0.002
    t_end: Annotated[float, Field(gt=0)] = 10.0
    degree: Annotated[int, Field(ge=1)] = 2
    threshold: Annotated[float, Field(ge=0)] = 0.1
    alpha: Annotated[float, Field(ge=0)] = 0.05
    max_iter: Annotated[int, Field(gt=0)] = 20
    normalize_columns: bool = False
    noise: NoiseLevel = 0.0
    noise_model: NoiseModel = "absolute"
    noise_seed: Annotated[int, Field(ge=0)] = 0
    sigma: PositiveFloat = 10.0
    rho: PositiveFloat = 28.0
    beta: PositiveFloat = 8.0 / 3.0
    x0: tuple[FiniteFloat, FiniteFloat, FiniteFloat] = (-8.0, 8.0, 27.0)

    @field_validator("x0", mode="before")
    @classmethod
    def _x0_triple(cls, value):
        # YAML gives a list; the section keeps a (hashable) tuple
        return state_tuple(value, 3, "x, y, z", "the initial state")

    @field_validator("noise", mode="before")
    @classmethod
    def _noise_per_state(cls, value):
        return state_tuple(value, 3, "x, y, z", "one noise level per state (or give one number)")

    @property
    def n_samples(self) -> int:
        """Samples of the trajectory: t_end / dt, rounded."""
        return int(round(self.t_end / self.dt))

    @model_validator(mode="after")
    def _enough_samples(self):
        if self.n_samples < 3:
            raise ValueError(
                f"need at least 3 samples, got t_end/dt = {self.t_end}/{self.dt} = {self.n_samples}"
            )
        if self.n_samples > 10**6:
            raise ValueError(
                f"t_end/dt = {self.t_end}/{self.dt} = {self.n_samples} samples; at most 10**6 "
                "(the library matrix would not fit in memory)"
            )
        return self


class LorenzSINDy(AbstractProblem):
    """Discover the Lorenz equations by SINDy (STLSQ on central differences).

    `init` runs STLSQ and returns `(Ξ, active)`: the model is the coefficient
    matrix Ξ (L, 3) of the degree-`degree` polynomial library (feature order
    of `PolynomialLibrary`), and the state is its sparsity pattern, a boolean
    (L, 3) array. `loss` is the mean squared residual

        mean((Θ (active ⊙ Ξ) - Ẋ)²),

    so gradient training only refines the discovered terms. The pattern is
    state, not recomputed as `Ξ != 0` inside the loss: any perturbation of Ξ
    (a finite-difference probe, a first optimizer step) would then switch
    every inactive term on, and the loss would no longer be the function
    whose gradient `jax.grad` reports.

    Settings: `LorenzParams` (the `problem` section; the model has none),
    given as a section or as keyword arguments, e.g. `LorenzSINDy(noise=1e-3)`.

    Attributes (besides the settings): `ts`, `xs` (T, 3) the clean samples,
    `xdot` (T, 3) their central differences, `theta` (T, L) the library on
    the (possibly noisy) samples, `true_coefficients` (L, 3) and
    `true_params` (σ, ρ, β).

    `evaluate` reports `n_active_terms`, `max_coef_error` (largest absolute
    error against the true Ξ over all library terms), the recovered
    `sigma` (= -Ξ[x, dx/dt]), `rho` (= Ξ[x, dy/dt]), `beta` (= -Ξ[z, dz/dt]),
    `mse` (the loss) and `recovered_equations` ("; "-joined).
    """

    Settings: ClassVar[type[Section]] = LorenzParams

    ts: Float[Array, " T"]
    xs: Float[Array, "T 3"]
    xdot: Float[Array, "T 3"]
    theta: Float[Array, "T L"]
    library: PolynomialLibrary
    true_coefficients: Float[Array, "L 3"]
    settings: LorenzParams = eqx.field(static=True)
    model_settings: EmptyModel = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = (
        "n_active_terms",
        "max_coef_error",
        "sigma",
        "rho",
        "beta",
        "mse",
        "recovered_equations",
    )

    def __init__(
        self,
        settings: LorenzParams | dict | None = None,
        model_settings: EmptyModel | dict | None = None,
        **kwargs,
    ):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, kwargs
        )
        s = self.settings
        dtype = jnp.result_type(float)
        self.ts = jnp.arange(s.n_samples, dtype=dtype) * s.dt
        args = tuple(jnp.asarray(p, dtype) for p in self.true_params)
        sol = _solve(lorenz_dynamics, args, jnp.asarray(s.x0, dtype), self.ts)
        report = failure_report(sol, what="the reference Lorenz solve (Dopri8, rtol 1e-10)")
        if report is not None:
            raise ValueError(
                f"LorenzSINDy: cannot make the data at sigma, rho, beta = {self.true_params}, "
                f"x0 = {s.x0} on [0, {s.t_end:g}): {report[0]}"
            )
        self.xs = sol.ys
        noisy = add_observation_noise(self.xs, s.noise, s.noise_model, s.noise_seed)
        self.xdot = central_difference(noisy, s.dt)
        self.library = PolynomialLibrary(3, s.degree)
        self.theta = jax.vmap(self.library)(noisy)
        self.true_coefficients = jnp.asarray(
            lorenz_coefficients(self.library, s.sigma, s.rho, s.beta), dtype
        )

    @property
    def true_params(self) -> tuple[float, float, float]:
        """The true (σ, ρ, β)."""
        return (self.settings.sigma, self.settings.rho, self.settings.beta)

    def init(self, key):
        # STLSQ is deterministic: `key` is unused.
        s = self.settings
        xi = stlsq(
            self.theta,
            self.xdot,
            s.threshold,
            alpha=s.alpha,
            max_iter=s.max_iter,
            normalize_columns=s.normalize_columns,
        )
        return xi, xi != 0

    def loss(self, model, state, key):
        active: Bool[Array, "L 3"] = state
        xi = jnp.where(active, model, 0.0)
        loss = jnp.mean((self.theta @ xi - self.xdot) ** 2)
        n_active = jnp.sum(active).astype(loss.dtype)
        return loss, (state, {"n_active_terms": n_active})

    def equations(self, model, state=None) -> list[str]:
        """The recovered equations, e.g. `dx/dt = -10.000 x + 10.000 y`."""
        xi = model if state is None else jnp.where(state, model, 0.0)
        return format_equations(
            xi, self.library.feature_names(VAR_NAMES), [f"d{v}/dt" for v in VAR_NAMES]
        )

    def evaluate(self, model, state, key):
        xi = np.asarray(jnp.where(state, model, 0.0))
        names = self.library.feature_names(VAR_NAMES)
        loss, _ = self.loss(model, state, key)
        return {
            "n_active_terms": int(np.count_nonzero(xi)),
            "max_coef_error": float(np.max(np.abs(xi - np.asarray(self.true_coefficients)))),
            "sigma": float(-xi[names.index("x"), 0]),
            "rho": float(xi[names.index("x"), 1]),
            "beta": float(-xi[names.index("z"), 2]),
            "mse": float(loss),
            "recovered_equations": "; ".join(self.equations(xi)),
        }

    def simulate(self, model, state, ts: Float[Array, " n"]) -> Float[Array, "n 3"]:
        """Trajectory of the recovered model du/dt = Θ(u) Ξ from the data's first state."""
        xi = jnp.where(state, model, 0.0)
        return _simulate(self.library, xi, self.xs[0], ts)

    def figures(self, model, state, outdir):
        from matplotlib.figure import Figure

        # Chaos separates any two trajectories within a few Lyapunov times
        # (λ ≈ 0.9), so compare on a short window.
        n = min(self.ts.shape[0], int(np.searchsorted(np.asarray(self.ts), 5.0)) + 1)
        ts = self.ts[:n]
        pred = np.asarray(self.simulate(model, state, ts))
        true = np.asarray(self.xs[:n])
        fig = Figure(figsize=(10, 6))
        axes = fig.subplots(3, 1, sharex=True)
        for i, ax in enumerate(axes):
            ax.plot(ts, true[:, i], "k-", lw=1.2, label="data")
            ax.plot(ts, pred[:, i], "C1--", lw=1.2, label="recovered model")
            ax.set_ylabel(VAR_NAMES[i])
        axes[0].legend(loc="upper right")
        axes[0].set_title("Lorenz: data vs SINDy model from the same initial state")
        axes[-1].set_xlabel("t")
        fig.tight_layout()
        path = Path(outdir) / "trajectory.png"
        fig.savefig(path, dpi=100)
        return [str(path)]


@eqx.filter_jit
def _simulate(library, xi, u0, ts):
    # throw=False: a wrong model may blow up; the figure then shows the divergence.
    return dfx.diffeqsolve(
        dfx.ODETerm(_model_field),
        dfx.Tsit5(),
        ts[0],
        ts[-1],
        None,
        u0,
        args=(library, xi),
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-8),
        max_steps=100_000,
        throw=False,
    ).ys
