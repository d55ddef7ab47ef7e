"""Monte Carlo samplers of |ψ(s)|²: Metropolis with local flips or exchanges, and exact sampling.

Every sampler is an `eqx.Module` of static settings; the chains live in an
explicit `SamplerState` that `init` creates and `sample` takes and returns, so
the chains persist between calls (and in checkpoints) and `sample` is a pure,
jit-able function::

    sampler = MetropolisLocal(hilbert, n_chains=16)
    state = sampler.init(key)
    samples, state = sampler.sample(model, state, key2, n_samples=1000, n_discard=5)
    # samples: (16, 63, N); the next call continues the same chains.

`log_psi` maps ONE configuration `(N,)` (entries ±1, see `SpinHilbert`) to a
scalar log ψ, real or complex; the samplers vmap it over the chains and
sample `p(s) ∝ |ψ(s)|² = exp(2 Re log ψ(s))`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._hilbert import SpinHilbert
from ._lattice import Lattice

__all__ = [
    "AbstractSampler",
    "ExactSampler",
    "MetropolisExchange",
    "MetropolisLocal",
    "SamplerState",
]

# Enumeration limit of `ExactSampler`: 2^20 configurations (N = 20 without a sector).
_MAX_EXACT_STATES = 2**20


class SamplerState(NamedTuple):
    """The chains of a sampler, carried explicitly between `sample` calls.

    Attributes:
        states: current configuration of each chain, shape `(n_chains, N)`, floating
            point with entries ±1.
        n_accepted: accepted proposals per chain since `init`, int32 `(n_chains,)`.
        n_proposed: proposals per chain since `init`, int32 `(n_chains,)`.
            (`ExactSampler` counts every draw as proposed and accepted.)

    A fixed-structure pytree of arrays: it can be checkpointed, NaN-checked and
    passed through `jax.jit`.
    """

    states: jax.Array
    n_accepted: jax.Array
    n_proposed: jax.Array

    @property
    def acceptance(self) -> jax.Array:
        """Overall acceptance rate since `init`: `Σ n_accepted / Σ n_proposed` (0 before any)."""
        return jnp.sum(self.n_accepted) / jnp.maximum(jnp.sum(self.n_proposed), 1)


class AbstractSampler(eqx.Module):
    """Interface of the samplers of `p(s) ∝ |ψ(s)|²` on a `SpinHilbert`.

    Attributes:
        hilbert: the space the configurations live in.
        n_chains: number of parallel chains (rows of `SamplerState.states`).

    Methods:
        init(key, dtype=None) -> SamplerState: chains started uniformly at random
            inside the space (inside the sector if constrained).
        sample(log_psi, state, key, n_samples, n_discard=0) -> (samples, state):
            samples of shape `(n_chains, ceil(n_samples / n_chains), N)`.
    """

    hilbert: eqx.AbstractVar[SpinHilbert]
    n_chains: eqx.AbstractVar[int]

    @abstractmethod
    def init(self, key, dtype=None) -> SamplerState:
        """Fresh chains: `n_chains` uniformly random configurations, counters at zero."""

    @abstractmethod
    def sample(self, log_psi, state: SamplerState, key, n_samples: int, n_discard: int = 0):
        """Draw about `n_samples` configurations from `|ψ|²`, continuing the chains in `state`."""


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _check_n_chains(name: str, n_chains) -> int:
    if isinstance(n_chains, bool) or not isinstance(n_chains, int | np.integer) or n_chains < 1:
        raise ValueError(f"{name}: n_chains must be an integer >= 1, got {n_chains!r}")
    return int(n_chains)


def _check_sweep(name: str, sweep_size, n_sites: int) -> int:
    if sweep_size is None:
        return n_sites
    if isinstance(sweep_size, bool) or not isinstance(sweep_size, int | np.integer):
        raise ValueError(
            f"{name}: sweep_size must be a positive integer or None, got {sweep_size!r}"
        )
    if sweep_size < 1:
        raise ValueError(f"{name}: sweep_size must be >= 1, got {sweep_size}")
    return int(sweep_size)


def _init_state(hilbert: SpinHilbert, n_chains: int, key, dtype) -> SamplerState:
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init: dtype must be a real floating dtype, got {dtype!r}")
    states = hilbert.random_states(key, n_chains, dtype)
    zeros = jnp.zeros((n_chains,), jnp.int32)
    return SamplerState(states, zeros, zeros)


def _check_call(name: str, sampler, state, n_samples, n_discard) -> int:
    """Validate the arguments of `sample`; return the number of samples per chain."""
    if not isinstance(state, SamplerState):
        raise TypeError(
            f"{name}.sample: state must be a SamplerState (from {name}.init), got {type(state)}"
        )
    shape = jnp.shape(state.states)
    expected = (sampler.n_chains, sampler.hilbert.n_sites)
    if shape != expected:
        raise ValueError(
            f"{name}.sample: state.states must have shape (n_chains, N) = {expected}, got {shape}"
        )
    if not jnp.issubdtype(jnp.result_type(state.states), jnp.floating):
        raise TypeError(
            f"{name}.sample: state.states must be floating point (entries ±1), got dtype "
            f"{jnp.result_type(state.states)}"
        )
    for field in ("n_accepted", "n_proposed"):
        if jnp.shape(getattr(state, field)) != (sampler.n_chains,):
            raise ValueError(
                f"{name}.sample: state.{field} must have shape ({sampler.n_chains},), got "
                f"{jnp.shape(getattr(state, field))}"
            )
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"{name}.sample: n_samples must be an integer >= 1, got {n_samples!r}")
    if isinstance(n_discard, bool) or not isinstance(n_discard, int | np.integer) or n_discard < 0:
        raise ValueError(f"{name}.sample: n_discard must be an integer >= 0, got {n_discard!r}")
    return -(-int(n_samples) // sampler.n_chains)


def _batched_log_prob(name: str, log_psi, example):
    """`x (B, N) -> 2 Re log ψ(x)` (B,), after checking at trace time that log ψ is a scalar."""
    out = jax.eval_shape(log_psi, example)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(
            f"{name}.sample: log_psi must map ONE configuration of shape {example.shape} to a "
            f"scalar log ψ (the sampler vmaps it over chains), got {got}"
        )
    if not jnp.issubdtype(out.dtype, jnp.inexact):
        raise TypeError(
            f"{name}.sample: log_psi must return a real or complex float, got dtype {out.dtype}"
        )
    return lambda x: 2 * jnp.real(jax.vmap(log_psi)(x))


@eqx.filter_jit
def _metropolis(sampler, log_psi, state, key, n_per_chain, n_discard):
    """Run `n_discard` thrown-away sweeps, then record one configuration per sweep."""
    name = type(sampler).__name__
    log_prob = _batched_log_prob(name, log_psi, state.states[0])
    n_chains, n_sites = state.states.shape
    sweep = sampler.sweep_size

    def step(_, carry):
        states, lp, n_acc, key = carry
        key, k_prop, k_acc = jax.random.split(key, 3)
        proposed = sampler._propose(k_prop, states)
        lp_new = log_prob(proposed)
        # Symmetric proposals: accept with min(1, |ψ(s')/ψ(s)|²). From a zero-amplitude state
        # (lp = -inf) any finite proposal is accepted; -inf -> -inf gives NaN: rejected.
        log_u = jnp.log(jax.random.uniform(k_acc, (n_chains,), lp.dtype))
        accept = log_u < lp_new - lp
        states = jnp.where(accept[:, None], proposed, states)
        lp = jnp.where(accept, lp_new, lp)
        return states, lp, n_acc + accept.astype(n_acc.dtype), key

    def run_sweep(carry):
        return jax.lax.fori_loop(0, sweep, step, carry)

    k_discard, k_record = jax.random.split(key)
    carry = (state.states, log_prob(state.states), state.n_accepted, k_discard)
    carry = jax.lax.fori_loop(0, n_discard, lambda _, c: run_sweep(c), carry)
    carry = (*carry[:3], k_record)

    def record(c, _):
        c = run_sweep(c)
        return c, c[0]

    (states, _, n_acc, _), trace = jax.lax.scan(record, carry, None, length=n_per_chain)
    n_prop = state.n_proposed + jnp.asarray((n_discard + n_per_chain) * sweep, jnp.int32)
    samples = jnp.swapaxes(trace, 0, 1)  # (n_chains, n_per_chain, N)
    return samples, SamplerState(states, n_acc, n_prop)


_SAMPLE_DOC = """Draw samples of `|ψ|²` with Metropolis, continuing the chains in `state`.

        Each chain first runs `n_discard` sweeps that are thrown away
        (thermalisation), then records its configuration after each of
        `ceil(n_samples / n_chains)` sweeps; a sweep is `sweep_size` proposals.
        A proposal `s → s'` is accepted when `log u < 2 Re[log ψ(s') − log ψ(s)]`
        with `u ~ U(0, 1)` (log ψ of the current configurations is cached).

        Args:
            log_psi: maps ONE configuration `(N,)` to a scalar log ψ (real or
                complex), e.g. a model from `sciml.nqs`. Pass an `eqx.Module` (or
                an `eqx.Partial`) rather than a fresh lambda so repeated calls reuse
                the compiled program; inside an outer `jit` anything works.
            state: the chains (`SamplerState` from `init` or a previous call).
            key: PRNG key.
            n_samples: total samples wanted, rounded UP to a multiple of `n_chains`.
            n_discard: sweeps per chain discarded before recording (>= 0).

        Returns:
            `(samples, new_state)`: samples of shape `(n_chains, n_per_chain, N)`
            in the dtype of `state.states`, `n_per_chain = ceil(n_samples / n_chains)`;
            `new_state.states == samples[:, -1]` and the counters include every
            proposal of this call (discarded sweeps too).

        Raises:
            ValueError/TypeError: a state of the wrong shape or dtype, `n_samples < 1`,
                `n_discard < 0`, or a `log_psi` that does not return one scalar.
        """


class MetropolisLocal(AbstractSampler):
    """Metropolis sampling of `|ψ|²` with single spin flips: `s_i → −s_i`, `i` uniform.

    For the unconstrained space only: a flip changes the magnetisation, so a
    magnetisation sector is refused (use `MetropolisExchange` there).

    Args:
        hilbert: an unconstrained `SpinHilbert`.
        n_chains: parallel chains (default 16).
        sweep_size: proposals between recorded samples (default `N`, one sweep).

    Raises:
        ValueError: a constrained `hilbert`, `n_chains < 1` or `sweep_size < 1`.

    Example:
        >>> sampler = MetropolisLocal(SpinHilbert(10))
        >>> state = sampler.init(jax.random.key(0))
        >>> samples, state = sampler.sample(model, state, jax.random.key(1), 1000, n_discard=5)
    """

    hilbert: SpinHilbert
    n_chains: int = eqx.field(static=True)
    sweep_size: int = eqx.field(static=True)

    def __init__(self, hilbert: SpinHilbert, n_chains: int = 16, sweep_size: int | None = None):
        if not isinstance(hilbert, SpinHilbert):
            raise TypeError(f"MetropolisLocal: hilbert must be a SpinHilbert, got {type(hilbert)}")
        if hilbert.constrained:
            raise ValueError(
                "MetropolisLocal: the local rule flips one spin, which changes the magnetisation "
                f"and leaves the sector M = {hilbert.magnetization} of this SpinHilbert; use "
                "MetropolisExchange(hilbert, lattice) for a constrained space, or "
                "SpinHilbert(N) without magnetization"
            )
        self.hilbert = hilbert
        self.n_chains = _check_n_chains("MetropolisLocal", n_chains)
        self.sweep_size = _check_sweep("MetropolisLocal", sweep_size, hilbert.n_sites)

    def init(self, key, dtype=None) -> SamplerState:
        """Fresh chains: `n_chains` uniformly random configurations, counters at zero.

        Args:
            key: PRNG key.
            dtype: floating dtype of the configurations (default: JAX's default float).
        """
        return _init_state(self.hilbert, self.n_chains, key, dtype)

    def _propose(self, key, states):
        n_chains, n_sites = states.shape
        site = jax.random.randint(key, (n_chains,), 0, n_sites)
        return states * (1 - 2 * jax.nn.one_hot(site, n_sites, dtype=states.dtype))

    def sample(self, log_psi, state: SamplerState, key, n_samples: int, n_discard: int = 0):
        n_per_chain = _check_call("MetropolisLocal", self, state, n_samples, n_discard)
        return _metropolis(self, log_psi, state, key, n_per_chain, int(n_discard))

    sample.__doc__ = _SAMPLE_DOC


class MetropolisExchange(AbstractSampler):
    """Metropolis sampling of `|ψ|²` with exchanges `s_i ↔ s_j` over lattice bonds.

    Each proposal picks one bond `(i, j)` uniformly among the lattice bonds within
    graph distance `d_max` (1: nearest neighbours, `lattice.bonds(1)`; 2: also
    next-nearest, `lattice.bonds(2)`) and swaps the two spins (a no-op, hence
    accepted, when `s_i = s_j`). The magnetisation is conserved exactly, so the
    space must be a magnetisation sector (`SpinHilbert(N, magnetization=M)`);
    chains start uniformly inside it. On an unconstrained space the chains could
    never leave their starting sectors (not ergodic), so that is refused.

    Args:
        hilbert: a `SpinHilbert` with a `magnetization`.
        lattice: a `Lattice` with the same number of sites.
        n_chains: parallel chains (default 16).
        d_max: 1 or 2, the largest bond order proposed.
        sweep_size: proposals between recorded samples (default `N`, one sweep).

    Raises:
        ValueError: an unconstrained `hilbert`, a lattice of another size or without
            bonds, `d_max` not in {1, 2}, `n_chains < 1` or `sweep_size < 1`.
    """

    hilbert: SpinHilbert
    n_chains: int = eqx.field(static=True)
    d_max: int = eqx.field(static=True)
    sweep_size: int = eqx.field(static=True)
    bonds: tuple = eqx.field(static=True)  # ((i, j), ...) proposed pairs

    def __init__(
        self,
        hilbert: SpinHilbert,
        lattice: Lattice,
        n_chains: int = 16,
        d_max: int = 1,
        sweep_size: int | None = None,
    ):
        if not isinstance(hilbert, SpinHilbert):
            raise TypeError(
                f"MetropolisExchange: hilbert must be a SpinHilbert, got {type(hilbert)}"
            )
        if not isinstance(lattice, Lattice):
            raise TypeError(f"MetropolisExchange: lattice must be a Lattice, got {type(lattice)}")
        if not hilbert.constrained:
            raise ValueError(
                "MetropolisExchange: exchanges conserve the magnetisation, so on an unconstrained "
                "SpinHilbert each chain would stay in its starting sector (not ergodic); use "
                "SpinHilbert(N, magnetization=M) for a sector, or MetropolisLocal for the full "
                "space"
            )
        if lattice.n_sites != hilbert.n_sites:
            raise ValueError(
                f"MetropolisExchange: the lattice has {lattice.n_sites} sites but the hilbert "
                f"space {hilbert.n_sites}"
            )
        if d_max not in (1, 2) or isinstance(d_max, bool):
            raise ValueError(
                f"MetropolisExchange: d_max must be 1 (nearest-neighbour exchanges) or 2 (also "
                f"next-nearest), got {d_max!r}"
            )
        bonds = np.concatenate([lattice.bonds(order) for order in range(1, d_max + 1)])
        if len(bonds) == 0:
            raise ValueError(
                f"MetropolisExchange: the lattice has no bonds up to order {d_max} to exchange on"
            )
        self.hilbert = hilbert
        self.n_chains = _check_n_chains("MetropolisExchange", n_chains)
        self.d_max = int(d_max)
        self.sweep_size = _check_sweep("MetropolisExchange", sweep_size, hilbert.n_sites)
        self.bonds = tuple((int(i), int(j)) for i, j in bonds)

    def init(self, key, dtype=None) -> SamplerState:
        """Fresh chains: `n_chains` uniformly random configurations of the sector.

        Args:
            key: PRNG key.
            dtype: floating dtype of the configurations (default: JAX's default float).
        """
        return _init_state(self.hilbert, self.n_chains, key, dtype)

    def _propose(self, key, states):
        n_chains, n_sites = states.shape
        bonds = jnp.asarray(self.bonds, jnp.int32)
        pick = bonds[jax.random.randint(key, (n_chains,), 0, len(self.bonds))]
        one_i = jax.nn.one_hot(pick[:, 0], n_sites, dtype=states.dtype)
        one_j = jax.nn.one_hot(pick[:, 1], n_sites, dtype=states.dtype)
        s_i = jnp.sum(states * one_i, axis=1, keepdims=True)
        s_j = jnp.sum(states * one_j, axis=1, keepdims=True)
        # Exact in floating point: the entries are ±1 and the changes 0 or ±2.
        return states + (s_j - s_i) * one_i + (s_i - s_j) * one_j

    def sample(self, log_psi, state: SamplerState, key, n_samples: int, n_discard: int = 0):
        n_per_chain = _check_call("MetropolisExchange", self, state, n_samples, n_discard)
        return _metropolis(self, log_psi, state, key, n_per_chain, int(n_discard))

    sample.__doc__ = _SAMPLE_DOC


class ExactSampler(AbstractSampler):
    """Independent draws from `|ψ|²` by enumerating every configuration (small spaces only).

    Evaluates log ψ on all configurations of `hilbert` (the sector if constrained),
    forms `p ∝ exp(2 Re log ψ)` and draws by inverting the cumulative distribution
    (the same law as `jax.random.categorical`, without its
    `n_samples × n_states` Gumbel noise). Samples are exact and independent, so
    `n_discard` is ignored; the state's `states` are the last draws of each
    "chain" and every draw counts as one accepted proposal.

    Args:
        hilbert: a `SpinHilbert` with at most 2^20 configurations (N <= 20 without
            a sector).
        n_chains: how many rows the samples are arranged in (default 16), so the
            output has the shape of the Metropolis samplers'.
        chunk_size: evaluate log ψ on this many configurations at a time
            (`jax.lax.map`), to bound memory; `None`: all at once.

    Raises:
        ValueError: too many configurations, `n_chains < 1` or `chunk_size < 1`.
    """

    hilbert: SpinHilbert
    n_chains: int = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)

    def __init__(self, hilbert: SpinHilbert, n_chains: int = 16, chunk_size: int | None = None):
        if not isinstance(hilbert, SpinHilbert):
            raise TypeError(f"ExactSampler: hilbert must be a SpinHilbert, got {type(hilbert)}")
        if hilbert.n_states > _MAX_EXACT_STATES:
            raise ValueError(
                f"ExactSampler: enumerating {hilbert.n_states} configurations ({hilbert.n_sites} "
                f"sites) is too many; exact sampling handles up to {_MAX_EXACT_STATES} (about 20 "
                "sites): use MetropolisLocal or MetropolisExchange"
            )
        if chunk_size is not None and (
            not isinstance(chunk_size, int | np.integer) or chunk_size < 1
        ):
            raise ValueError(f"ExactSampler: chunk_size must be >= 1 or None, got {chunk_size!r}")
        self.hilbert = hilbert
        self.n_chains = _check_n_chains("ExactSampler", n_chains)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    def init(self, key, dtype=None) -> SamplerState:
        """A state of `n_chains` uniformly random configurations, counters at zero.

        Args:
            key: PRNG key.
            dtype: floating dtype of the configurations (default: JAX's default float).
        """
        return _init_state(self.hilbert, self.n_chains, key, dtype)

    def all_states(self, dtype) -> jax.Array:
        """Every configuration of the space in the ED basis order, shape `(n_states, N)`.

        Built from integer codes inside the program (no large embedded constant
        without a sector)."""
        n = self.hilbert.n_sites
        if self.hilbert.constrained:
            codes = jnp.asarray(self.hilbert.all_codes(), jnp.int32)
        else:
            codes = jnp.arange(2**n, dtype=jnp.int32)
        shifts = jnp.arange(n - 1, -1, -1, dtype=jnp.int32)
        bits = (codes[:, None] >> shifts) & 1
        return (1 - 2 * bits).astype(dtype)

    def probabilities(self, log_psi, dtype=None) -> tuple[jax.Array, jax.Array]:
        """`(states, p)`: every configuration and its normalised `|ψ|²` (the full-sum weights).

        Args:
            log_psi: ONE configuration `(N,)` -> scalar log ψ.
            dtype: floating dtype of the configurations (default: JAX's default float).

        Returns:
            `states` `(n_states, N)` in the ED basis order and `p` `(n_states,)`, summing to 1.
        """
        states = self.all_states(dtype or jnp.result_type(float))
        logits = self._log_probs(log_psi, states)
        return states, jax.nn.softmax(logits)

    def _log_probs(self, log_psi, states):
        log_prob = _batched_log_prob("ExactSampler", log_psi, states[0])
        if self.chunk_size is None:
            return log_prob(states)
        one = lambda s: log_prob(s[None])[0]  # noqa: E731
        return jax.lax.map(one, states, batch_size=self.chunk_size)

    def sample(self, log_psi, state: SamplerState, key, n_samples: int, n_discard: int = 0):
        """Draw independent samples of `|ψ|²` by enumeration.

        Args:
            log_psi: ONE configuration `(N,)` -> scalar log ψ (real or complex).
            state: a `SamplerState` (only its shapes and dtype are used; it is
                carried so all samplers share one interface).
            key: PRNG key.
            n_samples: total samples, rounded UP to a multiple of `n_chains`.
            n_discard: ignored (the draws are exact).

        Returns:
            `(samples, new_state)`: samples `(n_chains, ceil(n_samples / n_chains), N)`;
            `new_state.states = samples[:, -1]`, counters increased by the draws.

        Raises:
            ValueError/TypeError: bad state, `n_samples < 1`, `n_discard < 0`, or a
                `log_psi` that does not return one scalar.
        """
        n_per_chain = _check_call("ExactSampler", self, state, n_samples, n_discard)
        return _exact(self, log_psi, state, key, n_per_chain)


@eqx.filter_jit
def _exact(sampler, log_psi, state, key, n_per_chain):
    states = sampler.all_states(state.states.dtype)
    logits = sampler._log_probs(log_psi, states)
    weights = jnp.exp(logits - jnp.max(logits))
    cdf = jnp.cumsum(weights)
    n = sampler.n_chains * n_per_chain
    u = jax.random.uniform(key, (n,), cdf.dtype) * cdf[-1]
    # First index with cdf > u: zero-weight configurations are never drawn.
    idx = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    samples = states[idx].reshape(sampler.n_chains, n_per_chain, -1)
    count = jnp.asarray(n_per_chain, jnp.int32)
    new = SamplerState(samples[:, -1], state.n_accepted + count, state.n_proposed + count)
    return samples, new
