"""Stage 1 validation: JSON Schemas shipped in the package, errors with field paths."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from hwsim.errors import SpecError
from hwsim.registry import suggest

SCHEMA_KINDS = ("device", "node", "cluster", "model", "deployment", "trace", "sweep", "placement")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a file kind."""
    if kind not in SCHEMA_KINDS:
        raise SpecError(f"unknown schema '{kind}'; known: {', '.join(SCHEMA_KINDS)}{suggest(kind, SCHEMA_KINDS)}")
    text = resources.files("hwsim.io.schemas").joinpath(f"v1/{kind}.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema(kind))
    return cls(schema(kind))


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err: jsonschema.ValidationError) -> SpecError:
    path = _path(err.absolute_path)
    v, kw = err.validator, err.validator_value
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        name = extra[0] if extra else "?"
        where = f"{path}.{name}" if path else name
        return SpecError(f"unknown field '{name}'{suggest(name, allowed)}", path=where,
                         expected=f"one of {', '.join(allowed)}", found=name)
    if v == "required":
        missing = [k for k in kw if k not in err.instance]
        name = missing[0] if missing else "?"
        return SpecError(f"missing required field '{name}'", path=f"{path}.{name}" if path else name,
                         expected=f"a value for '{name}'")
    if v == "enum":
        return SpecError("value not allowed", path=path,
                         expected=f"one of {', '.join(map(str, kw))}{_enum_hint(err.instance, kw)}",
                         found=err.instance)
    if v == "type":
        return SpecError("wrong type", path=path, expected=_type_name(kw), found=err.instance)
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        ops = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        return SpecError("value out of range", path=path, expected=f"a number {ops[v]} {kw}", found=err.instance)
    if v == "const":
        return SpecError("wrong value", path=path, expected=repr(kw), found=err.instance)
    if v in ("minItems", "maxItems"):
        return SpecError("wrong number of items", path=path, expected=f"{v} {kw}", found=err.instance)
    if v in ("oneOf", "anyOf") and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        return _describe(best)
    return SpecError(err.message, path=path)


def _enum_hint(found: Any, choices: list[Any]) -> str:
    return suggest(found, [str(c) for c in choices]) if isinstance(found, str) else ""


def _type_name(kw: Any) -> str:
    names = {"string": "a string", "number": "a number", "integer": "an integer", "object": "a mapping",
             "array": "a list", "boolean": "true or false", "null": "nothing"}
    kinds = kw if isinstance(kw, list) else [kw]
    return " or ".join(names.get(str(k), str(k)) for k in kinds)


def check_schema(data: Any, kind: str) -> None:
    """Raise the most relevant schema violation of ``data`` as a SpecError (path relative)."""
    errors = list(_validator(kind).iter_errors(data))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    raise _describe(best)
