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
