"""NetKet side of `nqs_vs_netket.py`; runs in NetKet's own venv (requirements-netket.txt).

Never imports sciml. Serves requests, one JSON object per stdin line, one
JSON reply per line on the ORIGINAL stdout (NetKet's own prints are sent to
stderr); the first line printed is the versions `{"netket", "jax", ...}`:

    {"cmd": "setup", "name": NAME, "problem": "tfim"|"heisenberg", "n_sites", "h", "J",
     "n_chains", "n_samples", "n_discard", "n_thermalise", "lr", "diag_shift", "solver",
     "params", "seed", "warmup"}                              -> {"params", "compile_s", ...}
    {"cmd": "check", "name": NAME, "params", "samples"}       -> log ψ, E_loc, SR direction
    {"cmd": "train", "name": NAME, "params", "seed", "steps", "eval_samples"}
                                                              -> {"s_per_step", "energy", ...}
    {"cmd": "quit"}

`params` is the RBM in sciml's layout, `{"visible_bias": (N,), "hidden_bias":
(M,), "weights": (M, N)}` (lists); NetKet's `RBM` holds `visible_bias`,
`Dense.bias` and `Dense.kernel = weights.T` (`log ψ(s) = Σ log cosh(sW + b) + a·s`,
the same function).

The systems (sciml's conventions in brackets, see the driver's docstring):

* `tfim`: `nk.operator.Ising(Spin(1/2, N), Chain(N, pbc=True), h=h, J=-J)`:
  NetKet's `H = -h Σ σˣ + J Σ σᶻσᶻ` [sciml: `H = -J Σ σᶻσᶻ - h Σ σˣ`];
  `MetropolisLocal`.
* `heisenberg`: `nk.operator.Heisenberg(Spin(1/2, N, total_sz=0), Chain(N),
  J=J, sign_rule=True)`: per bond `J (σᶻσᶻ - 2 (σ⁺σ⁻ + σ⁻σ⁺))` in Pauli units,
  Marshall-rotated [sciml: `Heisenberg(marshall_sign=True)`];
  `MetropolisExchange(graph=..., d_max=1)`.

Both samplers: `n_chains` chains, `sweep_size = N` proposals per recorded
sample (NetKet's default, sciml's sweep), `n_discard_per_chain = n_discard`
sweeps thrown away before each step's samples [sciml: `n_discard` sweeps],
chains carried over between steps (`reset_chains=False`), and, as sciml's
problems do, `n_thermalise` sweeps once when the chains start.

The optimiser is `nk.driver.VMC_SR(H, optax.sgd(lr), diag_shift=λ,
use_ntk=False, on_the_fly=False, mode="real", linear_solver=solver)`, the
dense QGT path (`S + λI` of size P × P, solved by
`nk.optimizer.solver.cholesky_with_fallback`: Cholesky, with a smoothed
pseudo-inverse under `lax.cond` only when the result is not finite). Its
update is `θ ← θ - lr (S + λI)⁻¹ 2F` (`F = Re⟨ΔO* ΔE⟩`; NetKet's `dv = 2 ΔE/√n`),
i.e. twice sciml's at the same nominal learning rate: the driver passes the
learning rate that makes the updates equal (see its docstring), and `check`
measures the factor.
"""

from __future__ import annotations

import json
import os
import sys
import time

# NetKet prints (driver choices, warnings) must not reach the protocol stream.
_PROTO = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import netket as nk  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _reply(obj) -> None:
    _PROTO.write(json.dumps(obj) + "\n")
    _PROTO.flush()


def _versions() -> dict:
    from importlib.metadata import version

    pk = ("netket", "jax", "jaxlib", "flax", "optax", "numpy", "numba")
    return {p: version(p) for p in pk} | {"platform": jax.devices()[0].platform}


def to_netket(params: dict) -> dict:
    """sciml's RBM layout -> NetKet's `RBM` parameters (float64)."""
    w = np.asarray(params["weights"], np.float64)
    return {
        "Dense": {
            "kernel": jnp.asarray(w.T),
            "bias": jnp.asarray(np.asarray(params["hidden_bias"], np.float64)),
        },
        "visible_bias": jnp.asarray(np.asarray(params["visible_bias"], np.float64)),
    }


def to_sciml(tree: dict) -> dict:
    """NetKet's `RBM` pytree (parameters or an update) -> sciml's layout (lists)."""
    return {
        "visible_bias": np.asarray(tree["visible_bias"]).tolist(),
        "hidden_bias": np.asarray(tree["Dense"]["bias"]).tolist(),
        "weights": np.asarray(tree["Dense"]["kernel"]).T.tolist(),
    }


_SOLVERS = {
    "cholesky_with_fallback": nk.optimizer.solver.cholesky_with_fallback,
    "cholesky": nk.optimizer.solver.cholesky,
}


class NetketVMC:
    """One system (Hamiltonian, sampler, model, driver settings) of a `setup` request."""

    def __init__(self, spec: dict):
        n = int(spec["n_sites"])
        self.spec = spec
        self.graph = nk.graph.Chain(n, pbc=True)
        if spec["problem"] == "tfim":
            self.hilbert = nk.hilbert.Spin(0.5, n)
            # NetKet: H = -h Σ σx + J Σ σz σz; sciml's ferromagnetic J > 0 is NetKet's -J
            self.hamiltonian = nk.operator.Ising(
                self.hilbert, self.graph, h=float(spec["h"]), J=-float(spec["J"])
            )
            self.sampler = nk.sampler.MetropolisLocal(self.hilbert, n_chains=spec["n_chains"])
        elif spec["problem"] == "heisenberg":
            self.hilbert = nk.hilbert.Spin(0.5, n, total_sz=0)
            self.hamiltonian = nk.operator.Heisenberg(
                self.hilbert, self.graph, J=float(spec["J"]), sign_rule=True
            )
            self.sampler = nk.sampler.MetropolisExchange(
                self.hilbert, graph=self.graph, d_max=1, n_chains=spec["n_chains"]
            )
        else:
            raise ValueError(f"unknown problem {spec['problem']!r}; allowed: tfim, heisenberg")
        self.model = nk.models.RBM(alpha=1, param_dtype=float)
        self.solver = _SOLVERS[spec.get("solver", "cholesky_with_fallback")]

    def _state(self, params: dict, seed: int, n_samples: int | None = None):
        s = self.spec
        vs = nk.vqs.MCState(
            self.sampler,
            self.model,
            n_samples=n_samples or s["n_samples"],
            n_discard_per_chain=s["n_discard"],
            seed=seed,
            sampler_seed=seed,
        )
        vs.parameters = to_netket(params)
        return vs

    def _driver(self, vs):
        s = self.spec
        return nk.driver.VMC_SR(
            self.hamiltonian,
            optax.sgd(s["lr"]),
            diag_shift=s["diag_shift"],
            variational_state=vs,
            linear_solver=self.solver,
            use_ntk=False,
            on_the_fly=False,
            mode="real",
        )

    def n_parameters(self, params: dict) -> int:
        return int(sum(x.size for x in jax.tree.leaves(to_netket(params))))

    def run(self, params: dict, seed: int, steps: int) -> tuple[float, object]:
        """Thermalise fresh chains, then `steps` VMC_SR iterations; (seconds of those, state)."""
        vs = self._state(params, seed)
        # sciml's problems thermalise once with n_thermalise sweeps when the chains start
        jax.block_until_ready(vs.sample(n_discard_per_chain=self.spec["n_thermalise"]))
        vs.reset()  # the next step draws fresh samples, continuing these chains
        driver = self._driver(vs)
        t0 = time.perf_counter()
        driver.run(steps, out=(), show_progress=False)
        jax.block_until_ready(vs.parameters)
        return time.perf_counter() - t0, vs

    def warmup(self, params: dict, seed: int, steps: int) -> dict:
        """Compile everything: a first short run minus a second one of the same length."""
        first, _ = self.run(params, seed, steps)
        again, _ = self.run(params, seed, steps)
        return {"compile_s": first - again, "first_run_s": first, "warm_run_s": again}

    def train(self, params: dict, seed: int, steps: int, eval_samples: int) -> dict:
        seconds, vs = self.run(params, seed, steps)
        t0 = time.perf_counter()
        vs.n_samples = eval_samples  # fresh samples from the same chains, n_discard sweeps first
        vs.reset()
        stats = vs.expect(self.hamiltonian)
        eval_s = time.perf_counter() - t0
        acc = getattr(vs.sampler_state, "acceptance", None)
        return {
            "s_per_step": seconds / steps,
            "train_s": seconds,
            "steps": steps,
            "energy": float(np.real(stats.mean)),
            "energy_error": float(stats.error_of_mean),
            "variance": float(stats.variance),
            "r_hat": float(stats.R_hat),
            "tau_corr": float(stats.tau_corr),
            "acceptance": None if acc is None else float(acc),
            "eval_samples": int(vs.n_samples),
            "eval_s": eval_s,
            "params_finite": bool(
                all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(vs.parameters))
            ),
        }

    def check(self, params: dict, samples) -> dict:
        """log ψ, local energies and the SR direction `dp` (update = -lr dp) at given samples."""
        from netket._src.ngd.sr_srt_common import sr

        p = to_netket(params)
        x = jnp.asarray(np.asarray(samples, np.float64))
        apply = self.model.apply

        def log_psi(v):
            return apply({"params": p}, v)

        xp, mels = self.hamiltonian.get_conn_padded(x)
        lp = log_psi(x)
        lp_conn = log_psi(xp.reshape(-1, x.shape[-1])).reshape(mels.shape)
        e_loc = jnp.sum(mels * jnp.exp(lp_conn - lp[:, None]), axis=-1)
        dp, _, _ = sr(
            apply,
            e_loc,
            p,
            {},
            x,
            diag_shift=self.spec["diag_shift"],
            solver_fn=self.solver,
            mode="real",
        )
        return {
            "log_psi": np.asarray(lp).tolist(),
            "e_loc": np.asarray(jnp.real(e_loc)).tolist(),
            "sr_direction": to_sciml(dp),
            "hilbert_local_states": np.asarray(self.hilbert.local_states).tolist(),
        }


def serve() -> None:
    systems: dict[str, NetketVMC] = {}
    _reply(_versions())
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "setup":
                v = systems[req["name"]] = NetketVMC(req)
                reply = {"params": v.n_parameters(req["params"])}
                if req.get("warmup", 0):
                    reply |= v.warmup(req["params"], req["seed"], req["warmup"])
            elif cmd == "check":
                reply = systems[req["name"]].check(req["params"], req["samples"])
            elif cmd == "train":
                v = systems[req["name"]]
                reply = v.train(req["params"], req["seed"], req["steps"], req["eval_samples"])
            else:
                reply = {"error": f"unknown cmd {cmd!r}"}
        except Exception as e:  # noqa: BLE001 -- report to the driver
            import traceback

            traceback.print_exc()
            reply = {"error": repr(e)}
        _reply(reply)


if __name__ == "__main__":
    serve()
