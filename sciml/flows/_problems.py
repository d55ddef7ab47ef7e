"""The flow problems: density estimation (maximum likelihood) and variational inference (reverse KL).

Density problems hold their training and test sets (generated at
construction: nothing downloads), draw a minibatch from the training set
with the step's key, and report `test_nll`, the mean negative log-likelihood
of the test set in nats per point, beside the oracle (the exact density's
NLL on the same test points, where the data distribution is known) and
simple baselines. Variational problems fit a flow to an unnormalised 2-D
density by reverse KL and report the KL bound `log Z − ELBO` (known `log Z`)
and the importance-sampling effective sample size.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import PositiveInt, Section

from . import _data
from ._cnf import CNF, cnf_loss
from ._distributions import GaussianMixture, StandardNormal, StudentT, Transformed
from ._factories import maf, neural_spline_flow, realnvp
from ._objectives import importance_diagnostics, maximum_likelihood_loss, reverse_kl_loss

__all__ = [
    "CNFNetwork",
    "CNFTwoMoons",
    "Checkerboard",
    "Digits",
    "EightGaussians",
    "FlowNetwork",
    "TwoMoons",
    "TwoMoonsConditional",
    "VIBanana",
    "VIRing",
]

Width = Annotated[int, Field(ge=1, le=4096)]


class FlowNetwork(Section):
    """The flow (`model` section of every flow problem).

    Attributes:
        flow: `nsf` (spline coupling), `nsf_autoregressive` (spline MAF),
            `realnvp` (affine coupling), `maf` (affine MAF).
        layers: blocks of the flow (each two couplings, or one MADE layer and a reversal).
        width, depth: conditioner networks.
        knots, interval: spline bins on `[-interval, interval]` (identity outside).
        base: `normal`, `student_t` (df 5) or `mixture` (`components` Gaussians).
        standardise: put the data's mean and std into a final affine layer,
            so that the flow works on standardised data.
        fast_direction: which direction of a spline coupling flow (`nsf`)
            uses the spline's closed form: `density` (maximum likelihood) or
            `sampling` (reverse-KL VI); `null` picks the problem's own.
    """

    flow: Literal["nsf", "nsf_autoregressive", "realnvp", "maf"] = "nsf"
    layers: Annotated[int, Field(ge=1, le=256)] = 4
    width: Width = 64
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    knots: Annotated[int, Field(ge=2, le=256)] = 8
    interval: Annotated[float, Field(gt=0, le=100)] = 4.0
    base: Literal["normal", "student_t", "mixture"] = "normal"
    components: Annotated[int, Field(ge=1, le=64)] = 8
    standardise: bool = True
    fast_direction: Literal["density", "sampling"] | None = None


def build_flow(
    net: FlowNetwork, dim: int, *, key, cond_dim=None, data=None, fast_direction="density"
):
    """The flow of a `FlowNetwork` section for `dim`-dimensional data (standardised by `data`).

    `fast_direction` is the problem's default for `net.fast_direction`."""
    kb, kf = jax.random.split(key)
    if net.base == "normal":
        base = StandardNormal((dim,))
    elif net.base == "student_t":
        base = StudentT((dim,), df=5.0)
    else:
        base = GaussianMixture(net.components, dim, key=kb)
    loc = scale = None
    if net.standardise and data is not None:
        loc, scale = jnp.mean(data, 0), jnp.std(data, 0) + 1e-6
    kw = dict(
        key=kf,
        layers=net.layers,
        width=net.width,
        depth=net.depth,
        cond_dim=cond_dim,
        base=base,
        loc=loc,
        scale=scale,
    )
    if net.flow == "realnvp":
        return realnvp(dim, **kw)
    if net.flow == "maf":
        return maf(dim, **kw)
    if net.flow == "nsf":
        invert = (net.fast_direction or fast_direction) == "density"
        return neural_spline_flow(
            dim, kind="coupling", knots=net.knots, interval=net.interval, invert=invert, **kw
        )
    return neural_spline_flow(
        dim, kind="autoregressive", knots=net.knots, interval=net.interval, **kw
    )


def _mean_log_prob(dist, x, context, chunk: int):
    """Mean log q over the rows of `x` (and `context`), evaluated `chunk` rows at a time."""
    n = x.shape[0]
    pad = (-n) % chunk
    xs = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]).reshape(-1, chunk, *x.shape[1:])
    if context is None:
        lp = jax.lax.map(jax.vmap(dist.log_prob), xs)
    else:
        cs = jnp.concatenate([context, jnp.repeat(context[:1], pad, 0)])
        cs = cs.reshape(-1, chunk, *context.shape[1:])
        lp = jax.lax.map(lambda a: jax.vmap(dist.log_prob)(*a), (xs, cs))
    return jnp.sum(lp.reshape(-1)[:n]) / n


_eval_mean_log_prob = eqx.filter_jit(_mean_log_prob)


class DensitySettings(Section):
    """Settings of the 2-D density problems (`problem` section).

    Attributes:
        n_train: training points (drawn once with `data_seed`).
        n_test: fresh test points (drawn with `data_seed + 1`).
        batch_size: minibatch per step (drawn with the step's key, with replacement).
        data_seed: seed of the training and test sets.
        eval_chunk: test points per vectorised evaluation.
    """

    n_train: PositiveInt = 10_000
    n_test: PositiveInt = 100_000
    batch_size: PositiveInt = 512
    data_seed: Annotated[int, Field(ge=0)] = 0
    eval_chunk: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000


class TwoMoonsSettings(DensitySettings):
    """Two moons: `DensitySettings` plus `noise`, the std of make_moons' Gaussian noise."""

    noise: Annotated[float, Field(gt=0, le=10)] = 0.1


class DigitsSettings(Section):
    """scikit-learn digits (64-dim), dequantised; 80/20 split with `data_seed`.

    Attributes:
        batch_size: minibatch per step (with replacement).
        data_seed: dequantisation noise and split.
        val_fraction: part of the training split held out for validation
            (`val_nll`, the metric to early-stop on: `train.early_stopping`
            with `monitor: eval/val_nll`); 0 trains on all of it.
    """

    batch_size: PositiveInt = 256
    data_seed: Annotated[int, Field(ge=0)] = 0
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1


class _AbstractFlowDensity(AbstractProblem):
    """Maximum likelihood on a fixed training set; `evaluate` reports the test NLL."""

    settings: Section
    model_settings: FlowNetwork
    train: jax.Array
    test: jax.Array
    train_context: jax.Array | None
    test_context: jax.Array | None
    val: jax.Array | None
    val_context: jax.Array | None
    references: tuple[tuple[str, float], ...] = eqx.field(static=True)

    metric_names: ClassVar[tuple[str, ...]] = ("test_nll", "train_nll")
    ModelSettings: ClassVar[type] = FlowNetwork
    _figure_grid: ClassVar[int] = 200  # points per axis of the density figure

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )
        train, test, train_ctx, test_ctx, self.references = self.load(self.settings)
        val = val_ctx = None
        fraction = getattr(self.settings, "val_fraction", 0.0)
        if fraction > 0:  # a validation split carved from the training set
            order = np.random.default_rng(self.settings.data_seed).permutation(len(train))
            n_val = max(1, int(round(fraction * len(train))))
            val, train = train[order[:n_val]], train[order[n_val:]]
            if train_ctx is not None:
                val_ctx, train_ctx = train_ctx[order[:n_val]], train_ctx[order[n_val:]]
        self.val = None if val is None else _as_array(val)
        self.val_context = None if val_ctx is None else _as_array(val_ctx)
        self.train, self.test = _as_array(train), _as_array(test)
        self.train_context = None if train_ctx is None else _as_array(train_ctx)
        self.test_context = None if test_ctx is None else _as_array(test_ctx)

    @classmethod
    @abstractmethod
    def load(cls, settings) -> tuple:
        """`(train, test, train_context, test_context, references)` as numpy arrays (contexts
        `None` for an unconditional problem) and `((name, value), ...)` reported by `evaluate`."""

    @property
    def cond_dim(self):
        return None if self.train_context is None else self.train_context.shape[1]

    def init(self, key):
        model = build_flow(
            self.model_settings,
            self.train.shape[1],
            key=key,
            cond_dim=self.cond_dim,
            data=self.train,
        )
        return model, None

    def _batch(self, key):
        idx = jax.random.randint(key, (self.settings.batch_size,), 0, self.train.shape[0])
        ctx = None if self.train_context is None else self.train_context[idx]
        return self.train[idx], ctx

    def loss(self, model, state, key):
        x, ctx = self._batch(key)
        nll = maximum_likelihood_loss(model, x, ctx)
        return nll, (state, {"nll": nll})

    def evaluate(self, model, state, key):
        chunk = min(getattr(self.settings, "eval_chunk", 4096), self.test.shape[0])
        test = -float(_eval_mean_log_prob(model, self.test, self.test_context, chunk))
        n = min(self.train.shape[0], self.test.shape[0])
        ctx = None if self.train_context is None else self.train_context[:n]
        train = -float(_eval_mean_log_prob(model, self.train[:n], ctx, min(chunk, n)))
        out = {"test_nll": test, "train_nll": train}
        if self.val is not None:
            c = min(chunk, self.val.shape[0])
            out["val_nll"] = -float(_eval_mean_log_prob(model, self.val, self.val_context, c))
        for name, value in self.references:
            out[name] = float(value)
            if name == "oracle_nll":
                out["gap_to_oracle"] = test - float(value)
        return out

    def figures(self, model, state, outdir):
        if self.train.shape[1] != 2:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lo, hi = np.percentile(np.asarray(self.test), [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], self._figure_grid)
        gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], self._figure_grid)
        xx, yy = np.meshgrid(gx, gy, indexing="xy")
        grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), self.test.dtype)
        ctx = None
        if self.test_context is not None:  # the density of the first label's points
            ctx = jnp.broadcast_to(self.test_context[0], (grid.shape[0], self.cond_dim))
        log_q = eqx.filter_jit(
            lambda m, g, c: jax.vmap(m.log_prob)(g) if c is None else jax.vmap(m.log_prob)(g, c)
        )(model, grid, ctx)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        axes[0].pcolormesh(gx, gy, np.exp(np.asarray(log_q)).reshape(xx.shape), shading="auto")
        axes[0].set_title("flow density")
        axes[1].plot(*np.asarray(self.test[:5000]).T, ".", ms=1, alpha=0.5)
        axes[1].set_xlim(gx[0], gx[-1])
        axes[1].set_ylim(gy[0], gy[-1])
        axes[1].set_title("test data")
        path = Path(outdir) / "density.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        return [str(path)]


def _as_array(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


class TwoMoons(_AbstractFlowDensity):
    """scikit-learn's two moons (`make_moons(noise)`): test NLL against the exact density's."""

    Settings: ClassVar[type] = TwoMoonsSettings

    @classmethod
    def load(cls, s):
        train, _ = _data.two_moons(s.n_train, seed=s.data_seed, noise=s.noise)
        test, _ = _data.two_moons(s.n_test, seed=s.data_seed + 1, noise=s.noise)
        oracle = -float(np.mean(_data.two_moons_log_density(test, noise=s.noise, nodes=200)))
        return train, test, None, None, (("oracle_nll", oracle),)


class TwoMoonsConditional(_AbstractFlowDensity):
    """Two moons conditioned on the moon label (context = the label as a float): the oracle is ≈ 0.316."""

    Settings: ClassVar[type] = TwoMoonsSettings

    @classmethod
    def load(cls, s):
        train, y_train = _data.two_moons(s.n_train, seed=s.data_seed, noise=s.noise)
        test, y_test = _data.two_moons(s.n_test, seed=s.data_seed + 1, noise=s.noise)
        lp = _data.two_moons_log_density(test, noise=s.noise, label=y_test, nodes=200)
        refs = (("oracle_nll", -float(np.mean(lp))),)
        return train, test, y_train[:, None], y_test[:, None], refs


class Checkerboard(_AbstractFlowDensity):
    """FFJORD's checkerboard: uniform on 8 squares, oracle NLL log 32 = 3.466."""

    Settings: ClassVar[type] = DensitySettings

    @classmethod
    def load(cls, s):
        train = _data.checkerboard(s.n_train, seed=s.data_seed)
        test = _data.checkerboard(s.n_test, seed=s.data_seed + 1)
        return train, test, None, None, (("oracle_nll", float(np.log(32.0))),)


class EightGaussians(_AbstractFlowDensity):
    """FFJORD's 8 Gaussians: test NLL against the exact mixture's (≈ 2.83)."""

    Settings: ClassVar[type] = DensitySettings

    @classmethod
    def load(cls, s):
        train = _data.eight_gaussians(s.n_train, seed=s.data_seed)
        test = _data.eight_gaussians(s.n_test, seed=s.data_seed + 1)
        oracle = -float(np.mean(_data.eight_gaussians_log_density(test)))
        return train, test, None, None, (("oracle_nll", oracle),)


class CNFNetwork(Section):
    """The continuous flow (`model` section of `cnf_two_moons`; see `sciml.flows.CNF`).

    Attributes:
        width, depth, activation: the concat-squash vector field.
        trace: `exact` or `hutchinson` (one Rademacher/Gaussian probe per solve) for training;
            `evaluate` always uses the exact trace.
        probe: Hutchinson probe distribution.
        kinetic, jacobian: RNODE regulariser weights (0 switches each off).
        rtol, atol: adaptive step control of the training solves.
        eval_rtol, eval_atol: step control of `evaluate`'s solves.
        solver: explicit Runge-Kutta solver. adjoint: `recursive` or `backsolve`.
        max_steps: step budget per solve.
        standardise: the ODE works on data standardised by the training set's mean and std.
    """

    width: Width = 64
    depth: Annotated[int, Field(ge=1, le=16)] = 3
    activation: Literal["tanh", "softplus", "silu", "sin"] = "tanh"
    trace: Literal["exact", "hutchinson"] = "exact"
    probe: Literal["rademacher", "gaussian"] = "rademacher"
    kinetic: Annotated[float, Field(ge=0)] = 0.0
    jacobian: Annotated[float, Field(ge=0)] = 0.0
    rtol: Annotated[float, Field(gt=0, le=1)] = 1e-5
    atol: Annotated[float, Field(gt=0, le=1)] = 1e-5
    eval_rtol: Annotated[float, Field(gt=0, le=1)] = 1e-5
    eval_atol: Annotated[float, Field(gt=0, le=1)] = 1e-5
    solver: Literal["tsit5", "dopri5", "bosh3", "dopri8"] = "tsit5"
    adjoint: Literal["recursive", "backsolve"] = "recursive"
    max_steps: Annotated[int, Field(ge=1, le=100_000)] = 4096
    standardise: bool = True


class CNFTwoMoons(TwoMoons):
    """FFJORD on two moons: test NLL (exact trace) beside the oracle, and the solver's cost.

    `evaluate` adds `nfe` (mean vector-field evaluations of one density
    solve at the evaluation tolerances), `test_nll_hutchinson` (the NLL from
    Hutchinson's trace on up to 10k test points, one probe per point: it
    should agree with `test_nll` within its Monte Carlo error,
    `test_nll_hutchinson_se`) and, on the training batch, the RNODE integrals.
    """

    ModelSettings: ClassVar[type] = CNFNetwork
    model_settings: CNFNetwork
    _figure_grid: ClassVar[int] = 100  # one ODE solve per grid point
    metric_names: ClassVar[tuple[str, ...]] = (
        "test_nll",
        "train_nll",
        "nfe",
        "test_nll_hutchinson",
        "test_nll_hutchinson_se",
    )

    def init(self, key):
        m = self.model_settings
        loc = scale = None
        if m.standardise:
            loc, scale = jnp.mean(self.train, 0), jnp.std(self.train, 0) + 1e-6
        cnf = CNF(
            self.train.shape[1],
            width=m.width,
            depth=m.depth,
            activation=m.activation,
            cond_dim=self.cond_dim,
            trace=m.trace,
            probe=m.probe,
            rtol=m.rtol,
            atol=m.atol,
            solver=m.solver,
            adjoint=m.adjoint,
            max_steps=m.max_steps,
            loc=loc,
            scale=scale,
            key=key,
        )
        return Transformed(StandardNormal((self.train.shape[1],)), cnf), None

    def loss(self, model, state, key):
        kb, kp = jax.random.split(key)
        x, ctx = self._batch(kb)
        m = self.model_settings
        loss, metrics = cnf_loss(model, x, kp, ctx, kinetic=m.kinetic, jacobian=m.jacobian)
        return loss, (state, metrics)

    def _exact(self, model):
        """The same flow with the exact trace at the evaluation tolerances."""
        m = self.model_settings
        cnf = model.bijection.with_settings(trace="exact", rtol=m.eval_rtol, atol=m.eval_atol)
        return eqx.tree_at(lambda f: f.bijection, model, cnf)

    def evaluate(self, model, state, key):
        exact = self._exact(model)
        chunk = min(self.settings.eval_chunk, self.test.shape[0])
        lq_test, nfe = _eval_cnf_stats(exact, self.test, None, chunk, None)
        n = min(self.train.shape[0], self.test.shape[0])
        lq_train, _ = _eval_cnf_stats(exact, self.train[:n], None, min(chunk, n), None)
        m = min(n, 10_000)
        hutch = eqx.tree_at(lambda f: f.bijection, exact, exact.bijection.with_trace("hutchinson"))
        lq_h, _ = _eval_cnf_stats(hutch, self.test[:m], None, min(chunk, m), key)
        test = -float(jnp.mean(lq_test))
        out = {"test_nll": test, "train_nll": -float(jnp.mean(lq_train)), "nfe": float(nfe)}
        for name, value in self.references:
            out[name] = float(value)
            if name == "oracle_nll":
                out["gap_to_oracle"] = test - float(value)
        out["test_nll_hutchinson"] = -float(jnp.mean(lq_h))
        out["test_nll_hutchinson_se"] = float(jnp.std(lq_h) / np.sqrt(m))
        return out

    def figures(self, model, state, outdir):
        return super().figures(self._exact(model), state, outdir)


@eqx.filter_jit
def _eval_cnf_stats(flow, x, context, chunk: int, key):
    """Per-point `log q(x)` and the mean NFE of the density solves, `chunk` points at a time."""
    n = x.shape[0]
    pad = (-n) % chunk
    xs = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]).reshape(-1, chunk, *x.shape[1:])
    keys = None
    if key is not None:
        keys = jax.random.split(key, n + pad)
        keys = keys.reshape(-1, chunk, *keys.shape[1:])
    cnf = flow.bijection

    def one(xi, ki):
        z, ld, stats = cnf.inverse_with_stats(xi, key=ki)
        return flow.base.log_prob(z) + ld, stats.nfe

    if keys is None:
        lq, nfe = jax.lax.map(jax.vmap(lambda xi: one(xi, None)), xs)
    else:
        lq, nfe = jax.lax.map(lambda a: jax.vmap(one)(*a), (xs, keys))
    return lq.reshape(-1)[:n], jnp.mean(nfe.reshape(-1)[:n].astype(lq.dtype))


def _gaussian_baselines(train: np.ndarray, test: np.ndarray, seed: int) -> tuple:
    """Test NLL of a full-covariance Gaussian and a 5-component full-covariance mixture (scikit-learn)."""
    from sklearn.mixture import GaussianMixture as SkMixture

    out = []
    for name, k in (("gaussian_nll", 1), ("mixture5_nll", 5)):
        fit = SkMixture(k, covariance_type="full", random_state=seed).fit(train)
        out.append((name, -float(fit.score(test))))
    return tuple(out)


class Digits(_AbstractFlowDensity):
    """scikit-learn's 8x8 digits, dequantised: test NLL per image beside Gaussian and mixture baselines."""

    Settings: ClassVar[type] = DigitsSettings

    @classmethod
    def load(cls, s):
        train, test = _data.digits(seed=s.data_seed)
        return train, test, None, None, _gaussian_baselines(train, test, s.data_seed)


class VISettings(Section):
    """Settings of the variational problems (`problem` section).

    Attributes:
        num_samples: Monte Carlo samples per step.
        stick_the_landing: the score-free gradient (Roeder et al. 2017).
        eval_samples: samples for the reported ELBO, log Z estimate and ESS.
    """

    num_samples: PositiveInt = 256
    stick_the_landing: bool = False
    eval_samples: PositiveInt = 20_000


class _AbstractFlowVI(AbstractProblem):
    """Reverse KL against an unnormalised 2-D log-density with a known normaliser."""

    settings: eqx.AbstractVar[VISettings]
    model_settings: eqx.AbstractVar[FlowNetwork]

    metric_names: ClassVar[tuple[str, ...]] = (
        "kl",
        "elbo",
        "log_z",
        "log_z_estimate",
        "ess_fraction",
    )

    @abstractmethod
    def log_density(self, x): ...

    @abstractmethod
    def log_normaliser(self) -> float: ...

    def init(self, key):
        return build_flow(self.model_settings, 2, key=key, fast_direction="sampling"), None

    def loss(self, model, state, key):
        s = self.settings
        loss, _ = reverse_kl_loss(
            model, self.log_density, key, s.num_samples, stick_the_landing=s.stick_the_landing
        )
        return loss, (state, {"neg_elbo": loss})

    def evaluate(self, model, state, key):
        n = self.settings.eval_samples

        @eqx.filter_jit
        def diagnostics(model, key):
            _, (log_q, log_p) = reverse_kl_loss(model, self.log_density, key, n)
            return importance_diagnostics(log_q, log_p)

        d = diagnostics(model, key)
        log_z = self.log_normaliser()
        return {
            "kl": log_z - float(d.elbo),
            "elbo": float(d.elbo),
            "log_z": log_z,
            "log_z_estimate": float(d.log_z),
            "ess_fraction": float(d.ess_fraction),
        }


class VIBanana(_AbstractFlowVI):
    """Reverse-KL VI on a banana (a sheared Gaussian, `log Z` exact): reports `kl` and ESS."""

    Settings: ClassVar[type] = VISettings
    ModelSettings: ClassVar[type] = FlowNetwork

    settings: VISettings
    model_settings: FlowNetwork

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )

    def log_density(self, x):
        return _data.banana_log_density(x)

    def log_normaliser(self):
        return _data.BANANA_LOG_Z


class VIRing(_AbstractFlowVI):
    """Reverse-KL VI on Rezende & Mohamed's ring energy U1 (`log Z` by quadrature)."""

    Settings: ClassVar[type] = VISettings
    ModelSettings: ClassVar[type] = FlowNetwork

    settings: VISettings
    model_settings: FlowNetwork
    _log_z: float = eqx.field(static=True)

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )
        self._log_z = _data.ring_log_normaliser()

    def log_density(self, x):
        return _data.ring_log_density(x)

    def log_normaliser(self):
        return self._log_z
