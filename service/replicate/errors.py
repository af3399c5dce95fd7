"""Replicate's answers as exceptions, built from its problem details.

ReplicateError (a 502 problem if it reaches a caller unhandled)
 ├── ReplicateRefused            a 4xx: the request itself is wrong; do not retry;
 │    │                          the caller's request was impossible: 422
 │    ├── ReplicateUnauthorized  401: Tuneyard's own token is wrong: 502
 │    ├── ReplicateNotFound      404
 │    ├── ReplicateConflict      409
 │    └── ReplicateInvalid       422
 ├── ReplicateUnavailable        429, 5xx or no connection, still so after retries
 └── CreateOutcomeUnknown        a create was sent and no answer came back
"""

from __future__ import annotations

from typing import Any

from ..errors import ProblemError


class ReplicateError(ProblemError):
    """Replicate answered with an error or could not be reached."""

    status = 502
    title = "Replicate error"
    type = "/problems/replicate-error"
    transient = False

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.body = body
        self.retry_after = retry_after


class ReplicateRefused(ReplicateError):
    """Replicate refused the request; sending it again would be refused again.

    What the caller asked for cannot be done (a destination owned by another
    account, say), so it reaches the caller as a 4xx carrying Replicate's words.
    """

    status = 422
    title = "Replicate refused the request"


class ReplicateUnauthorized(ReplicateRefused):
    """The API token is missing or wrong: Tuneyard's own configuration is at
    fault, not the caller's request. (A 403, the account not being allowed to
    act on a model, is the caller's: a plain ReplicateRefused.)"""

    status = 502
    title = "Replicate refused Tuneyard's token"


class ReplicateNotFound(ReplicateRefused):
    """The model, version or training does not exist (or is not visible)."""

    status = 404


class ReplicateConflict(ReplicateRefused):
    """The resource's state forbids the request, e.g. a model that already exists."""

    status = 409


class ReplicateInvalid(ReplicateRefused):
    """The request was read but is invalid, e.g. a trainer input of the wrong type."""


class ReplicateUnavailable(ReplicateError):
    """Throttled, failing or unreachable, and still so after retrying."""

    status = 503
    title = "Replicate unavailable"
    transient = True


class CreateOutcomeUnknown(ReplicateError):
    """A create was sent but its answer was lost: it may or may not exist.

    Replicate has no idempotency key, so sending the create again could make a
    second, paid, training. The caller must find out what happened first.
    """

    transient = True


_BY_STATUS: dict[int, type[ReplicateRefused]] = {
    401: ReplicateUnauthorized,
    404: ReplicateNotFound,
    409: ReplicateConflict,
    422: ReplicateInvalid,
}


def refused(status: int, body: Any) -> ReplicateRefused:
    """The exception for a 4xx answer, carrying Replicate's own words."""
    cls = _BY_STATUS.get(status, ReplicateRefused)
    return cls(describe(status, body), http_status=status, body=body)


def describe(status: int, body: Any) -> str:
    """Replicate's message from a problem body, falling back to the status."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail.strip():
            return detail.strip()
        title = body.get("title")
        if isinstance(title, str) and title.strip():
            return title.strip()
    return f"Replicate answered HTTP {status}"
