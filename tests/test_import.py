"""`import sciml` is cheap and has no side effects."""

import json
import subprocess

from helpers import PYTHON

PROBE = """
import json, sys, time
t = time.perf_counter()
import sciml
elapsed = time.perf_counter() - t
heavy = [m for m in ("jax", "equinox", "optax", "diffrax", "matplotlib") if m in sys.modules]
import jax
x64_after_import = jax.config.jax_enable_x64
import sciml.ude, sciml.trainer, sciml.train, sciml.nn  # the whole package, still no flags flipped
print(json.dumps({"heavy": heavy, "elapsed": elapsed, "x64": x64_after_import,
                  "x64_full": jax.config.jax_enable_x64, "fit": callable(sciml.fit)}))
"""


def test_import_is_light_and_flips_no_flags():
    r = subprocess.run([PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["heavy"] == []  # nothing heavy imported by `import sciml`
    assert out["elapsed"] < 1.0
    assert out["x64"] is False and out["x64_full"] is False
    assert out["fit"] is True  # lazy top-level names resolve
