"""K-FAC (Martens & Grosse 2015) as an optax transformation over `sciml.nn.Dense` layers.

For a dense layer `s = W a + b` with per-example input `a` and
back-propagated output gradient `g = ∂ℓ_n/∂s`, the per-example gradient of
`[W b]` is `g āᵀ` with `ā = [a; 1]`, and the curvature block is approximated
by a Kronecker product,

    F_layer = Σ_n (ā_n ā_nᵀ) ⊗ (g_n g_nᵀ)  ≈  A ⊗ G,   A = mean_n ā ā ᵀ,   G = Σ_n g gᵀ,

where the `g` already carry the loss's per-example weight (`1/√N` for a mean
over `N` examples), so that `A ⊗ G` has the scale of the loss's own
curvature. The preconditioned gradient of the layer is `G⁻¹ ∇ A⁻¹`
(eigendecompositions, refreshed every `inverse_every` steps), damped either
by π-adjusted factored Tikhonov damping `(A + πγ I) ⊗ (G + γ/π I)`,
`γ = √λ`, `π = √((tr A/dim A)/(tr G/dim G))` (M&G §6.3), or exactly,
`(A ⊗ G + λ I)⁻¹` in the joint eigenbasis.

What the `g` are (`curvature`), from the problem's `per_sample` outputs:

- `"residuals"` `r` (loss `½ Σ r²`): `ggn` back-propagates each unit vector
  of the residual space (the exact Gauss-Newton matrix `JᵀJ`, one pass per
  residual component); `fisher` one Gaussian draw `ε ~ N(0, I)` per example
  (`E[JᵀεεᵀJ] = JᵀJ`); `empirical` the residual itself.
- `"logits"` with `"labels"` (loss: mean softmax cross-entropy): `ggn`
  back-propagates the columns `√p_k (e_k − p)` of the square root of
  `diag p − ppᵀ` (exact: the categorical Fisher); `fisher` `p − e_y` with
  `y ~ softmax(logits)` sampled; `empirical` `p − e_label`.
- `"log_amplitudes"` (real log ψ, VMC): the cotangent `1/√n`, so that
  `A ⊗ G` approximates the *uncentred* `⟨O Oᵀ⟩`, `O = ∂ log ψ/∂θ`
  (the `⟨O⟩⟨O⟩ᵀ` term of SR's covariance does not factor and is left out).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from sciml.optim import request_extra_args

from ._capture import discover, forward_with_probes, zero_probes

__all__ = [
    "KFACState",
    "KFACFallbackWarning",
    "curvature_factors",
    "describe",
    "kfac",
    "kfac_layers",
    "precondition",
]

_CURVATURES = ("ggn", "fisher", "empirical")
_DAMPINGS = ("factored", "exact")


class KFACFallbackWarning(UserWarning):
    """Parameters outside K-FAC's Kronecker blocks take the fallback step (see `describe`)."""


class Layer(NamedTuple):
    """A dense layer of the parameter tree (static description)."""

    name: str
    weight: int  # leaf index of the weight (out, in)
    bias: int | None  # leaf index of the bias (out,), or None
    in_size: int
    out_size: int


class KFACState(NamedTuple):
    """State of `kfac`.

    Attributes:
        count: steps taken.
        a: per layer, the running estimate of `A` (`in (+1)` square).
        g: per layer, the running estimate of `G` (`out` square).
        a_eig, g_eig: per layer, `(eigenvalues, eigenvectors)` of the damped
            inverse's factors, refreshed every `inverse_every` steps.
        pi: per layer, the π of factored damping at the last refresh.
        velocity: the previous update δ₀ (parameter-shaped; the momentum buffer).
        damping: the current λ (adapted when `adapt_damping`).
        rho: the last reduction ratio ρ (NaN before the first adaptation).
    """

    count: Array
    a: tuple
    g: tuple
    a_eig: tuple
    g_eig: tuple
    pi: tuple
    velocity: optax.Updates
    damping: Array
    rho: Array


def _has_affine(x) -> bool:
    return isinstance(getattr(type(x), "kfac_affine", None), tuple)


def kfac_layers(params) -> list[Layer]:
    """The affine maps of a parameter tree (K-FAC's candidate Kronecker blocks).

    A module declares its affine maps with the class attribute `kfac_affine`,
    pairs `(weight_field, bias_field or None)` of arrays it applies through
    `sciml.nn.affine`: `sciml.nn.Dense` declares `(("weight", "bias"),)`, the
    NQS `RBM` `(("weights", "hidden_bias"),)`.

    Args:
        params: the trained parameters, e.g. `eqx.filter(model, eqx.is_inexact_array)`.

    Returns:
        One `Layer` per declared map whose weight is a parameter leaf, in tree order.
    """
    leaves_with_path = jax.tree_util.tree_leaves_with_path(params)
    index = {id(leaf): i for i, (_, leaf) in enumerate(leaves_with_path)}
    found = []
    for path, node in jax.tree_util.tree_leaves_with_path(params, is_leaf=_has_affine):
        if not _has_affine(node):
            continue
        for w_name, b_name in type(node).kfac_affine:
            weight = getattr(node, w_name, None)
            if weight is None or id(weight) not in index or jnp.ndim(weight) != 2:
                continue
            bias = None if b_name is None else getattr(node, b_name, None)
            b = None if bias is None else index.get(id(bias))
            name = jax.tree_util.keystr(path) + ("" if w_name == "weight" else f".{w_name}")
            out_size, in_size = jnp.shape(weight)
            found.append(Layer(name, index[id(weight)], b, int(in_size), int(out_size)))
    return found


def describe(params) -> str:
    """Which parameters get Kronecker blocks and which take the fallback step, as text.

    A `Dense` in the parameter tree gets a block only if it also runs inside
    `sciml.nn.batch_apply` in the problem's `per_sample` (checked when K-FAC
    first traces the problem, with a `KFACFallbackWarning` naming any that
    does not).
    """
    layers = kfac_layers(params)
    covered = {lay.weight for lay in layers} | {lay.bias for lay in layers if lay.bias is not None}
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    lines = ["K-FAC Kronecker blocks (A ⊗ G):"]
    lines += [
        f"  {lay.name}: weight {lay.out_size}x{lay.in_size}{' + bias' if lay.bias is not None else ''}"
        for lay in layers
    ]
    rest = [n for i, n in enumerate(names) if i not in covered]
    lines.append("fallback (the plain gradient, scaled by the learning rate):")
    lines += [f"  {n}" for n in rest] or ["  (none)"]
    return "\n".join(lines)


def _check(name, value, ok, allowed):
    if not ok:
        raise ValueError(f"kfac: {name} must be {allowed}, got {value!r}")


def kfac(
    learning_rate: float | optax.Schedule,
    damping: float = 1e-3,
    *,
    curvature: Literal["ggn", "fisher", "empirical"] = "ggn",
    damping_kind: Literal["factored", "exact"] = "factored",
    ema: float = 0.95,
    inverse_every: int = 1,
    momentum: float = 0.0,
    norm_constraint: float | None = None,
    adaptive: bool = False,
    adapt_damping: bool = False,
    damping_every: int = 5,
    min_damping: float = 1e-8,
    l2: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """K-FAC preconditioning of the `sciml.nn.Dense` layers, as an optax transformation.

    Needs the problem's `per_sample` hook with `"residuals"`, `"logits"` and
    `"labels"`, or `"log_amplitudes"`, computed through `sciml.nn.batch_apply`
    (docs/kfac.md); the trainer passes it as `per_sample_fn` (and a `key`, for
    the sampled Fisher). Returns final updates `−η (momentum-accumulated)
    F̂⁻¹ ∇`; chain clipping before it, nothing after.

    Args:
        learning_rate: η, a number or an optax schedule.
        damping: λ > 0, the Tikhonov damping of the curvature.
        curvature: `ggn` (exact generalised Gauss-Newton factors), `fisher`
            (true Fisher with sampled targets / noise), `empirical` (data targets).
        damping_kind: `factored` (π-adjusted, M&G §6.3) or `exact`
            (`(A ⊗ G + λI)⁻¹` in the eigenbasis).
        ema: decay of the factors' exponential moving average in [0, 1)
            (the first step takes the current estimate whole).
        inverse_every: refresh the eigendecompositions every this many steps (>= 1).
        momentum: μ in [0, 1) of the heavy-ball buffer on the preconditioned gradient.
        norm_constraint: `c > 0` scales the step by `min(1, √(c / (η² ∇ᵀF̂⁻¹∇)))`.
        adaptive: learning rate and momentum from the exact quadratic model
            (M&G §7): `δ = αΔ + βδ₀`, `Δ = −F̂⁻¹∇`, `δ₀` the previous update,
            with `α, β` minimising `M(δ) = ½δᵀ(F + λI)δ + ∇ᵀδ` where `F` is
            the EXACT Gauss-Newton / Fisher matrix (two Jacobian-vector
            products); the step is then `learning_rate · δ` (use 1), and
            `momentum` is unused. For full or large batches.
        adapt_damping: Levenberg-Marquardt rule every `damping_every` steps:
            `ρ = (h(θ + δ) − h(θ)) / M(δ)`; `ρ < ¼`: `λ ← λ/ω`, `ρ > ¾`:
            `λ ← ωλ`, `ω = (19/20)^damping_every`, `λ >= min_damping`. Costs a
            loss evaluation (and, without `adaptive`, one curvature product).
        l2: the curvature η >= 0 of an L2 penalty `(η/2)‖θ‖²` in the loss, which
            the factors and the exact Gauss-Newton products leave out: it is
            added to the damping of the preconditioner and of the quadratic
            model (M&G's `λ + η`), and is not adapted.

    Raises:
        ValueError: bad settings (naming the allowed ones); at `init`, a parameter
            tree without `sciml.nn.Dense` layers.
    """
    _check("damping", damping, np.isfinite(damping) and damping > 0, "> 0")
    _check("curvature", curvature, curvature in _CURVATURES, f"one of {', '.join(_CURVATURES)}")
    _check(
        "damping_kind", damping_kind, damping_kind in _DAMPINGS, f"one of {', '.join(_DAMPINGS)}"
    )
    _check("ema", ema, 0 <= ema < 1, "in [0, 1)")
    _check(
        "inverse_every",
        inverse_every,
        isinstance(inverse_every, int)
        and not isinstance(inverse_every, bool)
        and inverse_every >= 1,
        "an integer >= 1",
    )
    _check("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")
    _check(
        "norm_constraint",
        norm_constraint,
        norm_constraint is None or (np.isfinite(norm_constraint) and norm_constraint > 0),
        "None or > 0",
    )
    _check(
        "damping_every",
        damping_every,
        isinstance(damping_every, int)
        and not isinstance(damping_every, bool)
        and damping_every >= 1,
        "an integer >= 1",
    )
    _check("min_damping", min_damping, np.isfinite(min_damping) and min_damping > 0, "> 0")
    _check("l2", l2, np.isfinite(l2) and l2 >= 0, ">= 0")
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    omega = (19.0 / 20.0) ** damping_every

    def init(params):
        layers = kfac_layers(params)
        if not layers:
            raise ValueError(
                "kfac: the model has no sciml.nn.Dense layers K-FAC can see (no module of its "
                "parameters declares kfac_affine maps); build it from sciml.nn.Dense / MLP, or "
                "use another optimizer"
            )
        leaves = jax.tree.leaves(params)
        dtype = jnp.result_type(*leaves)
        a = tuple(jnp.zeros((_a_size(lay),) * 2, dtype) for lay in layers)
        g = tuple(jnp.zeros((lay.out_size,) * 2, dtype) for lay in layers)
        a_eig = tuple(
            (jnp.ones(_a_size(lay), dtype), jnp.eye(_a_size(lay), dtype=dtype)) for lay in layers
        )
        g_eig = tuple(
            (jnp.ones(lay.out_size, dtype), jnp.eye(lay.out_size, dtype=dtype)) for lay in layers
        )
        pi = tuple(jnp.ones((), dtype) for _ in layers)
        velocity = jax.tree.map(jnp.zeros_like, params)
        return KFACState(
            jnp.zeros([], jnp.int32),
            a,
            g,
            a_eig,
            g_eig,
            pi,
            velocity,
            jnp.asarray(damping, dtype),
            jnp.asarray(jnp.nan, dtype),
        )

    def update(grads, state, params=None, *, per_sample_fn, key=None, **extra):
        if params is None:
            raise ValueError("kfac: update needs params")
        layers = kfac_layers(params)
        _, a_new, g_new = curvature_factors(per_sample_fn, params, curvature, key)
        # EMA with M&G's warm-up: the weight of the past is min(1 − 1/k, ema) at step k, so
        # early factors are plain averages and stale curvature from the start fades fast
        k = state.count.astype(a_new[0].dtype)
        decay = jnp.minimum(1.0 - 1.0 / (k + 1.0), ema).astype(a_new[0].dtype)
        lam = state.damping
        a = tuple(decay * old + (1 - decay) * new for old, new in zip(state.a, a_new))
        g = tuple(decay * old + (1 - decay) * new for old, new in zip(state.g, g_new))

        def refresh(_):
            return _eigens(a, g)

        def keep(_):
            return state.a_eig, state.g_eig, state.pi

        a_eig, g_eig, pi = jax.lax.cond(state.count % inverse_every == 0, refresh, keep, None)

        leaves, treedef = jax.tree.flatten(grads)
        out = list(leaves)
        for layer, ae, ge, p in zip(layers, a_eig, g_eig, pi):
            v = leaves[layer.weight]
            if layer.bias is not None:
                v = jnp.concatenate([v, leaves[layer.bias][:, None]], axis=1)
            u = precondition(v, ae, ge, p, lam + l2, damping_kind)
            if layer.bias is not None:
                out[layer.weight], out[layer.bias] = u[:, :-1], u[:, -1]
            else:
                out[layer.weight] = u
        precond = jax.tree.unflatten(treedef, out)
        lr = schedule(state.count)
        if norm_constraint is not None:
            quad = _dot(grads, precond)
            scale = jnp.minimum(1.0, jnp.sqrt(norm_constraint / jnp.maximum(lr**2 * quad, 1e-30)))
            precond = jax.tree.map(lambda x: scale * x, precond)
        model_value = jnp.asarray(jnp.nan, lam.dtype)
        if adaptive:
            direction = jax.tree.map(jnp.negative, precond)
            delta, model_value = _quadratic_step(
                per_sample_fn, params, grads, direction, state.velocity, lam + l2, state.count == 0
            )
            delta = jax.tree.map(lambda x: lr * x, delta)
            if callable(learning_rate) or learning_rate != 1.0:  # M of the scaled step
                model_value = _model_value(per_sample_fn, params, grads, delta, lam + l2)
            velocity = delta
        else:
            velocity = jax.tree.map(lambda vel, x: momentum * vel - lr * x, state.velocity, precond)
            delta = velocity
        updates = delta
        new_lam, rho = lam, state.rho
        if adapt_damping:
            value, value_fn = extra.get("value"), extra.get("value_fn")
            if value is None or value_fn is None:
                raise ValueError("kfac: adapt_damping needs the value and value_fn extra arguments")

            def adapt(_):
                m = (
                    model_value
                    if adaptive
                    else _model_value(per_sample_fn, params, grads, delta, lam + l2)
                )
                new_params = optax.apply_updates(params, delta)
                r = (value_fn(new_params) - value) / m
                shrink = jnp.where(r > 0.75, omega, 1.0)
                grow = jnp.where(r < 0.25, 1.0 / omega, 1.0)
                out = jnp.maximum(lam * shrink * grow, min_damping)
                return jnp.where(jnp.isfinite(r), out, lam / omega).astype(lam.dtype), r.astype(
                    lam.dtype
                )

            new_lam, rho = jax.lax.cond(
                (state.count + 1) % damping_every == 0, adapt, lambda _: (lam, state.rho), None
            )
        new = KFACState(
            optax.safe_increment(state.count), a, g, a_eig, g_eig, pi, velocity, new_lam, rho
        )
        return updates, new

    wanted = ("per_sample_fn", "key") if curvature == "fisher" else ("per_sample_fn",)
    return request_extra_args(optax.GradientTransformationExtraArgs(init, update), *wanted)


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _curvature_products(per_sample_fn, params, tangents):
    """`J t` for each tangent `t`, and the output curvature `H` to weigh them: `tᵀ F u = (Jt)ᵀH(Ju)`."""
    out = per_sample_fn(params)
    name = "residuals" if "residuals" in out else "logits" if "logits" in out else "log_amplitudes"
    if name not in out:
        _output_of(out)  # raises the message naming what is allowed

    def outputs(p):
        return per_sample_fn(p)[name]

    jts = [jax.jvp(outputs, (params,), (t,))[1] for t in tangents]
    if name == "logits":
        p = jax.nn.softmax(jax.lax.stop_gradient(out["logits"]), axis=-1)
        n = p.shape[0]

        def inner(x, y):  # Σ_n xᵀ (diag p − ppᵀ) y / N
            return (jnp.sum(p * x * y) - jnp.sum(jnp.sum(p * x, -1) * jnp.sum(p * y, -1))) / n

    elif name == "log_amplitudes":
        n = jts[0].shape[0]

        def inner(x, y):
            return jnp.real(jnp.vdot(x, y)) / n

    else:

        def inner(x, y):
            return jnp.vdot(x, y)

    return jts, inner


def _quadratic_step(per_sample_fn, params, grads, direction, previous, lam, first):
    """`(δ, M(δ))`: `δ = αΔ + βδ₀` minimising `M` over the two directions (M&G §7)."""
    (jd, jp), inner = _curvature_products(per_sample_fn, params, (direction, previous))
    c_dd = inner(jd, jd) + lam * _dot(direction, direction)
    c_dp = inner(jd, jp) + lam * _dot(direction, previous)
    c_pp = inner(jp, jp) + lam * _dot(previous, previous)
    g_d, g_p = _dot(grads, direction), _dot(grads, previous)
    det = c_dd * c_pp - c_dp**2
    use_both = (~first) & (c_pp > 0) & (det > 1e-12 * c_dd * c_pp)
    safe_det = jnp.where(use_both, det, 1.0)
    alpha2 = (-c_pp * g_d + c_dp * g_p) / safe_det
    beta2 = (c_dp * g_d - c_dd * g_p) / safe_det
    alpha1 = -g_d / jnp.where(c_dd > 0, c_dd, 1.0)
    alpha = jnp.where(use_both, alpha2, alpha1)
    beta = jnp.where(use_both, beta2, 0.0)
    delta = jax.tree.map(lambda d, p: alpha * d + beta * p, direction, previous)
    return delta, 0.5 * (alpha * g_d + beta * g_p)


def _model_value(per_sample_fn, params, grads, delta, lam):
    """`M(δ) = ½ δᵀ(F + λI)δ + ∇ᵀδ` with the exact curvature (one Jacobian-vector product)."""
    (jd,), inner = _curvature_products(per_sample_fn, params, (delta,))
    return 0.5 * (inner(jd, jd) + lam * _dot(delta, delta)) + _dot(grads, delta)


def _a_size(layer: Layer) -> int:
    return layer.in_size + (layer.bias is not None)


def precondition(v: Array, a_eig, g_eig, pi, damping: float, kind: str = "factored") -> Array:
    """`(A ⊗ G + damping)⁻¹` applied to a layer gradient `V` (`out × in(+1)`), from eigendecompositions.

    Args:
        v: the gradient of `[W b]`.
        a_eig, g_eig: `(eigenvalues, eigenvectors)` of `A` and `G`.
        pi: π of factored damping (ignored by `exact`).
        damping: λ.
        kind: `factored`: `(G + √λ/π I)⁻¹ V (A + π√λ I)⁻¹`; `exact`: the solve
            with `A ⊗ G + λ I` (`vec` column-stacking, `vec(G V A) = (A ⊗ G) vec V`).
    """
    (la, qa), (lg, qg) = a_eig, g_eig
    u = qg.T @ v @ qa
    if kind == "exact":
        u = u / (lg[:, None] * la[None, :] + damping)
    else:
        gamma = jnp.sqrt(jnp.asarray(damping, v.dtype))
        u = u / ((lg + gamma / pi)[:, None] * (la + gamma * pi)[None, :])
    return qg @ u @ qa.T


def _eigens(a, g):
    a_eig, g_eig, pis = [], [], []
    for fa, fg in zip(a, g):
        la, qa = jnp.linalg.eigh(fa)
        lg, qg = jnp.linalg.eigh(fg)
        la, lg = jnp.maximum(la, 0.0), jnp.maximum(lg, 0.0)  # PSD up to rounding
        ta, tg = jnp.trace(fa) / fa.shape[0], jnp.trace(fg) / fg.shape[0]
        pi = jnp.where((ta > 0) & (tg > 0), jnp.sqrt(ta / jnp.where(tg > 0, tg, 1.0)), 1.0)
        a_eig.append((la, qa))
        g_eig.append((lg, qg))
        pis.append(pi)
    return tuple(a_eig), tuple(g_eig), tuple(pis)


def curvature_factors(per_sample_fn: Callable, params, curvature: str = "ggn", key=None):
    """This batch's Kronecker factors `A` and `G` of every `Dense` layer (module docstring).

    Args:
        per_sample_fn: `params -> dict` (the problem's `per_sample` at fixed state),
            evaluating the network through `sciml.nn.batch_apply`.
        params: the trained parameters.
        curvature: `ggn`, `fisher` or `empirical`.
        key: PRNG key (the `fisher` curvature samples).

    Returns:
        `(layers, A, G)`: `kfac_layers(params)` and one `A` (`in(+1)` square,
        the homogeneous coordinate last) and `G` (`out` square) per layer
        (zeros for a layer that never ran inside `batch_apply`).
    """
    layers = kfac_layers(params)
    calls, sizes, _ = discover(per_sample_fn, params)
    slot = {lay.weight: i for i, lay in enumerate(layers)}
    seen = {c.weight for per_call in calls for c in per_call if c.weight is not None}
    missing = [lay.name for lay in layers if lay.weight not in seen]
    if missing:
        warnings.warn(
            "kfac: these Dense layers of the model never run inside sciml.nn.batch_apply in "
            f"the problem's per_sample, so they take the fallback step: {', '.join(missing)}",
            KFACFallbackWarning,
            stacklevel=3,
        )
    dtype = jnp.result_type(*jax.tree.leaves(params))
    probes = zero_probes(calls, sizes, dtype)

    def forward(pr):
        out, inputs = forward_with_probes(per_sample_fn, params, calls, pr)
        return _output_of(out), (out, inputs)

    primal, vjp, (out, inputs) = jax.vjp(forward, probes, has_aux=True)
    cotangents = _cotangents(primal, out, curvature, key)  # (k, *primal.shape)
    (gs,) = jax.vmap(vjp)(cotangents)  # probes-shaped, each with a leading k axis

    # A: the mean over every example and weight-sharing call (the "expand" flavour: channels
    # and terms count as extra examples); G: the sum (the g carry the loss's weights).
    a_sum = [jnp.zeros((_a_size(lay),) * 2, dtype) for lay in layers]
    a_count = [0] * len(layers)
    g_sum = [jnp.zeros((lay.out_size,) * 2, dtype) for lay in layers]
    for per_call, acts, grads_c in zip(calls, inputs, gs):
        for c, act, gk in zip(per_call, acts, grads_c):
            i = slot.get(c.weight) if c.weight is not None else None
            if i is None:
                continue
            if layers[i].bias is not None:  # homogeneous coordinate: 1 where this call added it
                one = (
                    jnp.ones_like(act[:, :1]) if c.bias is not None else jnp.zeros_like(act[:, :1])
                )
                act = jnp.concatenate([act, one], axis=1)
            a_sum[i] = a_sum[i] + act.T @ act
            a_count[i] += act.shape[0]
            gk = gk.reshape(-1, gk.shape[-1])  # (k n, out)
            g_sum[i] = g_sum[i] + gk.T @ gk
    a = tuple(s / max(c, 1) for s, c in zip(a_sum, a_count))
    return layers, a, tuple(g_sum)


def _output_of(out: dict):
    for name in ("residuals", "logits", "log_amplitudes"):
        if name in out:
            return out[name]
    raise ValueError(
        "kfac: per_sample must give 'residuals', 'logits' (with 'labels') or 'log_amplitudes'; "
        f"this problem gives {sorted(out)}"
    )


def _cotangents(primal, out: dict, curvature: str, key):
    """The stack of output cotangents whose back-propagated `g` form `G` (docs above)."""
    if "residuals" in out:
        r = primal
        n = r.shape[0]
        flat = r.reshape(n, -1)
        m = flat.shape[1]
        if curvature == "ggn":
            eye = jnp.eye(m, dtype=r.dtype)
            cots = jnp.broadcast_to(eye[:, None, :], (m, n, m))
        elif curvature == "fisher":
            cots = jax.random.normal(_need_key(key), (1, n, m), r.dtype)
        else:
            cots = jax.lax.stop_gradient(flat)[None]
        return cots.reshape(cots.shape[0], *r.shape)
    if "logits" in out:
        if "labels" not in out and curvature == "empirical":
            raise ValueError(
                "kfac: curvature 'empirical' with 'logits' needs per_sample's 'labels'"
            )
        logits = jax.lax.stop_gradient(primal)
        n, c = logits.shape
        p = jax.nn.softmax(logits, axis=-1)
        scale = 1.0 / jnp.sqrt(n)
        if curvature == "ggn":
            eye = jnp.eye(c, dtype=p.dtype)
            cols = jnp.sqrt(p).T[:, :, None] * (eye[:, None, :] - p[None])  # (c, n, c)
            return scale * cols
        if curvature == "fisher":
            y = jax.random.categorical(_need_key(key), logits)
        else:
            y = out["labels"]
        return (scale * (p - jax.nn.one_hot(y, c, dtype=p.dtype)))[None]
    log_psi = primal
    if jnp.iscomplexobj(log_psi):
        raise ValueError("kfac: complex log-amplitudes are not supported yet (real ψ only)")
    n = log_psi.shape[0]
    return jnp.full((1, n), 1.0 / jnp.sqrt(n), log_psi.dtype)


def _need_key(key):
    if key is None:
        raise ValueError("kfac: curvature 'fisher' samples targets and needs the step's key")
    return key
