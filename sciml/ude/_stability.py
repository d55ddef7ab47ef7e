"""The stability cap of `solve`'s default step-size controller.

An adaptive controller only sees the error estimate of the solution. When
that estimate is zero (a solve started exactly at an equilibrium) the steps
grow past the explicit solver's stability region and the *derivative* of the
solution, which the estimate does not see, is off by orders of magnitude.
The default controller of `solve` caps each step at a fraction of the
solver's real stability interval over the spectral radius of df/dy (see
docs/ude.md, "The zero-error-estimate trap").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# --- the stability cap of solve's default controller --------------------------------


_STABILITY_LIMITS: dict[type, float] = {}


def _real_stability_limit(tableau) -> float:
    """Largest z with |R(-x)| <= 1 on all of [0, z]: the real stability interval of a tableau.

    R(z) = 1 + z b^T (I - z A)^{-1} 1 is the stability function of the
    explicit Runge-Kutta tableau (A, b): one step of size h on y' = -lam y
    multiplies y by R(-h lam). Tsit5: 3.51, Dopri5: 3.31, Bosh3: 2.51,
    Heun: 2.0, Dopri8: 5.17.
    """
    s = len(tableau.b_sol)
    a = np.zeros((s, s))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    b = np.asarray(tableau.b_sol, dtype=float)
    zs = np.linspace(0.0, 20.0, 4001)
    stages = np.linalg.solve(np.eye(s) + zs[:, None, None] * a, np.ones((zs.size, s, 1)))
    r = 1.0 - zs * (stages[..., 0] @ b)
    unstable = np.abs(r) > 1.0 + 1e-12
    return float(zs[np.argmax(unstable) - 1]) if unstable.any() else float(zs[-1])


def _shape_of(y) -> tuple:
    return jax.tree.structure(y), tuple(jnp.shape(leaf) for leaf in jax.tree.leaves(y))


def _global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree.leaves(tree)))


def _stop(tree):
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


class _StabilityCap(dfx.AbstractAdaptiveStepSizeController):
    """Solve's default controller: a PID controller whose steps stay stable for the tangent.

    An explicit Runge-Kutta step of size h multiplies a perturbation along an
    eigenvector of J = df/dy with eigenvalue -lam by R(-h lam). The error
    estimate sees that growth only through the solution's own deviation from
    a smooth path: when y sits (to within much less than the tolerance) on an
    equilibrium, the estimate is ~0, the PID controller grows every step by
    `factormax`, and steps leave the stability interval. The solution stays
    right, but its derivatives (`jax.grad`, `jax.jacfwd`: perturbations that
    the error estimate never sees) are amplified by |R(-h lam)| per step:
    dy(100)/dtheta = -1.9e11 instead of 1 for y' = theta - y from y0 = theta.

    This controller caps every step at h <= `bound` / rho, rho an estimate of
    the spectral radius of J by power iteration (a few products J v at t0,
    then one per step, warm-started, gradients stopped; each a forward
    difference of two evaluations of f), and `bound` = 0.8 x the solver's
    real stability interval, where every mode decays and the stiffest by at
    least |R| = 0.68 per step (Heun; Tsit5 0.28). Away from equilibria the error
    control already keeps explicit steps near this limit, so the cap rarely
    binds; its cost is two evaluations of f per step (Tsit5 makes six).

    It guards the state it was built for: on a state of another structure
    (an adjoint's augmented backward solve) it is the plain PID controller.
    `solve` does not use it with `BacksolveAdjoint`, whose backward solve
    controls the adjoint's own error.
    """

    controller: dfx.AbstractAdaptiveStepSizeController
    vector_field: Callable
    bound: float = eqx.field(static=True)
    state_shape: tuple = eqx.field(static=True)
    direction: Any = 1

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(
            lambda c: (c.controller, c.direction),
            self,
            (self.controller.wrap(direction), direction),
        )

    def _power_step(self, t, y, args, v):
        t, y, args, v = _stop((t, y, args, v))
        field = lambda y: self.vector_field(t * self.direction, y, args)  # noqa: E731
        # J v by a forward difference, not jax.jvp: forward mode fails at transformation time
        # on a field with a jax.custom_vjp inside (e.g. a nested diffrax solve) under jax.grad
        dtype = jnp.result_type(*jax.tree.leaves(y))
        delta = jnp.sqrt(jnp.finfo(dtype).eps) * (1 + _global_norm(y))
        moved = jax.tree.map(lambda a, b: a + delta * b, y, v)
        w = jax.tree.map(lambda a, b: (a - b) / delta, field(moved), field(y))
        rho = _global_norm(w)
        ok = jnp.isfinite(rho) & (rho > 0)
        v = jax.tree.map(lambda a, b: jnp.where(ok, a / jnp.where(ok, rho, 1), b), w, v)
        return jax.lax.stop_gradient(jnp.where(jnp.isfinite(rho), rho, 0.0)), _stop(v)

    def _cap(self, t_next, t_start, rho):
        dtype = jnp.result_type(t_next)
        h = jnp.where(rho > 0, self.bound / jnp.where(rho > 0, rho, 1), jnp.inf)
        return jnp.minimum(t_next, t_start + h.astype(dtype))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t_next, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        if _shape_of(y0) != self.state_shape:
            return t_next, (inner, None)
        keys = jax.random.split(jax.random.key(0), len(jax.tree.leaves(y0)))
        leaves = [
            jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
            for k, x in zip(keys, jax.tree.leaves(y0))
        ]
        v = jax.tree.unflatten(jax.tree.structure(y0), leaves)
        v = jax.tree.map(lambda x: x / _global_norm(v), v)
        for _ in range(4):
            rho, v = self._power_step(t0, y0, args, v)
        return self._cap(t_next, t0, rho), (inner, v)

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        inner, v = controller_state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        if v is None:
            return keep, next_t0, next_t1, made_jump, (inner, None), result
        t = jnp.where(keep, t1, t0)
        y = jax.tree.map(lambda a, b: jnp.where(keep, a, b), y1_candidate, y0)
        rho, v = self._power_step(t, y, args, v)
        return keep, next_t0, self._cap(next_t1, next_t0, rho), made_jump, (inner, v), result


def _default_controller(vector_field, solver, y0, adjoint):
    pid = dfx.PIDController(rtol=1e-3, atol=1e-6)
    if not isinstance(solver, dfx.AbstractERK):
        return pid  # implicit solvers are A-stable: no stability limit on the step
    if isinstance(adjoint, dfx.BacksolveAdjoint):
        # Its backward solve controls the adjoint's own error (y' = theta - y from the
        # equilibrium: dy(100)/dtheta = 0.9999996 with the plain PID), and a controller that
        # holds a vector field with traced parameters cannot pass its custom_vjp.
        return pid
    if type(solver) not in _STABILITY_LIMITS:  # a tableau is a class attribute of its solver
        _STABILITY_LIMITS[type(solver)] = _real_stability_limit(solver.tableau)
    bound = 0.8 * _STABILITY_LIMITS[type(solver)]
    return _StabilityCap(pid, vector_field, bound, _shape_of(y0))
