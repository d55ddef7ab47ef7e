"""Optimizer and learning-rate schedule construction from validated config sections.

This is the one place where optimizer names become optax objects. Every
optimizer returned here is an `optax.GradientTransformationExtraArgs`; the
trainer always passes `value`, `grad` and `value_fn` (which L-BFGS's line
search needs and the others ignore).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sciml.config import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LBFGSConfig,
    SequenceConfig,
    SGDConfig,
)

__all__ = ["make_schedule", "make_optimizer", "sequence", "SequenceState"]


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
    (`value`, `grad`, `value_fn`) reach every phase that accepts them.

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
    transforms = [optax.with_extra_args_support(t) for t in transforms]
    bounds = jnp.asarray(boundaries, dtype=jnp.int32)

    def init(params):
        return SequenceState(jnp.zeros((), jnp.int32), tuple(t.init(params) for t in transforms))

    def update(updates, state, params=None, **extra):
        phase = jnp.searchsorted(bounds, state.count, side="right")

        def branch(i):
            def run(operands):
                updates, inner = operands
                new, inner_i = transforms[i].update(updates, inner[i], params, **extra)
                return new, inner[:i] + (inner_i,) + inner[i + 1 :]

            return run

        new_updates, inner = jax.lax.switch(
            phase, [branch(i) for i in range(len(transforms))], (updates, state.inner)
        )
        return new_updates, SequenceState(state.count + 1, inner)

    return optax.GradientTransformationExtraArgs(init, update)


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


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """Build the optax optimizer described by an optimizer config section.

    Args:
        cfg: `AdamConfig`, `AdamWConfig`, `SGDConfig`, `LBFGSConfig` or
            `SequenceConfig`.
        total_steps: the run's step count (for schedules that decay over it;
            in a sequence, each phase's own length).
    """
    if isinstance(cfg, SequenceConfig):
        edges = [0, *cfg.boundaries, max(total_steps, cfg.boundaries[-1] + 1)]
        phases = [make_optimizer(c, b - a) for c, a, b in zip(cfg.phases, edges[:-1], edges[1:])]
        return sequence(phases, list(cfg.boundaries))
    if isinstance(cfg, LBFGSConfig):
        core = optax.lbfgs(
            memory_size=cfg.memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=cfg.max_linesearch_steps
            ),
        )
    else:
        lr = make_schedule(cfg.lr, cfg.schedule, total_steps)
        if isinstance(cfg, AdamConfig):
            core = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
        elif isinstance(cfg, AdamWConfig):
            core = optax.adamw(
                lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
            )
        elif isinstance(cfg, SGDConfig):
            core = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
        else:
            raise TypeError(f"unknown optimizer config {cfg!r}")
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    return optax.chain(*parts, core)
