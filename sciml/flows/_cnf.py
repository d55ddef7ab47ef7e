"""Continuous normalizing flows (FFJORD, Grathwohl et al. 2019) solved with `sciml.ude.solve`.

A CNF moves a point along the neural ODE `dx/dt = f(t, x, context)` from the
base at `t = 0` to the data at `t = t1`; the log-density changes by the
instantaneous change of variables (Chen et al. 2018)

    d log q(x(t)) / dt = −tr ∂f/∂x,

so `log|det ∂T/∂z| = ∫₀^t1 tr ∂f/∂x dt`. Both directions integrate the
augmented state `(x, ℓ)` with `dℓ/dt = tr ∂f/∂x`: forwards from `0` to `t1`
for sampling, backwards from `t1` to `0` for densities (the backward integral
is then the inverse's log-determinant directly).

The trace is either exact (`d` forward-mode Jacobian-vector products: the
choice for small `d`) or Hutchinson's estimate `εᵀ(∂f/∂x)ε` with one probe
`ε` drawn per solve and held fixed along it (one JVP per evaluation, unbiased
for Rademacher or Gaussian `ε`). The RNODE regularisers (Finlay et al. 2020)
`∫‖f‖² dt` (kinetic energy) and `∫‖∂f/∂x‖_F² dt` (Jacobian Frobenius norm,
estimated as `‖(∂f/∂x)ε‖²` with the same probe, exact with the exact trace)
ride along as two more integrated scalars when asked for; they straighten
the trajectories and cut the number of solver steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.nn import Dense, activation_by_name
from sciml.ude import solve

from ._bijection import AbstractBijection, check_input

__all__ = ["CNF", "CNFStats", "ConcatSquashField", "cnf_loss"]

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
SOLVERS = {"tsit5": dfx.Tsit5, "dopri5": dfx.Dopri5, "bosh3": dfx.Bosh3, "dopri8": dfx.Dopri8}
ADJOINTS = {
    "recursive": dfx.RecursiveCheckpointAdjoint,
    "backsolve": dfx.BacksolveAdjoint,
    "forward": dfx.ForwardMode,
}


def _check_choice(name: str, what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")


class ConcatSquashField(eqx.Module):
    """A time-dependent vector field `f(t, x, context)` of FFJORD's concat-squash layers.

    Each layer is `h ↦ (W h + b) · σ(a t + c) + s t` (per unit `a, c, s`):
    time gates and shifts every unit, which fits time-dependent fields much
    better than appending `t` to the input once. The context (if any) is
    appended to the input. The last layer starts at zero, so a fresh field
    is `f ≡ 0` and the flow the identity.

    Args:
        dim: dimension of `x` (the field maps `(dim,)` to `(dim,)`).
        width: hidden width. depth: number of hidden layers (≥ 1).
        cond_dim: length of the context vector, or `None`.
        activation: a smooth nonlinearity (the trace needs derivatives), a
            name from `sciml.nn.ACTIVATIONS` or a callable; default `tanh`.
        key: PRNG key.

    Raises:
        ValueError: `dim`, `width`, `depth` or `cond_dim` out of range.
    """

    layers: tuple[Dense, ...]
    gate_scale: tuple[Array, ...]
    gate_bias: tuple[Array, ...]
    time_shift: tuple[Array, ...]
    activation: Callable[[Array], Array]
    dim: int = eqx.field(static=True)
    cond_dim: int | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        depth: int = 3,
        cond_dim: int | None = None,
        activation: str | Callable[[Array], Array] = "tanh",
        key: PRNGKeyArray,
    ):
        for what, v, lo in (("dim", dim, 1), ("width", width, 1), ("depth", depth, 1)):
            if not isinstance(v, int | np.integer) or v < lo:
                raise ValueError(f"ConcatSquashField: {what} must be an integer >= {lo}, got {v!r}")
        if cond_dim is not None and (not isinstance(cond_dim, int | np.integer) or cond_dim < 1):
            raise ValueError(
                f"ConcatSquashField: cond_dim must be a positive integer or None, got {cond_dim!r}"
            )
        self.dim, self.cond_dim = int(dim), None if cond_dim is None else int(cond_dim)
        self.activation = (
            activation_by_name(activation) if isinstance(activation, str) else activation
        )
        sizes = [dim + (cond_dim or 0)] + [width] * depth + [dim]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [Dense(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        last = layers[-1]
        layers[-1] = eqx.tree_at(
            lambda d: (d.weight, d.bias),
            last,
            (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
        )
        self.layers = tuple(layers)
        # gates start at σ(0) = 1/2 with no time dependence; shifts at zero
        self.gate_scale = tuple(jnp.zeros(b) for b in sizes[1:])
        self.gate_bias = tuple(jnp.zeros(b) for b in sizes[1:])
        self.time_shift = tuple(jnp.zeros(b) for b in sizes[1:])

    def __call__(self, t, x: Float[Array, " dim"], context: Array | None = None) -> Array:
        """`dx/dt` at time `t` (scalar) for one point `x` of shape `(dim,)`."""
        if jnp.shape(x) != (self.dim,):
            raise ValueError(
                f"ConcatSquashField: expected x of shape ({self.dim},), got {jnp.shape(x)}"
            )
        if self.cond_dim is None:
            if context is not None:
                raise ValueError("ConcatSquashField: this field takes no context (cond_dim None)")
            h = x
        else:
            if context is None or jnp.shape(context) != (self.cond_dim,):
                got = None if context is None else jnp.shape(context)
                raise ValueError(
                    f"ConcatSquashField: expected a context of shape ({self.cond_dim},), got {got}"
                )
            h = jnp.concatenate([x, context.astype(x.dtype)])
        t = jnp.asarray(t, x.dtype)
        n = len(self.layers)
        for i, (layer, a, c, s) in enumerate(
            zip(self.layers, self.gate_scale, self.gate_bias, self.time_shift)
        ):
            h = layer(h) * jax.nn.sigmoid(a * t + c) + s * t
            if i < n - 1:
                h = self.activation(h)
        return h


class CNFStats(NamedTuple):
    """What one CNF solve reports besides the point and the log-determinant.

    Attributes:
        kinetic: `∫‖f‖² dt` along the path (0 unless regularisers were asked for).
        jacobian_frobenius: `∫‖∂f/∂x‖_F² dt` (exact with the exact trace,
            Hutchinson's estimate otherwise; 0 unless asked for).
        num_steps: solver steps taken (accepted and rejected).
        nfe: vector-field evaluations implied by the solver's tableau:
            `stages − fsal` per step plus one (each evaluation costs one
            primal pass and `d` (exact) or 1 (Hutchinson) JVPs).
    """

    kinetic: Array
    jacobian_frobenius: Array
    num_steps: Array
    nfe: Array


class CNF(AbstractBijection):
    """A continuous normalizing flow: the time-`t1` map of `dx/dt = f(t, x, context)`.

    `transform_and_log_det(z)` integrates from `0` to `t1` (sampling);
    `inverse_and_log_det(x)` from `t1` back to `0` (densities), with the
    log-determinant integrated alongside (module docstring). Use it as the
    bijection of `Transformed(StandardNormal((dim,)), cnf)`.

    Args:
        dim: dimension of a point.
        width, depth, activation: the `ConcatSquashField` (or pass `field`).
        cond_dim: context length (conditional CNF) or `None`.
        field: a vector field module `f(t, x, context)` to use instead.
        trace: `"exact"` (default; `dim` JVPs per evaluation) or
            `"hutchinson"` (one JVP; needs a `key` on every call: one probe
            per solve). `with_trace("exact")` gives the same flow with the
            exact trace, e.g. to evaluate a flow trained with Hutchinson.
        probe: Hutchinson probe distribution, `"rademacher"` (lower
            variance, default) or `"gaussian"`.
        t1: integration time (the field can absorb any scale; default 1).
        rtol, atol: adaptive step control (diffrax `PIDController`) on the
            augmented state.
        solver: explicit Runge-Kutta solver name (`tsit5`, `dopri5`,
            `bosh3`, `dopri8`) or a diffrax `AbstractERK` instance.
        adjoint: `"recursive"` (exact gradients of the discretised solve,
            checkpointed; default) or `"backsolve"` (FFJORD's continuous
            adjoint, constant memory, gradients accurate to the tolerance) or
            `"forward"` (forward-mode only: for `jax.jacfwd` of the map).
        max_steps: solver step budget per solve.
        loc, scale: an affine map from the flow's space to the data's,
            `x = loc + scale ⊙ x(t1)` (e.g. the data's mean and std), so that the
            ODE works on standardised data; `None` for the identity.
        key: PRNG key.

    Raises:
        ValueError: unknown `trace`/`probe`/`solver`/`adjoint`, bad sizes,
            non-positive `t1`/tolerances/`scale`; at call time, wrong shapes,
            or `trace="hutchinson"` without a key.
    """

    field: eqx.Module
    loc: Array | None
    log_scale: Array | None
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)
    trace: str = eqx.field(static=True)
    probe: str = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    solver: dfx.AbstractERK = eqx.field(static=True)
    adjoint: str = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        depth: int = 3,
        activation: str | Callable[[Array], Array] = "tanh",
        cond_dim: int | None = None,
        field: eqx.Module | None = None,
        trace: Literal["exact", "hutchinson"] = "exact",
        probe: Literal["rademacher", "gaussian"] = "rademacher",
        t1: float = 1.0,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        solver: str | dfx.AbstractERK = "tsit5",
        adjoint: Literal["recursive", "backsolve", "forward"] = "recursive",
        max_steps: int = 4096,
        loc: Array | None = None,
        scale: Array | None = None,
        key: PRNGKeyArray,
    ):
        _check_choice("CNF", "trace", trace, TRACES)
        _check_choice("CNF", "probe", probe, PROBES)
        _check_choice("CNF", "adjoint", adjoint, tuple(ADJOINTS))
        if isinstance(solver, str):
            _check_choice("CNF", "solver", solver, tuple(SOLVERS))
            solver = SOLVERS[solver]()
        elif not isinstance(solver, dfx.AbstractERK):
            raise ValueError(
                f"CNF: solver must be one of {', '.join(SOLVERS)} or a diffrax explicit "
                f"Runge-Kutta solver (AbstractERK), got {type(solver).__name__}"
            )
        for what, v in (("t1", t1), ("rtol", rtol), ("atol", atol)):
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"CNF: {what} must be positive and finite, got {v!r}")
        if not isinstance(max_steps, int | np.integer) or max_steps < 1:
            raise ValueError(f"CNF: max_steps must be a positive integer, got {max_steps!r}")
        if field is None:
            field = ConcatSquashField(
                dim, width=width, depth=depth, cond_dim=cond_dim, activation=activation, key=key
            )
        self.field = field
        self.shape = (int(dim),)
        self.cond_shape = None if cond_dim is None else (int(cond_dim),)
        self.trace, self.probe, self.adjoint = trace, probe, adjoint
        self.t1, self.rtol, self.atol = float(t1), float(rtol), float(atol)
        self.solver, self.max_steps = solver, int(max_steps)
        self.loc = None if loc is None else jnp.broadcast_to(jnp.asarray(loc), self.shape)
        if scale is None:
            self.log_scale = None
        else:
            scale = jnp.broadcast_to(jnp.asarray(scale), self.shape)
            if not bool(jnp.all(scale > 0)):
                raise ValueError(f"CNF: scale must be positive, got {scale}")
            self.log_scale = jnp.log(scale)

    def with_trace(self, trace: Literal["exact", "hutchinson"]) -> CNF:
        """The same flow (same parameters) with another trace estimator."""
        return self.with_settings(trace=trace)

    def with_settings(self, **settings) -> CNF:
        """The same flow (same parameters) with other solve settings.

        Accepts `trace`, `probe`, `rtol`, `atol`, `adjoint`, `max_steps`, `t1`
        (validated as in the constructor), e.g. `cnf.with_settings(trace="exact",
        rtol=1e-8, atol=1e-8)` to evaluate a flow trained with Hutchinson at
        tight tolerances, or `adjoint="forward"` for `jax.jacfwd`.
        """
        allowed = ("trace", "probe", "rtol", "atol", "adjoint", "max_steps", "t1")
        for name, value in settings.items():
            _check_choice("CNF.with_settings", "setting", name, allowed)
            if name in ("trace", "probe", "adjoint"):
                choices = {"trace": TRACES, "probe": PROBES, "adjoint": tuple(ADJOINTS)}[name]
                _check_choice("CNF.with_settings", name, value, choices)
            elif name == "max_steps":
                if not isinstance(value, int | np.integer) or value < 1:
                    raise ValueError(f"CNF.with_settings: max_steps must be >= 1, got {value!r}")
                value = int(value)
            else:
                if not np.isfinite(value) or value <= 0:
                    raise ValueError(
                        f"CNF.with_settings: {name} must be positive and finite, got {value!r}"
                    )
                value = float(value)
            settings[name] = value
        new = copy.copy(self)
        for name, value in settings.items():
            object.__setattr__(new, name, value)  # static fields: not reachable by tree_at
        return new

    def vector_field(self, t, x, context=None) -> Array:
        """`f(t, x, context)` in the flow's (standardised) space."""
        return self.field(t, x, context)

    def _nfe_per_step(self) -> int:
        tableau = self.solver.tableau
        return len(tableau.c) + 1 - int(bool(getattr(tableau, "fsal", False)))

    def _integrate(self, y0, t_start, t_end, context, key, regularise):
        dtype = jnp.result_type(y0)
        direction = 1.0 if t_end > t_start else -1.0
        if self.trace == "hutchinson":
            if key is None:
                raise ValueError(
                    "CNF: trace='hutchinson' needs a key (one probe per solve): pass key=..., "
                    "or use cnf.with_trace('exact'), e.g. to evaluate densities"
                )
            if self.probe == "rademacher":
                eps = jax.random.rademacher(key, self.shape, dtype)
            else:
                eps = jax.random.normal(key, self.shape, dtype)

        def rhs(t, state, args):
            x = state[0]
            fun = lambda y: self.field(t, y, context)  # noqa: E731
            if self.trace == "exact":
                fx, jvp = jax.linearize(fun, x)
                jac = jax.vmap(jvp)(jnp.eye(x.shape[0], dtype=x.dtype))  # rows: J e_i
                tr = jnp.trace(jac)
                frob = jnp.sum(jac**2)
            else:
                fx, je = jax.jvp(fun, (x,), (eps,))
                tr = jnp.dot(eps, je)
                frob = jnp.sum(je**2)
            if not regularise:
                return fx, tr
            # the regularisers accumulate positive integrals whatever the direction
            return fx, tr, direction * jnp.sum(fx**2), direction * frob

        zero = jnp.zeros((), dtype)
        state0 = (y0, zero) if not regularise else (y0, zero, zero, zero)
        sol = solve(
            rhs,
            state0,
            t0=t_start,
            t1=t_end,
            solver=self.solver,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            adjoint=ADJOINTS[self.adjoint](),
            saveat=dfx.SaveAt(t1=True),
            max_steps=self.max_steps,
        )
        final = jax.tree.map(lambda a: a[-1], sol.ys)
        steps = sol.stats["num_steps"]
        nfe = steps * self._nfe_per_step() + 1
        kin, frob = (final[2], final[3]) if regularise else (zero, zero)
        return final[0], final[1], CNFStats(kin, frob, steps, nfe)

    def _to_data(self, y):
        ld = jnp.zeros((), y.dtype)
        if self.log_scale is not None:
            y = y * jnp.exp(self.log_scale).astype(y.dtype)
            ld = jnp.sum(self.log_scale).astype(y.dtype)
        if self.loc is not None:
            y = y + self.loc.astype(y.dtype)
        return y, ld

    def _from_data(self, x):
        ld = jnp.zeros((), x.dtype)
        if self.loc is not None:
            x = x - self.loc.astype(x.dtype)
        if self.log_scale is not None:
            x = x * jnp.exp(-self.log_scale).astype(x.dtype)
            ld = -jnp.sum(self.log_scale).astype(x.dtype)
        return x, ld

    def transform_with_stats(self, z, context=None, *, key=None, regularise: bool = False):
        """`(x, log|det ∂T/∂z|, CNFStats)`: integrate from the base (t=0) to the data (t=t1)."""
        check_input("CNF", z, self.shape, context, self.cond_shape)
        y, ld, stats = self._integrate(z, 0.0, self.t1, context, key, regularise)
        x, ld_affine = self._to_data(y)
        return x, ld + ld_affine, stats

    def inverse_with_stats(self, x, context=None, *, key=None, regularise: bool = False):
        """`(z, log|det ∂T⁻¹/∂x|, CNFStats)`: integrate from the data (t=t1) back to t=0.

        `regularise=True` also integrates the kinetic energy and the Jacobian
        Frobenius norm (`CNFStats`); otherwise those are 0 and cost nothing.
        """
        check_input("CNF", x, self.shape, context, self.cond_shape)
        y, ld_affine = self._from_data(x)
        z, ld, stats = self._integrate(y, self.t1, 0.0, context, key, regularise)
        return z, ld + ld_affine, stats

    def transform_and_log_det(self, z, context=None, *, key=None):
        x, ld, _ = self.transform_with_stats(z, context, key=key)
        return x, ld

    def inverse_and_log_det(self, x, context=None, *, key=None):
        z, ld, _ = self.inverse_with_stats(x, context, key=key)
        return z, ld


def cnf_loss(
    flow,
    x: Float[Array, "n dim"],
    key: PRNGKeyArray | None = None,
    context: Array | None = None,
    *,
    kinetic: float = 0.0,
    jacobian: float = 0.0,
) -> tuple[Array, dict[str, Array]]:
    """Maximum likelihood for a CNF, with the RNODE regularisers: `(loss, metrics)`.

    `loss = −mean log q(x) + kinetic · mean ∫‖f‖² + jacobian · mean ∫‖∂f/∂x‖_F²`.

    Args:
        flow: `Transformed(base, cnf)` with a `CNF` bijection.
        x: data, shape `(n, dim)`.
        key: needed with the Hutchinson trace (one probe per point); unused otherwise.
        context: `(n, cond_dim)` for a conditional CNF.
        kinetic, jacobian: regulariser weights (≥ 0; 0 skips their integrals).

    Returns:
        The loss and `{"nll", "kinetic", "jacobian_frobenius", "nfe"}` (means over the batch;
        `nfe` is the vector-field evaluations of one density solve).

    Raises:
        TypeError: `flow` is not a `Transformed` of a `CNF`. ValueError:
            negative weights, wrong shapes, Hutchinson without a key.
    """
    cnf = getattr(flow, "bijection", None)
    if not isinstance(cnf, CNF):
        raise TypeError(
            f"cnf_loss: expected Transformed(base, CNF(...)), got {type(flow).__name__} with "
            f"bijection {type(cnf).__name__}"
        )
    for what, w in (("kinetic", kinetic), ("jacobian", jacobian)):
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"cnf_loss: {what} weight must be >= 0 and finite, got {w!r}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1:] != cnf.shape:
        raise ValueError(f"cnf_loss: x must have shape (n, {cnf.shape[0]}), got {x.shape}")
    n = x.shape[0]
    if context is not None and (jnp.ndim(context) < 1 or jnp.shape(context)[0] != n):
        raise ValueError(f"cnf_loss: context must have {n} rows, got shape {jnp.shape(context)}")
    regularise = kinetic > 0 or jacobian > 0
    keys = None if key is None else jax.random.split(key, n)
    base_ctx = None if flow.base.cond_shape is None else context

    def one(xi, ci, ki, bi):
        z, ld, stats = cnf.inverse_with_stats(xi, ci, key=ki, regularise=regularise)
        return flow.base.log_prob(z, bi) + ld, stats

    log_q, stats = jax.vmap(one)(x, context, keys, base_ctx)
    nll = -jnp.mean(log_q)
    kin, frob = jnp.mean(stats.kinetic), jnp.mean(stats.jacobian_frobenius)
    loss = nll + kinetic * kin + jacobian * frob
    metrics = {
        "nll": nll,
        "kinetic": kin,
        "jacobian_frobenius": frob,
        "nfe": jnp.mean(stats.nfe.astype(nll.dtype)),
    }
    return loss, metrics
