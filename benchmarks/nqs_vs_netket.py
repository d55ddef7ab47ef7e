"""sciml.nqs against NetKet 3.23: seconds per VMC iteration and the energy reached.

The same variational Monte Carlo on both sides (NetKet runs in its own venv,
a long-lived subprocess `benchmarks/_netket_worker.py`):

* systems (`--problems`), periodic chains of N = 20, Pauli units:
  `tfim`: sciml `nqs_tfim_chain`, `H = -J Σ σᶻσᶻ - h Σ σˣ`, J = h = 1
  (NetKet `Ising(h=1, J=-1)`: NetKet writes `H = -h Σ σˣ + J Σ σᶻσᶻ`),
  E0 = -25.4909896864; `heisenberg`: sciml `nqs_heisenberg_chain`,
  `H = Σ σ⃗ᵢ·σ⃗ᵢ₊₁` on total Sz = 0 with the Marshall sign (NetKet
  `Heisenberg(J=1, sign_rule=True)` on `Spin(1/2, 20, total_sz=0)`: the
  same bond matrix, `σᶻσᶻ ∓ 2 exchange`), E0 = -35.6175461195.
* model: RBM α = 1, real float64 parameters, visible bias on (sciml
  `model.kind=rbm`, NetKet `nk.models.RBM(alpha=1, param_dtype=float)`,
  440 parameters). Both sides start from THE SAME parameters: sciml's
  initial model for the seed, copied into NetKet's `RBM`.
* sampler: Metropolis with single flips (`tfim`) or nearest-neighbour
  exchanges (`heisenberg`, d_max = 1 on both sides), 16 chains, 1008 samples
  per iteration (63 per chain); a recorded sample every sweep of N
  proposals; before each iteration's samples `n_discard = 5` sweeps are
  thrown away (sciml: `n_discard` counts sweeps; NetKet:
  `n_discard_per_chain` counts samples, each one sweep of `sweep_size = N`);
  chains persist between iterations; 100 thermalisation sweeps when the
  chains start (sciml's `n_thermalise`; on NetKet one `vstate.sample(
  n_discard_per_chain=100)` before the driver starts).
* optimiser: dense SR with diagonal shift 0.01 and plain SGD. sciml:
  `stochastic_reconfiguration(0.02, 0.01, solver="dense")`, `θ ← θ - η (S +
  λI)⁻¹ F` with `F = Re⟨ΔO* ΔE⟩` (Cholesky, with an eigen-solve fallback
  under `lax.cond`, run only when the Cholesky result is not finite), the
  per-sample Jacobian from the problem's `per_sample` hook (one reverse pass
  per sample). NetKet: `VMC_SR(H, optax.sgd(η'), diag_shift=0.01,
  use_ntk=False, on_the_fly=False, mode="real")`, the dense QGT with
  `cholesky_with_fallback` (NetKet's default; its fallback runs under
  `lax.cond`, only when needed). NetKet's right-hand side is `2F` (the full
  energy gradient), so its update at the same nominal rate is twice
  sciml's: by default η' = η / 2 = 0.01, which makes the two updates equal
  (`--netket-lr` overrides; the `check` below measures the factor).
* evaluation: after `--steps` iterations, `--eval-samples` fresh samples
  from the current chains (after `n_discard` sweeps); energy, its Monte
  Carlo error, `rel_error = |E - E0| / |E0|`, variance, R̂.

Before timing, a `check` compares the two libraries on the same 64
configurations (sciml's thermalised chains) and parameters: log ψ, local
energies (which pins down the Hamiltonian conventions) and the SR direction
(the ratio NetKet / sciml; 2 expected, see above).

Timing: seconds per iteration after compilation. sciml: `sciml.trainer.fit`
(`train_time_s / steps`: the compiled chunks of `--chunk` steps, as fit
reports it; fit compiles before it starts timing). NetKet: wall time of
`driver.run(steps, out=(), show_progress=False)` (no loggers, no progress
bar) after a warm-up run that compiled everything. Both from the same
initial parameters; round r uses seed `--seeds[r % len(seeds)]`
(initialisation and chains). The process pins itself to one core (`--cpu`,
default the last allowed), the worker inherits it; the sides alternate in a
shuffled order in each of `--repeats` rounds. Reported: medians, the ratio
of medians sciml / NetKet and the median of per-round ratios (target <= 1).

Output: markdown on stdout, JSON in `benchmarks/results/nqs_vs_netket.json`
(`--quick`: a temporary file).

    python benchmarks/nqs_vs_netket.py [--steps 300] [--repeats 3] [--seeds 0 1 2]
        [--problems tfim heisenberg] [--netket-python PATH] [--cpu N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import PeerWorker, sciml_version, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "nqs_vs_netket.json"
VENV_PY = Path("/work/netket_venv/bin/python")
WORKER = ROOT / "benchmarks" / "_netket_worker.py"
SCIML, NETKET = "sciml", "netket"
TARGET = 1.0  # sciml / NetKet seconds per iteration (the issue)
PROBLEMS = {  # name -> (sciml problem, system settings)
    "tfim": ("nqs_tfim_chain", {"n_sites": 20, "h": 1.0, "J": 1.0}),
    "heisenberg": ("nqs_heisenberg_chain", {"n_sites": 20, "J": 1.0}),
}


def default_python() -> Path:
    env = os.environ.get("NETKET_PYTHON")
    return Path(env) if env else VENV_PY


def pin_to_one_core(cpu: int | None) -> int:
    """Restrict this process (and its children) to one core; returns it."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


# --- sciml side -------------------------------------------------------------------------------


def build(problem: str, a):
    import sciml.nqs.problems  # noqa: F401 -- registers the NQS problems
    from sciml.problems import build_problem

    name, system = PROBLEMS[problem]
    settings = {
        **system,
        "n_samples": a.n_samples,
        "n_chains": a.n_chains,
        "n_discard": a.n_discard,
        "n_thermalise": a.n_thermalise,
        "eval_samples": a.eval_samples,
    }
    return build_problem(name, settings, {"kind": "rbm", "alpha": 1})


def sciml_optimizer(a):
    from sciml.nqs import stochastic_reconfiguration

    return stochastic_reconfiguration(a.lr, a.diag_shift, solver="dense")


def initial(problem, a, seed: int):
    """sciml's initial RBM and problem state of `seed` (what `fit` starts from)."""
    from sciml.trainer._state import init_train_state, join_model

    ts, static = init_train_state(problem, sciml_optimizer(a), seed)
    return join_model(ts.params, ts.buffers, static), ts.problem_state


def rbm_params(model) -> dict:
    return {
        "visible_bias": np.asarray(model.visible_bias).tolist(),
        "hidden_bias": np.asarray(model.hidden_bias).tolist(),
        "weights": np.asarray(model.weights).tolist(),
    }


def sciml_check(problem, model, samples, a) -> dict:
    """log ψ, local energies and the SR direction `δ` (update = -η δ) at `samples`."""
    import equinox as eqx

    from sciml.nqs._vmc import local_energies, vmc_loss

    x = jnp.asarray(samples)
    e_loc = local_energies(problem.operator, model, x)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        return vmc_loss(lambda m, s: m(s), eqx.combine(p, static), x, e_loc)[0]

    grads = jax.grad(loss)(params)

    def per_sample(p):
        m = eqx.combine(p, static)
        return {"log_amplitudes": jax.vmap(m)(x), "local_energies": e_loc}

    opt = sciml_optimizer(a)
    updates, _ = opt.update(grads, opt.init(params), params, per_sample_fn=per_sample)
    delta = jax.tree.map(lambda u: -u / a.lr, updates)
    return {
        "log_psi": np.asarray(jax.vmap(model)(x)),
        "e_loc": np.asarray(e_loc),
        "sr_direction": rbm_params(delta),
    }


def compare(sc: dict, nk: dict) -> dict:
    def flat(d):
        return np.concatenate([np.ravel(d[k]) for k in ("visible_bias", "hidden_bias", "weights")])

    ds, dn = flat(sc["sr_direction"]), flat(nk["sr_direction"])
    ratio = float(dn @ ds / (ds @ ds))
    e_s, e_n = np.asarray(sc["e_loc"]), np.asarray(nk["e_loc"])
    return {
        "log_psi_max_abs_diff": float(np.max(np.abs(sc["log_psi"] - np.asarray(nk["log_psi"])))),
        "e_loc_max_abs_diff": float(np.max(np.abs(e_s - e_n))),
        "e_loc_mean": [float(e_s.mean()), float(e_n.mean())],
        "sr_direction_ratio_netket_over_sciml": ratio,
        "sr_direction_rel_residual": float(np.linalg.norm(dn - ratio * ds) / np.linalg.norm(dn)),
        "netket_local_states": nk.get("hilbert_local_states"),
    }


class ScimlSide:
    """sciml in this process: whole `fit` runs, timed as fit times them."""

    def __init__(self, a):
        self.a, self.problems = a, {}
        self.info = {"jax": jax.__version__, **sciml_version()}

    def setup(self, name: str, problem, model) -> dict:
        """Remember the problem; a first short fit compiles (and fills the compilation cache)."""
        import equinox as eqx

        self.problems[name] = problem
        n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
        t0 = time.perf_counter()
        r = self.train(name, seed=self.a.seeds[0], steps=min(self.a.chunk, self.a.steps))
        first = time.perf_counter() - t0
        return {"params": int(n_params), "compile_s": r["compile_s"], "first_run_s": first}

    def train(self, name: str, seed: int, steps: int) -> dict:
        from sciml.trainer import TrainConfig, fit

        cfg = TrainConfig(
            steps=steps,
            seed=seed,
            log_every=min(self.a.chunk, steps),
            eval_every=None,
            checkpoint_every=None,
            progress=False,
            dtype="float64",
        )
        res = fit(self.problems[name], sciml_optimizer(self.a), cfg, run_dir=None)
        s, ev = res.summary, res.final_eval
        return {
            "s_per_step": s["train_time_s"] / steps,
            "train_s": s["train_time_s"],
            "steps": steps,
            "compile_s": s["compile_time_s"],
            "energy": ev["energy"],
            "energy_error": ev["energy_error"],
            "variance": ev["variance"],
            "r_hat": ev["r_hat"],
            "tau_corr": ev["tau_corr"],
            "acceptance": ev["acceptance"],
            "eval_samples": self.a.eval_samples,
            "params_finite": bool(
                all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(res.model))
            ),
        }


class NetketSide(PeerWorker):
    """The long-lived worker in NetKet's venv."""

    name = "netket"

    def __init__(self, python: Path):
        super().__init__(python, WORKER)


# --- driver -----------------------------------------------------------------------------------


def run_problem(name: str, sc: ScimlSide, nk: NetketSide | None, a, order: random.Random) -> dict:
    problem = build(name, a)
    model0, state0 = initial(problem, a, a.seeds[0])
    out = {"exact_energy": problem.exact, "setup": {}, "raw": {SCIML: []}}
    if nk is not None:
        spec = {
            "cmd": "setup",
            "name": name,
            "problem": name,
            **PROBLEMS[name][1],
            "h": PROBLEMS[name][1].get("h", 0.0),
            "n_chains": a.n_chains,
            "n_samples": a.n_samples,
            "n_discard": a.n_discard,
            "n_thermalise": a.n_thermalise,
            "lr": a.netket_lr,
            "diag_shift": a.diag_shift,
            "solver": a.netket_solver,
            "params": rbm_params(model0),
            "seed": a.seeds[0],
            "warmup": a.warmup,
        }
        out["setup"][NETKET] = nk.request(spec)
        flat = np.asarray(state0["samples"]).reshape(-1, problem.hilbert.n_sites)
        samples = flat[:: max(1, len(flat) // 64)][:64]
        req = {"cmd": "check", "name": name, "params": rbm_params(model0)}
        nk_check = nk.request(req | {"samples": samples.tolist()})
        out["check"] = compare(sciml_check(problem, model0, samples, a), nk_check)
        c = out["check"]
        print(
            f"{name} check (64 configurations, same parameters): |Δ log ψ| "
            f"{c['log_psi_max_abs_diff']:.1e}, |Δ E_loc| {c['e_loc_max_abs_diff']:.1e}, "
            f"SR direction NetKet / sciml {c['sr_direction_ratio_netket_over_sciml']:.6f} "
            f"(residual {c['sr_direction_rel_residual']:.1e})",
            flush=True,
        )
        out["raw"][NETKET] = []
    out["setup"][SCIML] = sc.setup(name, problem, model0)
    for side, s in out["setup"].items():
        print(
            f"{name} {side}: {s['params']} parameters, compile {s['compile_s']:.2f} s", flush=True
        )
    for r in range(a.repeats):
        seed = a.seeds[r % len(a.seeds)]
        names = list(out["raw"])
        order.shuffle(names)
        for side in names:
            if side == SCIML:
                res = sc.train(name, seed, a.steps)
            else:
                model, _ = initial(problem, a, seed)
                req = {"cmd": "train", "name": name, "params": rbm_params(model), "seed": seed}
                res = nk.request(req | {"steps": a.steps, "eval_samples": a.eval_samples})
            res["seed"] = seed
            res["rel_error"] = abs(res["energy"] - problem.exact) / abs(problem.exact)
            out["raw"][side].append(res)
        done = ", ".join(
            f"{k} {1e3 * v[-1]['s_per_step']:.2f} ms/it E {v[-1]['energy']:.4f}"
            f"±{v[-1]['energy_error']:.4f} rel {v[-1]['rel_error']:.1e}"
            for k, v in out["raw"].items()
        )
        print(f"{name} round {r + 1}/{a.repeats} (seed {seed}): {done}", flush=True)
    return out


def summarise(res: dict) -> dict:
    sides = {}
    for side, runs in res["raw"].items():
        sides[side] = {
            "s_per_step": median(r["s_per_step"] for r in runs),
            "s_per_step_all": [r["s_per_step"] for r in runs],
            "rel_error": median(r["rel_error"] for r in runs),
            "rel_error_all": [r["rel_error"] for r in runs],
            "energy_all": [r["energy"] for r in runs],
            "energy_error_all": [r["energy_error"] for r in runs],
            "seeds": [r["seed"] for r in runs],
            "compile_s": res["setup"][side]["compile_s"],
        }
    out = {"sides": sides}
    if NETKET in sides:
        s, n = sides[SCIML], sides[NETKET]
        out["sciml_over_netket"] = {
            "s_per_step": s["s_per_step"] / n["s_per_step"],
            "s_per_step_paired": median(
                x["s_per_step"] / y["s_per_step"]
                for x, y in zip(res["raw"][SCIML], res["raw"][NETKET], strict=True)
            ),
            "rel_error": s["rel_error"] / n["rel_error"],
        }
    return out


def main(a) -> dict:
    load_before = os.getloadavg()
    cpu = pin_to_one_core(a.cpu)
    sc, nk, notes = ScimlSide(a), None, []
    if not a.netket_python.exists():
        notes.append(
            f"{a.netket_python} not found: create NetKet's venv (benchmarks/requirements-netket.txt) "
            "or pass --netket-python; NetKet side skipped"
        )
    else:
        try:
            nk = NetketSide(a.netket_python)
        except Exception as e:  # noqa: BLE001 -- report, go on with sciml alone
            notes.append(f"netket worker failed to start ({e!r}); NetKet side skipped")
    for n in notes:
        print("WARNING:", n, flush=True)
    order = random.Random(0)
    t0 = time.perf_counter()
    try:
        per_problem = {p: run_problem(p, sc, nk, a, order) for p in a.problems}
    finally:
        if nk is not None:
            nk.close()
    wall = time.perf_counter() - t0
    summary = {p: summarise(r) for p, r in per_problem.items()}

    nk_ver = f"NetKet {nk.info['netket']} (jax {nk.info['jax']})" if nk else "NetKet: -"
    print(
        f"\nN = 20 chains, RBM α = 1 (float64), {a.n_chains} chains x {a.n_samples} samples, "
        f"n_discard {a.n_discard} sweeps, dense SR (λ = {a.diag_shift}), sciml lr {a.lr} = "
        f"NetKet lr {a.netket_lr}; {a.steps} iterations x {a.repeats} interleaved rounds "
        f"(seeds {a.seeds}), medians, 1 core (cpu {cpu}); sciml jax {jax.__version__}; {nk_ver}\n"
    )
    print(
        "| problem | side | ms / iteration | sciml / NetKet | per-round | compile (s) "
        f"| rel_error after {a.steps} it. (per seed) | energy ± MC error |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    checks = {}
    for p, sm in summary.items():
        rat = sm.get("sciml_over_netket")
        for side, v in sm["sides"].items():
            r1 = f"{rat['s_per_step']:.2f}" if rat and side == SCIML else ""
            r2 = f"{rat['s_per_step_paired']:.2f}" if rat and side == SCIML else ""
            rels = ", ".join(f"{x:.1e}" for x in v["rel_error_all"])
            ens = ", ".join(
                f"{e:.4f} ± {d:.4f}"
                for e, d in zip(v["energy_all"], v["energy_error_all"], strict=True)
            )
            print(
                f"| {p} | {side} | {1e3 * v['s_per_step']:.2f} | {r1} | {r2} | "
                f"{v['compile_s']:.2f} | {rels} | {ens} |"
            )
        if rat:
            checks[f"{p}: s/iteration sciml/NetKet <= {TARGET}"] = {
                "value": rat["s_per_step_paired"],
                "ratio_of_medians": rat["s_per_step"],
                "ok": rat["s_per_step_paired"] <= TARGET,
            }
    print()
    for p, r in per_problem.items():
        print(f"{p}: exact E0 = {r['exact_energy']:.10f}")
    for name, c in checks.items():
        print(f"check {name}: {c['value']:.3f} {'OK' if c['ok'] else 'NOT MET'}")
    result = {
        "benchmark": "nqs_vs_netket",
        "problems": {p: {"sciml": PROBLEMS[p][0], **PROBLEMS[p][1]} for p in a.problems},
        "model": "RBM alpha=1, real float64, visible bias",
        "sampler": {
            "n_chains": a.n_chains,
            "n_samples": a.n_samples,
            "n_discard_sweeps": a.n_discard,
            "n_thermalise_sweeps": a.n_thermalise,
            "sweep_size": "N",
            "rules": {"tfim": "local flip", "heisenberg": "nearest-neighbour exchange"},
        },
        "optimizer": {
            "sciml": f"stochastic_reconfiguration({a.lr}, {a.diag_shift}, solver='dense')",
            "netket": (
                f"VMC_SR(optax.sgd({a.netket_lr}), diag_shift={a.diag_shift}, use_ntk=False, "
                f"on_the_fly=False, mode='real', linear_solver={a.netket_solver})"
            ),
            "note": "NetKet's SR right-hand side is 2F: lr_netket = lr_sciml / 2 gives equal updates",
        },
        "steps": a.steps,
        "repeats": a.repeats,
        "seeds": a.seeds,
        "chunk": a.chunk,
        "eval_samples": a.eval_samples,
        "dtype": "float64",
        "cpu_pinned": cpu,
        "netket": nk.info if nk else None,
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": wall,
        **sciml_version(),
        "notes": notes,
        "per_problem": per_problem,
        "summary": summary,
        "checks": checks,
        "quick": a.quick,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(a.out, result)
    return result


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="VMC iterations per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="round r: seeds[r %% n]")
    ap.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    ap.add_argument("--lr", type=float, default=0.02, help="sciml's SR learning rate")
    ap.add_argument(
        "--netket-lr",
        type=float,
        default=None,
        help="NetKet's sgd learning rate (default lr / 2: the same update as sciml's)",
    )
    ap.add_argument("--diag-shift", type=float, default=0.01)
    ap.add_argument(
        "--netket-solver",
        choices=["cholesky_with_fallback", "cholesky"],
        default="cholesky_with_fallback",
    )
    ap.add_argument("--n-samples", type=int, default=1008)
    ap.add_argument("--n-chains", type=int, default=16)
    ap.add_argument("--n-discard", type=int, default=5, help="sweeps discarded every iteration")
    ap.add_argument("--n-thermalise", type=int, default=100)
    ap.add_argument("--eval-samples", type=int, default=16384)
    ap.add_argument("--chunk", type=int, default=50, help="sciml: steps per compiled chunk")
    ap.add_argument("--warmup", type=int, default=5, help="NetKet: iterations of the warm-up run")
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last)")
    ap.add_argument("--netket-python", type=Path, default=default_python())
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: 60 iterations, 1 round, 4096 eval samples"
    )
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.repeats, a.eval_samples, a.chunk = 60, 1, 4096, 30
        a.out = a.out or Path(tempfile.gettempdir()) / "nqs_vs_netket_quick.json"
    a.out = a.out or RESULTS
    a.netket_lr = a.lr / 2 if a.netket_lr is None else a.netket_lr
    if a.n_samples % a.n_chains:
        ap.error(f"--n-samples ({a.n_samples}) must be a multiple of --n-chains ({a.n_chains})")
    return a


if __name__ == "__main__":
    main(parse())
    sys.exit(0)
