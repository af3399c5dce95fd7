"""Reading requests: bounded bodies, JSON into pydantic models, cursors."""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from yarl import URL

from ..domain.names import ModelRef, parse_model
from ..domain.text import first_unstorable, json_loads, storable
from ..errors import InvalidRequest, ProblemError, ValidationFailed
from .callers import caller_of

M = TypeVar("M", bound=BaseModel)

# A training request is a few kilobytes; a megabyte leaves room for large inputs
# while keeping one request from holding much memory.
MAX_JSON_BODY = 1024 * 1024


class PayloadTooLarge(ProblemError):
    """The body is larger than this endpoint accepts."""

    status = 413
    title = "Payload too large"
    type = "/problems/payload-too-large"


class ClientGone(ProblemError):
    """The client closed its connection before sending the whole body.

    Nobody reads the answer; the status (nginx's for this) is for the access
    line and the metrics. Without it, the ConnectionResetError aiohttp raises
    would pass for the database's, which is a ConnectionError too.
    """

    status = 499
    title = "Client closed request"
    type = "/problems/client-closed-request"


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes before reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body must be at most {limit} bytes")
    try:
        if request.content_length is not None:
            return await request.read()
        chunks = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body must be at most {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except ConnectionResetError:
        raise ClientGone("the connection closed before the body arrived") from None


async def read_json(
    request: web.Request, model: type[M], *, limit: int = MAX_JSON_BODY
) -> M:
    """The body parsed and validated as `model`, or a problem naming each field.

    Validation is strict and from JSON, so a value is accepted only in the type
    the API document gives it (no number standing in for a time, say).
    """
    raw = await read_body(request, limit)
    try:
        data = json_loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body must be a JSON object") from None
    where = first_unstorable(data)
    if where is not None:
        raise ValidationFailed(
            f"{where or 'body'}: {UNSTORABLE}",
            errors=[{"field": where or "body", "message": UNSTORABLE}],
        )
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_problem(exc) from None


UNSTORABLE = "contains a NUL character or an unpaired surrogate, which cannot be stored"


def url_is_storable(request: web.Request) -> bool:
    """Whether the path and query can reach the database without an error."""
    raw = request.raw_path
    if raw.isascii() and "%" not in raw and "\x00" not in raw:
        # Nothing escaped: the path and query are this text as it stands.
        return True
    return storable(request.path) and all(
        storable(key) and storable(value) for key, value in request.query.items()
    )


def validation_problem(exc: ValidationError) -> ValidationFailed:
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "message": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors(include_input=False, include_url=False)
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ValidationFailed(
        f"{first['field']}: {first['message']}{more}", errors=errors
    )


def query_int(
    request: web.Request, name: str, default: int, low: int, high: int
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}")
    return value


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(request: web.Request) -> str | None:
    """The position a `cursor` parameter stands for; the cursor itself is opaque."""
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        padded = (raw + "=" * (-len(raw) % 4)).encode()
        position = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise InvalidRequest("cursor is not one this API gave out") from None
    # Every position this API gives out is printable; a NUL byte, for one,
    # could not even be sent to PostgreSQL as text.
    if not position.isprintable():
        raise InvalidRequest("cursor is not one this API gave out")
    return position


def next_link(request: web.Request, position: str | None) -> str | None:
    """The absolute URL of the next page: this request's, with a new cursor."""
    if position is None:
        return None
    url: URL = request.url.update_query(cursor=encode_cursor(position))
    return str(url)


def json_response(
    model: BaseModel, *, status: int = 200, **kwargs: Any
) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
        **kwargs,
    )


def path_destination(request: web.Request) -> ModelRef:
    """The destination named by the path's owner and name, checked against
    Replicate's naming rules and against what the caller's token may use."""
    owner, name = request.match_info["owner"], request.match_info["name"]
    try:
        ref = parse_model(f"{owner}/{name}")
    except ValueError as exc:
        raise InvalidRequest(f"destination {exc}") from None
    caller_of(request).require(ref.owner)
    return ref
