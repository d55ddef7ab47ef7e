"""`fit`: the training loop.

Up to `train.log_every` steps run inside one compiled loop per host
round-trip; the loop is compiled exactly once per `fit` (its trip count is a
runtime argument), so neither resuming, evaluating nor a short last chunk
recompiles. The step's PRNG key is `fold_in(run_key, step)`, so results do
not depend on how the run was chunked or interrupted: a resumed run
reproduces an uninterrupted one bitwise on the same machine.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sciml.cache import enable_compilation_cache
from sciml.parallel import make_mesh, replicate, to_host
from sciml.trainer._callbacks import Callback, EarlyStopping, ProgressBar, RunInfo
from sciml.trainer._config import TrainConfig
from sciml.trainer._diverge import TrainingDiverged, explain_divergence
from sciml.trainer._run_dir import eval_record, run_directory
from sciml.trainer._state import TrainState, init_train_state, join_model, run_keys
from sciml.trainer._step import make_chunk, make_step, runtime_checks_as_nan

__all__ = ["FitResult", "fit"]


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        model: the trained model.
        state: the problem state after training.
        opt_state: the final optimizer state.
        step: the step count reached.
        history: one dict per logged chunk (as written to `metrics.jsonl`),
            then the final evaluation's record.
        summary: status, final evaluation metrics, timing and memory (as `summary.json`).
        final_eval: the problem's final `evaluate` output.
        train_state: the final `TrainState` (what the last checkpoint holds).
        traces: how many times the training chunk was traced (1 for a healthy run).
    """

    model: Any
    state: Any
    opt_state: Any
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    final_eval: dict[str, Any] = field(default_factory=dict)
    train_state: Any = None
    traces: int = 0


def _to_python(value):
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def _peak_memory_mb() -> dict[str, float]:
    out = {"peak_host_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_memory_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def _continue_from(start: TrainState, fresh: TrainState, optimizer) -> TrainState:
    """`start`'s model, problem state, key and step with a fresh optimizer state."""
    for name in ("params", "buffers", "problem_state"):
        a, b = getattr(start, name), getattr(fresh, name)
        spec = lambda t: [(jax.tree_util.keystr(p), np.shape(x), str(np.asarray(x).dtype))  # noqa: E731
                          for p, x in jax.tree_util.tree_leaves_with_path(t)]
        if jax.tree.structure(a) != jax.tree.structure(b) or spec(a) != spec(b):
            raise ValueError(
                f"fit(start_from=...): its {name} do not match this problem's (a different "
                "problem or model settings?); only the optimizer may change"
            )
    return TrainState(
        start.params,
        start.buffers,
        optimizer.init(start.params),
        start.problem_state,
        start.key,
        jnp.asarray(start.step, jnp.int32),
    )


def _next_stop(step: int, train: TrainConfig) -> int:
    def boundary(every):
        return math.inf if every is None else (step // every + 1) * every

    return min(
        train.steps,
        boundary(train.log_every),
        boundary(train.eval_every),
        boundary(train.checkpoint_every),
    )


def _early_stopping(train: TrainConfig):
    cfg = train.early_stopping
    if cfg is None:
        return None
    if cfg.monitor.startswith("eval/") and train.eval_every is None:
        raise ValueError(
            f"train.early_stopping.monitor={cfg.monitor!r} is an evaluation metric, but "
            "train.eval_every is null (evaluate only at the end): set train.eval_every"
        )
    return EarlyStopping(cfg.monitor, patience=cfg.patience, min_delta=cfg.min_delta, mode=cfg.mode)


def _check_monitor(early, record) -> None:
    """Refuse a monitored key that the records do not have (it would never stop the run)."""
    evaluated = any(k.startswith("eval/") for k in record)
    if early.monitor in record or (early.monitor.startswith("eval/") and not evaluated):
        return
    keys = ", ".join(sorted(k for k in record if k not in ("step", "steps_per_s", "time_s")))
    raise ValueError(
        f"train.early_stopping.monitor={early.monitor!r} is not among the logged metrics: {keys}"
    )


def fit(
    problem,
    optimizer: optax.GradientTransformation,
    train: TrainConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: list[Callback] = (),
    start_from: TrainState | None = None,
) -> FitResult:
    """Train `problem` with `optimizer` as configured by `train`.

    Args:
        problem: an `AbstractProblem`.
        optimizer: an optax transformation; its `update` receives optax's
            extra keyword arguments `value`, `grad` and `value_fn`, and
            `per_sample_fn` / `key` when it asked for them with
            `sciml.optim.request_extra_args` (see docs/core.md).
        train: a `TrainConfig` (defaults if `None`).
        run_dir: if given, write `metrics.jsonl`, `checkpoints/`,
            `summary.json` and `figures/` there.
        resume: continue from the newest intact checkpoint in
            `run_dir/checkpoints` (damaged ones are skipped with a warning;
            with none, the run starts from step 0).
        callbacks: further `Callback`s (loggers, `EarlyStopping`, ...),
            called after the run directory's writers.
        start_from: a `TrainState` (e.g. `load_run(...).train_state` of a run
            that diverged) to start from instead of `problem.init`: its model,
            problem state, key and step are used, and the optimizer state is
            initialised afresh (its settings may differ). A resumed run's own
            checkpoints take precedence.

    Returns:
        A `FitResult`.

    Raises:
        TrainingDiverged: the loss, gradient or problem state became NaN/Inf;
            training state from that step is discarded and the last
            checkpoint left intact.
    """
    train = TrainConfig() if train is None else train
    with single_threaded_blas():
        return _fit(problem, optimizer, train, run_dir, resume, callbacks, start_from)


@contextlib.contextmanager
def single_threaded_blas():
    """Within this context, the BLAS/LAPACK that JAX's CPU linear algebra calls runs one thread.

    JAX's CPU `cholesky`, `eigh` and triangular solves call LAPACK through
    scipy's OpenBLAS, whose worker threads spin against XLA's own thread pool:
    from Python, an SR step (N = 20 RBM) ran 10x slower and one 257 x 257
    `eigh` (ENGD) 20-60x slower on a 2-core machine. `fit` trains inside this
    context (the command line also sets `OPENBLAS_NUM_THREADS=1` before numpy
    loads). A thread count the user set (`OPENBLAS_NUM_THREADS`,
    `OMP_NUM_THREADS`, `MKL_NUM_THREADS`) is left alone, as is a setup
    without threadpoolctl (a scikit-learn dependency).
    """
    user_set = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    if any(name in os.environ for name in user_set):
        yield
        return
    try:
        import scipy.linalg  # noqa: F401  (loads the LAPACK that jaxlib calls, so it is limited)
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fit(problem, optimizer, train, run_dir, resume, callbacks, start_from) -> FitResult:
    t_start = time.perf_counter()
    if train.compilation_cache:
        enable_compilation_cache()
    mesh = make_mesh(train.devices)
    if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
        optimizer = optax.with_extra_args_support(optimizer)
    ts, model_static = init_train_state(problem, optimizer, train.seed)
    eval_key = run_keys(train.seed)[2]
    if start_from is not None:
        ts = _continue_from(start_from, ts, optimizer)

    history: list[dict] = []
    checkpoints = None
    hooks: list[Callback] = []
    if run_dir is not None:
        checkpoints, metrics_log, hooks = run_directory(Path(run_dir), train)
        if resume:
            # the newest intact checkpoint; none at all (a run killed before
            # its first one) starts again from step 0
            restored = checkpoints.restore(ts)
            ts = ts if restored is None else restored
            history = metrics_log.truncate(int(ts.step))
    elif resume:
        raise ValueError("fit(resume=True) needs run_dir")
    hooks = [*hooks, *callbacks, *([ProgressBar()] if train.progress else [])]
    early = _early_stopping(train)
    if early is not None:
        hooks.append(early)
    best_ts, best_step = None, None

    # The arrays go in as arguments (not constants baked into the program);
    # every leaf gets its own buffer placed on the mesh.
    problem_arrays = replicate(eqx.filter(problem, eqx.is_array), mesh)
    ts = replicate(ts, mesh)
    step = int(to_host(ts.step))

    # Compile the chunk once, ahead of time, so compile time is measured apart.
    counter = [0]
    # a chunk never runs more than the run's steps: a huge log_every costs no memory
    length = min(train.log_every, train.steps)
    chunk = make_chunk(make_step(problem, model_static, optimizer), length, mesh, counter)
    t0 = time.perf_counter()
    with runtime_checks_as_nan():
        lowered = jax.jit(chunk).lower(problem_arrays, ts, jnp.array(0, jnp.int32))
    compiled = lowered.compile()
    run = RunInfo(problem, train, step, model_static, time.perf_counter() - t0)

    def evaluate(ts):
        out = problem.evaluate(
            run.model(ts), ts.problem_state, jax.random.fold_in(eval_key, ts.step)
        )
        return {k: _to_python(v) for k, v in out.items()}

    run_time, steps_run, last_loss, stopped = 0.0, 0, math.nan, False
    try:
        for cb in hooks:
            cb.on_start(run, ts)
        while step < train.steps and not stopped:
            stop = _next_stop(step, train)
            n = stop - step
            start = ts  # kept to replay a divergence to its failing step
            t0 = time.perf_counter()
            ts, ok, bad, losses, metrics = compiled(problem_arrays, ts, jnp.array(n, jnp.int32))
            losses, metrics, ok = to_host((losses, metrics, ok))
            dt = time.perf_counter() - t0
            if not bool(ok):
                bad_step = int(to_host(bad))
                # Same program and keys, so the replay reproduces the failing step's state.
                at_bad = compiled(problem_arrays, start, jnp.array(bad_step - step, jnp.int32))[0]
                reason = explain_divergence(problem, model_static, problem_arrays, at_bad, mesh)
                error = TrainingDiverged(bad_step, checkpoints.last if checkpoints else None, reason)
                for cb in hooks:
                    cb.on_diverged(run, error)
                raise error
            run_time += dt
            steps_run += n
            step = stop
            last_loss = float(losses[n - 1])
            record = {"step": step, "loss": float(losses[:n].mean())}
            record.update({k: float(np.asarray(v)[:n].mean()) for k, v in metrics.items()})
            record["steps_per_s"] = n / dt
            record["time_s"] = time.perf_counter() - t_start
            if train.eval_every is not None and step % train.eval_every == 0 and step < train.steps:
                record.update(eval_record(step, evaluate(ts)))
            history.append(record)
            if early is not None:
                _check_monitor(early, record)
            for cb in hooks:
                stopped = bool(cb.on_chunk(run, record, ts)) or stopped
            if early is not None and early.improved_at == step:
                best_ts, best_step = ts, step

        if train.early_stopping is not None and train.early_stopping.restore_best:
            if best_ts is not None and best_step != step:
                # the best checked state, under the final step number: the run's last
                # checkpoint then holds the model it reports
                ts = best_ts._replace(step=ts.step)

        final_eval = evaluate(ts)
        if final_eval:
            history.append(eval_record(step, final_eval))
        wall = time.perf_counter() - t_start
        summary = {
            "status": "stopped" if stopped and step < train.steps else "completed",
            **({} if early is None else {"best_step": best_step, "best_value": early.best}),
            "steps": step,
            "final_loss": last_loss,
            **final_eval,
            "wall_time_s": wall,
            "compile_time_s": run.compile_time_s,
            "train_time_s": run_time,
            "steps_per_s": steps_run / run_time if run_time > 0 else None,
            "devices": mesh.size,
            "processes": jax.process_count(),
            "platform": jax.local_devices()[0].platform,
            **_peak_memory_mb(),
        }
        result = FitResult(
            model=join_model(ts.params, ts.buffers, model_static),
            state=ts.problem_state,
            opt_state=ts.opt_state,
            step=step,
            history=history,
            summary=summary,
            final_eval=final_eval,
            train_state=ts,
            traces=counter[0],
        )
        for cb in hooks:
            cb.on_end(run, result)
    finally:
        for cb in hooks:
            cb.close()
    return result
