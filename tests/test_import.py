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


def _module_imports(path, package_root):
    """sciml modules imported at module level (not inside functions) by the file at `path`."""
    import ast

    tree = ast.parse(path.read_text())
    name = ".".join(path.relative_to(package_root.parent).with_suffix("").parts).removesuffix(".__init__")
    found = set()
    for node in tree.body:  # module level only: imports inside functions are lazy by design
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sciml"):
            found.add(node.module)
            for alias in node.names:  # `from sciml.optim import _configs` style
                found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sciml"))
    return name, found


def test_no_import_cycles_in_the_package():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sciml"
    graph = dict(_module_imports(p, root) for p in root.rglob("*.py"))
    modules = set(graph)
    # an import of a package also runs its __init__; importing a.b runs a too
    edges = {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}

    def visit(m, stack, done):
        if m in stack:
            cycle = stack[stack.index(m):] + [m]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        stack.append(m)
        for d in sorted(edges[m]):
            visit(d, stack, done)
        stack.pop()
        done.add(m)

    done: set[str] = set()
    for m in sorted(modules):
        visit(m, [], done)
    # the layering the docs promise: the schema layer imports no other sciml module
    assert edges["sciml.schema"] <= {"sciml._config_errors"}
    assert not any(d.startswith("sciml.config") for d in edges["sciml.problems"])
