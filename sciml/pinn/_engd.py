"""Energy natural gradient descent (ENGD): Gauss-Newton on PINN residuals with a grid line search.

Müller & Zeinhofer, "Achieving High Accuracy with PINNs via Energy Natural
Gradient Descent", ICML 2023. For a loss `L(θ) = ½ Σ_n r_n(θ)²` (the PINN
loss with each residual already scaled by `sqrt(2 w_i / N_i)`, as the
problem's `per_sample()["residuals"]` delivers it) with Jacobian
`J = ∂r/∂θ` (N × P), the step is

    d  = G⁺ ∇L,   G = JᵀJ,   ∇L = Jᵀr
    η* = argmin_{η ∈ {1, ½, ¼, ..., 2^-(K-1)}} L(θ − η d)     (all K evaluated at once)
    θ ← θ − η* d

For a linear PDE this is exactly the energy natural gradient; for a
nonlinear one (Burgers) it is Gauss-Newton on the residuals. `G` is
singular (the network has redundant directions), so it is inverted on its
numerical range: eigenvalues below `rcond · λ_max` are dropped (the cutoff
that worked in the survey: singular values of `J` below `sqrt(rcond) σ_max`),
optionally after adding `damping · I`. When there are fewer residuals than
parameters (N < P) the same direction comes cheaper from the N × N kernel
`JJᵀ` (the Woodbury / minimum-norm form `d = Jᵀ (JJᵀ)⁺ r`).

The Jacobian is dense (`jax.jacfwd`, P forward passes through the
differential operator), so this suits networks up to a few thousand
parameters, which is where ENGD's accuracy is published.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from pydantic import Field

from sciml.optim import chain, request_extra_args
from sciml.schema import PositiveInt, Section

__all__ = ["EngdState", "scale_by_engd", "engd", "EngdConfig", "build_engd"]


class EngdState(NamedTuple):
    """What the last ENGD step did (kept in the optimizer state, so it is checkpointed).

    Attributes:
        step_size: the line search's `η*` (0 before the first step).
        damping: the extra damping `μ` of the chosen trial (0: a plain
            Gauss-Newton step of length `η*`).
        rank: numerical rank of the Gram matrix after the cutoff.
        loss_before, loss_after: the loss at `θ` and at `θ − η* d`.
    """

    step_size: jax.Array
    damping: jax.Array
    rank: jax.Array
    loss_before: jax.Array
    loss_after: jax.Array


def _eig_range(gram, rcond):
    """Eigen-decomposition of the symmetric PSD `gram` and the mask of its numerical range."""
    evals, evecs = jnp.linalg.eigh(gram)
    keep = evals > rcond * jnp.max(evals)
    return evals, evecs, keep


def _damped_coefficients(evals, keep, proj, damping):
    """`(gram + damping I)⁺ rhs` in the eigenbasis, given `proj = evecsᵀ rhs`."""
    inv = jnp.where(keep, 1.0 / (jnp.where(keep, evals, 1.0) + damping), 0.0)
    return inv * proj


def scale_by_engd(
    *,
    rcond: float | None = None,
    damping: float = 0.0,
    line_search_steps: int = 30,
    damping_search: bool = True,
    form: Literal["auto", "parameters", "samples"] = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Replace the gradient by the ENGD step `η* d` (see the module docstring).

    Chain it with `optax.scale(-1)` (as `engd` does) to descend.

    Args:
        rcond: relative eigenvalue cutoff of the Gram matrix; `None` uses
            `5 · eps` of the parameters' dtype (1.1e-15 in float64).
        damping: added to the Gram matrix's eigenvalues (Levenberg-Marquardt
            style regularisation; 0 = pure pseudo-inverse).
        line_search_steps: `K`, the number of step sizes `2^-k`, k = 0..K-1,
            tried (all at once, vmapped) by the grid line search. 1 means a
            fixed full step.
        damping_search: also try the undamped-length steps `(G + μI)⁺ ∇L`
            for μ = λ_max · 10^-j, j = 0..15 (a Levenberg-Marquardt path
            from a short gradient step to the full Gauss-Newton step), and
            take the best of all trials. Far from the solution the
            Gauss-Newton direction is dominated by nearly-flat directions and
            no step length along it helps (measured on `pinn_heat1d` from a
            Glorot initialisation: the loss stalls at its initial value);
            the damped trials make progress there and cost only their loss
            evaluations (the eigen-decomposition is shared).
        form: `"parameters"` solves with the P × P Gram matrix `JᵀJ`,
            `"samples"` with the N × N kernel `JJᵀ`; `"auto"` picks the
            smaller.

    Needs the trainer's `per_sample_fn` (residuals with
    `loss == 0.5 * sum(r**2)`) and `value_fn` (for the line search); raises
    `ValueError` at trace time when the problem has no residuals, or for
    complex parameters.
    """
    if rcond is not None and not 0 <= rcond < 1:
        raise ValueError(f"scale_by_engd: rcond must be in [0, 1) or None, got {rcond}")
    if damping < 0:
        raise ValueError(f"scale_by_engd: damping must be >= 0, got {damping}")
    if line_search_steps < 1:
        raise ValueError(f"scale_by_engd: line_search_steps must be >= 1, got {line_search_steps}")
    if form not in ("auto", "parameters", "samples"):
        raise ValueError(f"scale_by_engd: form must be auto, parameters or samples, got {form!r}")

    def init(params):
        flat, _ = ravel_pytree(params)
        zero = jnp.zeros((), flat.dtype)
        return EngdState(zero, zero, jnp.zeros((), jnp.int32), zero, zero)

    def update(updates, state, params=None, *, per_sample_fn=None, value_fn=None, **extra):
        if per_sample_fn is None or value_fn is None or params is None:
            raise ValueError(
                "engd needs the problem's residuals and the loss function: train a problem that "
                "defines `per_sample(model, state, key) -> {'residuals': r}` (loss == 0.5 * "
                "sum(r**2)) with sciml's fit"
            )
        flat, unravel = ravel_pytree(params)
        if jnp.iscomplexobj(flat):
            raise ValueError("engd supports real parameters only")

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
        cut = 5 * jnp.finfo(flat.dtype).eps if rcond is None else rcond
        if use_samples:
            # d = Jᵀ (JJᵀ + μI)⁺ r: the minimum-norm Gauss-Newton direction, from N reverse passes
            _, vjp = jax.vjp(residuals, flat)
            jac = jax.vmap(lambda e: vjp(e)[0])(jnp.eye(n, dtype=r.dtype))
            evals, evecs, keep = _eig_range(jac @ jac.T, cut)
            proj = evecs.T @ r
            to_params = lambda c: jac.T @ (evecs @ c)  # noqa: E731
        else:
            jac = jax.jacfwd(residuals)(flat)
            evals, evecs, keep = _eig_range(jac.T @ jac, cut)
            proj = evecs.T @ (jac.T @ r)
            to_params = lambda c: evecs @ c  # noqa: E731
        rank = jnp.sum(keep)
        direction = to_params(_damped_coefficients(evals, keep, proj, damping))

        loss0 = 0.5 * jnp.sum(r**2)
        etas = 2.0 ** -jnp.arange(line_search_steps, dtype=flat.dtype)
        steps = etas[:, None] * direction[None, :]
        mus = jnp.zeros((0,), flat.dtype)
        if damping_search:
            mus = jnp.max(evals) * 10.0 ** -jnp.arange(16, dtype=flat.dtype)
            damped = jax.vmap(
                lambda mu: to_params(_damped_coefficients(evals, keep, proj, damping + mu))
            )(mus)
            steps = jnp.concatenate([steps, damped])
        losses = jax.vmap(lambda step: value_fn(unravel(flat - step)))(steps)
        # a non-finite trial (overflow far along d) never wins
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        loss1 = losses[best]
        scales = jnp.concatenate([etas, jnp.ones_like(mus)])
        extra_damping = jnp.concatenate([jnp.zeros_like(etas), mus])
        eta, mu = scales[best], extra_damping[best]
        update = steps[best]
        new_state = EngdState(eta, mu, rank.astype(jnp.int32), loss0, loss1)
        return unravel(update), new_state

    transform = optax.GradientTransformationExtraArgs(init, update)
    return request_extra_args(transform, "per_sample_fn")


def engd(
    *,
    rcond: float | None = None,
    damping: float = 0.0,
    line_search_steps: int = 30,
    damping_search: bool = True,
    form: Literal["auto", "parameters", "samples"] = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Energy natural gradient descent as an optax-style optimizer: `θ ← θ − η* G⁺ ∇L`.

    See `scale_by_engd` for the arguments. Usable wherever an optax optimizer
    is, as long as `update` receives `per_sample_fn` and `value_fn` (sciml's
    `fit` passes both); in a config: `optimizer: {name: engd}`.

    Example:
        >>> opt = engd()                       # then sciml.fit(problem, opt, train)
    """
    return chain(
        scale_by_engd(
            rcond=rcond,
            damping=damping,
            line_search_steps=line_search_steps,
            damping_search=damping_search,
            form=form,
        ),
        optax.scale(-1.0),
    )


class EngdConfig(Section):
    """`optimizer` section for energy natural gradient descent (Müller & Zeinhofer 2023).

    Attributes:
        rcond: relative eigenvalue cutoff of the Gram matrix `JᵀJ` (`null`:
            5 · machine epsilon).
        damping: Tikhonov term added to the Gram matrix (0: pseudo-inverse).
        line_search_steps: step sizes 1, 1/2, ..., 2^-(K-1) tried per step
            (the best is taken; 1 = always the full step).
        damping_search: also try Levenberg-Marquardt-damped full steps
            (μ = λ_max · 10^-j, j = 0..15) and take the best trial.
        form: `parameters` (P × P Gram), `samples` (N × N kernel) or `auto`.
    """

    name: Literal["engd"]
    rcond: Annotated[float, Field(ge=0, lt=1)] | None = None
    damping: Annotated[float, Field(ge=0)] = 0.0
    line_search_steps: PositiveInt = 30
    damping_search: bool = True
    form: Literal["auto", "parameters", "samples"] = "auto"


def build_engd(cfg: EngdConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """Build `engd` from its config section."""
    del total_steps
    return engd(
        rcond=cfg.rcond,
        damping=cfg.damping,
        line_search_steps=cfg.line_search_steps,
        damping_search=cfg.damping_search,
        form=cfg.form,
    )
