"""Helpers shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def sciml_version() -> dict:
    """Which sciml was measured: git HEAD, and whether sciml/ had uncommitted changes."""
    import sciml

    def git(*args):
        cmd = ["git", "-C", str(Path(sciml.__file__).parent), *args]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    return {"git_head": git("rev-parse", "HEAD"), "sciml_dirty": bool(git("status", "--porcelain", "."))}


def write_result(out: Path, result: dict) -> None:
    """Write `result` as JSON to `out`, via a temporary file and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


class PeerWorker:
    """A long-lived worker process in a peer library's own venv, spoken to in JSON lines.

    The worker prints one JSON line (its `info`) when it is ready, then answers
    each request line with one JSON line (`{"error": ...}` on failure) until
    it reads `{"cmd": "quit"}`. Its stderr goes to ours.
    """

    name = "peer"

    def __init__(self, python: Path, worker: Path, *args: str | Path):
        cmd = [str(python), str(worker), *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker did not start (exit {self.proc.wait()})")
        self.info = json.loads(line)

    def request(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died (see its stderr above)")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"{self.name} worker: {out['error']}")
        return out

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
