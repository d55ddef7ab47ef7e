"""Optimizer and learning-rate schedule construction from validated config sections.

This is the one place where optimizer names become optax objects. Every
optimizer returned here is an `optax.GradientTransformationExtraArgs`; the
trainer always passes `value`, `grad` and `value_fn` (which L-BFGS's line
search needs and the others ignore).
"""

from __future__ import annotations

import optax

from sciml.config import (
    AdamConfig,
    AdamWConfig,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LBFGSConfig,
    SGDConfig,
)

__all__ = ["make_schedule", "make_optimizer"]


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
        cfg: `AdamConfig`, `AdamWConfig`, `SGDConfig` or `LBFGSConfig`.
        total_steps: the run's step count (for schedules that decay over it).
    """
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
