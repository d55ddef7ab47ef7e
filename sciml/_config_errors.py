"""Pydantic validation errors -> one line per problem, in the keys the user wrote.

Pydantic locates an error by its own path through the schema, which includes
the branch names and discriminator tags of unions. The user wrote a YAML
mapping; this module walks that mapping along the error's location and keeps
only the keys that are really there, so messages read
`config error: optimizer.phases[1].lr: must be greater than 0, got -1`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

__all__ = ["format_validation_error"]


def _unwrap(annotation) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation may hold (through Optional/Union/Annotated/list)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list):
        return [c for a in typing.get_args(annotation) for c in _unwrap(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _pick(candidates: list[type[BaseModel]], node: Any) -> type[BaseModel] | None:
    """The candidate model class for `node` (by its `name` tag when there are several)."""
    if len(candidates) == 1:
        return candidates[0]
    if candidates and isinstance(node, dict):
        tag = node.get("name")
        for c in candidates:
            if "name" in c.model_fields and typing.get_args(c.model_fields["name"].annotation) == (tag,):
                return c
    return None


def _walk(cls: type[BaseModel], data: Any, loc: tuple) -> tuple[list[str], type | None]:
    """Turn a pydantic error location into the keys the user wrote.

    Drops what pydantic inserts that is not a key in the data: discriminator
    tags of tagged unions and the branch names of plain unions. List indices
    become `[i]`. Also returns the model class that owns the last key (to
    list the allowed keys).
    """
    names: list[str] = []
    owner: type | None = cls
    candidates: list[type[BaseModel]] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            names.append(f"[{part}]")
            node = node[part]
            owner = _pick(candidates, node)
            continue
        if not isinstance(node, dict) or (part not in node and owner is None):
            continue  # a union branch name or tag, not a user key
        if part not in node:
            # A key the user did not write: a missing required key, or the
            # tag of a tagged union.
            if node.get("name") == part:
                continue
            names.append(str(part))
            owner, node = None, None
            continue
        names.append(str(part))
        candidates = []
        if owner is not None and part in owner.model_fields:
            candidates = _unwrap(owner.model_fields[part].annotation)
        node = node[part]
        owner = _pick(candidates, node)
    return names, owner


def _is_int_field(field) -> bool:
    """Whether a pydantic field holds an integer (through Annotated/Optional)."""
    if field is None:
        return False
    args = typing.get_args(field.annotation) or (field.annotation,)
    flat = [typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a for a in args]
    return int in flat and float not in flat


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "a mapping"


def format_validation_error(err: ValidationError, cls, data, prefix: str) -> list[str]:
    """One `config error: <dotted.key>: <what is wrong>, got <value>` line per problem in `err`."""
    # (path -> [requirement texts], value) so that the branches of a union
    # (`devices: 3` or `devices: all`) read as one message.
    found: dict[str, tuple[list[str], Any]] = {}
    whole: dict[str, str] = {}
    for e in err.errors():
        names, _ = _walk(cls, data, e["loc"])
        _, owner = _walk(cls, data, e["loc"][:-1])
        field = owner.model_fields.get(names[-1]) if owner is not None and names else None
        path = ".".join([p for p in [prefix, *names] if p]).replace(".[", "[")
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = sorted(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(names[-1], allowed, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            whole[path] = f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
        elif kind == "missing":
            whole[path] = "required key is missing"
        elif kind == "union_tag_invalid":
            tags = re.findall(r"'([^']+)'", e["ctx"]["expected_tags"])
            got = e["ctx"]["tag"]
            close = difflib.get_close_matches(str(got), tags, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            whole[f"{path}.name"] = f"unknown choice {got!r}{hint}; allowed: {', '.join(tags)}"
        elif kind == "value_error" and isinstance(e.get("input"), dict):
            # a check across several keys of a section (a model validator):
            # its own sentence says what is wrong; the section has no one value
            whole[path] = str(e["ctx"]["error"]) if "ctx" in e else e["msg"].removeprefix("Value error, ")
        elif kind == "union_tag_not_found":
            whole[f"{path}.name"] = "required key is missing (it selects the kind)"
        else:
            if kind == "greater_than" and e["ctx"].get("gt") == 0 and _is_int_field(field):
                text = "must be a positive integer"
            else:
                text = e["msg"].replace("Input should be", "must be")
                text = text[0].lower() + text[1:]
            texts, _ = found.setdefault(path, ([], e["input"]))
            if text not in texts:
                texts.append(text)
    messages = [f"config error: {path}: {msg}" for path, msg in whole.items()]
    for path, (texts, value) in found.items():
        if path in whole:
            continue
        joined = texts[0] + "".join(" or " + t.removeprefix("must be ") for t in texts[1:])
        messages.append(f"config error: {path}: {joined}, got {_describe(value)}")
    return messages
