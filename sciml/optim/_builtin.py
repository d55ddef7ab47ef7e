"""The built-in optimizers: Adam, AdamW, SGD, L-BFGS, Gauss-Newton and phase sequences.

This is where their config names become optax objects; each registers itself
with `register_optimizer` when `sciml.optim` is imported.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from sciml.optim._configs import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    GaussNewtonConfig,
    LBFGSConfig,
    SequenceConfig,
    SGDConfig,
)
from sciml.optim._extras import chain, request_extra_args, requested_extra_args, select_extra_args
from sciml.optim._registry import make_optimizer, register_optimizer

__all__ = ["make_schedule", "sequence", "SequenceState", "scale_by_gauss_newton", "gauss_newton"]


class SequenceState(NamedTuple):
    """State of `sequence`: the step count and every phase's own state."""

    count: jax.Array
    inner: tuple[Any, ...]


def sequence(
    transforms: list[optax.GradientTransformation], boundaries: list[int]
) -> optax.GradientTransformationExtraArgs:
    """Run `transforms[0]` for `boundaries[0]` steps, then `transforms[1]`, and so on.

    The published recipe for universal differential equations is Adam to get
    near a minimum, then L-BFGS to finish (Rackauckas et al. 2020); this
    chains such phases inside one compiled training loop. Each phase keeps
    its own state and step count (its schedule starts when the phase does);
    only the active phase runs (`lax.switch`). Extra keyword arguments
    (`value`, `grad`, `value_fn`, `per_sample_fn`, ...) reach every phase
    that accepts them.

    Args:
        transforms: one optax transformation per phase.
        boundaries: increasing step counts at which the next phase starts
            (`len(transforms) - 1` of them).
    """
    if len(boundaries) != len(transforms) - 1:
        raise ValueError(
            f"sequence: need {len(transforms) - 1} boundaries for {len(transforms)} phases, "
            f"got {len(boundaries)}"
        )
    if any(b <= a for a, b in zip([0, *boundaries], boundaries)):
        raise ValueError(f"sequence: boundaries must be positive and increasing, got {boundaries}")
    requests = tuple(dict.fromkeys(n for t in transforms for n in requested_extra_args(t)))
    originals = list(transforms)
    transforms = [optax.with_extra_args_support(t) for t in transforms]
    bounds = jnp.asarray(boundaries, dtype=jnp.int32)

    def init(params):
        return SequenceState(jnp.zeros((), jnp.int32), tuple(t.init(params) for t in transforms))

    def update(updates, state, params=None, **extra):
        phase = jnp.searchsorted(bounds, state.count, side="right")

        def branch(i):
            def run(operands):
                updates, inner = operands
                kwargs = select_extra_args(originals[i], extra)
                new, inner_i = transforms[i].update(updates, inner[i], params, **kwargs)
                return new, inner[:i] + (inner_i,) + inner[i + 1 :]

            return run

        new_updates, inner = jax.lax.switch(
            phase, [branch(i) for i in range(len(transforms))], (updates, state.inner)
        )
        return new_updates, SequenceState(state.count + 1, inner)

    result = optax.GradientTransformationExtraArgs(init, update)
    return request_extra_args(result, *requests) if requests else result


def scale_by_gauss_newton(damping: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """Replace the gradient by the (damped) Gauss-Newton direction of the problem's residuals.

    For a loss `0.5 * ||r(θ)||^2` with Jacobian `J = ∂r/∂θ` the direction is

        d = (J^T J + damping I)^-1 J^T r,

    (with `damping = 0`: the minimum-norm least-squares solution of `J d = r`),
    so `optax.chain(scale_by_gauss_newton(λ), optax.scale(-1))` takes a full
    Gauss-Newton (Levenberg-Marquardt) step. The residuals come from the
    trainer's `per_sample_fn` keyword argument (`per_sample()["residuals"]`
    of the problem); the Jacobian is dense (`jax.jacfwd`), so this suits
    models up to a few thousand real parameters.

    Raises `ValueError` at trace time when the problem provides no residuals
    or the parameters are complex.
    """
    if damping < 0:
        raise ValueError(f"scale_by_gauss_newton: damping must be >= 0, got {damping}")

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None, *, per_sample_fn=None, **extra):
        if per_sample_fn is None or params is None:
            raise ValueError(
                "gauss_newton needs the problem's residuals: define "
                "`per_sample(model, state, key) -> {'residuals': r}` on the problem "
                "(with loss == 0.5 * sum(r**2)) and train it with sciml's fit"
            )
        flat, unravel = ravel_pytree(params)
        if jnp.iscomplexobj(flat):
            raise ValueError("gauss_newton supports real parameters only")

        def residuals(vec):
            out = per_sample_fn(unravel(vec))
            if "residuals" not in out:
                raise ValueError(
                    f"gauss_newton needs per_sample()['residuals']; the problem provides "
                    f"{sorted(out)}"
                )
            return jnp.ravel(out["residuals"])

        r = residuals(flat)
        jac = jax.jacfwd(residuals)(flat)
        if damping == 0:
            direction = jnp.linalg.lstsq(jac, r)[0]
        else:
            gram = jac.T @ jac + damping * jnp.eye(flat.size, dtype=flat.dtype)
            direction = jnp.linalg.solve(gram, jac.T @ r)
        return unravel(direction), state

    return request_extra_args(optax.GradientTransformationExtraArgs(init, update), "per_sample_fn")


def gauss_newton(
    learning_rate: optax.ScalarOrSchedule = 1.0, damping: float = 0.0
) -> optax.GradientTransformationExtraArgs:
    """Damped Gauss-Newton: `θ <- θ - lr * (J^T J + damping I)^-1 J^T r` (see `scale_by_gauss_newton`)."""
    return chain(scale_by_gauss_newton(damping), optax.scale_by_learning_rate(learning_rate))


def make_schedule(
    lr: float, cfg: ConstantSchedule | CosineSchedule | ExponentialSchedule, total_steps: int
) -> optax.Schedule:
    """Learning-rate schedule for peak rate `lr` over a run of `total_steps` steps.

    A positive `warmup_steps` prepends a linear ramp from 0 to `lr`.
    """
    warmup = cfg.warmup_steps
    if isinstance(cfg, ConstantSchedule):
        main = optax.constant_schedule(lr)
    elif isinstance(cfg, CosineSchedule):
        decay = cfg.decay_steps or max(total_steps - warmup, 1)
        main = optax.cosine_decay_schedule(lr, decay, alpha=cfg.final_lr_ratio)
    elif isinstance(cfg, ExponentialSchedule):
        main = optax.exponential_decay(
            lr,
            cfg.transition_steps,
            cfg.decay_rate,
            staircase=cfg.staircase,
            end_value=cfg.final_lr_ratio * lr if cfg.final_lr_ratio > 0 else None,
        )
    else:
        raise TypeError(f"unknown schedule config {cfg!r}")
    if warmup == 0:
        return main
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])


def _clipped(cfg, core: optax.GradientTransformation) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    return optax.chain(*parts, core)


def _adam(cfg: AdamConfig, total_steps: int):
    lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
    return _clipped(cfg, optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))


def _adamw(cfg: AdamWConfig, total_steps: int):
    lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
    core = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return _clipped(cfg, core)


def _sgd(cfg: SGDConfig, total_steps: int):
    lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
    return _clipped(cfg, optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))


def _lbfgs(cfg: LBFGSConfig, total_steps: int):
    # "one" (the default) tries the full quasi-Newton step first, as optax.lbfgs
    # does; optax's zoom line search alone defaults to "keep".
    search = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=cfg.max_linesearch_steps, initial_guess_strategy=cfg.initial_guess
    )
    return _clipped(cfg, optax.lbfgs(memory_size=cfg.memory_size, linesearch=search))


def _gauss_newton(cfg: GaussNewtonConfig, total_steps: int):
    lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
    # clipping acts on the Gauss-Newton direction, i.e. it bounds the step
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    return chain(scale_by_gauss_newton(cfg.damping), *parts, optax.scale_by_learning_rate(lr))


def _sequence(cfg: SequenceConfig, total_steps: int):
    edges = [0, *cfg.boundaries, max(total_steps, cfg.boundaries[-1] + 1)]
    phases = [make_optimizer(c, b - a) for c, a, b in zip(cfg.phases, edges[:-1], edges[1:])]
    return sequence(phases, list(cfg.boundaries))


register_optimizer("adam", AdamConfig, _adam, description="Adam (supports complex parameters)")
register_optimizer("adamw", AdamWConfig, _adamw, description="AdamW, decoupled weight decay")
register_optimizer("sgd", SGDConfig, _sgd, description="SGD with (Nesterov) momentum")
register_optimizer("lbfgs", LBFGSConfig, _lbfgs, description="L-BFGS with a zoom line search")
register_optimizer(
    "gauss_newton",
    GaussNewtonConfig,
    _gauss_newton,
    description="damped Gauss-Newton on the problem's residuals (needs per_sample)",
)
register_optimizer(
    "sequence",
    SequenceConfig,
    _sequence,
    nested=("phases",),
    description="optimizer phases, e.g. Adam then L-BFGS",
)
