"""The NQS problems: variational Monte Carlo for lattice spin Hamiltonians with exact references.

Each problem holds a Hamiltonian, a sampler and the exact ground-state energy.
The Markov chains live in the problem state and move in `advance` (outside
differentiation: an L-BFGS line search never re-runs them); `loss` is the
VMC surrogate on the current samples; `per_sample` gives the log-amplitudes
and local energies that stochastic reconfiguration needs; `evaluate` draws a
fresh, longer set of samples and reports the energy with its Monte Carlo
error, the relative error against the exact energy, the variance, split-R̂
and the autocorrelation time (and warns when R̂ > 1.05).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field

from sciml.nn import batch_apply
from sciml.parallel import batch_device_count, shard_batch
from sciml.problems import AbstractProblem, resolve_settings
from sciml.schema import PositiveInt, Section

from ._exact import ground_state, tfim_chain_energy
from ._hilbert import SpinHilbert
from ._lattice import chain, square
from ._models import FFN, RBM, Jastrow, SymmetricRBM
from ._operators import J1J2, Heisenberg, Ising
from ._sampler import MetropolisExchange, MetropolisLocal
from ._stats import check_convergence, statistics
from ._vmc import exact_energy, local_energies, log_amplitude_jacobian, vmc_loss

__all__ = ["HeisenbergChain", "J1J2Chain", "NQSModel", "TFIMChain", "TFIMSquare"]


class NQSModel(Section):
    """The variational state (`model` section of every NQS problem).

    Attributes:
        kind: `rbm` (density `alpha`), `symmetric_rbm` (translation-invariant,
            `alpha` filters), `jastrow`, `ffn` (`width` × `depth`).
        alpha: RBM hidden-unit density. width, depth: the feed-forward network.
        complex: complex parameters (needed for non-stoquastic Hamiltonians;
            real suffices for the TFIM and the Marshall-rotated Heisenberg model).
    """

    kind: Literal["rbm", "symmetric_rbm", "jastrow", "ffn"] = "rbm"
    alpha: Annotated[int, Field(ge=1, le=64)] = 1
    width: Annotated[int, Field(ge=1, le=4096)] = 32
    depth: Annotated[int, Field(ge=1, le=8)] = 1
    complex: bool = False


class VMCSettings(Section):
    """Sampling settings shared by the NQS problems (`problem` section).

    Attributes:
        n_samples: samples per step (rounded up to a multiple of `n_chains`).
        n_chains: parallel Markov chains (a multiple of `train.devices`: they are split over them).
        n_discard: sweeps each chain discards before recording, every step.
        n_thermalise: sweeps discarded once, when the chains start.
        eval_samples: samples for `evaluate` (from the current chains, not kept).
        chunk: evaluate log ψ on at most this many configurations at once (`null`: all).
        full_sum: the noise-free control: exact sums over every configuration of
            the space instead of Monte Carlo (energy, gradient, SR's matrices with
            the weights `|ψ|²/Σ|ψ|²`); for spaces of at most 2^20 states.
    """

    n_samples: PositiveInt = 1008
    n_chains: PositiveInt = 16
    n_discard: Annotated[int, Field(ge=0)] = 5
    n_thermalise: Annotated[int, Field(ge=0)] = 100
    eval_samples: PositiveInt = 16384
    chunk: PositiveInt | None = None
    full_sum: bool = False


class TFIMChainSettings(VMCSettings):
    """`nqs_tfim_chain`: `H = −J Σ σᶻσᶻ − h Σ σˣ` on a periodic chain of `n_sites`."""

    n_sites: Annotated[int, Field(ge=2, le=64)] = 20
    h: float = 1.0
    J: float = 1.0


class TFIMSquareSettings(VMCSettings):
    """`nqs_tfim_square`: the TFIM on a periodic `side × side` square lattice."""

    side: Annotated[int, Field(ge=2, le=8)] = 4
    h: float = 3.0
    J: float = 1.0


class HeisenbergSettings(VMCSettings):
    """`nqs_heisenberg_chain`: `H = J Σ σ⃗ᵢ·σ⃗ᵢ₊₁`, zero magnetisation, exchange moves.

    Attributes:
        marshall_sign: conjugate by the Marshall sign so the ground state is positive.
    """

    n_sites: Annotated[int, Field(ge=2, le=64)] = 20
    J: float = 1.0
    marshall_sign: bool = True


class J1J2Settings(VMCSettings):
    """`nqs_j1j2_chain`: `H = J1 Σ σ⃗ᵢ·σ⃗ᵢ₊₁ + J2 Σ σ⃗ᵢ·σ⃗ᵢ₊₂`, zero magnetisation."""

    n_sites: Annotated[int, Field(ge=4, le=64)] = 14
    j1: float = 1.0
    j2: float = 0.2
    marshall_sign: bool = True


# exact ground-state energies of the default problems (also checked by ED in the tests)
_KNOWN = {
    ("heisenberg", 20, 1.0, True): -35.6175461195,
    ("heisenberg", 20, 1.0, False): -35.6175461195,
    ("j1j2", 14, 1.0, 0.2, True): -23.0640144807,
    ("j1j2", 14, 1.0, 0.2, False): -23.0640144807,
    ("tfim_square", 4, 3.0, 1.0): -51.4481291332,
}

_MAX_ED_STATES = 2**21
_MAX_FULL_SUM = 2**20


class _AbstractSpinProblem(AbstractProblem):
    """VMC on a spin Hamiltonian; each subclass only says how to `build` its system."""

    settings: Section
    model_settings: NQSModel
    lattice: eqx.Module
    hilbert: SpinHilbert
    operator: eqx.Module
    sampler: eqx.Module
    exact: float = eqx.field(static=True)
    states: jax.Array | None  # every configuration (full_sum only)

    def __init__(self, settings=None, model_settings=None, **overrides):
        self.settings, self.model_settings = resolve_settings(
            type(self), settings, model_settings, overrides
        )
        self.lattice, self.hilbert, self.operator, self.sampler, self.exact = self.build(
            self.settings
        )
        self.states = None
        if self.settings.full_sum:
            if self.hilbert.n_states > _MAX_FULL_SUM:
                raise ValueError(
                    f"{type(self).__name__}: full_sum needs at most {_MAX_FULL_SUM} "
                    f"configurations; this space has {self.hilbert.n_states}"
                )
            self.states = jnp.asarray(self.hilbert.all_states(), jnp.result_type(float))

    @classmethod
    @abstractmethod
    def build(cls, settings) -> tuple:
        """`(lattice, hilbert, operator, sampler, exact_energy)` of the problem's settings."""

    metric_names: ClassVar[tuple[str, ...]] = (
        "energy",
        "energy_error",
        "exact_energy",
        "rel_error",
        "variance",
        "r_hat",
        "tau_corr",
        "acceptance",
    )
    ModelSettings: ClassVar[type] = NQSModel
    default_dtype: ClassVar[str] = "float64"
    surrogate_gradient: ClassVar[bool] = True

    def _model(self, key):
        m, n = self.model_settings, self.hilbert.n_sites
        dtype = jnp.dtype(jnp.result_type(float)).name
        if m.complex:
            dtype = "complex128" if dtype == "float64" else "complex64"
        if m.kind == "rbm":
            return RBM(n, m.alpha, param_dtype=dtype, key=key)
        if m.kind == "symmetric_rbm":
            return SymmetricRBM(self.lattice, m.alpha, param_dtype=dtype, key=key)
        if m.kind == "jastrow":
            return Jastrow(n, param_dtype=dtype, key=key)
        return FFN(n, m.width, m.depth, param_dtype=dtype, key=key)

    def init(self, key):
        km, ks, kt = jax.random.split(key, 3)
        model = self._model(km)
        if self.states is not None:  # full sum: no chains
            return model, None
        sampler_state = self.sampler.init(ks)
        s = self.settings
        samples, sampler_state = self.sampler.sample(
            model, sampler_state, kt, s.n_samples, n_discard=s.n_thermalise
        )
        return model, {"sampler": sampler_state, "samples": samples}

    def advance(self, model, state, key):
        if self.states is not None:
            return state
        # With `train.devices > 1` the chains are split over the devices: each device moves
        # its own chains, and the samples (chain-major) stay where they were drawn.
        s, devices = self.settings, batch_device_count()
        if s.n_chains % devices:
            raise ValueError(
                f"{type(self).__name__}: problem.n_chains = {s.n_chains} does not divide over "
                f"train.devices = {devices}; choose n_chains as a multiple of {devices}"
            )
        samples, sampler_state = self.sampler.sample(
            model, shard_batch(state["sampler"]), key, s.n_samples, n_discard=s.n_discard
        )
        return {"sampler": shard_batch(sampler_state), "samples": shard_batch(samples)}

    def _flat(self, state):
        samples = state["samples"]
        return shard_batch(samples.reshape(-1, samples.shape[-1]))

    def _full_sum(self, model):
        """Exact weights `|ψ|²/Σ|ψ|²` and local energies over every configuration."""
        lp = jnp.real(jax.vmap(model)(self.states))
        w = jnp.exp(2 * (lp - jnp.max(lp)))
        return jax.lax.stop_gradient(w / jnp.sum(w)), local_energies(
            self.operator, model, self.states, self.settings.chunk
        )

    def loss(self, model, state, key):
        if self.states is not None:
            p, e_loc = self._full_sum(model)
            energy = exact_energy(self.operator, model, self.states)
            e_loc = jax.lax.stop_gradient(jnp.real(e_loc))
            variance = jnp.sum(p * (e_loc - jnp.sum(p * e_loc)) ** 2)
            return energy, (state, {"energy": energy, "variance": variance})
        flat = self._flat(state)
        e_loc = local_energies(self.operator, model, flat, self.settings.chunk)
        loss, metrics = vmc_loss(lambda m, x: m(x), model, flat, e_loc)
        sampler = state["sampler"]
        metrics["acceptance"] = _acceptance(sampler)
        return loss, (state, metrics)

    def per_sample(self, model, state, key):
        if self.states is not None:
            p, e_loc = self._full_sum(model)
            return {
                "log_amplitudes": jax.vmap(model)(self.states),
                "log_amplitude_jacobian": log_amplitude_jacobian(model, self.states),
                "local_energies": jax.lax.stop_gradient(e_loc),
                "weights": p,
            }
        flat = self._flat(state)
        return {
            "log_amplitudes": batch_apply(model, flat),  # K-FAC sees the RBM's affine map
            "log_amplitude_jacobian": log_amplitude_jacobian(model, flat),
            "local_energies": jax.lax.stop_gradient(
                local_energies(self.operator, model, flat, self.settings.chunk)
            ),
        }

    def evaluate(self, model, state, key):
        s = self.settings
        if self.states is not None:
            p, e_loc = self._full_sum(model)
            e_loc = jnp.real(e_loc)
            energy = float(jnp.sum(p * e_loc))
            return {
                "energy": energy,
                "energy_error": 0.0,
                "exact_energy": self.exact,
                "rel_error": abs(energy - self.exact) / abs(self.exact),
                "variance": float(jnp.sum(p * (e_loc - energy) ** 2)),
                "r_hat": 1.0,
                "tau_corr": 0.0,
                "acceptance": 1.0,
            }
        e_loc, acceptance = _eval_energies(
            self.operator,
            self.sampler,
            model,
            state["sampler"],
            key,
            s.eval_samples,
            s.n_discard,
            s.chunk,
        )
        stats = statistics(e_loc)
        check_convergence(stats)
        energy = float(jnp.real(stats.mean))
        return {
            "energy": energy,
            "energy_error": float(stats.error_of_mean),
            "exact_energy": self.exact,
            "rel_error": abs(energy - self.exact) / abs(self.exact),
            "variance": float(stats.variance),
            "r_hat": float(stats.r_hat),
            "tau_corr": float(stats.tau_corr),
            "acceptance": float(acceptance),
        }


def _acceptance(sampler_state):
    return sampler_state.acceptance


@eqx.filter_jit
def _eval_energies(operator, sampler, model, sampler_state, key, n, n_discard, chunk):
    samples, new_state = sampler.sample(model, sampler_state, key, n, n_discard=n_discard)
    e = local_energies(operator, model, samples, chunk)
    n_acc = jnp.sum(new_state.n_accepted) - jnp.sum(sampler_state.n_accepted)
    n_prop = jnp.sum(new_state.n_proposed) - jnp.sum(sampler_state.n_proposed)
    return jnp.real(e), n_acc / jnp.maximum(n_prop, 1)


def _exact_energy(key, operator, hilbert) -> float:
    if key in _KNOWN:
        return _KNOWN[key]
    if hilbert.n_states > _MAX_ED_STATES:
        return math.nan
    return float(ground_state(operator)[0][0])


class TFIMChain(_AbstractSpinProblem):
    """Transverse-field Ising chain (periodic): exact energy from free fermions."""

    Settings: ClassVar[type] = TFIMChainSettings

    @classmethod
    def build(cls, s):
        lattice, hilbert = chain(s.n_sites), SpinHilbert(s.n_sites)
        operator = Ising(hilbert, lattice, h=s.h, J=s.J)
        if s.n_sites % 2 == 0:
            exact = float(tfim_chain_energy(s.n_sites, s.h, s.J))
        else:
            exact = _exact_energy(None, operator, hilbert)
        return lattice, hilbert, operator, MetropolisLocal(hilbert, n_chains=s.n_chains), exact


class TFIMSquare(_AbstractSpinProblem):
    """Transverse-field Ising model on a periodic square lattice."""

    Settings: ClassVar[type] = TFIMSquareSettings

    @classmethod
    def build(cls, s):
        lattice, hilbert = square(s.side), SpinHilbert(s.side**2)
        operator = Ising(hilbert, lattice, h=s.h, J=s.J)
        exact = _exact_energy(("tfim_square", s.side, s.h, s.J), operator, hilbert)
        return lattice, hilbert, operator, MetropolisLocal(hilbert, n_chains=s.n_chains), exact


class HeisenbergChain(_AbstractSpinProblem):
    """Heisenberg chain (Pauli units), zero magnetisation, exchange sampler."""

    Settings: ClassVar[type] = HeisenbergSettings

    @classmethod
    def build(cls, s):
        lattice = chain(s.n_sites)
        hilbert = SpinHilbert(s.n_sites, magnetization=s.n_sites % 2)
        operator = Heisenberg(hilbert, lattice, J=s.J, marshall_sign=s.marshall_sign)
        sampler = MetropolisExchange(hilbert, lattice, n_chains=s.n_chains)
        exact = _exact_energy(("heisenberg", s.n_sites, s.J, s.marshall_sign), operator, hilbert)
        return lattice, hilbert, operator, sampler, exact


class J1J2Chain(_AbstractSpinProblem):
    """J1-J2 chain (Pauli units), zero magnetisation, exchange moves up to distance 2."""

    Settings: ClassVar[type] = J1J2Settings

    @classmethod
    def build(cls, s):
        lattice = chain(s.n_sites)
        hilbert = SpinHilbert(s.n_sites, magnetization=s.n_sites % 2)
        operator = J1J2(hilbert, lattice, j1=s.j1, j2=s.j2, marshall_sign=s.marshall_sign)
        sampler = MetropolisExchange(hilbert, lattice, n_chains=s.n_chains, d_max=2)
        key = ("j1j2", s.n_sites, s.j1, s.j2, s.marshall_sign)
        return lattice, hilbert, operator, sampler, _exact_energy(key, operator, hilbert)
