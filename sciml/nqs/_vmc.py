"""Variational Monte Carlo: local energies, the energy gradient, the full-sum state, and
stochastic reconfiguration as an optax transformation.

Conventions (REFERENCES §4.2, §4.4):

- `E_loc(s) = Σ_{s'} H_{ss'} exp(log ψ(s') − log ψ(s))` over the operator's
  padded connected elements (padding slots have `H = 0` and `s' = s`).
- The energy gradient for real parameters θ is `∂E/∂θ_k = 2 Re mean[ΔO_k* ΔE]`
  with `O_k = ∂ log ψ/∂θ_k`, `ΔO = O − mean O`, `ΔE = E_loc − Ē`. The
  `vmc_loss` surrogate has the energy as its value and this as its gradient.
  Complex parameters are treated as pairs of real ones (the trainer
  conjugates complex gradient leaves so that `θ − η g` descends).
- Stochastic reconfiguration (Sorella 1998) solves `(S + λI) δ = F` with
  `S = Re mean[ΔO* ΔOᵀ]`, `F = Re mean[ΔO* ΔE] = g/2`, and steps `θ ← θ − η δ`
  (the imaginary-time convention: `F` is half the gradient, and η is the
  imaginary-time step `Δτ`; NetKet 3.23's `VMC_SR` solves with the whole
  gradient, so its learning rate is half of ours for the same step, as
  `benchmarks/nqs_vs_netket.py` checks). With `X = ΔO/√n`, `ε = ΔE/√n`
  stacked as real `X̃ = [Re X; Im X]`,
  `ε̃ = [Re ε; Im ε]`: `S = X̃ᵀX̃`, `F = X̃ᵀε̃`, and the minSR/NTK identity
  `(X̃ᵀX̃ + λI)⁻¹X̃ᵀε̃ = X̃ᵀ(X̃X̃ᵀ + λI)⁻¹ε̃` solves a sample-sized system when
  parameters outnumber samples (Chen & Heyl 2024; Rende et al. 2024). SPRING
  (Goldshlager et al. 2024) adds momentum μ in the sample space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from sciml.optim import request_extra_args

__all__ = [
    "SRState",
    "exact_energy",
    "local_energies",
    "log_amplitude_jacobian",
    "stochastic_reconfiguration",
    "vmc_loss",
]


def local_energies(operator, log_psi: Callable, samples: Array, chunk: int | None = None) -> Array:
    """`E_loc(s)` for every configuration of `samples` (shape `(..., N)`), one `log_psi` batch.

    Args:
        operator: an operator with `get_conn_padded(s) -> (s' (M, N), mels (M,))`.
        log_psi: `log ψ(s)` on ONE configuration (real or complex scalar).
        samples: configurations, shape `(..., N)`.
        chunk: evaluate `log ψ` on at most `chunk` configurations at a time
            (`None`: all at once); bounds memory for large `M · n`.

    Returns:
        Local energies of shape `samples.shape[:-1]` (complex if `log ψ` or
        the operator is complex, else real).
    """
    samples = jnp.asarray(samples)
    n_sites = samples.shape[-1]
    flat = samples.reshape(-1, n_sites)
    conn, mels = jax.vmap(operator.get_conn_padded)(flat)  # (B, M, N), (B, M)
    b, m = mels.shape
    batched = jax.vmap(log_psi)
    if chunk is None:
        lp_conn = batched(conn.reshape(b * m, n_sites)).reshape(b, m)
        lp = batched(flat)
    else:
        lp_conn = _chunked(batched, conn.reshape(b * m, n_sites), chunk).reshape(b, m)
        lp = _chunked(batched, flat, chunk)
    ratios = jnp.exp(lp_conn - lp[:, None])
    e = jnp.sum(mels * ratios, axis=-1)
    return e.reshape(samples.shape[:-1])


def _chunked(fn, x, chunk):
    n = x.shape[0]
    pad = (-n) % chunk
    xs = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]).reshape(-1, chunk, *x.shape[1:])
    return jax.lax.map(fn, xs).reshape(-1)[:n]


def vmc_loss(log_psi_fn: Callable, model, samples: Array, e_loc: Array) -> tuple[Array, dict]:
    """The VMC surrogate: value `Ē = Re mean E_loc`, gradient `2 Re mean[ΔO* ΔE]`.

    Args:
        log_psi_fn: `log_psi_fn(model, s) -> log ψ(s)` on one configuration.
        model: the variational state (differentiated).
        samples: configurations `(n, N)` drawn from `|ψ|²` (not differentiated).
        e_loc: their local energies `(n,)` (held constant).

    Returns:
        `(loss, {"energy", "variance"})`.
    """
    e_loc = jax.lax.stop_gradient(e_loc)
    energy = jnp.mean(e_loc)
    delta = e_loc - energy
    lp = jax.vmap(lambda s: log_psi_fn(model, s))(samples)
    surrogate = 2 * jnp.real(jnp.mean(jnp.conj(delta) * lp))
    loss = jnp.real(energy) + surrogate - jax.lax.stop_gradient(surrogate)
    variance = jnp.mean(jnp.abs(delta) ** 2)
    return loss, {"energy": jnp.real(energy), "variance": variance}


def exact_energy(operator, log_psi: Callable, states: Array) -> Array:
    """`⟨ψ|H|ψ⟩/⟨ψ|ψ⟩` summed over every configuration of `states` (the full-sum state).

    Differentiable: `jax.grad` of it is the exact energy gradient, the noise-free
    control of the Monte Carlo estimator.

    Args:
        operator: with `get_conn_padded`; `states`: all configurations of the
            space (`hilbert.all_states()`), shape `(n_states, N)`.
        log_psi: `log ψ(s)` on one configuration.
    """
    states = jnp.asarray(states)
    lp = jax.vmap(log_psi)(states)
    weights = jnp.exp(2 * (jnp.real(lp) - jax.lax.stop_gradient(jnp.max(jnp.real(lp)))))
    p = weights / jnp.sum(weights)
    e_loc = local_energies(operator, log_psi, states)
    return jnp.real(jnp.sum(p * e_loc))


# --- stochastic reconfiguration -------------------------------------------------------------


class SRState(NamedTuple):
    """State of `stochastic_reconfiguration`: SPRING's previous update `φ` (flat, real)."""

    previous: Array


def _real_flat(tree) -> tuple[Array, Callable]:
    """Flatten a pytree with complex leaves to one real vector (real and imaginary parts)."""
    leaves, treedef = jax.tree.flatten(tree)
    parts, meta = [], []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        if jnp.iscomplexobj(leaf):
            parts += [jnp.real(leaf).ravel(), jnp.imag(leaf).ravel()]
        else:
            parts.append(leaf.ravel())
        meta.append((leaf.shape, leaf.dtype))
    flat = jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def unflatten(v):
        out, i = [], 0
        for shape, dtype in meta:
            size = int(np.prod(shape))
            if jnp.issubdtype(dtype, jnp.complexfloating):
                re, im = v[i : i + size], v[i + size : i + 2 * size]
                out.append((re + 1j * im).astype(dtype).reshape(shape))
                i += 2 * size
            else:
                out.append(v[i : i + size].astype(dtype).reshape(shape))
                i += size
        return jax.tree.unflatten(treedef, out)

    return flat, unflatten


def log_amplitude_jacobian(model, samples: Array) -> Array:
    """`O_ik = ∂ log ψ(s_i)/∂θ_k` for every sample, in the real coordinates SR uses.

    One reverse pass per sample (two for complex log ψ: its real and imaginary
    parts), vmapped over the samples: the cost of a few forward passes of the
    batch, where `jax.jacfwd` of the batched log-amplitudes costs one batched
    pass per parameter (about 200× more for an RBM with 440 parameters and
    1008 samples). A problem's `per_sample` returns it as
    `"log_amplitude_jacobian"`; `stochastic_reconfiguration` uses it when present.

    Args:
        model: an equinox module, `log ψ` of ONE configuration; its trained
            parameters are its inexact array leaves (as the trainer splits them).
        samples: configurations, shape `(n, N)`.

    Returns:
        Shape `(n, P)` with `P` real coordinates (a complex parameter counts as
        its real and imaginary parts, in the order of the trainer's parameter
        tree); complex when log ψ is, else real.

    Raises:
        ValueError: `samples` not of shape `(n, N)`.
    """
    samples = jnp.asarray(samples)
    if samples.ndim != 2:
        raise ValueError(
            f"log_amplitude_jacobian: samples must have shape (n, N), got {samples.shape}"
        )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unflatten = _real_flat(params)

    def log_psi(v, s):
        return eqx.combine(unflatten(v), static)(s)

    out = jax.eval_shape(log_psi, flat, samples[0])
    if jnp.issubdtype(out.dtype, jnp.complexfloating):

        def one(s):
            parts = jax.jacrev(
                lambda v: jnp.stack([jnp.real(log_psi(v, s)), jnp.imag(log_psi(v, s))])
            )
            re, im = parts(flat)
            return re + 1j * im

    else:

        def one(s):
            return jax.grad(log_psi)(flat, s)

    return jax.vmap(one)(samples)


def _solve_psd(a: Array, b: Array) -> Array:
    """`a⁻¹ b` for symmetric positive definite `a` by Cholesky; an eigen-solve if that fails.

    The eigen-solve runs only when the Cholesky solve is not finite (`lax.cond`):
    computed every step it cost half of an SR update.
    """
    chol = jnp.linalg.cholesky(a)
    x = jax.scipy.linalg.cho_solve((chol, True), b)

    def eigen_solve(_):
        w, v = jnp.linalg.eigh(a)
        w_inv = jnp.where(w > w.max() * 1e-12, 1.0 / w, 0.0)
        return v @ (w_inv * (v.T @ b))

    return jax.lax.cond(jnp.all(jnp.isfinite(x)), lambda _: x, eigen_solve, None)


def stochastic_reconfiguration(
    learning_rate: float | optax.Schedule,
    diag_shift: float = 0.01,
    *,
    solver: Literal["auto", "dense", "minsr"] = "auto",
    momentum: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """Stochastic reconfiguration (natural gradient for `|ψ|²`) as an optax transformation.

    Needs the problem's `per_sample` hook with `"log_amplitudes"` (log ψ on the
    current samples) and, for `minsr` and SPRING, `"local_energies"`; the
    trainer passes it as `per_sample_fn`. An optional `"weights"` entry (the
    full-sum state's `|ψ(s)|²/Σ|ψ|²` over all configurations) replaces the
    Monte Carlo mean by the exact weighted sum: the noise-free control. The update is `−η (S + λI)⁻¹ F` with
    `F = g/2` (module docstring); chain it after clipping or before nothing
    else (it returns final updates, scaled by the learning rate).

    Args:
        learning_rate: η, a number or an optax schedule.
        diag_shift: λ > 0, added to the diagonal (of `S` or of the sample-space
            matrix `X̃X̃ᵀ`: the same solution, by the push-through identity).
        solver: `dense` solves the `P × P` system (parameters `P`), `minsr`
            the sample-space one (`n × n`, `2n × 2n` for complex ψ); `auto`
            picks the smaller (the sample-space form when `per_sample` gives
            `"local_energies"`).
        momentum: SPRING's μ in [0, 1) (0: plain SR / minSR). SPRING needs
            the sample-space form and is used whenever `momentum > 0`.

    Returns:
        A `GradientTransformationExtraArgs` that requests `per_sample_fn`.

    Raises:
        ValueError: `diag_shift <= 0`, `momentum` outside [0, 1), unknown `solver`.
    """
    if not np.isfinite(diag_shift) or diag_shift <= 0:
        raise ValueError(f"stochastic_reconfiguration: diag_shift must be > 0, got {diag_shift!r}")
    if not 0 <= momentum < 1:
        raise ValueError(
            f"stochastic_reconfiguration: momentum must be in [0, 1), got {momentum!r}"
        )
    if solver not in ("auto", "dense", "minsr"):
        raise ValueError(
            f"stochastic_reconfiguration: unknown solver {solver!r}; allowed: auto, dense, minsr"
        )
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def init(params):
        flat, _ = _real_flat(params)
        return (SRState(jnp.zeros_like(flat)), optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)))

    def update(grads, state, params=None, *, per_sample_fn, **extra):
        if params is None:
            raise ValueError("stochastic_reconfiguration: update needs params")
        sr_state, count_state = state
        flat, unflatten = _real_flat(params)
        g, _ = _real_flat(grads)

        def log_amplitudes(v):
            return per_sample_fn(unflatten(v))["log_amplitudes"]

        out = per_sample_fn(params)
        jac = out.get("log_amplitude_jacobian")  # (n, P), complex if ψ is
        if jac is None:  # one batched forward-mode pass per parameter
            jac = jax.jacfwd(log_amplitudes)(flat)
        elif jac.shape != (out["log_amplitudes"].shape[0], flat.shape[0]):
            raise ValueError(
                "stochastic_reconfiguration: per_sample's 'log_amplitude_jacobian' must have "
                f"shape (n_samples, n_real_parameters) = "
                f"({out['log_amplitudes'].shape[0]}, {flat.shape[0]}), got {jac.shape}"
            )
        jac = jax.lax.stop_gradient(jac)
        n = jac.shape[0]
        # Monte Carlo samples weigh 1/n each; a full-sum state passes its exact weights |ψ|²/Σ|ψ|²
        w = out.get("weights")
        w = jnp.full((n,), 1.0 / n, jnp.real(jac).dtype) if w is None else jax.lax.stop_gradient(w)
        sw = jnp.sqrt(w).astype(jnp.real(jac).dtype)
        x = (jac - jnp.sum(w[:, None] * jac, axis=0)) * sw[:, None]
        xt = jnp.concatenate([jnp.real(x), jnp.imag(x)]) if jnp.iscomplexobj(x) else x
        n_rows, n_params = xt.shape
        use_minsr = momentum > 0 or solver == "minsr"
        if solver == "auto":  # the smaller system, when the samples' local energies are given
            use_minsr = use_minsr or (n_params > n_rows and "local_energies" in out)
        if use_minsr:
            if "local_energies" not in out:
                raise ValueError(
                    "stochastic_reconfiguration: the sample-space (minsr/SPRING) form needs "
                    "per_sample's 'local_energies'; this problem gives only "
                    f"{sorted(out)}: use solver='dense'"
                )
            e = jax.lax.stop_gradient(out["local_energies"])
            eps = (e - jnp.sum(w * e)) * sw
            et = jnp.concatenate([jnp.real(eps), jnp.imag(eps)]) if xt.shape[0] == 2 * n else eps
            et = et.astype(xt.dtype)
            prev = sr_state.previous
            rhs = et - momentum * (xt @ prev)
            kernel = xt @ xt.T + diag_shift * jnp.eye(n_rows, dtype=xt.dtype)
            delta = momentum * prev + xt.T @ _solve_psd(kernel, rhs)
        else:
            s = xt.T @ xt + diag_shift * jnp.eye(n_params, dtype=xt.dtype)
            delta = _solve_psd(s, g.astype(xt.dtype) / 2)
        lr = schedule(count_state.count)
        updates = unflatten(-lr * delta)
        new_count = optax.ScaleByScheduleState(optax.safe_increment(count_state.count))
        return updates, (SRState(delta.astype(sr_state.previous.dtype)), new_count)

    return request_extra_args(optax.GradientTransformationExtraArgs(init, update), "per_sample_fn")
