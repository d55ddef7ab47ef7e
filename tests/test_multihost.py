"""Several processes train one model: 2 processes x 2 CPU devices against 1 process x 4.

The run starts `multihost_worker.py` twice (JAX's multi-controller runtime,
`sciml.parallel.initialize_distributed`, gloo collectives on CPU) on a free
localhost port, trained with `python -m sciml.train` (and, marked slow, with
`fit` directly); it starts when the first test asks for it and runs while
this process computes the single-process references.

If this machine's JAX cannot run cross-process CPU collectives, the tests
skip with the error the workers reported; any other failure fails them.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import multihost_worker as worker
import numpy as np
import optax
import pytest

from helpers import REPO
from sciml.checkpoint import list_checkpoints
from sciml.problems import build_problem
from sciml.trainer import fit, make_loss_and_grad

WORKER = Path(worker.__file__)
TIMEOUT_S = 240
# Errors that mean "this JAX cannot run computations across CPU processes"
# (any other failure, a gloo connection lost included, fails the tests).
UNSUPPORTED = re.compile(
    r"Multiprocess computations aren't implemented on the CPU backend"
    r"|(?i:gloo\b.*\b(not (available|supported|built|compiled)|unavailable|unsupported))"
    r"|(?i:(unknown|invalid|unsupported|unrecognized)\b.*collectives)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if "Error" in ln or "error:" in ln]


class Workers:
    """Two worker processes of one run; `wait()` returns their output folder or skips/fails."""

    def __init__(self, out: Path, *extra: str):
        self.out, self.extra = out, extra
        self.outcome: tuple[str, str] | None = None
        self._start()

    def _start(self):
        self.out.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        coordinator = f"127.0.0.1:{_free_port()}"
        self.deadline = time.monotonic() + TIMEOUT_S
        self.procs = []
        for pid in range(2):
            with open(self.out / f"log_{pid}.txt", "wb") as log:
                cmd = [sys.executable, str(WORKER), "--coordinator", coordinator]
                cmd += ["--num-processes", "2", "--process-id", str(pid), "--out", str(self.out)]
                self.procs.append(
                    subprocess.Popen(
                        [*cmd, *self.extra],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- process {i} ---\n"
            + (self.out / f"log_{i}.txt").read_text(errors="replace")[-4000:]
            for i in range(2)
        )

    def _finish(self) -> tuple[str, str]:
        # Poll both: once one fails, the other may wait for it forever in a collective.
        while True:
            codes = [p.poll() for p in self.procs]
            if all(c == 0 for c in codes):
                return "ok", ""
            if any(c not in (None, 0) for c in codes):
                time.sleep(1.0)  # let the other one report its own error, if it has one
                self.kill()
                text = self.logs()
                errors = _error_lines(text)
                unsupported = [e for e in errors if UNSUPPORTED.search(e)]
                if unsupported:
                    return (
                        "skip",
                        f"cross-process CPU collectives do not work here: {unsupported[-1]}",
                    )
                codes = [p.returncode for p in self.procs]
                return "fail", f"workers {self.extra} exited with {codes}:\n{text}"
            if time.monotonic() > self.deadline:
                self.kill()
                return (
                    "fail",
                    f"workers {self.extra} still running after {TIMEOUT_S} s:\n{self.logs()}",
                )
            time.sleep(0.2)

    def wait(self) -> Path:
        if self.outcome is None:
            self.outcome = self._finish()
        kind, message = self.outcome
        if kind == "skip":
            pytest.skip(message)
        if kind == "fail":
            pytest.fail(message)
        return self.out


@pytest.fixture(scope="module", params=["cli", pytest.param("fit", marks=pytest.mark.slow)])
def launched(request, tmp_path_factory):
    """The 2-process run, trained with the command line (or, marked slow, with `fit`)."""
    workers = Workers(tmp_path_factory.mktemp(f"multihost_{request.param}"), "--via", request.param)
    try:
        yield workers
    finally:
        workers.kill()


def spiral():
    return build_problem(*worker.PROBLEM)


def model_leaves(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("steps_per_s", "time_s")}
        for x in lines
    ]


def test_loss_and_gradient_match_one_process_on_four_devices(launched, x64):
    problem = spiral()
    model, state = problem.init(jax.random.PRNGKey(worker.MODEL_SEED))
    params = eqx.filter(model, eqx.is_array)
    (loss, _), grads = make_loss_and_grad(problem, model, devices=4)(
        params, state, jax.random.PRNGKey(worker.KEY_SEED)
    )
    assert len(jax.tree.leaves(grads)[0].sharding.device_set) == 4
    got = np.load(launched.wait() / "grad.npz")
    assert got["loss"].dtype == np.float64
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-10, atol=0)
    leaves = jax.tree.leaves(grads)
    assert len(got.files) == 1 + len(leaves)
    for i, g in enumerate(leaves):
        np.testing.assert_allclose(got[f"g{i}"], g, rtol=1e-10, atol=1e-14)


def test_fit_matches_one_process_and_resume_is_exact(launched, x64):
    one = fit(spiral(), optax.adam(worker.LR), worker.train_config(worker.STEPS, devices=4))
    out = launched.wait()
    got = np.load(out / "fit.npz")
    leaves = model_leaves(one.model)
    for i, a in enumerate(leaves):
        np.testing.assert_allclose(got[f"full_{i}"], a, rtol=1e-9, atol=1e-12)
    full, resumed = out / "runs" / "full", out / "runs" / "resumed"
    final_loss = json.loads((full / "summary.json").read_text())["final_loss"]
    np.testing.assert_allclose(final_loss, one.summary["final_loss"], rtol=1e-9)

    # resumed from the step-STOP checkpoint: bitwise the uninterrupted run
    for i in range(len(leaves)):
        np.testing.assert_array_equal(got[f"resumed_{i}"], got[f"full_{i}"])
    steps = list(range(0, worker.STEPS + 1, worker.CHECKPOINT_EVERY))
    for run_dir in (full, resumed):
        assert [s for s, _ in list_checkpoints(run_dir / "checkpoints")] == steps
        summary = json.loads((run_dir / "summary.json").read_text())
        assert (summary["status"], summary["steps"]) == ("completed", worker.STEPS)
        assert (summary["processes"], summary["devices"]) == (2, 4)
    last = f"step_{worker.STEPS:09d}.eqx"
    assert (resumed / "checkpoints" / last).read_bytes() == (
        full / "checkpoints" / last
    ).read_bytes()
    # the records past the checkpoint were dropped and written again, once each
    assert records(resumed) == records(full)
    assert [r["step"] for r in records(full)] == [2, 4, 6, 6]


def test_only_process_zero_writes_the_run_directory(launched):
    out = launched.wait()
    info = [json.loads((out / f"writes_{pid}.json").read_text()) for pid in range(2)]
    for pid, i in enumerate(info):
        assert (i["process_index"], i["process_count"]) == (pid, 2)
        assert (i["local_devices"], i["global_devices"]) == (2, 4)
    assert info[1]["writes"] == []
    runs = out / "runs"
    written = {Path(path).relative_to(runs).parts[:1] for _, path in info[0]["writes"]}
    assert written == {(), ("full",), ("resumed",)}
    assert not list(runs.rglob("*.tmp"))


def test_every_process_stops_when_process_zero_refuses_the_run_directory(tmp_path):
    # Process 0 alone checks the run directory; the others must stop with it
    # (exit 2) instead of waiting for it at the first collective.
    run = tmp_path / "taken"
    run.mkdir()
    (run / "config.yaml").write_text("a run")
    coordinator = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sciml.train", str(REPO / "configs/neural_ode_spiral.yaml"),
             f"output.dir={run}", "train.devices=all", "--coordinator", coordinator,
             "--num-processes", "2", "--process-id", str(i)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    errs = [e for _, e in outs]
    if any(UNSUPPORTED.search(e) for e in errs):
        pytest.skip("this JAX cannot run cross-process CPU collectives")
    assert [p.returncode for p in procs] == [2, 2], errs
    assert "already holds a run" in errs[0]
    assert f"process 0 refused the run directory {run}" in errs[1]
    assert (run / "config.yaml").read_text() == "a run"
