"""Problem details: the body every error answer carries (RFC 9457)."""

from __future__ import annotations

import json

from aiohttp import web

from service.api import problems
from service.errors import Conflict, NotFound, ProblemError, ValidationFailed


def test_problem_error_carries_status_title_type_detail_and_extensions() -> None:
    error = ValidationFailed("destination is invalid", errors=[{"field": "x"}])

    assert error.to_problem() == {
        "type": "/problems/validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "destination is invalid",
        "errors": [{"field": "x"}],
    }


def test_problem_response_uses_problem_json_media_type() -> None:
    response = problems.from_error(NotFound("no training trn_1"))

    assert response.status == 404
    assert response.content_type == "application/problem+json"
    assert response.text is not None
    assert json.loads(response.text)["detail"] == "no training trn_1"


def test_method_not_allowed_problem_lists_allowed_methods() -> None:
    exc = web.HTTPMethodNotAllowed("POST", ["GET", "HEAD"])

    response = problems.from_http_exception(exc)

    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_every_problem_subclass_is_a_client_or_server_error() -> None:
    for cls in (ValidationFailed, NotFound, Conflict):
        assert issubclass(cls, ProblemError)
        assert 400 <= cls.status < 600
