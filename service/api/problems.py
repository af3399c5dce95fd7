"""RFC 9457 problem details: every error Tuneyard answers has this shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import ProblemError

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    body = {"type": type, "title": title, "status": status, "detail": detail}
    body.update(extensions)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def from_error(error: ProblemError) -> web.Response:
    return web.Response(
        status=error.status,
        text=json.dumps(error.to_problem()),
        content_type=PROBLEM_JSON,
        headers=error.headers,
    )


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (unknown route, wrong method, body too large)."""
    headers = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    detail = _HTTP_DETAILS.get(exc.status) or exc.text or exc.reason
    return problem_response(exc.status, exc.reason, detail, headers=headers)


_HTTP_DETAILS = {
    404: "No resource at this path.",
    405: "This resource does not accept that method.",
    413: "The request body is larger than this endpoint accepts.",
}
