"""Differential operators for PINN residuals, each with a switchable derivative engine.

A *field* is a callable `f(x)` on ONE point `x` of shape `(d,)` that returns a
scalar (shape `()`) or a vector (shape `(m,)`); batch over points with
`jax.vmap`. Every operator is an ordinary JAX function of `x` and of whatever
`f` closes over (network parameters), so `jax.grad`/`jax.jacfwd` of a PINN
loss differentiate through it, whatever the engine.

Engines (`ENGINES`); all give the same numbers to round-off except the
randomised ones, which are unbiased estimators of the Laplacian/divergence:

* `"reverse"`: nested reverse mode (`jax.jacrev` of `jax.jacrev`); the Laplacian
  is the trace of the Hessian.
* `"forward"`: nested forward mode (`jax.jvp` of `jax.jvp`) along basis vectors.
* `"forward_over_reverse"`: `jvp` of the reverse gradient, `e_iᵀ H e_i` per basis
  vector, vmapped.
* `"taylor"`: Taylor mode, `jax.experimental.jet`. One `k`-jet along `e_i`
  gives the pure derivatives `∂_i u, …, ∂_i^k u` in one pass (u_xxx for KdV);
  mixed partials by polarisation.
* `"forward_laplacian"`: Li et al. (2024): one forward pass carrying
  (value, ∇ w.r.t. x, Laplacian) through `f`'s jaxpr; see `forward_laplacian`.
* `"hutchinson"`: `Δu ≈ mean_s v_sᵀ H v_s` with Rademacher or Gaussian probes.
* `"sdgd"`: stochastic dimension sampling, `Δu ≈ (d/|I|) Σ_{i∈I} ∂_i² u` over a
  random subset `I` of `num_dims` dimensions, second derivatives by nested `jvp`.
* `"stde"`: the same estimator with each `∂_i² u` from a 2-jet (the sparse
  random jets of Shi et al. 2024).

A randomised engine with `num_probes`/`num_dims` samples estimates `Δu` without
bias, but a squared residual built from it is biased upward by the estimator's
variance; with one key per point under `vmap`, probes are independent across
points.

References: Bettencourt et al. 2019 (jet); Li et al., Nat. Mach. Intell. 2024
(Forward Laplacian); Hu et al., CMAME 2024 (Hutchinson trace estimation for
PINNs); Hu et al., Neural Networks 2024 (SDGD); Shi et al., NeurIPS 2024 (STDE).
"""

from __future__ import annotations

import contextvars
import inspect
import math
from collections.abc import Callable, Sequence
from itertools import product

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.jet import jet as _jet
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal, Primitive

__all__ = [
    "ENGINES",
    "EXACT_ENGINES",
    "RANDOMISED_ENGINES",
    "PROBES",
    "divergence",
    "forward_laplacian",
    "gradient",
    "hessian",
    "laplacian",
    "partial",
    "time_derivative",
    "value_and_derivatives",
]

EXACT_ENGINES = ("reverse", "forward", "forward_over_reverse", "taylor", "forward_laplacian")
"""Engines that compute derivatives exactly (up to round-off)."""
RANDOMISED_ENGINES = ("hutchinson", "sdgd", "stde")
"""Unbiased stochastic trace estimators (Laplacian and divergence only); need `key`."""
ENGINES = EXACT_ENGINES + RANDOMISED_ENGINES
"""All derivative engines, by name."""
PROBES = ("rademacher", "gaussian")
"""Probe distributions of the `"hutchinson"` engine."""

Field = Callable[[jax.Array], jax.Array]

_NESTED = ("reverse", "forward", "forward_over_reverse", "taylor")

# ---------------------------------------------------------------------------
# argument checks


def _check_engine(op: str, engine: str, allowed: Sequence[str]) -> None:
    if engine not in ENGINES:
        raise ValueError(f"{op}: unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    if engine not in allowed:
        raise ValueError(
            f"{op}: engine {engine!r} cannot compute this operator; use one of {', '.join(allowed)}"
        )


def _check_point(op: str, x) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(
            f"{op}: x must be one point of shape (d,) with d >= 1, got shape {x.shape}; "
            "batch over points with jax.vmap"
        )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise ValueError(f"{op}: x must be a floating-point array, got dtype {x.dtype}")
    return x


def _out_shape(op: str, f: Field, x: jax.Array, ndims: Sequence[int] = (0, 1)) -> tuple:
    out = jax.eval_shape(f, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"{op}: f must return a single array, got {jax.tree.structure(out)}")
    if out.ndim not in ndims:
        kinds = {0: "a scalar (shape ())", 1: "a vector (shape (m,))"}
        allowed = " or ".join(kinds.get(n, f"{n}-D") for n in ndims)
        raise ValueError(f"{op}: f must return {allowed}, got output shape {out.shape}")
    return out.shape


def _normalise_axes(op: str, axes, d: int) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if not axes:
        raise ValueError(f"{op}: axes must name at least one coordinate, got {axes}")
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -d <= a < d:
            raise ValueError(f"{op}: axes must be integers in [{-d}, {d}) for d={d}, got {axes}")
    return tuple(int(a) % d for a in axes)


# ---------------------------------------------------------------------------
# building blocks shared by the engines

# In this JAX (0.10.x) `jet` has `factorial_scaled=True` by default: input and
# output series are derivatives ∂^k f[v,…,v], not Taylor coefficients. Older
# versions have no flag and use the same convention. Pass it explicitly so a
# future change of default cannot silently rescale u_xx by 1/2.
_JET_KWARGS = (
    {"factorial_scaled": True} if "factorial_scaled" in inspect.signature(_jet).parameters else {}
)


def _jet_derivatives(f: Field, x: jax.Array, v: jax.Array, order: int):
    """`(f(x), [∂f[v], ∂²f[v,v], …, ∂^order f[v,…,v]])` from one Taylor-mode pass."""
    series = (v,) + (jnp.zeros_like(v),) * (order - 1)
    try:
        primal, terms = _jet(f, (x,), (series,), **_JET_KWARGS)
    except KeyError as err:  # jet signals a missing rule by KeyError(primitive)
        if err.args and isinstance(err.args[0], Primitive):
            raise NotImplementedError(
                f"taylor engine: jax.experimental.jet has no rule for primitive "
                f"'{err.args[0]}'; use engine='forward' or engine='reverse'"
            ) from err
        raise
    return primal, list(terms)


def _jvp2(f: Field, x: jax.Array, v: jax.Array) -> jax.Array:
    """Second directional derivative ∂²f[v, v] by forward-over-forward."""
    return jax.jvp(lambda y: jax.jvp(f, (y,), (v,))[1], (x,), (v,))[1]


def _hvp_dot(f: Field, x: jax.Array, v: jax.Array) -> jax.Array:
    """vᵀ H v from the jvp of the reverse-mode gradient (Jacobian for vector f)."""
    hv = jax.jvp(_reverse_jacobian(f), (x,), (v,))[1]  # out + (d,)
    return hv @ v


def _jet2(f: Field, x: jax.Array, v: jax.Array) -> jax.Array:
    return _jet_derivatives(f, x, v, 2)[1][1]


def _basis(x: jax.Array) -> jax.Array:
    return jnp.eye(x.shape[0], dtype=x.dtype)


# ---------------------------------------------------------------------------
# gradient, Hessian


def gradient(f: Field, x, *, engine: str = "reverse") -> jax.Array:
    """First derivatives of `f` at one point.

    Args:
        f: field on one point, returning shape `()` or `(m,)`.
        x: the point, shape `(d,)`, floating dtype.
        engine: one of `EXACT_ENGINES`. `"reverse"` and `"forward_over_reverse"`
            use `jax.jacrev`; `"forward"` `jax.jacfwd`; `"taylor"` 1-jets along
            the basis; `"forward_laplacian"` the gradient channel of
            `forward_laplacian`.

    Returns:
        `(d,)` for scalar `f`, the `(m, d)` Jacobian for vector `f`.

    Raises:
        ValueError: `x` not of shape `(d,)`, `f` not scalar/vector, unknown or
            randomised engine.
    """
    x = _check_point("gradient", x)
    _check_engine("gradient", engine, EXACT_ENGINES)
    _out_shape("gradient", f, x)
    if engine in ("reverse", "forward_over_reverse"):
        return _reverse_jacobian(f)(x)
    if engine == "forward":
        return jax.jacfwd(f)(x)
    if engine == "taylor":
        cols = jax.vmap(lambda v: _jet_derivatives(f, x, v, 1)[1][0])(_basis(x))
        return jnp.moveaxis(cols, 0, -1)
    return forward_laplacian(f, x)[1]


def hessian(f: Field, x, *, engine: str = "reverse") -> jax.Array:
    """Second derivatives `∂_i ∂_j f` at one point.

    Args:
        f: field on one point, returning shape `()` or `(m,)`.
        x: the point, shape `(d,)`.
        engine: `"reverse"` (jacrev of jacrev), `"forward_over_reverse"` (jacfwd
            of jacrev, i.e. `jax.hessian`), `"forward"` (jacfwd of jacfwd) or
            `"taylor"` (2-jets along `e_i` and `e_i + e_j`, polarised:
            `H_ij = (∂²f[e_i+e_j] − H_ii − H_jj)/2`, `d(d+1)/2` jets).

    Returns:
        `(d, d)` for scalar `f`, `(m, d, d)` for vector `f`.

    Raises:
        ValueError: bad `x`, non-scalar/vector `f`, or an engine outside the above.
    """
    x = _check_point("hessian", x)
    _check_engine("hessian", engine, _NESTED)
    _out_shape("hessian", f, x)
    if engine == "reverse":
        return jax.jacrev(_reverse_jacobian(f))(x)
    if engine == "forward_over_reverse":
        return jax.jacfwd(_reverse_jacobian(f))(x)
    if engine == "forward":
        return jax.jacfwd(jax.jacfwd(f))(x)
    d = x.shape[0]
    eye = _basis(x)
    rows, cols = np.triu_indices(d, k=1)
    dirs = jnp.concatenate([eye, eye[rows] + eye[cols]], axis=0)
    s = jax.vmap(lambda v: _jet2(f, x, v))(dirs)  # (d + d(d-1)/2, out...)
    diag = s[:d]
    off = (s[d:] - diag[rows] - diag[cols]) / 2
    h = jnp.zeros((d, d) + s.shape[1:], s.dtype)
    h = h.at[np.arange(d), np.arange(d)].set(diag).at[rows, cols].set(off).at[cols, rows].set(off)
    return jnp.moveaxis(h, (0, 1), (-2, -1))


# ---------------------------------------------------------------------------
# traces: Laplacian and divergence


def _random_directions(op, engine, x, key, num_probes, probe, num_dims):
    """Probe directions `(S, d)` and the scale that makes their mean an unbiased trace."""
    if key is None:
        raise ValueError(f"{op}: engine {engine!r} is randomised and needs key=jax.random.key(...)")
    d = x.shape[0]
    if engine == "hutchinson":
        if probe not in PROBES:
            raise ValueError(f"{op}: unknown probe {probe!r}; allowed: {', '.join(PROBES)}")
        if not isinstance(num_probes, (int, np.integer)) or num_probes < 1:
            raise ValueError(f"{op}: num_probes must be a positive integer, got {num_probes!r}")
        sample = jax.random.rademacher if probe == "rademacher" else jax.random.normal
        return sample(key, (int(num_probes), d), dtype=x.dtype), 1.0 / num_probes
    if not isinstance(num_dims, (int, np.integer)) or num_dims < 1:
        raise ValueError(f"{op}: num_dims must be a positive integer, got {num_dims!r}")
    k = min(int(num_dims), d)
    # Without replacement every dimension is picked with probability k/d, so
    # (d/k) Σ_{i∈I} is unbiased and exact at k = d.
    idx = jax.random.choice(key, d, (k,), replace=False)
    return _basis(x)[idx], d / k


def laplacian(
    f: Field,
    x,
    *,
    engine: str = "reverse",
    key=None,
    num_probes: int = 16,
    probe: str = "rademacher",
    num_dims: int = 16,
) -> jax.Array:
    """Laplacian `Δf = Σ_i ∂_i² f` at one point.

    Args:
        f: field on one point, returning shape `()` or `(m,)` (componentwise).
        x: the point, shape `(d,)`.
        engine: one of `ENGINES` (see the module docstring).
        key: PRNG key, required by the randomised engines, ignored otherwise.
        num_probes: `"hutchinson"`: number of probe vectors `v` (estimate
            `mean vᵀ H v`).
        probe: `"hutchinson"`: `"rademacher"` (variance `2 Σ_{i≠j} H_ij²`) or
            `"gaussian"` (variance `2 ‖H‖_F²`), per probe.
        num_dims: `"sdgd"`/`"stde"`: number of dimensions sampled without
            replacement (`min(num_dims, d)`; exact when `>= d`).

    Returns:
        Shape `()` for scalar `f`, `(m,)` for vector `f`.

    Raises:
        ValueError: `x` not of shape `(d,)`; output not scalar/vector; unknown
            engine (the message lists `ENGINES`) or probe; randomised engine
            without `key`.
        NotImplementedError: `"forward_laplacian"` meets a primitive it has no
            rule for (or `"taylor"` one that jet lacks).

    Example:
        >>> u = lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])
        >>> x = jnp.array([0.3, 0.4])
        >>> jnp.allclose(laplacian(u, x, engine="taylor"), -2 * jnp.pi**2 * u(x))
        Array(True, dtype=bool)
    """
    x = _check_point("laplacian", x)
    _check_engine("laplacian", engine, ENGINES)
    if engine == "forward_laplacian":  # checks the output shape itself
        return _forward_laplacian("laplacian", f, x)[2]
    _out_shape("laplacian", f, x)
    if engine == "reverse":
        return jnp.trace(jax.jacrev(_reverse_jacobian(f))(x), axis1=-2, axis2=-1)
    second = {"forward": _jvp2, "forward_over_reverse": _hvp_dot, "taylor": _jet2}
    if engine in second:
        directions, scale = _basis(x), 1.0
        rule = second[engine]
    else:
        directions, scale = _random_directions(
            "laplacian", engine, x, key, num_probes, probe, num_dims
        )
        rule = _jet2 if engine == "stde" else _jvp2
    return scale * jnp.sum(jax.vmap(lambda v: rule(f, x, v))(directions), axis=0)


def divergence(
    f: Field,
    x,
    *,
    engine: str = "reverse",
    key=None,
    num_probes: int = 16,
    probe: str = "rademacher",
    num_dims: int = 16,
) -> jax.Array:
    """Divergence `∇·f = Σ_i ∂_i f_i` of a vector field `f: R^d -> R^d` at one point.

    Args:
        f: field on one point returning shape `(d,)`.
        x: the point, shape `(d,)`.
        engine: one of `ENGINES`. `"reverse"`/`"forward_over_reverse"`: trace of
            `jax.jacrev`; `"forward"`: `jvp` along each `e_i`; `"taylor"`: 1-jets;
            `"forward_laplacian"`: its gradient channel; randomised engines
            estimate the trace as for `laplacian` with `vᵀ J v` from one `jvp`.
        key, num_probes, probe, num_dims: as in `laplacian`.

    Returns:
        Scalar.

    Raises:
        ValueError: bad `x`; `f` not returning shape `(d,)`; unknown engine;
            randomised engine without `key`.
    """
    x = _check_point("divergence", x)
    _check_engine("divergence", engine, ENGINES)
    shape = _out_shape("divergence", f, x, ndims=(1,))
    if shape != x.shape:
        raise ValueError(f"divergence: f must map R^d to R^d, got x {x.shape} -> f(x) {shape}")
    if engine in ("reverse", "forward_over_reverse"):
        return jnp.trace(jax.jacrev(f)(x))
    if engine == "forward_laplacian":
        return jnp.trace(forward_laplacian(f, x)[1])
    if engine in RANDOMISED_ENGINES:
        directions, scale = _random_directions(
            "divergence", engine, x, key, num_probes, probe, num_dims
        )
    else:
        directions, scale = _basis(x), 1.0

    def vjv(v):
        if engine in ("taylor", "stde"):
            return _jet_derivatives(f, x, v, 1)[1][0] @ v
        return jax.jvp(f, (x,), (v,))[1] @ v

    return scale * jnp.sum(jax.vmap(vjv)(directions))


# ---------------------------------------------------------------------------
# partial derivatives of any order


def _polarised_partial(f: Field, x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Mixed partial ∂^k f/∂x_{a_1}…∂x_{a_k} from k-jets by polarisation.

    With distinct directions u_j of multiplicities m_j (Σ m_j = k),
    D^k f[u_1^{m_1}, …] = (1/k!) Σ_{0≤s_j≤m_j} Π_j (−1)^{m_j−s_j} C(m_j, s_j)
    D^k f[(Σ_j s_j u_j)^{⊗k}]  (inclusion–exclusion over sub-multisets;
    the s = 0 term vanishes). Needs Π(m_j + 1) − 1 jets, vmapped.
    """
    k = len(axes)
    distinct = sorted(set(axes))
    mult = [axes.count(a) for a in distinct]
    terms = [s for s in product(*(range(m + 1) for m in mult)) if any(s)]
    d = x.shape[0]
    dirs = np.zeros((len(terms), d))
    coef = np.zeros(len(terms))
    for n, s in enumerate(terms):
        dirs[n, distinct] = s
        coef[n] = math.prod((-1) ** (m - si) * math.comb(m, si) for m, si in zip(mult, s))
    dk = jax.vmap(lambda v: _jet_derivatives(f, x, v, k)[1][k - 1])(jnp.asarray(dirs, x.dtype))
    coef = jnp.asarray(coef / math.factorial(k), dk.dtype).reshape((-1,) + (1,) * (dk.ndim - 1))
    return jnp.sum(coef * dk, axis=0)


def _jvp_along(h: Field, e: jax.Array) -> Field:
    return lambda y: jax.jvp(h, (y,), (e,))[1]


def _reverse_jacobian(h: Field) -> Field:
    """`jax.grad` for a scalar field, `jax.jacrev` otherwise.

    On a scalar field `jacrev` seeds a batch of one cotangent, which XLA:CPU
    does not fold away: measured 1.6x slower than `grad` in float32 on a
    Burgers residual (same in float64)."""

    def jac(y):
        if jax.eval_shape(h, y).shape == ():
            return jax.grad(h)(y)
        return jax.jacrev(h)(y)

    return jac


def _jacrev_column(h: Field, a: int) -> Field:
    return lambda y: _reverse_jacobian(h)(y)[..., a]


def _nested_jvp(g: Field, axes: Sequence[int], d: int, dtype) -> Field:
    for a in axes:
        g = _jvp_along(g, jnp.zeros(d, dtype).at[a].set(1))
    return g


def partial(f: Field, x, axes, *, engine: str = "reverse") -> jax.Array:
    """Partial derivative `∂^k f / ∂x_{axes[0]} … ∂x_{axes[k-1]}` at one point, any order k ≥ 1.

    Examples: `axes=(0,)` is u_x, `(0, 0, 0)` u_xxx (KdV), `(0, 1)` u_xy.

    Args:
        f: field on one point, returning any array shape (typically `()` or `(m,)`).
        x: the point, shape `(d,)`.
        axes: int or sequence of ints in `[-d, d)`; repeats mean higher order.
        engine: `"reverse"` (nested `jax.jacrev`), `"forward"` (nested `jvp`,
            `2^k` cost), `"forward_over_reverse"` (one reverse gradient, then
            nested `jvp`), `"taylor"` (a pure k-th derivative from ONE k-jet;
            mixed ones by polarisation from `Π(m_j+1) − 1` jets), or
            `"forward_laplacian"` (first order only).

    Returns:
        Array of `f`'s output shape.

    Raises:
        ValueError: bad `x` or `axes`; unknown/randomised engine;
            `"forward_laplacian"` with order > 1.
    """
    x = _check_point("partial", x)
    _check_engine("partial", engine, EXACT_ENGINES)
    d = x.shape[0]
    axes = _normalise_axes("partial", axes, d)
    jax.eval_shape(f, x)  # fail early on f that cannot take x
    k = len(axes)
    if engine == "forward_laplacian":
        if k == 2 and axes[0] == axes[1]:
            e = jnp.zeros(d, x.dtype).at[axes[0]].set(1)
            return _forward_laplacian("partial", f, x, e)[2]
        if k != 1:
            raise ValueError(
                f"partial: engine 'forward_laplacian' gives first derivatives and pure second "
                f"derivatives only, got axes={axes}; use one of {', '.join(_NESTED)}"
            )
        return forward_laplacian(f, x)[1][..., axes[0]]
    if engine == "reverse":
        g = f
        for a in axes:
            g = _jacrev_column(g, a)
        return g(x)
    if engine == "forward":
        return _nested_jvp(f, axes, d, x.dtype)(x)
    if engine == "forward_over_reverse":
        return _nested_jvp(_jacrev_column(f, axes[0]), axes[1:], d, x.dtype)(x)
    if len(set(axes)) == 1:
        e = jnp.zeros(d, x.dtype).at[axes[0]].set(1)
        return _jet_derivatives(f, x, e, k)[1][k - 1]
    return _polarised_partial(f, x, axes)


def time_derivative(f: Field, x, *, time_axis: int = -1, engine: str = "reverse") -> jax.Array:
    """First partial derivative along the time coordinate, `∂f/∂x_{time_axis}`.

    Same arguments, returns and errors as `partial(f, x, (time_axis,), engine=engine)`;
    by default time is the last coordinate of `x`.
    """
    return partial(f, x, (time_axis,), engine=engine)


def value_and_derivatives(
    f: Field, x, partials: Sequence, *, engine: str = "taylor"
) -> tuple[jax.Array, dict]:
    """`f(x)` together with several partial derivatives, sharing Taylor passes.

    With `engine="forward_laplacian"`, first derivatives and pure second
    derivatives come from one weighted forward-Laplacian pass per second-order
    axis (u, u_x, u_t and u_xx of Burgers in ONE pass); other partials fall
    back to Taylor mode.
    With `engine="taylor"` all pure derivatives along one axis come from one jet
    of the highest order requested on that axis (e.g. u, u_x, u_xxx of KdV from
    one 3-jet along x, u_t from a 1-jet along t); mixed partials go through
    `partial`. Other engines compute each partial with `partial` (inside `jit`
    XLA shares the common forward pass).

    Args:
        f: field on one point.
        x: the point, shape `(d,)`.
        partials: sequence of axes tuples as taken by `partial`, e.g.
            `[(0,), (0, 0, 0), (1,)]`.
        engine: as in `partial`.

    Returns:
        `(f(x), {axes: derivative})`, keyed by the tuples as given.
    """
    x = _check_point("value_and_derivatives", x)
    _check_engine("value_and_derivatives", engine, EXACT_ENGINES)
    d = x.shape[0]
    keys = [p if isinstance(p, (int, np.integer)) else tuple(p) for p in partials]
    norm = {p: _normalise_axes("value_and_derivatives", p, d) for p in keys}
    if engine == "forward_laplacian":
        return _value_and_derivatives_fl(f, x, norm)
    if engine != "taylor":
        return f(x), {p: partial(f, x, norm[p], engine=engine) for p in keys}
    out, value = {}, None
    pure: dict[int, int] = {}
    for a in norm.values():
        if len(set(a)) == 1:
            pure[a[0]] = max(pure.get(a[0], 0), len(a))
    series = {}
    for axis, order in pure.items():
        e = jnp.zeros(d, x.dtype).at[axis].set(1)
        value, series[axis] = _jet_derivatives(f, x, e, order)
    for p, a in norm.items():
        if len(set(a)) == 1:
            out[p] = series[a[0]][len(a) - 1]
        else:
            out[p] = _polarised_partial(f, x, a)
    return (f(x) if value is None else value), out


def _value_and_derivatives_fl(f: Field, x: jax.Array, norm: dict) -> tuple[jax.Array, dict]:
    """`value_and_derivatives` by forward-Laplacian passes: one per axis of a pure second
    derivative (each also gives the value and the gradient), one plain pass otherwise;
    other partials (mixed, third order) by Taylor mode."""
    d = x.shape[0]
    second = sorted({a[0] for a in norm.values() if len(a) == 2 and a[0] == a[1]})
    passes = {}
    for axis in second or [None]:
        w = None if axis is None else jnp.zeros(d, x.dtype).at[axis].set(1)
        passes[axis] = _forward_laplacian("value_and_derivatives", f, x, w)
    value, grad, _ = next(iter(passes.values()))
    out = {}
    for p, a in norm.items():
        if len(a) == 1:
            out[p] = grad[..., a[0]]
        elif len(a) == 2 and a[0] == a[1]:
            out[p] = passes[a[0]][2]
        else:
            out[p] = partial(f, x, a, engine="taylor")
    return value, out


# ---------------------------------------------------------------------------
# Forward Laplacian: a jaxpr interpreter carrying (value, ∇, Δ)


class _Triple:
    """A quantity that depends on x: value `(s)`, gradient `(s + (d,))`, Laplacian `(s)`."""

    __slots__ = ("value", "grad", "lap")

    def __init__(self, value, grad, lap):
        self.value, self.grad, self.lap = value, grad, lap


# Affine in their x-dependent operands once constant operands are fixed: the
# gradient and Laplacian channels go through the primitive's linearisation.
_LINEAR = frozenset(
    """neg add sub add_any convert_element_type broadcast_in_dim reshape transpose squeeze
    expand_dims concatenate pad slice dynamic_slice dynamic_update_slice gather select_n
    reduce_sum cumsum rev copy copy_p real imag conj split stack unstack tile reduce_precision
    scatter-add scatter-sub scatter_add reduce_window_sum fft sharding_constraint device_put
    optimization_barrier""".split()
)
# Bilinear: linear when one operand is constant, product rule when both depend on x.
_BILINEAR = frozenset(["mul", "dot_general", "conv_general_dilated"])
# Elementwise (operands of the output's shape or rank 0); derivatives from JAX's own rules.
_ELEMENTWISE = frozenset(
    """tanh sin cos tan exp exp2 expm1 log log1p logistic integer_pow pow sqrt rsqrt cbrt
    abs sinh cosh asinh acosh atanh asin acos atan atan2 erf erfc erf_inv lgamma digamma
    square sign floor ceil round max min div clamp rem""".split()
)
# Call-like primitives whose body is inlined (jax.jit, equinox/jax.nn wrappers,
# checkpointing, custom derivative rules: the primal body is differentiated).
_CALLS = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat": "jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
}


def _value(v):
    return v.value if isinstance(v, _Triple) else v


def _bind(eqn, args):
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = ()
    if isinstance(params, tuple):  # JAX < 0.5 returned (subfuns, params)
        subfuns, params = params
    with eqn.ctx.manager:
        return eqn.primitive.bind(*subfuns, *args, **params)


def _bind_with(eqn, invals, dep_idx):
    """`deps -> primitive(invals with the x-dependent operands replaced by deps)`."""
    base = [_value(v) for v in invals]

    def fn(*deps):
        args = list(base)
        for i, dv in zip(dep_idx, deps):
            args[i] = dv
        return _bind(eqn, args)

    return fn


# Coefficients c_i of the second-order channel Σ_i c_i ∂²_i h (None: all ones, the
# Laplacian). Set by `_forward_laplacian` for the duration of one trace-time
# interpretation, so the rules need not thread it through every call.
_SECOND_ORDER_WEIGHTS: contextvars.ContextVar = contextvars.ContextVar(
    "_SECOND_ORDER_WEIGHTS", default=None
)


def _sum_d(a):
    weights = _SECOND_ORDER_WEIGHTS.get()
    return jnp.sum(a if weights is None else a * weights, axis=-1)


def _fl_linear(eqn, invals, dep_idx):
    fn = _bind_with(eqn, invals, dep_idx)
    deps = [invals[i] for i in dep_idx]
    out, lin = jax.linearize(fn, *[t.value for t in deps])
    grad = jax.vmap(lin, in_axes=-1, out_axes=-1)(*[t.grad for t in deps])
    lap = lin(*[t.lap for t in deps])
    if eqn.primitive.multiple_results:
        return [_Triple(*z) for z in zip(out, grad, lap)]
    return _Triple(out, grad, lap)


def _fl_bilinear(eqn, invals, dep_idx):
    # Δ(a∘b) = a∘Δb + Δa∘b + 2 Σ_i ∂_i a ∘ ∂_i b for a bilinear product ∘.
    fn = _bind_with(eqn, invals, dep_idx)
    a, b = (invals[i] for i in dep_idx)
    out, lin = jax.linearize(fn, a.value, b.value)
    grad = jax.vmap(lin, in_axes=-1, out_axes=-1)(a.grad, b.grad)
    cross = jax.vmap(fn, in_axes=-1, out_axes=-1)(a.grad, b.grad)
    return _Triple(out, grad, lin(a.lap, b.lap) + 2 * _sum_d(cross))


def _broadcast(t: _Triple, shape) -> _Triple:
    d = t.grad.shape[-1]
    return _Triple(
        jnp.broadcast_to(t.value, shape),
        jnp.broadcast_to(t.grad, tuple(shape) + (d,)),
        jnp.broadcast_to(t.lap, shape),
    )


def _fl_elementwise(eqn, invals, dep_idx):
    # σ(z): (σ, σ' ∇z, σ' Δz + σ'' Σ_i (∂_i z)²), with several x-dependent operands
    # Σ_j σ_j Δz_j + Σ_{j,l} σ_jl ⟨∇z_j, ∇z_l⟩. The partial derivatives σ_j, σ_jl
    # come from JAX's jvp rules with unit tangents (exact: the map is elementwise).
    shape = eqn.outvars[0].aval.shape
    deps = [_broadcast(invals[i], shape) for i in dep_idx]
    fn = _bind_with(eqn, invals, dep_idx)
    zs = tuple(t.value for t in deps)
    ones = [jnp.ones_like(z) for z in zs]
    if len(deps) == 1:
        (z,), (one,), (t,) = zs, ones, deps
        (out, d1), (_, d2) = jax.jvp(lambda y: jax.jvp(fn, (y,), (one,)), (z,), (one,))
        grad = d1[..., None] * t.grad
        return _Triple(out, grad, d1 * t.lap + d2 * _sum_d(t.grad * t.grad))

    def unit(j):
        return tuple(ones[i] if i == j else jnp.zeros_like(zs[i]) for i in range(len(zs)))

    def first(j):
        return lambda *ys: jax.jvp(fn, ys, unit(j))[1]

    out = fn(*zs)
    grad = 0.0
    lap = 0.0
    for j, tj in enumerate(deps):
        fj = first(j)(*zs)
        grad = grad + fj[..., None] * tj.grad
        lap = lap + fj * tj.lap
        for m in range(j, len(deps)):
            fjm = jax.jvp(first(j), zs, unit(m))[1]
            weight = 1.0 if m == j else 2.0
            lap = lap + weight * fjm * _sum_d(tj.grad * deps[m].grad)
    return _Triple(out, grad, lap)


def _fl_call(eqn, invals):
    sub = eqn.params[_CALLS[eqn.primitive.name]]
    if isinstance(sub, ClosedJaxpr):
        return _fl_eval(sub.jaxpr, sub.consts, invals)
    if isinstance(sub, Jaxpr):
        return _fl_eval(sub, [], invals)
    raise NotImplementedError(  # pragma: no cover - future JAX layouts
        f"forward_laplacian: cannot read the body of '{eqn.primitive.name}'; "
        "use engine='taylor' or engine='reverse'"
    )


def _fl_rule(eqn, invals):
    name = eqn.primitive.name
    dep_idx = [i for i, v in enumerate(invals) if isinstance(v, _Triple)]
    if name == "stop_gradient" or not any(
        jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars
    ):
        # Zero derivative: stop_gradient, comparisons, integer casts, argmax, ...
        return _bind(eqn, [_value(v) for v in invals])
    if name in _CALLS:
        return _fl_call(eqn, invals)
    if name in _LINEAR:
        return _fl_linear(eqn, invals, dep_idx)
    if name in _BILINEAR:
        if len(dep_idx) == 1:
            return _fl_linear(eqn, invals, dep_idx)
        return _fl_bilinear(eqn, invals, dep_idx)
    if name == "div" and dep_idx == [0]:  # constant denominator: linear
        return _fl_linear(eqn, invals, dep_idx)
    if name in _ELEMENTWISE:
        return _fl_elementwise(eqn, invals, dep_idx)
    raise NotImplementedError(
        f"forward_laplacian: no rule for primitive '{name}'; use engine='taylor' or "
        "engine='reverse' for this function"
    )


def _fl_eval(jaxpr: Jaxpr, consts, args) -> list:
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def write(v, val):
        if not isinstance(v, DropVar):
            env[v] = val

    for v, c in zip(jaxpr.constvars, consts):
        write(v, c)
    for v, a in zip(jaxpr.invars, args):
        write(v, a)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if any(isinstance(v, _Triple) for v in invals):
            outs = _fl_rule(eqn, invals)
        else:
            outs = _bind(eqn, invals)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            write(v, o)
    return [read(v) for v in jaxpr.outvars]


def forward_laplacian(f: Field, x, *, weights=None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Value, gradient and Laplacian of `f` at one point in one forward pass (Li et al. 2024).

    With `weights` `w` (shape `(d,)`) the third output is the weighted
    Laplacian `Σ_i w_i ∂²f/∂x_i²` instead; e.g. `w = e_0` gives `f_xx` of a
    space-time field together with its full gradient `(f_x, f_t)`, which is
    everything Burgers' or the heat equation's residual needs, in one pass.

    `f` is traced to a jaxpr and interpreted with every x-dependent quantity
    `h` carried as `(h, ∇h, Δh)`, starting from `(x, I_d, 0)`:

    * linear primitives (add, dot_general with a constant operand, reshape,
      slicing, reductions, ...) act on each channel;
    * elementwise σ: `(σ(z), σ'(z) ∇z, σ'(z) Δz + σ''(z) Σ_i (∂_i z)²)`, with σ',
      σ'' from JAX's derivative rules (several dependent operands: the full
      second-order chain rule);
    * products of two dependent operands (mul, dot_general):
      `Δ(ab) = a Δb + b Δa + 2 ∇a·∇b`;
    * jit / custom_jvp / custom_vjp / checkpoint bodies are inlined (custom
      rules are ignored: the primal implementation is differentiated);
      stop_gradient and integer/boolean results carry no derivative.

    Cost: one pass with `d + 2` channels, no Hessian. The gradient channel is
    dense (no sparsity tracking as in folx).

    Args:
        f: field on one point returning shape `()` or `(m,)`.
        x: the point, shape `(d,)`.

    Returns:
        `(f(x), ∇f(x), Δf(x))` with shapes `s`, `s + (d,)`, `s`, where `s` is
        the output shape (rows of the gradient are the Jacobian for vector f).

    Raises:
        ValueError: bad `x`, output not scalar/vector.
        NotImplementedError: a primitive without a rule (loops, cond, sort,
            reduce_max, ...), naming it; use engine `"taylor"` or `"reverse"`.
    """
    x = _check_point("forward_laplacian", x)
    if weights is not None:
        weights = jnp.asarray(weights, x.dtype)
        if weights.shape != x.shape:
            raise ValueError(
                f"forward_laplacian: weights must have the point's shape {x.shape}, "
                f"got {weights.shape}"
            )
    return _forward_laplacian("forward_laplacian", f, x, weights)


def _forward_laplacian(op: str, f: Field, x: jax.Array, weights=None):
    closed, out = jax.make_jaxpr(f, return_shape=True)(x)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim > 1:
        got = (
            f"output shape {out.shape}"
            if isinstance(out, jax.ShapeDtypeStruct)
            else f"output {jax.tree.structure(out)}"
        )
        raise ValueError(
            f"{op}: f must return a scalar (shape ()) or a vector (shape (m,)), got {got}"
        )
    shape = out.shape
    d = x.shape[0]
    start = _Triple(x, _basis(x), jnp.zeros_like(x))
    token = _SECOND_ORDER_WEIGHTS.set(weights)
    try:
        (out,) = _fl_eval(closed.jaxpr, closed.consts, [start])
    finally:
        _SECOND_ORDER_WEIGHTS.reset(token)
    if not isinstance(out, _Triple):  # f does not depend on x
        out = jnp.asarray(out)
        return out, jnp.zeros(shape + (d,), out.dtype), jnp.zeros(shape, out.dtype)
    return out.value, out.grad, out.lap
