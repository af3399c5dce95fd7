"""The package's exceptions.

TuneyardError
 ├── ConfigError             a setting is missing or wrong; stops the start
 ├── MigrationError          migrations cannot be applied or are not current
 └── ProblemError            answered to a caller as application/problem+json
      ├── InvalidRequest     400: the request cannot be read
      ├── ValidationFailed   422: the request was read but breaks a rule
      ├── NotFound           404
      ├── Conflict           409: the resource's state forbids the action
      └── Unavailable        503: a dependency is down; try again later

Later modules add their own subclasses beside the code that raises them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TuneyardError(Exception):
    """Base of every error Tuneyard raises on purpose."""


class ConfigError(TuneyardError):
    """A setting is missing or invalid; the message names the variable."""


class MigrationError(TuneyardError):
    """The database schema cannot be brought to, or is not at, the code's version."""


class ProblemError(TuneyardError):
    """An error answered as an RFC 9457 problem; `detail` is safe to show callers."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    type: ClassVar[str] = "about:blank"

    # Headers the answer carries besides the problem body.
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def to_problem(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


class InvalidRequest(ProblemError):
    """The request cannot be read: malformed JSON, a bad header, a bad parameter."""

    status = 400
    title = "Invalid request"
    type = "/problems/invalid-request"


class ValidationFailed(ProblemError):
    """The request was read but a field breaks a rule; `errors` lists each field."""

    status = 422
    title = "Validation failed"
    type = "/problems/validation-failed"


class NotFound(ProblemError):
    """The named resource does not exist."""

    status = 404
    title = "Not found"
    type = "/problems/not-found"


class Conflict(ProblemError):
    """The resource's current state does not allow the request."""

    status = 409
    title = "Conflict"
    type = "/problems/conflict"


class Unavailable(ProblemError):
    """A dependency (the database, Replicate) cannot be reached right now."""

    status = 503
    title = "Service unavailable"
    type = "/problems/unavailable"
