"""What K-FAC sees of a model: the dense layers that run inside `sciml.nn.batch_apply`.

A problem evaluates its network on a batch with `sciml.nn.batch_apply(fn,
xs)` (`jax.vmap(fn)(xs)` whenever K-FAC is not looking). While K-FAC traces
the problem's `per_sample` hook it installs a hook in `batch_apply`: every
`sciml.nn.Dense` called for one example records its input `a` and adds a
zero *probe* `p` to its output, `s = W a + b + p`. The derivative of an
output with respect to `p` is the back-propagated output gradient `g` of that
layer for that example, so one vector-Jacobian product with respect to the
probes gives every layer's `g` for every example at once. The hook runs
inside `jax.vmap`, so recorded inputs leave as ordinary batched outputs (no
tracer escapes). Layers are matched to the parameters by the identity of
their weight array: a layer whose weight is not a trained parameter leaf as
it stands (computed from other arrays, e.g. `FactorizedDense`) is not a
K-FAC layer, and its parameters fall back (see `describe`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from sciml import nn


@dataclass(frozen=True)
class LayerCall:
    """One dense-layer call per example, as found while tracing.

    Attributes:
        weight: index of the layer's weight among the flattened parameter leaves,
            `None` when the weight is not a parameter leaf as it stands.
        bias: index of the bias this call added, or `None` (no bias in this call,
            e.g. a derivative channel of a Taylor-mode pass, or a bias that is not
            a parameter): its homogeneous coordinate is then 0.
        in_size, out_size: the layer's sizes.
        name: the weight's path in the parameter tree (for reports).
    """

    weight: int | None
    bias: int | None
    in_size: int
    out_size: int
    name: str


@dataclass
class _Trace:
    """State of one K-FAC trace of `per_sample`: layer calls per `batch_apply` call."""

    leaf_index: dict[int, int]
    leaf_names: list[str]
    probes: list[list[Any]] | None = None  # per batch_apply call, per layer call: (n, out)
    calls: list[list[LayerCall]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    inputs: list[list[Any]] = field(default_factory=list)  # per call, per layer call: (n, in)
    known: list[list[LayerCall]] | None = None  # the calls found by `discover`

    def resolve(self, layer) -> LayerCall:
        weight = getattr(layer, "weight", None)
        if weight is None or id(weight) not in self.leaf_index:
            return LayerCall(None, None, layer.in_size, layer.out_size, type(layer).__name__)
        bias = getattr(layer, "bias", None)
        b = None if bias is None else self.leaf_index.get(id(bias))
        w = self.leaf_index[id(weight)]
        return LayerCall(w, b, layer.in_size, layer.out_size, self.leaf_names[w])

    def batch_hook(self, fn, xs):
        index = len(self.calls)
        leaves = jax.tree.leaves(xs)
        if not leaves:
            raise ValueError("batch_apply: xs has no arrays")
        n = leaves[0].shape[0]
        found: list[LayerCall] = []
        probes = None if self.probes is None else self.probes[index]

        def one(x, ps):
            recorded = []

            def tap(layer, a, y):
                i = len(recorded)
                recorded.append(a)
                if ps is None:
                    found.append(self.resolve(layer))
                    return y
                return y + ps[i].astype(y.dtype)

            token = nn._DENSE_TAP.set(tap)
            try:
                out = fn(x)
            finally:
                nn._DENSE_TAP.reset(token)
            return out, recorded

        if probes is None:
            out, inputs = jax.vmap(lambda x: one(x, None))(xs)
        else:
            out, inputs = jax.vmap(one)(xs, probes)
        self.calls.append(found if probes is None else self.known[index])
        self.batch_sizes.append(n)
        self.inputs.append(inputs)
        return out


@contextlib.contextmanager
def _hooked(trace: _Trace):
    token = nn._BATCH_HOOK.set(trace.batch_hook)
    try:
        yield trace
    finally:
        nn._BATCH_HOOK.reset(token)


def _leaf_table(params):
    paths_leaves = jax.tree_util.tree_leaves_with_path(params)
    index = {id(leaf): i for i, (_, leaf) in enumerate(paths_leaves)}
    names = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
    return index, names


def discover(per_sample_fn, params) -> tuple[list[list[LayerCall]], list[int], Any]:
    """The dense-layer calls of `per_sample_fn(params)`, per `batch_apply` call (trace only).

    Returns `(calls, batch_sizes, output_shapes)`: `calls[c][k]` is the k-th
    layer call per example in the c-th `batch_apply` call (its `weight` is
    `None` for a layer whose weight is not a parameter leaf), `batch_sizes[c]`
    that call's batch size.
    """
    result = {}

    def traced(p):
        index, names = _leaf_table(p)
        trace = _Trace(index, names)
        with _hooked(trace):
            out = per_sample_fn(p)
        result["calls"], result["sizes"] = trace.calls, trace.batch_sizes
        return out

    shapes = jax.eval_shape(traced, params)
    return result["calls"], result["sizes"], shapes


def forward_with_probes(per_sample_fn, params, calls, probes):
    """`(per_sample_fn(params) with probes added, recorded layer inputs)`.

    `probes[c][k]` has shape `(batch_sizes[c], out_size)`; the recorded
    inputs `inputs[c][k]` have shape `(batch_sizes[c], in_size)`.
    """
    index, names = _leaf_table(params)
    trace = _Trace(index, names, probes=probes, known=calls)
    with _hooked(trace):
        out = per_sample_fn(params)
    if len(trace.inputs) != len(calls):
        raise RuntimeError(
            "K-FAC: per_sample called batch_apply a different number of times than when its "
            f"layers were found ({len(trace.inputs)} vs {len(calls)}); it must trace the same way"
        )
    return out, trace.inputs


def zero_probes(calls, batch_sizes, dtype):
    """Zero probes for every layer call: `[[(n_c, out_size), ...], ...]`."""
    return [
        [jnp.zeros((n, c.out_size), dtype) for c in per_call]
        for per_call, n in zip(calls, batch_sizes)
    ]
