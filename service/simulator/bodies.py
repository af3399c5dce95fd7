"""Reading request bodies: JSON only, checked against a schema."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import BadRequest, InputValidationFailed
from .schema import Schema, check


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request) -> Any:
    """The body as JSON; a 400 problem when it is not JSON at all."""
    raw = await request.read()
    try:
        # NaN and Infinity are Python's extensions, not JSON; refusing them keeps
        # every stored value re-serialisable.
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise BadRequest() from None


def checked(value: Any, schema: Schema) -> dict[str, Any]:
    """`value` with defaults applied, or a 422 problem listing every invalid field."""
    result = check(value, schema)
    if result.invalid:
        raise InputValidationFailed(result.invalid)
    return result.value


def optional(kind: str, **rules: Any) -> dict[str, Any]:
    """A schema for an optional field that may also be sent as null."""
    return {"type": [kind, "null"], **rules}
