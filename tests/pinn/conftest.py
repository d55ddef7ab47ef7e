"""PINN tests run in float64 (the pillar's default precision), restored after each module."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _float64_module():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
