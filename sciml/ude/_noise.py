"""Observation noise and per-state settings shared by the ude problems.

The problems whose data are noisy samples of a deterministic trajectory
(Lotka-Volterra, Lorenz, Robertson, the spiral) take a `noise` level (one
number, or one per state) and a `noise_model`, validated by the types here and
applied by `add_observation_noise`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from pydantic import Discriminator, Field, Tag

__all__ = [
    "NoiseModel",
    "NoiseLevel",
    "FiniteFloat",
    "NonNegativeFloat",
    "add_observation_noise",
    "state_tuple",
]

# Observation noise, shared by the ude problems whose data are noisy samples
# of a deterministic trajectory (Lotka-Volterra, Lorenz, Robertson, spiral).
NoiseModel = Literal["absolute", "relative_mean", "relative_std", "multiplicative"]
"""How a problem's `noise` level scales the N(0, 1) draws `eps` added to the clean samples `u`.

- `"absolute"`: `u + noise * eps` (noise in the states' own units);
- `"relative_mean"`: `u + noise * mean_t |u_i| * eps` (a fraction of each state's mean size);
- `"relative_std"`: `u + noise * std_t(u_i) * eps` (a fraction of each state's spread over time);
- `"multiplicative"`: `u * (1 + noise * eps)` (a fraction of each sample's own value).

Means and standard deviations are over the sampled times, one per state.
"""
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A finite `float` (no inf or nan)."""
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite `float` >= 0."""


def _noise_kind(value) -> str:
    # pick the branch from the value's shape, so that an error reports only
    # what is wrong with it (not also that a list is not a number)
    return "per_state" if isinstance(value, (list, tuple)) else "one"


NoiseLevel = Annotated[
    Annotated[NonNegativeFloat, Tag("one")]
    | Annotated[tuple[NonNegativeFloat, ...], Tag("per_state")],
    Discriminator(_noise_kind),
]
"""A noise level: one number for every state, or a list with one entry per state (each >= 0)."""


def state_tuple(value, n: int, names: str, what: str):
    """Before-validator body for per-state settings: a YAML list becomes a tuple of length `n`.

    Args:
        value: the raw value (a list or tuple is checked, anything else passes
            through to the field's own validation).
        n: the number of states.
        names: the states, for the message (e.g. `"x, y"`).
        what: what the entries are, for the message (e.g. `"one initial population per state"`).

    Raises:
        ValueError: a list or tuple of the wrong length, naming `n` and the states.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"must have {n} entries ({names}): {what}")
        return tuple(value)
    return value


def add_observation_noise(
    clean: Float[Array, "t n"], noise: float | tuple[float, ...], model: str, seed: int
) -> Float[Array, "t n"]:
    """Noisy observations of clean samples `clean` (times x states).

    Args:
        clean: the clean samples, shape (T, n).
        noise: the level, one number or one per state (see `NoiseModel`).
        model: one of `NoiseModel`'s choices.
        seed: seed of the N(0, 1) draws (`jax.random.PRNGKey(seed)`, shape (T, n)).

    Returns:
        `clean` itself when every level is 0, else the noisy samples (same shape and dtype).

    Example:
        >>> u = jnp.ones((100, 2))
        >>> noisy = add_observation_noise(u, (0.01, 0.05), "multiplicative", seed=0)
        >>> noisy.shape
        (100, 2)
    """
    levels = (noise,) if isinstance(noise, (int, float)) else tuple(noise)
    if len(levels) not in (1, clean.shape[1]):
        raise ValueError(
            f"add_observation_noise: noise has {len(levels)} entries for {clean.shape[1]} states"
        )
    if all(v == 0 for v in levels):
        return clean
    # a scalar stays a Python number, so the arithmetic (and the data) is
    # bit for bit what the problems computed before the noise became per-state
    level = levels[0] if len(levels) == 1 else jnp.asarray(levels, clean.dtype)
    eps = jax.random.normal(jax.random.PRNGKey(seed), clean.shape, clean.dtype)
    if model == "absolute":
        return clean + level * eps
    if model == "relative_mean":
        return clean + level * jnp.mean(jnp.abs(clean), axis=0) * eps
    if model == "relative_std":
        return clean + level * jnp.std(clean, axis=0) * eps
    if model == "multiplicative":
        return clean * (1.0 + level * eps)
    raise ValueError(
        f"add_observation_noise: unknown noise model {model!r}; allowed: "
        "absolute, relative_mean, relative_std, multiplicative"
    )
