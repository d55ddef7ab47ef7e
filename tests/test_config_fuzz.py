"""Property-based fuzz of the config layer over every registered section.

Hypothesis draws a registered section (every problem's `problem` and `model`
sections, every optimizer's section, a schedule inside an optimizer, a phase
of a sequence, `train`, `output`, the top level) and breaks it one way: an
unknown key, a value of the wrong type, or a number outside the field's
declared range. Validation must then raise `ConfigError` with a message that
names the dotted key (what the CLI prints before exiting with status 2).
Sections that later pillars register are picked up automatically.
"""

import types
import typing

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sciml.config import OutputConfig, TrainConfig, validate_config
from sciml.optim import get_optimizer_spec, list_optimizers
from sciml.problems import get_problem_spec, list_problems
from sciml.schema import ConfigError

BASE_OPTIMIZER = {"name": "adam"}
SEQUENCE = {"name": "sequence", "phases": [{"name": "adam"}, {"name": "sgd"}], "boundaries": [10]}


def _valid_optimizer(name):
    for candidate in ({"name": name}, {**SEQUENCE, "name": name}):
        try:
            validate_config({"problem": {"name": "neural_ode_spiral"}, "optimizer": candidate})
            return candidate
        except ConfigError:
            continue
    return None  # an optimizer with required settings this test cannot guess


def targets():
    """(label, section class, where) for every section a config can hold."""
    out = []
    for name in list_problems():
        spec = get_problem_spec(name)
        out.append((f"problem:{name}", spec.params, ("problem", name)))
        out.append((f"model:{name}", spec.model, ("model", name)))
    for name in list_optimizers():
        base = _valid_optimizer(name)
        if base is None:
            continue
        config = get_optimizer_spec(name).config
        out.append((f"optimizer:{name}", config, ("optimizer", base)))
        if "schedule" in config.model_fields:
            kinds = _flat(config.model_fields["schedule"].annotation)[0]
            for cls in [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]:
                tag = typing.get_args(cls.model_fields["name"].annotation)[0]
                out.append((f"schedule:{name}:{tag}", cls, ("schedule", base, tag)))
    phase_config = get_optimizer_spec("adam").config
    out.append(("phase:adam", phase_config, ("phase",)))
    out.append(("train", TrainConfig, ("train",)))
    out.append(("output", OutputConfig, ("output",)))
    return out



def place(where, section: dict):
    """A full config with `section` at `where`, and the dotted prefix of that section."""
    data = {"problem": {"name": "neural_ode_spiral"}}
    kind = where[0]
    if kind == "problem":
        data["problem"] = {"name": where[1], **section}
        return data, "problem"
    if kind == "model":
        data["problem"] = {"name": where[1]}
        data["model"] = section
        return data, "model"
    if kind == "optimizer":
        data["optimizer"] = {**where[1], **section}
        return data, "optimizer"
    if kind == "schedule":
        data["optimizer"] = {**where[1], "schedule": {"name": where[2], **section}}
        return data, "optimizer.schedule"
    if kind == "phase":
        data["optimizer"] = {**SEQUENCE, "phases": [{"name": "adam", **section}, {"name": "sgd"}]}
        return data, "optimizer.phases[0]"
    data[kind] = section
    return data, kind


def _flat(annotation):
    """The plain types and constraints inside Optional / Annotated / Union."""
    found, constraints = [], []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(annotation)
        t, c = _flat(inner)
        return t, c + list(meta)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            t, c = _flat(arg)
            found += t
            constraints += c
        return found, constraints
    return [annotation], constraints


def fields(cls):
    return [n for n in cls.model_fields if n != "name"]


def wrong_value(cls, field):
    """A value no field of this annotation accepts."""
    types_, _ = _flat(cls.model_fields[field].annotation)
    sectionish = any(isinstance(t, type) and issubclass(t, BaseModel) for t in types_)
    containers = any(typing.get_origin(t) in (list, tuple) or t in (list, tuple) for t in types_)
    if sectionish:  # a mapping is the right shape for a nested section
        return st.one_of(st.integers(), st.lists(st.integers(), min_size=1))
    if containers:
        return st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1)
    return st.one_of(
        st.lists(st.integers(), min_size=1, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2),
    )


def out_of_range(cls, field):
    """A number just outside the field's declared bounds, or None when it has none."""
    field_info = cls.model_fields[field]
    types_, constraints = _flat(field_info.annotation)
    constraints = constraints + list(field_info.metadata)
    numeric = [t for t in types_ if t in (int, float)]
    if not numeric or bool in types_:
        return None
    kind = int if int in numeric and float not in numeric else float
    bad = []
    for c in constraints:
        if isinstance(c, at.Gt):
            bad.append(st.sampled_from([c.gt, c.gt - 1, c.gt - 1000]))
        elif isinstance(c, at.Ge):
            bad.append(st.sampled_from([c.ge - 1, c.ge - 1000]))
        elif isinstance(c, at.Lt):
            bad.append(st.sampled_from([c.lt, c.lt + 1, c.lt * 10 + 1000]))
        elif isinstance(c, at.Le):
            bad.append(st.sampled_from([c.le + 1, c.le * 10 + 1000]))
    if not bad:
        return None
    return st.one_of(bad).map(kind)


TARGETS = targets()


@st.composite
def broken_configs(draw, target):
    label, cls, where = target
    mode = draw(st.sampled_from(["unknown", "type", "range", "top"]))
    if mode == "top":
        key = draw(st.from_regex(r"\A[a-z][a-z_]{0,10}\Z").filter(
            lambda k: k not in ("problem", "model", "optimizer", "train", "output")))
        data, _ = place(where, {})
        data[key] = draw(st.integers())
        return label, data, key
    if mode == "unknown" or not fields(cls):
        key = draw(st.from_regex(r"\A[a-z][a-z_]{0,10}\Z").filter(lambda k: k not in cls.model_fields))
        data, prefix = place(where, {key: draw(st.integers())})
        return label, data, f"{prefix}.{key}"
    field = draw(st.sampled_from(fields(cls)))
    value = draw(wrong_value(cls, field)) if mode == "type" else None
    if mode == "range":
        strategy = out_of_range(cls, field)
        value = draw(strategy) if strategy is not None else draw(wrong_value(cls, field))
    data, prefix = place(where, {field: value})
    return label, data, f"{prefix}.{field}"


@pytest.mark.parametrize("target", TARGETS, ids=[label for label, _, _ in TARGETS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_broken_section_is_a_config_error_naming_the_key(target, data):
    # One property test per registered section, so every section is fuzzed on
    # every run (a single draw over all sections missed some as they grew).
    label, config, key = data.draw(broken_configs(target))
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    messages = info.value.messages
    assert any(m.startswith(f"config error: {key}") for m in messages), (label, config, messages)
    assert all(m.startswith(("config error: ", "error: ")) for m in messages)


def test_every_registered_problem_and_optimizer_is_a_target():
    labels = {label for label, _, _ in TARGETS}
    for name in list_problems():
        assert {f"problem:{name}", f"model:{name}"} <= labels, name
    assert "optimizer:adam" in labels and "train" in labels and "output" in labels
