"""Fixtures of the flow tests: `dtype` runs a test in float32 and in float64."""

import jax
import jax.numpy as jnp
import pytest


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run the test in one float dtype (x64 switched accordingly, restored after)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param == "float64")
    try:
        yield jnp.dtype(request.param)
    finally:
        jax.config.update("jax_enable_x64", previous)
