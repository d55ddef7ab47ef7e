"""Plug-ins: a problem and an optimizer registered from outside `sciml`, trained from the CLI.

The test writes a tiny installed-looking package (a module and a
`*.dist-info` with an entry point in the `sciml.plugins` group) into a
temporary folder on PYTHONPATH, exactly what `pip install` of a third-party
package would leave behind.
"""

import json
import os
import subprocess
import textwrap

import pytest
import yaml

from helpers import PYTHON, REPO

PLUGIN = '''
"""A third-party sciml plug-in: a quadratic problem and sign-SGD."""
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import optax
from pydantic import Field
from typing import Annotated

from sciml.optim import register_optimizer
from sciml.problems import AbstractProblem, register_problem, resolve_settings
from sciml.schema import Section
import equinox as eqx


class QuadraticSettings(Section):
    dim: Annotated[int, Field(gt=0)] = 3
    centre: float = 2.0


class Quadratic(AbstractProblem):
    Settings: ClassVar = QuadraticSettings
    settings: QuadraticSettings = eqx.field(static=True)
    model_settings: Section = eqx.field(static=True)
    metric_names: ClassVar[tuple[str, ...]] = ("distance",)

    def __init__(self, settings=None, model_settings=None, **kwargs):
        self.settings, self.model_settings = resolve_settings(type(self), settings, model_settings, kwargs)

    def init(self, key):
        return jnp.zeros(self.settings.dim), None

    def loss(self, w, state, key):
        return jnp.sum((w - self.settings.centre) ** 2), (state, {})

    def evaluate(self, w, state, key):
        return {"distance": float(jnp.max(jnp.abs(w - self.settings.centre)))}


class SignSGDConfig(Section):
    name: Literal["sign_sgd"]
    lr: Annotated[float, Field(gt=0)] = 0.01


def build_sign_sgd(cfg, total_steps):
    return optax.chain(optax.scale_by_sign(), optax.scale(-cfg.lr))


register_problem("toy_quadratic", Quadratic, description="plug-in quadratic")
register_optimizer("sign_sgd", SignSGDConfig, build_sign_sgd, description="sign SGD")
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "toyplug.py").write_text(PLUGIN)
    info = root / "toyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sciml.plugins]\ntoyplug = toyplug\n")
    return root


def cli(plugin_path, *args):
    env = {**os.environ, "PYTHONPATH": f"{plugin_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [PYTHON, "-m", "sciml.train", *map(str, args)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )


def test_plugin_problem_and_optimizer_train_from_the_cli(plugin_path, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(textwrap.dedent("""\
        problem: {name: toy_quadratic, dim: 4, centre: 1.5}
        model: {}
        optimizer: {name: sign_sgd, lr: 0.01}
        train: {steps: 300, log_every: 100, progress: false, compilation_cache: false}
    """))
    r = cli(plugin_path, "--list")
    assert r.returncode == 0 and "toy_quadratic" in r.stdout and "neural_ode_spiral" in r.stdout
    r = cli(plugin_path, config, f"output.dir={tmp_path}/run")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["distance"] < 0.011  # sign steps of 0.01 end within one step of 1.5
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optimizer"] == {"name": "sign_sgd", "lr": 0.01}
    assert saved["problem"] == {"name": "toy_quadratic", "dim": 4, "centre": 1.5}


def test_plugin_sections_get_the_same_error_messages(plugin_path, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text("problem: {name: toy_quadratic}\noptimizer: {name: sign_sgd, lrr: 1}\n")
    r = cli(plugin_path, config, "problem.dim=0", "--print-config")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "config error: optimizer.lrr: unknown key; did you mean lr?" in r.stderr
    assert "config error: problem.dim: must be a positive integer, got 0" in r.stderr
    r = cli(plugin_path, config, "optimizer.name=sign_sdg", "--print-config")
    assert r.returncode == 2
    assert "optimizer.name: unknown choice 'sign_sdg' (did you mean 'sign_sgd'?)" in r.stderr
    assert "adam" in r.stderr  # lists every registered optimizer


def test_a_broken_plugin_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sciml.plugins]\nbroken = broken\n")
    r = cli(tmp_path, "--list")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "sciml plug-in 'broken'" in r.stderr and "boom" in r.stderr
