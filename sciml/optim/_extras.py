"""How an optimizer asks the trainer for more than the gradient.

The trainer always passes optax's own extra keyword arguments to `update`:
`value` (the loss), `grad` and `value_fn` (what optax's line searches use).
Anything more is passed only to an optimizer that asks for it by name:

- `per_sample_fn`: `params -> dict` of the problem's `per_sample` hook at the
  step's batch (residuals, log-amplitudes, per-sample outputs);
- `key`: a PRNG key of the step's own, for optimizers that draw samples.

An optimizer asks with `request_extra_args(transform, "per_sample_fn")`;
`chain` and `sciml.optim.sequence` keep the requests of their members and
hand each member only what it asked for (optax's line search rejects
keyword arguments it does not know, so nothing is passed blindly). An
optimizer that asks for nothing receives nothing new and costs nothing.
"""

from __future__ import annotations

import optax

__all__ = [
    "BASE_EXTRA_ARGS",
    "EXTRA_ARGS",
    "ExtraArgsTransformation",
    "request_extra_args",
    "requested_extra_args",
    "chain",
]

BASE_EXTRA_ARGS = ("value", "grad", "value_fn")
"""Passed to every optimizer's `update` (optax's convention)."""

EXTRA_ARGS = (*BASE_EXTRA_ARGS, "per_sample_fn", "key")
"""Every extra keyword argument the trainer can provide."""


class ExtraArgsTransformation(optax.GradientTransformationExtraArgs):
    """An optax transformation that names the extra arguments its `update` needs.

    Attributes:
        extra_args: names from `EXTRA_ARGS` beyond `BASE_EXTRA_ARGS`.
    """

    extra_args: tuple[str, ...]


def request_extra_args(
    transform: optax.GradientTransformation, *names: str
) -> ExtraArgsTransformation:
    """`transform`, marked as needing the extra keyword arguments `names` in `update`.

    Raises `ValueError` for a name the trainer does not provide.
    """
    unknown = [n for n in names if n not in EXTRA_ARGS]
    if unknown:
        raise ValueError(
            f"request_extra_args: unknown extra argument(s) {unknown}; the trainer provides "
            f"{', '.join(EXTRA_ARGS)}"
        )
    t = optax.with_extra_args_support(transform)
    out = ExtraArgsTransformation(t.init, t.update)
    out.extra_args = tuple(dict.fromkeys((*requested_extra_args(transform), *names)))
    return out


def requested_extra_args(transform) -> tuple[str, ...]:
    """The extra arguments beyond `BASE_EXTRA_ARGS` that `transform` asked for."""
    return tuple(getattr(transform, "extra_args", ()))


def select_extra_args(transform, extras: dict) -> dict:
    """The subset of `extras` that `transform` receives: the base ones and those it asked for."""
    wanted = (*BASE_EXTRA_ARGS, *requested_extra_args(transform))
    return {k: v for k, v in extras.items() if k in wanted}


def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """`optax.chain` that hands each member only the extra arguments it asked for.

    The result asks for the union of its members' requests.
    """
    members = [optax.with_extra_args_support(t) for t in transforms]
    requests = [requested_extra_args(t) for t in transforms]

    def init(params):
        return tuple(t.init(params) for t in members)

    def update(updates, state, params=None, **extras):
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = optax.with_extra_args_support(t).update(
                updates, s, params, **select_extra_args(t, extras)
            )
            new_state.append(s)
        return updates, tuple(new_state)

    names = tuple(dict.fromkeys(n for r in requests for n in r))
    result = optax.GradientTransformationExtraArgs(init, update)
    return request_extra_args(result, *names) if names else result
