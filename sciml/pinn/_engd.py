"""Energy natural gradient descent (ENGD): Gauss-Newton on PINN residuals with a trial search.

Müller & Zeinhofer, "Achieving High Accuracy with PINNs via Energy Natural
Gradient Descent", ICML 2023. For a loss `L(θ) = ½ Σ_n r_n(θ)²` (the PINN
loss with each residual already scaled by `sqrt(2 w_i / N_i)`, as the
problem's `per_sample()["residuals"]` delivers it) with Jacobian
`J = ∂r/∂θ` (N × P), the published step is

    d  = G⁺ ∇L,   G = JᵀJ,   ∇L = Jᵀr
    η* = argmin_{η ∈ {1, ½, ¼, ..., 2^-(K-1)}} L(θ − η d)     (all K evaluated at once)
    θ ← θ − η* d

For a linear PDE this is exactly the energy natural gradient; for a
nonlinear one (Burgers) it is Gauss-Newton on the residuals. `G` is
singular (the network has redundant directions), so it is inverted on its
numerical range: eigenvalues below `rcond · λ_max` are dropped (the cutoff
that worked in the survey: singular values of `J` below `sqrt(rcond) σ_max`).
When there are fewer residuals than parameters (N < P) the same directions
come cheaper from the N × N kernel `JJᵀ` (the Woodbury / minimum-norm form
`d = Jᵀ (JJᵀ)⁺ r`).

Far from the solution, and in the long final phase, the full Gauss-Newton
step is useless: the residual left over lies along directions with tiny
singular values of `J`, the step along them is large, and the residual is
far from linear over such a step (measured on `pinn_heat1d` and
`pinn_poisson2d`: a step of parameter norm 0.02 already multiplies the loss
by 9, while the linear model promises a decrease). No step length along `d`
helps there. So each step also tries, in the same vmapped evaluation:

- Levenberg-Marquardt steps `v(μ) = (G + μI)⁺ (∇L + μβ m)` for damping values
  `μ` on a window of decades around the previous step's choice (an
  adaptive damping carried in the state: the window follows the winner,
  and jumps up when no trial decreases the loss); `m` is the previous step,
  so with `β > 0` this is SPRING's momentum (Goldshlager et al. 2024, used
  for ENGD by Guzmán-Cordero et al. 2025): `v` solves
  `min |J v − r|² + μ |v − β m|²`;
- each of them with a geodesic-acceleration correction (Transtrum & Sethna
  2012): `a(μ) = (G + μI)⁺ Jᵀ r_vv`, where `r_vv` is the second directional
  derivative of the residuals along `v` (one forward-over-forward pass), and
  the trial steps `c v + ½ c² a` for `c ∈ {½, 1, 2}`: the second-order path
  along which the linearised residual is followed, not its tangent.

The step taken is the trial with the smallest loss, or none when no trial
decreases it. On the measured problems the accelerated damped trials win
almost every step after the first few, and reach in 100-150 steps what
plain damped trials reached in 1000.

The Jacobian is dense (`jax.jacfwd`, P forward passes through the
differential operator), so this suits networks up to a few thousand
parameters, which is where ENGD's accuracy is published.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from pydantic import Field

from sciml.optim import chain, request_extra_args
from sciml.schema import PositiveInt, Section

__all__ = ["EngdState", "scale_by_engd", "engd", "EngdConfig", "build_engd"]

GEODESIC_SCALES = (0.5, 1.0, 2.0)
"""Scales `c` of the geodesically corrected trials `c v + ½ c² a`."""

MAX_LOG_DAMPING = 2.0
"""Upper end of the damping window, as log10(μ / λ_max): beyond it a step is a tiny gradient step."""


class EngdState(NamedTuple):
    """What the last ENGD step did, and what the next one starts from (checkpointed).

    Attributes:
        step_size: the chosen trial's scale along its direction: `η*` for a
            Gauss-Newton step, `c` for a damped step (1 without geodesic
            correction), 0 when no trial decreased the loss.
        damping: the damping `μ` of the chosen trial (0: a Gauss-Newton step).
        rank: numerical rank of the Gram matrix after the cutoff.
        loss_before, loss_after: the loss at `θ` and after the step.
        accelerated: whether the chosen step carries the geodesic correction.
        log_damping: log10(μ / λ_max) at the centre of the next step's
            damping window.
        momentum: the last step taken, flattened (`(P,)`), for the momentum
            term (zeros at the start and after a step that found no decrease).
    """

    step_size: jax.Array
    damping: jax.Array
    rank: jax.Array
    loss_before: jax.Array
    loss_after: jax.Array
    accelerated: jax.Array
    log_damping: jax.Array
    momentum: jax.Array


def _check_options(
    rcond,
    damping,
    line_search_steps,
    form,
    momentum,
    damping_window,
    damping_per_decade,
    initial_damping,
):
    if rcond is not None and not 0 <= rcond < 1:
        raise ValueError(f"engd: rcond must be in [0, 1) or None, got {rcond}")
    if damping < 0:
        raise ValueError(f"engd: damping must be >= 0, got {damping}")
    if line_search_steps < 1:
        raise ValueError(f"engd: line_search_steps must be >= 1, got {line_search_steps}")
    if form not in ("auto", "parameters", "samples"):
        raise ValueError(f"engd: form must be 'auto', 'parameters' or 'samples', got {form!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"engd: momentum must be in [0, 1), got {momentum}")
    if damping_window < 0:
        raise ValueError(f"engd: damping_window must be >= 0 (decades), got {damping_window}")
    if damping_per_decade < 1:
        raise ValueError(f"engd: damping_per_decade must be >= 1, got {damping_per_decade}")
    if not 0 < initial_damping <= 10**MAX_LOG_DAMPING:
        raise ValueError(
            f"engd: initial_damping (relative to λ_max) must be in (0, {10**MAX_LOG_DAMPING:g}], "
            f"got {initial_damping}"
        )


def scale_by_engd(
    *,
    rcond: float | None = None,
    damping: float = 0.0,
    line_search_steps: int = 30,
    damping_search: bool = True,
    momentum: float = 0.9,
    geodesic: bool = True,
    damping_window: int = 2,
    damping_per_decade: int = 3,
    initial_damping: float = 1e-3,
    form: Literal["auto", "parameters", "samples"] = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Replace the gradient by the ENGD step (see the module docstring).

    Chain it with `optax.scale(-1)` (as `engd` does) to descend.

    Args:
        rcond: relative eigenvalue cutoff of the Gram matrix; `None` uses
            `5 · eps` of the parameters' dtype (1.1e-15 in float64).
        damping: a fixed Tikhonov term added to the Gram matrix's
            eigenvalues in every trial (0 = pure pseudo-inverse).
        line_search_steps: `K`, the number of step sizes `2^-k`, k = 0..K-1,
            tried along the Gauss-Newton direction (the published grid line
            search). 1 means the full step only.
        damping_search: also try the damped (Levenberg-Marquardt) steps; off,
            this is the published ENGD.
        momentum: `β` of the damped steps' momentum (0: none). It only acts
            through the damping, on the numerical range of `G`.
        geodesic: also try the damped steps with their geodesic-acceleration
            correction (one forward-over-forward pass through the residuals
            per damping value).
        damping_window: half-width, in decades, of the window of damping
            values `μ / λ_max` tried around the previous step's choice.
        damping_per_decade: damping values per decade of the window (so
            `2 · damping_window · damping_per_decade + 1` damped trials).
        initial_damping: centre of the first step's window, relative to the
            largest eigenvalue `λ_max` of `G`.
        form: `"parameters"` solves with the P × P Gram matrix `JᵀJ`,
            `"samples"` with the N × N kernel `JJᵀ`; `"auto"` picks the
            smaller. Both give the same steps.

    `update` needs the keyword arguments `per_sample_fn` (`params -> dict`
    whose `"residuals"` satisfy `loss == 0.5 * sum(r**2)`) and `value_fn`
    (`params -> loss`, for the trials), and `params`; sciml's `fit` passes
    all three. Raises `ValueError` for bad options, and at trace time when
    one of these is missing, the problem gives no residuals, or the
    parameters are complex.

    Returns:
        A transformation whose update is the chosen step `s` (apply `θ − s`);
        its state is an `EngdState`.
    """
    _check_options(
        rcond,
        damping,
        line_search_steps,
        form,
        momentum,
        damping_window,
        damping_per_decade,
        initial_damping,
    )
    half = damping_window * damping_per_decade
    window = np.arange(-half, half + 1) / damping_per_decade  # decades around the centre
    scales = GEODESIC_SCALES if geodesic else ()

    def init(params):
        flat, _ = ravel_pytree(params)
        if jnp.iscomplexobj(flat):
            raise ValueError("engd supports real parameters only")
        zero = jnp.zeros((), flat.dtype)
        return EngdState(
            step_size=zero,
            damping=zero,
            rank=jnp.zeros((), jnp.int32),
            loss_before=zero,
            loss_after=zero,
            accelerated=jnp.zeros((), bool),
            log_damping=jnp.log10(jnp.asarray(initial_damping, flat.dtype)),
            momentum=jnp.zeros_like(flat),
        )

    def update(updates, state, params=None, *, per_sample_fn=None, value_fn=None, **extra):
        del updates, extra
        if per_sample_fn is None or value_fn is None or params is None:
            missing = [
                k
                for k, v in (
                    ("params", params),
                    ("per_sample_fn", per_sample_fn),
                    ("value_fn", value_fn),
                )
                if v is None
            ]
            raise ValueError(
                f"engd needs {', '.join(missing)}: train a problem that defines "
                "`per_sample(model, state, key) -> {'residuals': r}` (loss == 0.5 * sum(r**2)) "
                "with sciml's fit, or pass params, per_sample_fn and value_fn to update"
            )
        flat, unravel = ravel_pytree(params)
        if jnp.iscomplexobj(flat):
            raise ValueError("engd supports real parameters only")
        dtype = flat.dtype

        def residuals(vec):
            out = per_sample_fn(unravel(vec))
            if "residuals" not in out:
                raise ValueError(
                    f"engd needs per_sample()['residuals']; the problem provides {sorted(out)}"
                )
            return jnp.ravel(out["residuals"])

        r = residuals(flat)
        n, p = r.size, flat.size
        use_samples = form == "samples" or (form == "auto" and n < p)
        cut = 5 * jnp.finfo(dtype).eps if rcond is None else rcond
        # Every step is `to_params(y)` for coefficients `y` on the numerical range of G,
        # `rhs(x)` gives the coefficients of Jᵀx and `range_coefficients(v)` those of v
        # (projected on that range), so that (G + μ)⁺ (Jᵀx + μβv) = to_params(inv(μ) ⊙ (...)).
        if use_samples:
            # G = JᵀJ and K = JJᵀ = U Λ Uᵀ share their nonzero eigenvalues; with the basis
            # JᵀU of the range, (G + μ)⁺ Jᵀx = Jᵀ U (Λ + μ)⁺ Uᵀ x.
            _, vjp = jax.vjp(residuals, flat)
            jac = jax.vmap(lambda e: vjp(e)[0])(jnp.eye(n, dtype=dtype))
            evals, evecs = jnp.linalg.eigh(jac @ jac.T)
            keep = evals > cut * jnp.max(evals)
            safe = jnp.where(keep, evals, 1.0)

            def rhs(x):
                return evecs.T @ x

            def range_coefficients(v):
                return jnp.where(keep, (evecs.T @ (jac @ v)) / safe, 0.0)

            def to_params(y):
                return jac.T @ (evecs @ y)

        else:
            jac = jax.jacfwd(residuals)(flat)
            evals, evecs = jnp.linalg.eigh(jac.T @ jac)
            keep = evals > cut * jnp.max(evals)

            def rhs(x):
                return evecs.T @ (jac.T @ x)

            def range_coefficients(v):
                return evecs.T @ v

            def to_params(y):
                return evecs @ y

        lam_max = jnp.max(evals)

        def inv(mu):
            return jnp.where(keep, 1.0 / (jnp.where(keep, evals, 1.0) + damping + mu), 0.0)

        b = rhs(r)
        trials = [jnp.zeros((1, p), dtype)]  # no step: wins when nothing decreases the loss
        kinds = [(jnp.zeros(1, dtype), jnp.zeros(1, dtype), jnp.zeros(1, bool))]

        etas = 2.0 ** -jnp.arange(line_search_steps, dtype=dtype)
        gn = to_params(inv(0.0) * b)
        trials.append(etas[:, None] * gn[None, :])
        kinds.append((etas, jnp.zeros_like(etas), jnp.zeros(etas.shape, bool)))

        if damping_search:
            centre = state.log_damping.astype(dtype)
            mus = lam_max * 10.0 ** (centre + jnp.asarray(window, dtype))
            m = range_coefficients(state.momentum.astype(dtype))
            coeffs = inv(mus[:, None]) * (b[None, :] + momentum * mus[:, None] * m[None, :])
            damped = jax.vmap(to_params)(coeffs)
            ones = jnp.ones_like(mus)
            trials.append(damped)
            kinds.append((ones, mus, jnp.zeros(mus.shape, bool)))
            if scales:
                one = jnp.ones((), dtype)

                def second_derivative(v):
                    # d²/dt² r(θ + t v) at t = 0: the residuals' curvature along the step
                    along = lambda t: residuals(flat + t * v)  # noqa: E731
                    first = lambda t: jax.jvp(along, (t,), (one,))[1]  # noqa: E731
                    return jax.jvp(first, (0 * one,), (one,))[1]

                rvv = jax.vmap(second_derivative)(damped)
                accel = jax.vmap(lambda mu, x: to_params(inv(mu) * rhs(x)))(mus, rvv)
                # θ − (c v + ½c² a) follows r(θ − t v) to second order; a correction larger
                # than the step itself means the expansion is meaningless there
                sane = jnp.linalg.norm(accel, axis=1) <= 1.5 * jnp.linalg.norm(damped, axis=1)
                for c in scales:
                    step = c * damped + 0.5 * c**2 * accel
                    trials.append(jnp.where(sane[:, None], step, jnp.nan))
                    kinds.append((c * ones, mus, jnp.ones(mus.shape, bool)))

        steps = jnp.concatenate(trials)
        step_sizes, dampings, accelerated = (jnp.concatenate(k) for k in zip(*kinds))
        finite = jnp.all(jnp.isfinite(steps), axis=1)
        steps = jnp.where(finite[:, None], steps, 0.0)
        losses = jax.vmap(lambda s: value_fn(unravel(flat - s)))(steps)
        # a trial that overflows (far along a near-null direction) never wins
        losses = jnp.where(finite & jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)  # ties go to the earlier trial: no step, then larger η
        moved = best > 0
        step = steps[best]

        if damping_search:
            # the window follows the winner; after a Gauss-Newton step it moves one decade
            # down, and after a failed step it jumps past its upper end (more damping)
            chosen = jnp.log10(jnp.maximum(dampings[best], jnp.finfo(dtype).tiny) / lam_max)
            log_damping = jnp.where(
                dampings[best] > 0,
                chosen,
                jnp.where(moved, centre - 1.0, centre + damping_window + 1.0),
            )
            low = jnp.log10(jnp.maximum(cut, jnp.finfo(dtype).eps))
            log_damping = jnp.clip(log_damping, low, MAX_LOG_DAMPING)
            log_damping = jnp.where(lam_max > 0, log_damping, centre)
        else:
            log_damping = state.log_damping
        new_state = EngdState(
            step_size=jnp.where(moved, step_sizes[best], 0.0),
            damping=dampings[best],
            rank=jnp.sum(keep).astype(jnp.int32),
            loss_before=losses[0],
            loss_after=losses[best],
            accelerated=accelerated[best],
            log_damping=log_damping.astype(state.log_damping.dtype),
            momentum=step.astype(state.momentum.dtype),
        )
        return unravel(step), new_state

    transform = optax.GradientTransformationExtraArgs(init, update)
    return request_extra_args(transform, "per_sample_fn")


def engd(
    *,
    rcond: float | None = None,
    damping: float = 0.0,
    line_search_steps: int = 30,
    damping_search: bool = True,
    momentum: float = 0.9,
    geodesic: bool = True,
    damping_window: int = 2,
    damping_per_decade: int = 3,
    initial_damping: float = 1e-3,
    form: Literal["auto", "parameters", "samples"] = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Energy natural gradient descent as an optax-style optimizer: `θ ← θ − s`.

    `s` is the best of the Gauss-Newton steps `2^-k G⁺∇L` and of the damped,
    momentum-carrying and geodesically corrected trials (see
    `scale_by_engd` for the arguments and the module docstring for the
    maths). `damping_search=False` gives the published ENGD (Müller &
    Zeinhofer 2023). Usable wherever an optax optimizer is, as long as
    `update` receives `params`, `per_sample_fn` and `value_fn` (sciml's `fit`
    passes them); in a config: `optimizer: {name: engd}`.

    Example:
        >>> opt = engd()                       # then sciml.fit(problem, opt, train)
        >>> published = engd(damping_search=False)
    """
    return chain(
        scale_by_engd(
            rcond=rcond,
            damping=damping,
            line_search_steps=line_search_steps,
            damping_search=damping_search,
            momentum=momentum,
            geodesic=geodesic,
            damping_window=damping_window,
            damping_per_decade=damping_per_decade,
            initial_damping=initial_damping,
            form=form,
        ),
        optax.scale(-1.0),
    )


class EngdConfig(Section):
    """`optimizer` section for energy natural gradient descent (Müller & Zeinhofer 2023).

    Attributes:
        rcond: relative eigenvalue cutoff of the Gram matrix `JᵀJ` (`null`:
            5 · machine epsilon).
        damping: fixed Tikhonov term added to the Gram matrix (0: pseudo-inverse).
        line_search_steps: step sizes 1, 1/2, ..., 2^-(K-1) tried along the
            Gauss-Newton direction per step.
        damping_search: also try Levenberg-Marquardt-damped steps (false:
            the published ENGD).
        momentum: SPRING momentum β of the damped steps (0: none).
        geodesic: also try the damped steps with geodesic acceleration.
        damping_window: half-width in decades of the damping window, which
            follows the chosen damping from step to step.
        damping_per_decade: damping values tried per decade.
        initial_damping: first window's centre, relative to λ_max.
        form: `parameters` (P × P Gram), `samples` (N × N kernel) or `auto`.
    """

    name: Literal["engd"]
    rcond: Annotated[float, Field(ge=0, lt=1)] | None = None
    damping: Annotated[float, Field(ge=0)] = 0.0
    line_search_steps: PositiveInt = 30
    damping_search: bool = True
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    geodesic: bool = True
    damping_window: Annotated[int, Field(ge=0, le=16)] = 2
    damping_per_decade: Annotated[int, Field(ge=1, le=10)] = 3
    initial_damping: Annotated[float, Field(gt=0, le=100)] = 1e-3
    form: Literal["auto", "parameters", "samples"] = "auto"


def build_engd(cfg: EngdConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """Build `engd` from its config section."""
    del total_steps
    return engd(
        rcond=cfg.rcond,
        damping=cfg.damping,
        line_search_steps=cfg.line_search_steps,
        damping_search=cfg.damping_search,
        momentum=cfg.momentum,
        geodesic=cfg.geodesic,
        damping_window=cfg.damping_window,
        damping_per_decade=cfg.damping_per_decade,
        initial_damping=cfg.initial_damping,
        form=cfg.form,
    )
