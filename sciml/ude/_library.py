"""Candidate-function libraries for sparse regression (SINDy).

A library maps ONE state x of shape (n_vars,) to the vector Θ(x) of candidate
terms (monomials up to a degree, user functions, or a concatenation); vmap it
over samples to build the regression matrix. `feature_names` gives the
readable name of every column, used by `format_equations`.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["AbstractLibrary", "PolynomialLibrary", "FunctionLibrary", "ConcatLibrary"]


class AbstractLibrary(eqx.Module):
    """A library of candidate functions Θ: R^n_vars -> R^n_features on one point.

    Subclasses define `n_vars` (the dimension of the state), `n_features`, `__call__(x)` for a single
    point `x` of shape (n_vars,) and `feature_names(var_names)`. Evaluate on
    a trajectory with `jax.vmap(library)(xs)`.
    """

    n_vars: eqx.AbstractVar[int]

    @property
    @abc.abstractmethod
    def n_features(self) -> int:
        """Number of library functions L."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " n_vars"]) -> Float[Array, " n_features"]:
        """The library evaluated at one point."""

    @abc.abstractmethod
    def feature_names(self, var_names: Sequence[str] | None = None) -> list[str]:
        """One name per feature, in output order."""


def _check_point(name: str, n_vars: int, x) -> None:
    if jnp.shape(x) != (n_vars,):
        raise ValueError(
            f"{name}: expected one point of shape ({n_vars},), got {jnp.shape(x)}; "
            "vmap the library over samples"
        )


def _resolve_var_names(name: str, n_vars: int, var_names) -> list[str]:
    if var_names is None:
        return [f"x{i}" for i in range(n_vars)]
    var_names = list(var_names)
    if len(var_names) != n_vars:
        raise ValueError(f"{name}: expected {n_vars} variable names, got {len(var_names)}")
    return var_names


class PolynomialLibrary(AbstractLibrary):
    """All monomials of the state up to total degree `degree`.

    Feature order: the bias `1` (if `include_bias`), then degree 1, 2, ...;
    within a degree, index tuples i1 <= i2 <= ... in lexicographic order
    (`itertools.combinations_with_replacement`). For (x, y, z) and degree 2:

        1, x, y, z, x^2, x y, x z, y^2, y z, z^2

    (the same order as pysindy's `PolynomialLibrary`). The number of features
    is C(n_vars + degree, degree), minus one without the bias.

    Args:
        n_vars: dimension of the state.
        degree: highest total degree (>= 1).
        include_bias: include the constant feature `1`.

    Example:
        >>> lib = PolynomialLibrary(3, 2)
        >>> theta = jax.vmap(lib)(xs)  # (T, 10)
        >>> lib.feature_names(["x", "y", "z"])[:5]
        ['1', 'x', 'y', 'z', 'x^2']
    """

    n_vars: int = eqx.field(static=True)
    degree: int = eqx.field(static=True)
    include_bias: bool = eqx.field(static=True)
    # Each monomial as its sorted variable indices (length 0 for the bias).
    monomials: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, n_vars: int, degree: int, include_bias: bool = True):
        if not isinstance(n_vars, int) or n_vars < 1:
            raise ValueError(f"PolynomialLibrary: n_vars must be a positive int, got {n_vars!r}")
        if not isinstance(degree, int) or degree < 1:
            raise ValueError(f"PolynomialLibrary: degree must be an int >= 1, got {degree!r}")
        self.n_vars = n_vars
        self.degree = degree
        self.include_bias = include_bias
        first = 0 if include_bias else 1
        self.monomials = tuple(
            c
            for d in range(first, degree + 1)
            for c in itertools.combinations_with_replacement(range(n_vars), d)
        )

    @property
    def n_features(self) -> int:
        return len(self.monomials)

    def __call__(self, x):
        _check_point("PolynomialLibrary", self.n_vars, x)
        # Gather from [1, x] with index 0 as padding, then multiply along the
        # degree axis: one gather and one product, differentiable everywhere.
        padded = np.zeros((len(self.monomials), self.degree), dtype=np.int32)
        for row, c in enumerate(self.monomials):
            padded[row, : len(c)] = np.asarray(c, dtype=np.int32) + 1
        ones = jnp.ones((1,), dtype=jnp.result_type(x, float))
        x1 = jnp.concatenate([ones, jnp.asarray(x, ones.dtype)])
        return jnp.prod(x1[padded], axis=1)

    def feature_names(self, var_names=None):
        names = _resolve_var_names("PolynomialLibrary", self.n_vars, var_names)
        out = []
        for c in self.monomials:
            if not c:
                out.append("1")
                continue
            parts = []
            for i, group in itertools.groupby(c):
                power = len(list(group))
                parts.append(names[i] if power == 1 else f"{names[i]}^{power}")
            out.append(" ".join(parts))
        return out


class FunctionLibrary(AbstractLibrary):
    """Unary functions applied to every state variable.

    Features are function-major: f_0(x_0), ..., f_0(x_{n-1}), f_1(x_0), ...
    Each name is a template with `{}` for the variable name, e.g. `"sin({})"`.

    Args:
        n_vars: dimension of the state.
        functions: elementwise unary JAX functions, e.g. `(jnp.sin, jnp.cos)`.
        names: one template per function, e.g. `("sin({})", "cos({})")`.

    Example:
        >>> lib = ConcatLibrary((PolynomialLibrary(2, 2), FunctionLibrary(2, (jnp.sin,), ("sin({})",))))
    """

    n_vars: int = eqx.field(static=True)
    functions: tuple[Callable, ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, n_vars: int, functions: Sequence[Callable], names: Sequence[str]):
        functions, names = tuple(functions), tuple(names)
        if len(functions) != len(names):
            raise ValueError(
                f"FunctionLibrary: got {len(functions)} functions but {len(names)} names"
            )
        for name in names:
            if "{}" not in name:
                raise ValueError(
                    f"FunctionLibrary: name {name!r} must contain '{{}}' for the variable name, "
                    "e.g. 'sin({})'"
                )
        self.n_vars = n_vars
        self.functions = functions
        self.names = names

    @property
    def n_features(self) -> int:
        return len(self.functions) * self.n_vars

    def __call__(self, x):
        _check_point("FunctionLibrary", self.n_vars, x)
        return jnp.concatenate([jnp.ravel(f(x)) for f in self.functions])

    def feature_names(self, var_names=None):
        var_names = _resolve_var_names("FunctionLibrary", self.n_vars, var_names)
        return [t.format(v) for t in self.names for v in var_names]


class ConcatLibrary(AbstractLibrary):
    """Features of several libraries on the same state, concatenated in order."""

    libraries: tuple[AbstractLibrary, ...]

    def __init__(self, libraries: Sequence[AbstractLibrary]):
        libraries = tuple(libraries)
        if not libraries:
            raise ValueError("ConcatLibrary: needs at least one library")
        dims = {lib.n_vars for lib in libraries}
        if len(dims) != 1:
            raise ValueError(f"ConcatLibrary: libraries disagree on n_vars: {sorted(dims)}")
        self.libraries = libraries

    @property
    def n_vars(self) -> int:
        return self.libraries[0].n_vars

    @property
    def n_features(self) -> int:
        return sum(lib.n_features for lib in self.libraries)

    def __call__(self, x):
        return jnp.concatenate([lib(x) for lib in self.libraries])

    def feature_names(self, var_names=None):
        return [n for lib in self.libraries for n in lib.feature_names(var_names)]
