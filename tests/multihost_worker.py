"""One process of a multi-process (multi-controller) run, launched by `test_multihost.py`.

Not collected by pytest (no `test_` prefix). Run it once per process, e.g.
for 2 processes with 2 CPU devices each::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \\
        python tests/multihost_worker.py --coordinator 127.0.0.1:PORT \\
        --num-processes 2 --process-id I --out DIR [--via cli]

Every process runs the same program on all 4 global devices (float64):

1. a run of `STEPS` steps of the small spiral problem into `DIR/runs/full`;
2. the loss and gradient of the spiral for a fixed model and key
   (`make_loss_and_grad(..., devices="all")`);
3. `DIR/runs/resumed` made to look like run 1 killed after its step-`STOP`
   checkpoint (its checkpoints up to `STOP`, its whole `metrics.jsonl` and
   its `config.yaml`, copied by process 0), then resumed to `STEPS` steps.

With `--via fit` (the default) runs 1 and 3 call `sciml.trainer.fit` with
`optax.adam`; with `--via cli` they are the command line (`sciml.train.main`)::

    python -m sciml.train configs/neural_ode_spiral.yaml --coordinator HOST:PORT \\
        --num-processes 2 --process-id I output.dir=DIR/runs/full train.devices=all \\
        train.dtype=float64 ...      # see cli_overrides
    python -m sciml.train --resume DIR/runs/resumed --coordinator HOST:PORT ...

and the CLI initialises the multi-process runtime itself from its flags.

Process 0 writes the numbers to `DIR/grad.npz` (loss, gradient leaves) and
`DIR/fit.npz` (the final model leaves of both runs). Every process records,
with an audit hook, each file it opened for writing, created, renamed or
removed under `DIR/runs`, and writes that list with its process and device
counts to `DIR/writes_<process id>.json`, so the test can check that only
process 0 wrote the run directories.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

# The run, shared with the test (which imports these names).
PROBLEM = (
    "neural_ode_spiral",
    {"n_points": 200, "t_end": 5.0, "batch_size": 4, "batch_time": 5},
    {"width": 8},
)
MODEL_SEED, KEY_SEED = 3, 7
LR = 1e-3
STEPS, STOP, LOG_EVERY, CHECKPOINT_EVERY = 6, 4, 2, 2


def train_config(steps: int, **kw):
    """The `train` section of the run (`fit`'s `TrainConfig`)."""
    from sciml.trainer import TrainConfig

    return TrainConfig(
        steps=steps,
        log_every=LOG_EVERY,
        checkpoint_every=CHECKPOINT_EVERY,
        keep_checkpoints=None,
        progress=False,
        compilation_cache=False,  # nothing to gain: the spiral's programs use host callbacks
        **kw,
    )


def cli_overrides(steps: int) -> list[str]:
    """Overrides of `configs/neural_ode_spiral.yaml` that make the same run."""
    _, problem, model = PROBLEM
    return [
        *(f"problem.{k}={v}" for k, v in problem.items()),
        *(f"model.{k}={v}" for k, v in model.items()),
        f"optimizer.lr={LR}",
        "optimizer.schedule={name: constant}",
        f"train.steps={steps}",
        f"train.log_every={LOG_EVERY}",
        f"train.checkpoint_every={CHECKPOINT_EVERY}",
        "train.keep_checkpoints=null",
        "train.eval_every=null",
        "train.devices=all",
        "train.dtype=float64",
        "train.progress=false",
        "train.compilation_cache=false",
    ]


def _record_writes(root: Path, log: list) -> None:
    """Append to `log` every write-like file operation under `root` (an audit hook)."""
    root = os.path.realpath(root)

    def under(path) -> bool:
        if path is None or isinstance(path, int):
            return False
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return p == root or p.startswith(root + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if mode is not None:
                writing = any(c in mode for c in "wax+")
            else:  # os.open
                writing = isinstance(flags, int) and bool(
                    flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                )
            if writing and under(path):
                log.append([event, os.fsdecode(path)])
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            if any(under(a) for a in args[:2]):
                log.append([event, os.fsdecode(args[0])])

    sys.addaudithook(hook)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--coordinator", required=True, help="HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, required=True)
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--out", required=True, help="output folder, the same for every process")
    p.add_argument("--via", choices=("fit", "cli"), default="fit", help="how to train")
    ns = p.parse_args(argv)
    out = Path(ns.out)
    dist = ["--coordinator", ns.coordinator, "--num-processes", str(ns.num_processes)]
    dist += ["--process-id", str(ns.process_id)]

    import jax

    jax.config.update("jax_enable_x64", True)
    writes: list = []
    _record_writes(out / "runs", writes)
    try:
        if ns.via == "fit":
            from sciml.parallel import initialize_distributed

            initialize_distributed(ns.coordinator, ns.num_processes, ns.process_id)
        run(out, ns.via, dist)
    finally:
        info = {"writes": writes}
        if jax.distributed.is_initialized():
            info.update(
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                local_devices=len(jax.local_devices()),
                global_devices=len(jax.devices()),
            )
        (out / f"writes_{ns.process_id}.json").write_text(json.dumps(info))
    return 0


def run(out: Path, via: str, dist: list[str]) -> None:
    import equinox as eqx
    import jax
    import numpy as np
    import optax
    from jax.experimental import multihost_utils

    from sciml.checkpoint import list_checkpoints
    from sciml.parallel import is_main_process, to_host
    from sciml.problems import build_problem
    from sciml.train import load_run
    from sciml.train import main as train_main
    from sciml.trainer import fit, make_loss_and_grad

    runs = out / "runs"
    config = str(Path(__file__).resolve().parents[1] / "configs" / "neural_ode_spiral.yaml")

    def train_cli(args):
        rc = train_main([*dist, *args])
        if rc != 0:
            raise SystemExit(
                f"process {jax.process_index()}: sciml.train {args[:2]} exited with {rc}"
            )

    def leaves(model):
        return jax.tree.leaves(to_host(eqx.filter(model, eqx.is_array)))

    # 1. an uninterrupted run (the CLI initialises the runtime from its flags)
    if via == "cli":
        train_cli([config, *cli_overrides(STEPS), f"output.dir={runs / 'full'}"])
    else:
        full = fit(
            build_problem(*PROBLEM),
            optax.adam(LR),
            train_config(STEPS, devices="all"),
            run_dir=runs / "full",
        )

    # 2. loss and gradient on all 4 devices of both processes
    problem = build_problem(*PROBLEM)
    model, state = problem.init(jax.random.PRNGKey(MODEL_SEED))
    params = eqx.filter(model, eqx.is_array)
    (loss, _), grads = make_loss_and_grad(problem, model, devices="all")(
        params, state, jax.random.PRNGKey(KEY_SEED)
    )
    assert len(jax.tree.leaves(grads)[0].sharding.device_set) == len(jax.devices())
    loss, grads = to_host((loss, grads))
    if is_main_process():
        np.savez(
            out / "grad.npz",
            loss=loss,
            **{f"g{i}": g for i, g in enumerate(jax.tree.leaves(grads))},
        )

    # 3. the same run killed after its step-STOP checkpoint, then resumed
    killed = runs / "resumed"
    if is_main_process():
        (killed / "checkpoints").mkdir(parents=True)
        for step, path in list_checkpoints(runs / "full" / "checkpoints"):
            if step <= STOP:
                shutil.copy(path, killed / "checkpoints" / path.name)
        # every record of the whole run: resuming must drop those past STOP
        for name in ("metrics.jsonl", "config.yaml"):
            if (runs / "full" / name).exists():
                shutil.copy(runs / "full" / name, killed / name)
    multihost_utils.sync_global_devices("killed run directory ready")
    if via == "cli":
        train_cli(["--resume", str(killed)])
        multihost_utils.sync_global_devices("resumed run done")
        models = {"full": load_run(runs / "full").model, "resumed": load_run(killed).model}
    else:
        resumed = fit(
            build_problem(*PROBLEM),
            optax.adam(LR),
            train_config(STEPS, devices="all"),
            run_dir=killed,
            resume=True,
        )
        models = {"full": full.model, "resumed": resumed.model}
    arrays = {f"{name}_{i}": a for name, m in models.items() for i, a in enumerate(leaves(m))}
    if is_main_process():
        np.savez(out / "fit.npz", **arrays)


if __name__ == "__main__":
    # On failure, exit at once: the runtime's shutdown would wait for the other process.
    try:
        code = main()
    except SystemExit as e:
        if e.code in (0, None):
            raise
        print(f"error: {e.code}", file=sys.stderr, flush=True)
        os._exit(1)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.exit(code)
