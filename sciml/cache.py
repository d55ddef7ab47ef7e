"""JAX's persistent compilation cache, so that a repeated program is not compiled twice.

XLA programs are stored on disk keyed by their HLO, compiler flags and
backend; a later run (or a later `fit` in the same process) that builds the
same program loads it instead of compiling. Nothing is cached unless
`enable_compilation_cache` is called: the CLI and `fit` call it when
`train.compilation_cache` is true (the default).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["default_cache_dir", "enable_compilation_cache"]


def default_cache_dir() -> Path:
    """`$SCIML_CACHE_DIR`, else `$XDG_CACHE_HOME/sciml/jax`, else `~/.cache/sciml/jax`."""
    if os.environ.get("SCIML_CACHE_DIR"):
        return Path(os.environ["SCIML_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sciml" / "jax"


def enable_compilation_cache(path: str | Path | None = None, *, min_compile_time_s: float = 0.2) -> Path:
    """Turn on JAX's persistent compilation cache (idempotent); returns its directory.

    A cache directory the user already configured (`JAX_COMPILATION_CACHE_DIR`
    or `jax.config.update("jax_compilation_cache_dir", ...)`) is kept, and
    `path` is then ignored.

    Args:
        path: the cache directory (default: `default_cache_dir()`).
        min_compile_time_s: programs that compile faster than this are not
            stored (reading them back would not pay).
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = Path(path) if path is not None else default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return directory  # an unwritable cache is no reason to stop a run
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
