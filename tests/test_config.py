"""Config loading, overrides and error messages (library and CLI)."""

import subprocess

import pytest
import yaml

from helpers import PYTHON, REPO
from sciml.config import (
    AdamConfig,
    ConfigError,
    CosineSchedule,
    apply_overrides,
    load_config,
    load_yaml,
    validate_config,
)

SPIRAL = REPO / "configs" / "neural_ode_spiral.yaml"


def base():
    return load_yaml(SPIRAL.read_text())


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return info.value.messages


def test_default_config_is_valid_and_resolved():
    cfg = load_config(SPIRAL)
    assert cfg.problem_name == "neural_ode_spiral"
    assert isinstance(cfg.optimizer, AdamConfig)
    assert isinstance(cfg.optimizer.schedule, CosineSchedule)
    # decay horizon pinned at validation: steps - warmup
    assert cfg.optimizer.schedule.decay_steps == cfg.train.steps - 200
    d = cfg.to_dict()
    assert set(d) == {"problem", "model", "optimizer", "train", "output"}
    assert validate_config(d) == cfg  # the resolved config round-trips


def test_yaml_reads_exponent_floats():
    assert load_yaml("a: 3e-3\nb: 1E5\nc: 1.5\nd: .5\ne: 10\nf: 1e3x") == {
        "a": 3e-3,
        "b": 1e5,
        "c": 1.5,
        "d": 0.5,
        "e": 10,
        "f": "1e3x",
    }


def test_overrides_are_typed_and_nested():
    data = apply_overrides(
        base(), ["train.steps=2000", "optimizer.lr=3e-3", "optimizer.clip_norm=1", "output.dir=null"]
    )
    cfg = validate_config(data)
    assert cfg.train.steps == 2000 and cfg.optimizer.lr == 3e-3 and cfg.optimizer.clip_norm == 1
    assert apply_overrides({}, ["a.b.c=x"]) == {"a": {"b": {"c": "x"}}}


@pytest.mark.parametrize("bad", ["train.steps", "=3", "train..steps=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides({}, [bad])


def test_override_through_a_value_is_rejected():
    with pytest.raises(ConfigError, match="train.steps is 5, not a section"):
        apply_overrides({"train": {"steps": 5}}, ["train.steps.x=1"])


def test_negative_steps_message():
    data = apply_overrides(base(), ["train.steps=-5"])
    assert errors_of(data) == ["config error: train.steps: must be a positive integer, got -5"]


def test_unknown_key_suggests_closest():
    data = apply_overrides(base(), ["train.stpes=5"])
    (msg,) = errors_of(data)
    assert msg.startswith("config error: train.stpes: unknown key; did you mean steps")
    assert "allowed keys:" in msg and "checkpoint_every" in msg


def test_unknown_key_in_problem_and_tagged_sections():
    data = apply_overrides(base(), ["problem.batchsize=3", "optimizer.momentum=0.9"])
    msgs = errors_of(data)
    assert any(m.startswith("config error: problem.batchsize: unknown key; did you mean batch_size") for m in msgs)
    # adam has no momentum: the path must not contain pydantic's union tag
    assert any(m.startswith("config error: optimizer.momentum: unknown key") for m in msgs)


def test_wrong_types_are_not_coerced():
    data = apply_overrides(base(), ["train.steps=10.5", "optimizer.lr=fast", "train.progress=1"])
    msgs = errors_of(data)
    assert "config error: train.steps: must be a valid integer, got 10.5" in msgs
    assert "config error: optimizer.lr: must be a valid number, got 'fast'" in msgs
    assert "config error: train.progress: must be a valid boolean, got 1" in msgs


def test_out_of_range_and_choices():
    data = apply_overrides(
        base(),
        ["optimizer.b1=1.5", "model.activation=tan", "train.devices=many", "problem.batch_time=2000"],
    )
    msgs = "\n".join(errors_of(data))
    assert "optimizer.b1: must be less than 1, got 1.5" in msgs
    assert "model.activation:" in msgs and "'tanh'" in msgs and "got 'tan'" in msgs
    assert "train.devices:" in msgs and "got 'many'" in msgs
    assert "batch_time (2000) must be smaller than n_points (1000)" in msgs


def test_unknown_optimizer_and_problem_names():
    data = apply_overrides(base(), ["optimizer.name=adm"])
    (msg,) = errors_of(data)
    assert msg.startswith("config error: optimizer.name: unknown choice 'adm' (did you mean 'adam'?)")
    assert "lbfgs" in msg
    data = apply_overrides(base(), ["problem.name=neural_ode_spirl"])
    (msg,) = errors_of(data)
    assert "problem.name: unknown problem 'neural_ode_spirl'" in msg
    assert "did you mean 'neural_ode_spiral'" in msg


def test_missing_problem_and_bad_top_level():
    msgs = errors_of({"train": {"steps": 3}})
    assert "config error: problem: required key is missing" in msgs
    msgs = errors_of({"problem": {"name": "neural_ode_spiral"}, "trian": {}})
    assert msgs[0].startswith("config error: trian: unknown key; did you mean train?")
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_config([1, 2])


def test_every_optimizer_and_schedule_validates():
    # validation only; what the settings do to the updates is checked in test_optim.py
    for opt in (
        {"name": "adam", "schedule": {"name": "exponential", "decay_rate": 0.9, "warmup_steps": 10}},
        {"name": "adamw", "weight_decay": 0.01, "schedule": {"name": "cosine"}},
        {"name": "sgd", "momentum": 0.5, "nesterov": True, "clip_norm": 1.0},
        {"name": "lbfgs", "memory_size": 5},
        {"name": "sequence", "phases": [{"name": "adam"}, {"name": "lbfgs"}], "boundaries": [10]},
    ):
        data = {**base(), "optimizer": opt}
        assert validate_config(data).optimizer.name == opt["name"]


def test_yaml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


# --- command line ---------------------------------------------------------------


def cli(*args, cwd=None):
    return subprocess.run(
        [PYTHON, "-m", "sciml.train", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=300,
    )


def test_cli_rejects_bad_value_with_status_2_and_no_traceback():
    r = cli(SPIRAL, "train.steps=-5")
    assert r.returncode == 2
    assert "config error: train.steps: must be a positive integer, got -5" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_print_config_list_help(tmp_path):
    r = cli(SPIRAL, "train.steps=200", "train.eval_every=null", "--print-config")
    assert r.returncode == 0, r.stderr
    printed = yaml.safe_load(r.stdout)
    assert printed["train"]["steps"] == 200
    assert printed["output"]["dir"] == "runs/neural_ode_spiral"
    # decay_steps: null resolves to max(steps - warmup_steps, 1) at validation
    warmup = yaml.safe_load(SPIRAL.read_text())["optimizer"]["schedule"]["warmup_steps"]
    assert printed["optimizer"]["schedule"]["warmup_steps"] == warmup
    assert printed["optimizer"]["schedule"]["decay_steps"] == max(200 - warmup, 1)
    r = cli("--list")
    assert r.returncode == 0 and "neural_ode_spiral" in r.stdout
    r = cli("--help")
    assert r.returncode == 0
    for word in ("--resume", "--overwrite", "--print-config", "--list", "train.steps=2000", "exit status"):
        assert word in r.stdout
    r = cli()
    assert r.returncode == 2 and "CONFIG file is required" in r.stderr


def test_cli_refuses_existing_run_and_foreign_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("keep me")
    r = cli(SPIRAL, f"output.dir={run}")
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--resume" in r.stderr
    assert (run / "config.yaml").read_text() == "keep me"
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    r = cli(SPIRAL, f"output.dir={other}", "--overwrite")
    assert r.returncode == 2 and "not a sciml run" in r.stderr
    assert (other / "notes.txt").read_text() == "precious"


def test_cli_resume_rejects_changing_the_maths(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(SPIRAL)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    r = cli("--resume", run, "optimizer.lr=1.0")
    assert r.returncode == 2 and "optimizer.lr: cannot be changed when resuming" in r.stderr
    r = cli("--resume", tmp_path / "nothing")
    assert r.returncode == 2 and "no config.yaml" in r.stderr


def test_cli_too_many_devices():
    r = cli(SPIRAL, "train.devices=64", "output.dir=/nonexistent/never")
    assert r.returncode == 2 and "train.devices: 64 requested" in r.stderr


def test_sequence_errors_name_the_phase():
    data = apply_overrides(
        base(),
        ["optimizer={name: sequence, phases: [{name: adam, lr: -1}, {name: lbfgs, momentum: 3}], boundaries: [10]}"],
    )
    msgs = errors_of(data)
    assert "config error: optimizer.phases[0].lr: must be greater than 0, got -1" in msgs
    assert any(m.startswith("config error: optimizer.phases[1].momentum: unknown key") for m in msgs)
    data = apply_overrides(base(), ["optimizer={name: sequence, phases: [{name: adam}, {name: sgd}], boundaries: [10, 20]}"])
    (msg,) = errors_of(data)
    assert "boundaries needs 1 step(s) for 2 phases" in msg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.seed=99999999999999999999999", "train.seed: must be less than or equal to 4294967295"),
        ("train.steps=1000000000000000000000000000000", "train.steps: must be less than or equal to 2147483647"),
        ("optimizer.lr=.inf", "optimizer.lr: must be a finite number, got inf"),
        ("optimizer.clip_norm=1e400", "optimizer.clip_norm: must be a finite number, got inf"),
        ("optimizer.name=null", "optimizer.name: required key is missing (it selects the kind)"),
        ("problem.name=[1, 2]", "problem.name: unknown problem [1, 2]"),
    ],
)
def test_values_that_used_to_pass_or_crash_are_rejected(override, message):
    msgs = errors_of(apply_overrides(base(), [override]))
    assert any(message in m for m in msgs), msgs


def test_duplicate_keys_and_binary_files_are_config_errors(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("problem: {name: neural_ode_spiral}\ntrain: {steps: 3}\ntrain: {steps: 5}\n")
    with pytest.raises(ConfigError, match="line 3, column 1: duplicate key 'train'"):
        load_config(dup)
    for name, data in [("bin.yaml", b"\xff\xfe\x00p\x00"), ("nul.yaml", b"problem:\x00 x")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError, match="not a UTF-8 text file|NUL bytes"):
            load_config(path)


def test_cli_output_path_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    r = cli(SPIRAL, f"output.dir={blocker}/run", "train.steps=10", "optimizer.schedule.warmup_steps=0",
            "train.eval_every=null")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {blocker}/run: Not a directory" in r.stderr
    assert blocker.read_text() == "mine"


def test_cross_field_errors_read_as_sentences():
    msgs = errors_of(apply_overrides(base(), ["problem.batch_time=2000"]))
    assert msgs == ["config error: problem: batch_time (2000) must be smaller than n_points (1000)"]


def test_a_problem_refusing_its_settings_exits_2_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    r = cli(REPO / "configs" / "robertson_fit.yaml", "train.dtype=float32", f"output.dir={run}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "config error: problem: robertson_fit: RobertsonFit needs float64" in r.stderr
    assert not run.exists()


@pytest.mark.parametrize(
    "config, override, message",
    [
        ("ude_lotka_volterra", "problem.dt=5.0", "dt (5.0) must be at most t_end / 2"),
        ("ude_lotka_volterra", "problem.dt=1e-9", "at most 10**5"),
        ("lorenz_sindy", "problem.t_end=1e300", "at most 10**6"),
        ("neural_ode_spiral", "problem.t_end=1e300", "problem.t_end: must be less than or equal to 10000"),
    ],
)
def test_sizes_that_would_hang_or_exhaust_memory_are_rejected(config, override, message):
    data = apply_overrides(load_yaml((REPO / "configs" / f"{config}.yaml").read_text()), [override])
    msgs = errors_of(data)
    assert any(message in m for m in msgs), msgs


def test_intervals_longer_than_the_run_are_rejected():
    msgs = errors_of(apply_overrides(base(), ["train.steps=100"]))  # warmup 200, eval every 1000
    assert any(m.startswith("config error: optimizer.schedule.warmup_steps: 200 is longer than the run") for m in msgs)
    assert any(m.startswith("config error: train.eval_every: 1000 is longer than the run") for m in msgs)


def test_every_shipped_config_validates_and_names_a_registered_problem_and_optimizer():
    """configs/*.yaml are what users copy: each must load as it stands (a renamed setting or a
    removed option breaks a config before any user sees it)."""
    from sciml.problems import list_problems

    paths = sorted((REPO / "configs").glob("*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        cfg = load_config(path, [])
        assert cfg.problem_name in list_problems(), path.name
