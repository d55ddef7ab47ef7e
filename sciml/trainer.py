"""The generic training loop shared by every pillar.

One optimizer step is a pure function
`(params, opt_state, problem_state, key, step) -> same + (loss, metrics)`.
Up to `log_every` steps run inside one compiled loop per host round-trip;
the loop is compiled exactly once per `fit` (its trip count is a runtime
argument), so neither resuming, evaluating nor a short last chunk triggers
recompilation. Between chunks the host logs, evaluates and checkpoints.

The step's PRNG key is `fold_in(run_key, step)`, so results do not depend on
how the run was chunked or interrupted: a resumed run reproduces an
uninterrupted one bitwise on the same machine.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sciml.checkpoint import atomic_write_bytes, latest_checkpoint, load_checkpoint, save_checkpoint
from sciml.config import TrainConfig
from sciml.parallel import batch_sharding, make_mesh, replicate

__all__ = [
    "TrainState",
    "TrainingDiverged",
    "FitResult",
    "fit",
    "init_train_state",
    "make_loss_and_grad",
]


class TrainState(NamedTuple):
    """Everything a checkpoint holds.

    Attributes:
        params: the array leaves of the model (`eqx.partition(model, eqx.is_array)`).
        opt_state: optimizer state.
        problem_state: the problem's non-trainable state (may be `None`).
        key: the run's base PRNG key (constant over the run).
        step: number of optimizer steps taken (int32 scalar).
    """

    params: Any
    opt_state: Any
    problem_state: Any
    key: jax.Array
    step: jax.Array


class TrainingDiverged(RuntimeError):
    """Raised when the loss or its gradient becomes NaN/Inf.

    Attributes:
        step: the step whose loss or gradient was not finite.
        checkpoint: path of the last good checkpoint (or `None`).
        reason: what the trainer found at that step: whether the loss or only
            the gradient was non-finite, which gradient leaves, and the
            problem's own diagnosis (e.g. which solve failed and where), or
            `None` when it could not be determined.
    """

    def __init__(self, step: int, checkpoint: Path | None, reason: str | None = None):
        self.step = step
        self.checkpoint = checkpoint
        self.reason = reason
        where = (
            f"the last good checkpoint is {checkpoint}"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        why = f": {reason.rstrip('.')}." if reason else "."
        super().__init__(
            f"training diverged: the loss or its gradient became NaN/Inf at step {step}{why} "
            f"{where[0].upper()}{where[1:]}. Lower the learning rate, add optimizer.clip_norm, "
            "or check the problem's data."
        )


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        model: the trained model.
        state: the problem state after training.
        opt_state: the final optimizer state.
        step: the step count reached.
        history: one dict per logged chunk (as written to `metrics.jsonl`).
        summary: final evaluation metrics, timing and memory (as `summary.json`).
        traces: how many times the training chunk was traced (1 for a healthy run).
    """

    model: Any
    state: Any
    opt_state: Any
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    traces: int = 0


def _split_keys(seed: int):
    root = jax.random.PRNGKey(seed)
    init_key, train_key, eval_key = jax.random.split(root, 3)
    return init_key, train_key, eval_key


def init_train_state(problem, optimizer, seed: int):
    """The step-0 training state of `problem` and the model's static part.

    Returns `(TrainState, model_static)`; `eqx.combine(state.params,
    model_static)` is the model. Also the template for loading checkpoints.
    """
    init_key, train_key, _ = _split_keys(seed)
    model, pstate = problem.init(init_key)
    params, model_static = eqx.partition(model, eqx.is_array)
    ts = TrainState(params, optimizer.init(params), pstate, train_key, jnp.array(0, jnp.int32))
    return ts, model_static


def _loss_of_params(problem, model_static, problem_state, key):
    """`params -> problem.loss(model, problem_state, key)` for the array leaves of the model."""
    return lambda params: problem.loss(eqx.combine(params, model_static), problem_state, key)


def _make_step(problem_static, model_static, optimizer):
    """One optimizer step on dynamic `(problem_arrays, TrainState)`."""

    def step(problem_arrays, ts: TrainState):
        problem = eqx.combine(problem_arrays, problem_static)
        key = jax.random.fold_in(ts.key, ts.step)
        loss_fn = _loss_of_params(problem, model_static, ts.problem_state, key)
        (loss, (new_pstate, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ts.params
        )
        updates, opt_state = optimizer.update(
            grads,
            ts.opt_state,
            ts.params,
            value=loss,
            grad=grads,
            value_fn=lambda p: loss_fn(p)[0],
        )
        params = optax.apply_updates(ts.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        new = TrainState(params, opt_state, new_pstate, ts.key, ts.step + 1)
        return new, loss, metrics, finite

    return step


def _jitted_loss_and_grad(problem_static, model_static, mesh):
    """Jitted `(problem_arrays, params, state, key) -> ((loss, aux), grads)`."""

    def loss_and_grad(problem_arrays, params, state, key):
        problem = eqx.combine(problem_arrays, problem_static)
        loss_fn = _loss_of_params(problem, model_static, state, key)
        with batch_sharding(mesh):
            return jax.value_and_grad(loss_fn, has_aux=True)(params)

    return jax.jit(loss_and_grad)


def make_loss_and_grad(problem, model, *, devices: int | str = 1):
    """Jitted `(params, state, key) -> ((loss, (state, metrics)), grads)` for `problem`.

    `params` are the array leaves of `model`. With `devices > 1` the batch
    arrays that the problem marks with `shard_batch` are split over a 1-D
    mesh of that many devices and the parameters replicated, exactly as in
    `fit`; useful for checking data-parallel numerics.
    """
    params, model_static = eqx.partition(model, eqx.is_array)
    problem_arrays, problem_static = eqx.partition(problem, eqx.is_array)
    mesh = make_mesh(devices)
    jitted = _jitted_loss_and_grad(problem_static, model_static, mesh)
    problem_arrays = replicate(problem_arrays, mesh)

    def call(params, state, key):
        return jitted(problem_arrays, replicate(params, mesh), replicate(state, mesh), key)

    return call


def _chunk_fn(step, length: int, counter: list[int], mesh):
    """Up to `length` steps in one compiled loop; the first `n` run.

    A `lax.while_loop` with a dynamic trip count: the same program serves full
    chunks, short chunks and resumed runs, and it stops at the first
    non-finite loss or gradient without masking or selecting anything per
    step (a masked `scan` measured ~4% slower on the spiral problem).
    """

    def chunk(problem_arrays, ts: TrainState, n):
        counter[0] += 1  # runs at trace time only
        with batch_sharding(mesh):
            shapes = jax.eval_shape(step, problem_arrays, ts)
            buffers = jax.tree.map(lambda s: jnp.zeros((length, *s.shape), s.dtype), shapes[1:3])

            def cond(carry):
                i, ok = carry[0], carry[1]
                return ok & (i < n)

            def body(carry):
                i, _, ts, (losses, metrics) = carry
                ts, loss, step_metrics, finite = step(problem_arrays, ts)
                losses = losses.at[i].set(loss)
                metrics = jax.tree.map(lambda b, v: b.at[i].set(v), metrics, step_metrics)
                return i + 1, finite, ts, (losses, metrics)

            init = (jnp.array(0, jnp.int32), jnp.array(True), ts, buffers)
            i, ok, ts, (losses, metrics) = jax.lax.while_loop(cond, body, init)
        # On failure `ts` holds the non-finite state of step ts.step - 1; the
        # caller discards it (the last checkpoint is the good state).
        return ts, ok, ts.step - 1, losses, metrics

    return chunk


def _diagnose(problem, problem_static, model_static, problem_arrays, ts: TrainState, mesh):
    """Explain the non-finite loss or gradient of the step `ts` is about to take."""
    key = jax.random.fold_in(ts.key, ts.step)
    model = eqx.combine(ts.params, model_static)
    parts = []
    try:
        loss_and_grad = _jitted_loss_and_grad(problem_static, model_static, mesh)
        (loss, _), grads = loss_and_grad(problem_arrays, ts.params, ts.problem_state, key)
        loss = float(loss)
        if not math.isfinite(loss):
            parts.append(f"the loss is {loss}")
        else:
            bad = [
                jax.tree_util.keystr(path)
                for path, g in jax.tree_util.tree_leaves_with_path(grads)
                if not bool(jnp.all(jnp.isfinite(g)))
            ]
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            parts.append(
                f"the loss is finite ({loss:.6g}) but the gradient is not, in {shown}"
                if bad
                else f"the loss ({loss:.6g}) and gradient are finite when recomputed; the "
                "optimizer update or a nondeterministic computation produced the NaN/Inf"
            )
    except Exception as e:  # a diagnosis must never hide the divergence itself
        parts.append(f"(recomputing the loss failed: {type(e).__name__}: {e})")
    try:
        detail = problem.diagnose(model, ts.problem_state, key)
    except Exception as e:
        detail = f"(the problem's diagnose failed: {type(e).__name__}: {e})"
    if detail:
        parts.append(detail)
    return "; ".join(parts) if parts else None


def _peak_memory_mb() -> dict[str, float]:
    out = {"peak_host_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_memory_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def _to_python(value):
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr.item()
    return arr.tolist()


def _save_loss_figure(history, path: Path) -> None:
    from matplotlib.figure import Figure

    steps = [r["step"] for r in history if "loss" in r]
    losses = [r["loss"] for r in history if "loss" in r]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if steps:
        ax.plot(steps, losses)
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over logged chunk)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, max_step: int) -> list[dict]:
    """Keep the records up to `max_step` (drop those of a killed run past its checkpoint)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        step = rec.get("step", 0)
        # keep the training records up to the checkpoint, not a final evaluation
        # logged at that step (the resumed run logs its own)
        if step < max_step or (step == max_step and "loss" in rec):
            kept.append(rec)
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def fit(
    problem,
    optimizer: optax.GradientTransformation,
    train: TrainConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train `problem` with `optimizer` as configured by `train`.

    Args:
        problem: an `AbstractProblem`.
        optimizer: an optax transformation; its `update` receives the extra
            keyword arguments `value`, `grad` and `value_fn` when it accepts them.
        train: a `TrainConfig` (defaults if `None`).
        run_dir: if given, write `metrics.jsonl`, `checkpoints/`,
            `summary.json` and `figures/` there.
        resume: continue from the newest checkpoint in `run_dir/checkpoints`.

    Returns:
        A `FitResult`.

    Raises:
        TrainingDiverged: the loss or gradient became NaN/Inf; training state
            from that step is discarded and the last checkpoint left intact.
    """
    train = TrainConfig() if train is None else train
    t_start = time.perf_counter()
    mesh = make_mesh(train.devices)
    if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
        optimizer = optax.with_extra_args_support(optimizer)

    _, _, eval_key = _split_keys(train.seed)
    ts, model_static = init_train_state(problem, optimizer, train.seed)
    problem_arrays, problem_static = eqx.partition(problem, eqx.is_array)

    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_dir = run_dir / "checkpoints" if run_dir is not None else None
    metrics_path = run_dir / "metrics.jsonl" if run_dir is not None else None
    history: list[dict] = []
    last_ckpt: Path | None = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "figures").mkdir(exist_ok=True)
    if resume:
        if ckpt_dir is None:
            raise ValueError("fit(resume=True) needs run_dir")
        found = latest_checkpoint(ckpt_dir)
        if found is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {ckpt_dir}")
        ts = load_checkpoint(found[1], ts)
        last_ckpt = found[1]
        history = _truncate_metrics(metrics_path, int(ts.step))

    # The chunk donates the training state; give every leaf its own buffer
    # (optimizer states may hold one array twice, e.g. L-BFGS's zero init).
    ts = jax.tree.map(jnp.copy, replicate(ts, mesh))
    problem_arrays = replicate(problem_arrays, mesh)
    step = int(ts.step)
    if ckpt_dir is not None and last_ckpt is None:
        last_ckpt = save_checkpoint(ckpt_dir, step, ts, keep=train.keep_checkpoints)

    # Compile the chunk once, ahead of time, so compile time is measured apart.
    counter = [0]
    chunk = _chunk_fn(_make_step(problem_static, model_static, optimizer), train.log_every, counter, mesh)
    t0 = time.perf_counter()
    compiled = (
        jax.jit(chunk, donate_argnums=(1,))
        .lower(problem_arrays, ts, jnp.array(0, jnp.int32))
        .compile()
    )
    compile_time = time.perf_counter() - t0

    def boundary(every):
        return math.inf if every is None else (step // every + 1) * every

    def evaluate(ts):
        model = eqx.combine(ts.params, model_static)
        out = problem.evaluate(model, ts.problem_state, jax.random.fold_in(eval_key, ts.step))
        return {k: _to_python(v) for k, v in out.items()}

    bar = None
    if train.progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=train.steps,
            initial=min(step, train.steps),
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5,
        )

    run_time = 0.0
    steps_run = 0
    last_loss = math.nan
    try:
        while step < train.steps:
            stop = min(
                train.steps,
                boundary(train.log_every),
                boundary(train.eval_every),
                boundary(train.checkpoint_every),
            )
            n = stop - step
            # The chunk donates `ts`; keep the chunk's start state so that a
            # divergence can be replayed to the failing step and explained.
            start = jax.tree.map(jnp.copy, ts)
            t0 = time.perf_counter()
            ts, ok, bad, losses, metrics = compiled(problem_arrays, ts, jnp.array(n, jnp.int32))
            losses = np.asarray(losses)[:n]
            dt = time.perf_counter() - t0
            if not bool(ok):
                bad_step = int(bad)
                # Same program and keys, so the replay reproduces the failing step's state.
                at_bad = compiled(problem_arrays, start, jnp.array(bad_step - step, jnp.int32))[0]
                reason = _diagnose(
                    problem, problem_static, model_static, problem_arrays, at_bad, mesh
                )
                if run_dir is not None:
                    _append_jsonl(metrics_path, {"step": bad_step, "diverged": True})
                    summary = {
                        "status": "diverged",
                        "diverged_at_step": bad_step,
                        "last_good_checkpoint": str(last_ckpt) if last_ckpt else None,
                        "reason": reason,
                        "wall_time_s": time.perf_counter() - t_start,
                    }
                    atomic_write_bytes(
                        run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode()
                    )
                raise TrainingDiverged(bad_step, last_ckpt, reason)
            run_time += dt
            steps_run += n
            step = stop
            last_loss = float(losses[-1])
            record = {"step": step, "loss": float(losses.mean())}
            record.update(
                {k: float(np.asarray(v)[:n].mean()) for k, v in metrics.items()}
            )
            record["steps_per_s"] = n / dt
            record["time_s"] = time.perf_counter() - t_start
            if train.eval_every is not None and step % train.eval_every == 0 and step < train.steps:
                record.update({f"eval/{k}": v for k, v in evaluate(ts).items()})
            history.append(record)
            if metrics_path is not None:
                _append_jsonl(metrics_path, record)
            if ckpt_dir is not None and (
                step == train.steps
                or (train.checkpoint_every is not None and step % train.checkpoint_every == 0)
            ):
                last_ckpt = save_checkpoint(ckpt_dir, step, ts, keep=train.keep_checkpoints)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{record['loss']:.3e}", steps_per_s=f"{n / dt:.0f}")
    finally:
        if bar is not None:
            bar.close()

    final_eval = evaluate(ts)
    wall = time.perf_counter() - t_start
    summary = {
        "status": "completed",
        "steps": step,
        "final_loss": last_loss,
        **final_eval,
        "wall_time_s": wall,
        "compile_time_s": compile_time,
        "train_time_s": run_time,
        "steps_per_s": steps_run / run_time if run_time > 0 else None,
        "devices": mesh.size,
        "platform": jax.local_devices()[0].platform,
        **_peak_memory_mb(),
    }
    model = eqx.combine(ts.params, model_static)
    if run_dir is not None:
        if final_eval:
            rec = {"step": step, **{f"eval/{k}": v for k, v in final_eval.items()}}
            _append_jsonl(metrics_path, rec)
            history.append(rec)
        atomic_write_bytes(run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        _save_loss_figure(history, run_dir / "figures" / "loss.png")
        problem.figures(model, ts.problem_state, run_dir / "figures")
    return FitResult(
        model=model,
        state=ts.problem_state,
        opt_state=ts.opt_state,
        step=step,
        history=history,
        summary=summary,
        traces=counter[0],
    )
