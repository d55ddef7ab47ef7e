"""Shared test setup: four fake CPU devices, the compilation cache, key and x64 fixtures."""

import os

# Must happen before jax is imported anywhere: sharding tests need several devices. The suite
# is compile-bound (hundreds of small programs, each run briefly), so XLA's backend
# optimisations are off: 15% less CPU on the contract and UDE files (measured), and the
# results are the same programs' (no fast-math). CLI and notebook subprocesses inherit both.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The notebooks run their tutorials with fewer training steps under the suite.
os.environ.setdefault("SCIML_NOTEBOOK_QUICK", "1")

import itertools  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from sciml.cache import enable_compilation_cache  # noqa: E402

# The suite compiles the same small programs many times (every `fit` of the
# same problem builds the same chunk); JAX's persistent cache serves the
# repeats, in this process and in the CLI subprocesses, which use the same
# default directory ($SCIML_CACHE_DIR, else ~/.cache/sciml/jax).
enable_compilation_cache()


@pytest.fixture
def getkey():
    """Call to get a fresh PRNG key (deterministic sequence per test)."""
    counter = itertools.count()
    base = jax.random.PRNGKey(1234)
    return lambda: jax.random.fold_in(base, next(counter))


@pytest.fixture
def x64():
    """Switch JAX to float64 for one test, restoring the previous setting after."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


# Files that take longest (measured with --durations on the 2-core VM), scheduled first: under
# pytest-xdist's --dist loadfile a long file collected last (the notebooks come after tests/)
# keeps one worker busy while the other idles; longest-first evens the two out.
_LONGEST_FIRST = (
    "tests/test_cli_safety.py",
    "tests/test_trainer.py",
    "notebooks/ude_lotka_volterra.ipynb",
    "notebooks/flows_density_and_vi.ipynb",
    "tests/test_multihost.py",
    "tests/test_contract.py",
    "tests/test_contract_flows.py",
    "tests/nqs/test_vmc.py",
    "tests/ude/test_steady_state.py",
    "tests/flows/test_cnf.py",
    "tests/nqs/test_sampler.py",
    "tests/test_contract_pinn.py",
    "notebooks/pinn_burgers.ipynb",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item):
        path = str(item.path.relative_to(config.rootpath)) if item.path else ""
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: files keep their tests' order and stay contiguous
