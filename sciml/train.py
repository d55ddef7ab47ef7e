"""Command line: train a registered problem from a YAML config.

    python -m sciml.train CONFIG [KEY.PATH=VALUE ...] [--overwrite] [--print-config]
    python -m sciml.train --resume RUN_DIR [train.KEY=VALUE ...]
    python -m sciml.train --list

Exit status: 0 success, 1 a plug-in failed to import, 2 invalid config or arguments, 3 training diverged,
130 interrupted.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Before numpy loads: JAX's CPU eigendecompositions (ENGD, later SR) call LAPACK through
    # scipy's OpenBLAS, whose spinning worker threads made one 257 x 257 `eigh` 20-60x slower on
    # a loaded 2-core machine (a 200-step ENGD run: 93 s instead of 24 s). XLA's own kernels
    # have their own thread pool and are unaffected. Only the command line does this, and an
    # OPENBLAS_NUM_THREADS the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sciml.cli_config import apply_overrides, load_config, load_yaml
from sciml.config import validate_config
from sciml.plugins import PluginError
from sciml.run_dir import lock_run_dir, prepare_run_dir, reached_step
from sciml.schema import ConfigError
from sciml.trainer import Callback

__all__ = ["main", "run_config", "load_run", "LoadedRun"]

EXIT_CONFIG = 2
EXIT_DIVERGED = 3

# What may change when resuming: settings of the loop, not of the maths.
_RESUME_OVERRIDABLE = {
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.devices",
    "train.compilation_cache",
}
_EPILOG = """\
config files:
  YAML with top-level sections problem (name + parameters), model, optimizer,
  train and output; see configs/ for examples. Every key is validated before
  anything is compiled; errors name the dotted key and exit with status 2.

overrides:
  KEY.PATH=VALUE pairs after the config, values parsed as YAML, e.g.
    train.steps=2000 optimizer.lr=3e-3 optimizer.schedule.name=cosine
    output.dir=runs/try1 train.devices=all train.dtype=float64

run directory (default runs/<config file name>):
  config.yaml (resolved config), metrics.jsonl, checkpoints/, summary.json,
  figures/, and the marker .sciml-run. An existing run is never replaced
  unless --overwrite is given, and --overwrite deletes a directory only when
  everything in it is what sciml wrote (else it lists the rest and stops);
  continue a run with --resume instead.

exit status: 0 done, 1 a plug-in failed to import or a file could not be
written, 2 bad config or arguments,
3 training diverged (the last good checkpoint is kept), 130 interrupted
(resume with --resume).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sciml.train",
        description="Train a registered sciml problem from a YAML config.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="CONFIG [KEY=VALUE ...]",
        help="config file, then dotted overrides (with --resume: overrides only)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in the output directory")
    p.add_argument("--print-config", action="store_true", help="print the fully resolved config and exit")
    p.add_argument("--list", action="store_true", help="list the registered problems and exit")
    p.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="start a new run from a checkpoint of RUN_DIR (its newest intact one, or --from-step): "
        "model, problem state, key and step carry over, the optimizer starts afresh with this "
        "config's settings (e.g. a lower optimizer.lr after a divergence); recorded as train.init_from",
    )
    p.add_argument("--from-step", type=int, metavar="N", help="with --init-from: the checkpoint at step N")
    dist = p.add_argument_group(
        "several processes (multi-host)",
        "run the same command on every process; only process 0 writes the run directory",
    )
    dist.add_argument(
        "--distributed",
        action="store_true",
        help="initialise JAX's multi-process runtime (settings from the cluster environment "
        "or the flags below / SCIML_COORDINATOR_ADDRESS, SCIML_NUM_PROCESSES, SCIML_PROCESS_ID)",
    )
    dist.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    dist.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    dist.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")
    return p


def _check_devices(cfg) -> None:
    import jax

    n = len(jax.local_devices())
    if cfg.train.devices != "all" and cfg.train.devices > n:
        raise ConfigError(
            f"config error: train.devices: {cfg.train.devices} requested but this machine has "
            f"{n} {jax.local_devices()[0].platform} device(s); use 'all' or at most {n}"
        )


def _say(text: str) -> None:
    """A progress line on stderr (process 0 only), shown at once."""
    import jax

    if jax.process_index() == 0:
        print(text, file=sys.stderr, flush=True)


def run_config(cfg, run_dir: Path, *, resume: bool = False, verbose: bool = False):
    """Build the problem and optimizer of validated config `cfg` and train into `run_dir`.

    Everything that can refuse the config (devices, the problem's own checks
    such as needing float64, `train.init_from`) runs before the run directory
    is created or locked, so a refused start leaves nothing behind. With
    `verbose`, say on stderr what is happening (problem, devices, dtype,
    compilation and its time) before the progress bar takes over.
    """
    import jax

    from sciml.cache import enable_compilation_cache
    from sciml.optim import make_optimizer
    from sciml.parallel import is_main_process
    from sciml.problems import get_problem_spec

    _check_devices(cfg)
    if cfg.train.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    if cfg.train.compilation_cache:
        enable_compilation_cache()
    spec = get_problem_spec(cfg.problem_name)
    if verbose:
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()
        n = len(devices) if cfg.train.devices == "all" else cfg.train.devices
        procs = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
        _say(
            f"sciml: {'resuming' if resume else 'training'} {cfg.problem_name} into {run_dir} "
            f"({cfg.optimizer.name}, {cfg.train.steps} steps, {cfg.train.dtype}, {n} "
            f"{devices[0].platform} device(s){procs})"
        )
        _say("building the problem ...")
    try:
        problem = spec.build(cfg.problem, cfg.model)
    except ValueError as e:  # a problem's own check of its settings (e.g. it needs float64)
        raise ConfigError(f"config error: problem: {cfg.problem_name}: {e}") from None
    optimizer = make_optimizer(cfg.optimizer, cfg.train.steps)
    start_from = _start_state(cfg) if cfg.train.init_from else None

    lock = lock_run_dir(run_dir) if is_main_process() else None
    try:
        if lock is not None and not resume and (run_dir / "config.yaml").exists():
            # written by a run that started at the same moment and has finished
            raise ConfigError(
                f"error: run directory {run_dir} already holds a run (another process just "
                f"wrote it); choose another output.dir=..."
            )
        return _write_config_and_fit(cfg, run_dir, resume, verbose, problem, optimizer, start_from)
    finally:
        if lock is not None:
            os.close(lock)


def _write_config_and_fit(cfg, run_dir, resume, verbose, problem, optimizer, start_from):
    from sciml.checkpoint import atomic_write_bytes
    from sciml.parallel import is_main_process
    from sciml.trainer import fit

    callbacks = []
    if verbose:
        _say("compiling the training step ... (later runs of the same program load it from the cache)")
        callbacks.append(_Announce())
    if is_main_process():
        text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        atomic_write_bytes(run_dir / "config.yaml", text.encode())
    try:
        return fit(
            problem, optimizer, cfg.train, run_dir=run_dir, resume=resume,
            start_from=start_from, callbacks=callbacks,
        )
    except ValueError as e:
        if start_from is not None and "start_from" in str(e):
            raise ConfigError(f"config error: train.init_from: {e}") from None
        raise


class _Announce(Callback):
    """Says when compilation ended and training starts."""

    def on_start(self, run, ts):
        _say(f"compiled in {run.compile_time_s:.1f} s; training from step {run.start_step}")


@dataclass
class LoadedRun:
    """A run directory read back: its config, problem and trained model.

    Attributes:
        config: the validated `Config` from `config.yaml`.
        problem: the problem, rebuilt from the config.
        model: the model at `step`.
        state: the problem state at `step`.
        step: the step of the checkpoint that was loaded.
        train_state: the whole `TrainState` (optimizer state, key, ...).
    """

    config: Any
    problem: Any
    model: Any
    state: Any
    step: int
    train_state: Any


def load_run(run_dir: str | Path, step: int | None = None) -> LoadedRun:
    """Load a run directory's newest intact checkpoint (or the one at `step`).

    Damaged checkpoints are skipped with a warning on the `sciml` logger.

    Example:
        >>> run = load_run("runs/neural_ode_spiral")
        >>> run.problem.evaluate(run.model, run.state, jax.random.PRNGKey(0))
    """
    import jax

    from sciml.checkpoint import list_checkpoints, load_checkpoint, load_latest_intact
    from sciml.optim import make_optimizer
    from sciml.problems import get_problem_spec
    from sciml.trainer import init_train_state, join_model

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml; is it a sciml run directory?")
    cfg = validate_config(load_yaml(cfg_path.read_text(), str(cfg_path)))
    if cfg.train.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    problem = get_problem_spec(cfg.problem_name).build(cfg.problem, cfg.model)
    optimizer = make_optimizer(cfg.optimizer, cfg.train.steps)
    template, model_static = init_train_state(problem, optimizer, cfg.train.seed)
    directory = run_dir / "checkpoints"
    if step is None:
        found = load_latest_intact(
            directory,
            template,
            on_skip=lambda path, why: logging.getLogger("sciml").warning("skipped %s: %s", path.name, why),
        )
        if found is None:
            raise FileNotFoundError(f"{directory} holds no intact checkpoint")
        ts = found[2]
    else:
        available = dict(list_checkpoints(directory))
        if step not in available:
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {directory}; available: {sorted(available)}"
            )
        ts = load_checkpoint(available[step], template)
    model = join_model(ts.params, ts.buffers, model_static)
    return LoadedRun(cfg, problem, model, ts.problem_state, int(ts.step), ts)


def _checkpoint_to_start_from(run_dir: Path, step: int | None) -> Path:
    """The checkpoint file of `run_dir` that `--init-from` / `--from-step` name."""
    from sciml.checkpoint import CheckpointDamaged, list_checkpoints, read_checkpoint_header

    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"error: --init-from {run_dir}: no config.yaml there; is it a sciml run directory?")
    found = list_checkpoints(run_dir / "checkpoints")
    if step is not None:
        match = [path for s, path in found if s == step]
        if not match:
            raise ConfigError(
                f"error: --from-step {step}: {run_dir} has no checkpoint at that step; "
                f"available: {[s for s, _ in found]}"
            )
        return match[0]
    for _, path in reversed(found):
        try:
            read_checkpoint_header(path)
            return path
        except CheckpointDamaged:
            continue
    raise ConfigError(f"error: --init-from {run_dir}: it holds no intact checkpoint")


def _start_state(cfg):
    """The training state named by `train.init_from` (a checkpoint file of an earlier run)."""
    from sciml.checkpoint import CheckpointDamaged, CheckpointMismatch, read_checkpoint_header

    path = Path(cfg.train.init_from)
    try:
        step = int(read_checkpoint_header(path)["step"])
        source = load_run(path.parent.parent, step)
    except (OSError, CheckpointDamaged, CheckpointMismatch, ConfigError) as e:
        raise ConfigError(f"config error: train.init_from: cannot start from {path}: {e}") from None
    if source.config.problem_name != cfg.problem_name:
        raise ConfigError(
            f"config error: train.init_from: {path} is a {source.config.problem_name!r} run; "
            f"this config trains {cfg.problem_name!r}"
        )
    return source.train_state


def _log_to_stderr() -> None:
    """Show the `sciml` logger's warnings (a skipped damaged checkpoint) as `warning: ...` lines."""
    log = logging.getLogger("sciml")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def _resume_config(run_dir: Path, overrides: list[str]):
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"config error: --resume {run_dir}: no config.yaml there; is it a sciml run directory?")
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in _RESUME_OVERRIDABLE:
            allowed = ", ".join(sorted(_RESUME_OVERRIDABLE))
            raise ConfigError(
                f"config error: {key}: cannot be changed when resuming (the checkpoint was "
                f"made with the saved value); allowed overrides: {allowed}"
            )
    data = load_yaml(cfg_path.read_text(), str(cfg_path))
    return validate_config(apply_overrides(data, overrides))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    # options may come anywhere: `CONFIG --overwrite train.steps=5` as well as before it
    ns = parser.parse_intermixed_args(argv)
    _log_to_stderr()
    run_dir = None
    if ns.coordinator or ns.num_processes is not None or ns.process_id is not None:
        ns.distributed = True
    try:
        if ns.distributed:
            from sciml.parallel import initialize_distributed

            try:
                initialize_distributed(ns.coordinator, ns.num_processes, ns.process_id)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"error: --distributed: {e}") from None
        if ns.list:
            from sciml.problems import list_problems

            problems = list_problems()
            width = max(map(len, problems), default=0)
            for name, desc in problems.items():
                print(f"{name:<{width}}  {desc}")
            return 0
        if ns.resume:
            for item in ns.args:
                if "=" not in item:
                    parser.error(
                        f"--resume takes the config from the run directory; give only "
                        f"KEY=VALUE overrides, got {item!r}"
                    )
            run_dir = Path(ns.resume)
            if ns.init_from or ns.from_step is not None:
                parser.error("--init-from starts a new run; it does not go with --resume")
            cfg = _resume_config(run_dir, ns.args)
            resume = True
            reached = reached_step(run_dir)
            if reached is not None and reached > cfg.train.steps:
                raise ConfigError(
                    f"config error: train.steps: {cfg.train.steps} is below step {reached}, which "
                    f"the run in {run_dir} already reached; give train.steps > {reached} to go on"
                )
            if reached is not None and reached == cfg.train.steps:
                print(
                    f"{run_dir}: the run already finished at step {reached} (train.steps = "
                    f"{reached}); nothing was changed. To train further: python -m sciml.train "
                    f"--resume {run_dir} train.steps=N with N > {reached}"
                )
                return 0
        else:
            if not ns.args:
                parser.error("a CONFIG file is required (or --resume RUN_DIR, or --list)")
            config_path, overrides = ns.args[0], ns.args[1:]
            if "=" in config_path and not Path(config_path).exists():
                parser.error(f"the first argument must be the config file, got override {config_path!r}")
            cfg = load_config(config_path, overrides)
            run_dir = Path(cfg.output.dir or Path("runs") / Path(config_path).stem)
            data = {**cfg.to_dict(), "output": {"dir": str(run_dir)}}
            if ns.init_from:
                data["train"]["init_from"] = str(_checkpoint_to_start_from(Path(ns.init_from), ns.from_step))
            elif ns.from_step is not None:
                parser.error("--from-step needs --init-from RUN_DIR")
            cfg = validate_config(data)
            resume = False
        if ns.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from sciml.parallel import agree_with_main_process, is_main_process

        refusal = None
        if not resume and is_main_process():
            try:
                prepare_run_dir(run_dir, ns.overwrite)
            except ConfigError as e:
                refusal = str(e)
        # Every process of a multi-process run stops with process 0 (the
        # others would otherwise wait for it at the first collective).
        if agree_with_main_process(refusal is not None):
            raise ConfigError(refusal or f"error: process 0 refused the run directory {run_dir}")
        from sciml.trainer import TrainingDiverged

        try:
            result = run_config(cfg, run_dir, resume=resume, verbose=True)
        except TrainingDiverged as e:
            print(f"error: {e}", file=sys.stderr)
            if e.checkpoint is not None:
                good = int(Path(e.checkpoint).stem.split("_")[-1])
                print(
                    f"to go on from the last good checkpoint with other settings, start a new run "
                    f"from it:\n  python -m sciml.train {run_dir}/config.yaml output.dir={run_dir}-2 "
                    f"optimizer.lr=... --init-from {run_dir} --from-step {good}",
                    file=sys.stderr,
                )
            return EXIT_DIVERGED
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_CONFIG
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the filesystem: a path that is a file, no permission, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        hint = f"; what was written so far is kept in {run_dir}" if run_dir and run_dir.is_dir() else ""
        print(f"the run stopped{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = f"; continue with: python -m sciml.train --resume {run_dir}" if run_dir else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    if not is_main_process():
        return 0
    shown = {k: v for k, v in result.summary.items() if not isinstance(v, (list, dict))}
    print(f"run directory: {run_dir}")
    for k, v in shown.items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
