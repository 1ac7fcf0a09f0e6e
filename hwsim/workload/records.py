"""Request records: one JSON object of a trace file to a :class:`Request` and back.

The fields are documented in :mod:`hwsim.workload.trace`. Checks report the offending field's
path relative to the record; the readers add the file, the line and the record's own path.
"""

from __future__ import annotations

import math
from typing import Any

from hwsim.errors import SpecError
from hwsim.registry import suggest
from hwsim.workload.request import DEFAULT_BLOCK_TOKENS, Request

__all__ = ["RECORD_FIELDS", "REQUIRED_FIELDS", "request_from_record", "request_to_record"]

RECORD_FIELDS = (
    "id",
    "arrival_s",
    "input_tokens",
    "output_tokens",
    "prefix_blocks",
    "block_tokens",
    "tenant",
    "priority",
)
REQUIRED_FIELDS = ("arrival_s", "input_tokens", "output_tokens")


def request_from_record(data: Any, *, default_id: int, block_tokens: int | None = None) -> Request:
    """Build a :class:`Request` from one decoded JSON record, checking every field.

    Raises
    ------
    SpecError
        With ``path`` set to the offending field relative to the record.
    """
    if not isinstance(data, dict):
        raise SpecError(
            "a request must be a JSON object",
            expected="an object such as "
            '{"arrival_s": 0.0, "input_tokens": 128, "output_tokens": 16}',
            found=data,
        )
    for key in data:
        if key not in RECORD_FIELDS:
            raise SpecError(
                f"unknown field '{key}'{suggest(key, RECORD_FIELDS)}",
                path=key,
                expected="one of " + ", ".join(RECORD_FIELDS),
                found=key,
            )
    for key in REQUIRED_FIELDS:
        if key not in data:
            raise SpecError(f"missing required field '{key}'", path=key, expected=_EXPECTED[key])
    bt = _int_field(data, "block_tokens", block_tokens or DEFAULT_BLOCK_TOKENS, minimum=1)
    inputs = _int_field(data, "input_tokens", None, minimum=1)
    blocks = _prefix_blocks(data.get("prefix_blocks", []), -(-inputs // bt))
    tenant = data.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise SpecError("bad tenant", path="tenant", expected=_EXPECTED["tenant"], found=tenant)
    return Request(
        request_id=_int_field(data, "id", default_id, minimum=0),
        arrival_s=_arrival(data["arrival_s"]),
        input_tokens=inputs,
        output_tokens=_int_field(data, "output_tokens", None, minimum=1),
        prefix_blocks=blocks,
        block_tokens=bt,
        tenant=tenant,
        priority=_int_field(data, "priority", 0, minimum=None),
    )


_EXPECTED = {
    "id": "an integer >= 0",
    "arrival_s": "a time in seconds, a number >= 0",
    "input_tokens": "an integer number of tokens >= 1",
    "output_tokens": "an integer number of tokens >= 1",
    "block_tokens": "an integer number of tokens >= 1",
    "priority": "an integer",
    "tenant": "a non-empty string or null",
}


def _int_field(data: dict[str, Any], key: str, default: int | None, *, minimum: int | None) -> int:
    value = data.get(key, default)
    if type(value) is not int or (minimum is not None and value < minimum):
        raise SpecError(
            f"bad {key.replace('_', ' ')}", path=key, expected=_EXPECTED[key], found=value
        )
    return value


def _arrival(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise SpecError(
            "bad arrival time", path="arrival_s", expected=_EXPECTED["arrival_s"], found=value
        )
    return float(value)


def _prefix_blocks(value: Any, max_blocks: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise SpecError(
            "bad prefix blocks",
            path="prefix_blocks",
            expected="a list of integer hashes",
            found=value,
        )
    for i, h in enumerate(value):
        if type(h) is not int:
            raise SpecError(
                "bad prefix block hash", path=f"prefix_blocks[{i}]", expected="an integer", found=h
            )
    if len(value) > max_blocks:
        raise SpecError(
            "more prefix blocks than the prompt holds",
            path="prefix_blocks",
            expected=f"at most ceil(input_tokens / block_tokens) = {max_blocks} blocks",
            found=f"{len(value)} blocks",
        )
    return tuple(value)


def request_to_record(
    request: Request, *, block_tokens: int = DEFAULT_BLOCK_TOKENS
) -> dict[str, Any]:
    """The JSON record of ``request``; optional fields are written only when not default."""
    record: dict[str, Any] = {
        "id": request.request_id,
        "arrival_s": request.arrival_s,
        "input_tokens": request.input_tokens,
        "output_tokens": request.output_tokens,
    }
    if request.prefix_blocks:
        record["prefix_blocks"] = list(request.prefix_blocks)
    if request.block_tokens != block_tokens:
        record["block_tokens"] = request.block_tokens
    if request.tenant is not None:
        record["tenant"] = request.tenant
    if request.priority != 0:
        record["priority"] = request.priority
    return record
