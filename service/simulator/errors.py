"""Replicate's errors, answered as problem details in Replicate's own words.

ReplicateProblem                 (TuneyardError)
 ├── BadRequest             400  the body cannot be read
 ├── Unauthenticated        401  no token, or not the accepted one
 ├── Forbidden              403  the account may not act on that owner's models
 ├── NotFound               404  Replicate's generic 404
 │    └── DestinationNotFound    a training's destination model is missing
 ├── MethodNotAllowed       405
 ├── Conflict               409  the resource's state forbids the action
 ├── PayloadTooLarge        413
 ├── InvalidVersion         422  the trainer model or version is unknown
 ├── InputValidationFailed  422  fields break the schema; lists invalid_fields
 ├── Throttled              429  a rate limit, or the 429-storm fault
 └── InjectedFailure        5xx  the server-error fault

Replicate's problems carry `detail` and `status`, sometimes `title`, and (unlike
Tuneyard's own API) no `type`; the bodies here keep to that shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from ..api.problems import PROBLEM_JSON
from ..errors import TuneyardError


@dataclass(frozen=True)
class InvalidField:
    """One rule a field breaks, as Replicate lists it in `invalid_fields`."""

    type: str
    field: str
    description: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "field": self.field, "description": self.description}


class ReplicateProblem(TuneyardError):
    """An error answered to an API caller as application/problem+json."""

    status: int = 500
    title: ClassVar[str | None] = None
    default_detail: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)
        self.headers = dict(headers or {})
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.title is not None:
            body["title"] = self.title
        body["detail"] = self.detail
        body["status"] = self.status
        body.update(self.extensions)
        return body


class BadRequest(ReplicateProblem):
    """The request body cannot be read as JSON."""

    status = 400
    default_detail = "The request body is not valid JSON."


class Unauthenticated(ReplicateProblem):
    """No token was sent, or not one the simulator accepts."""

    status = 401
    title = "Unauthenticated"
    default_detail = "You did not pass a valid authentication token"


class Forbidden(ReplicateProblem):
    """The account may not act on another owner's models."""

    status = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(ReplicateProblem):
    """Nothing at that path, or nothing this account can see."""

    status = 404
    default_detail = "The requested resource could not be found."


class DestinationNotFound(NotFound):
    """A training names a destination model that does not exist."""

    default_detail = "The specified training destination does not exist"


class MethodNotAllowed(ReplicateProblem):
    """The path exists but does not take that method."""

    status = 405
    default_detail = "Method not allowed."


class Conflict(ReplicateProblem):
    """The resource's state forbids the action; the detail says why."""

    status = 409
    default_detail = "The request conflicts with the resource's current state."


class PayloadTooLarge(ReplicateProblem):
    """The body is larger than the simulator reads."""

    status = 413
    default_detail = "The request body is too large."


class InvalidVersion(ReplicateProblem):
    """The trainer model or version does not exist or cannot be trained."""

    status = 422
    title = "Invalid version or not permitted"
    default_detail = (
        "The specified version does not exist (or perhaps you don't have "
        "permission to use it?)"
    )


class InputValidationFailed(ReplicateProblem):
    """Fields break the request's or the trainer's schema."""

    status = 422
    title = "Input validation failed"

    def __init__(self, invalid: Sequence[InvalidField]) -> None:
        lines = [f"- {item.field or '(root)'}: {item.description}" for item in invalid]
        super().__init__(
            "\n".join(lines),
            invalid_fields=[item.to_json() for item in invalid],
        )


class Throttled(ReplicateProblem):
    """A rate limit or the 429-storm fault turned the request away."""

    status = 429

    def __init__(self, wait_seconds: int, headers: Mapping[str, str]) -> None:
        # Replicate words it as Django REST framework does: singular for one.
        unit = "second" if wait_seconds == 1 else "seconds"
        super().__init__(
            f"Request was throttled. Expected available in {wait_seconds} {unit}.",
            headers={**headers, "Retry-After": str(wait_seconds)},
        )


class InjectedFailure(ReplicateProblem):
    """A server error the fault settings asked for."""

    _DETAILS: ClassVar[dict[int, str]] = {
        500: "Internal server error",
        502: "Bad gateway",
        503: "Service unavailable",
    }

    def __init__(self, status: int) -> None:
        super().__init__(self._DETAILS.get(status, "Server error"))
        self.status = status


def problem_response(error: ReplicateProblem) -> web.Response:
    """The problem+json answer for `error`."""
    return web.Response(
        status=error.status,
        text=json.dumps(error.body()),
        content_type=PROBLEM_JSON,
        headers=error.headers,
    )
