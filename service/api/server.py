"""aiohttp's server, answering requests it cannot parse with problem details.

aiohttp refuses a request that is not valid HTTP (a header line over 8190 bytes,
a control character in a header, a malformed request line) before any
middleware sees it, with a text/plain 400 that repeats the parser's message, and
logs that message with a traceback. Here the answer is an
application/problem+json like every other refusal, saying in fixed words what
is wrong: the parser's message can quote the offending header, which may be a
token, so it is neither answered nor logged.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import http_exceptions, web
from aiohttp.web_request import BaseRequest

from ..logs import get_logger
from . import problems

log = get_logger()

# Most specific first: BadHttpMethod is a kind of BadStatusLine.
# Each kind of refusal: the `reason` it answers (as webhook refusals name the
# check that failed) and what it says.
_WHAT_IS_WRONG: tuple[tuple[type[Exception], str, str], ...] = (
    (
        http_exceptions.LineTooLong,
        "line_too_long",
        "a header line or the request line is longer than the 8190 bytes "
        "the server reads",
    ),
    (
        http_exceptions.InvalidHeader,
        "invalid_header",
        "a header's name or value holds a character HTTP does not allow",
    ),
    (
        http_exceptions.BadHttpMethod,
        "invalid_method",
        "the request method is not valid HTTP",
    ),
    (
        http_exceptions.BadStatusLine,
        "invalid_request_line",
        "the request line is not valid HTTP",
    ),
    (
        http_exceptions.InvalidURLError,
        "invalid_url",
        "the request target is not a valid URL",
    ),
    (
        http_exceptions.PayloadEncodingError,
        "invalid_body_framing",
        "the body does not match its Content-Length, Transfer-Encoding or "
        "Content-Encoding",
    ),
)


def _describe(exc: BaseException | None) -> tuple[str, str]:
    """The reason to answer, and the detail."""
    for kind, reason, words in _WHAT_IS_WRONG:
        if isinstance(exc, kind):
            return reason, f"The request is not valid HTTP: {words}."
    # The C parser's message starts with llhttp's own reason, a fixed text such
    # as "Invalid header value char", before it quotes the data.
    message = exc.message if isinstance(exc, http_exceptions.BadHttpMessage) else ""
    said, quoted, _ = message.partition(":\n\n")
    if quoted and said.isprintable() and len(said) <= 80:
        return "malformed_http", f"The request is not valid HTTP: {said}."
    return "malformed_http", "The request is not valid HTTP."


class ProblemRequestHandler(web.RequestHandler):
    """One connection's handler; only its error answers differ from aiohttp's."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Part of an answer is out already: nothing more can be said, and
            # aiohttp closes the connection on this error.
            raise ConnectionError("an answer was partly sent; closing")
        phrase = HTTPStatus(status).phrase
        if status < 500:
            reason, detail = _describe(exc)
            log.info("http_request_malformed", status=status, reason=reason)
            response = problems.problem_response(
                status,
                phrase,
                detail,
                type="/problems/malformed-http",
                reason=reason,
            )
        else:
            # Middleware turns every error of a handler (a timeout included)
            # into a problem; this is only reached when something outside the
            # middleware fails, such as aiohttp itself or a response signal.
            log.error("http_request_failed", status=status, exc_info=exc)
            response = problems.problem_response(
                status, phrase, "An unexpected error occurred; it has been logged."
            )
        response.force_close()
        return response


class ProblemServer(web.Server):
    def __call__(self) -> ProblemRequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """web.AppRunner serving through ProblemServer."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds the Server itself (Application._make_handler) and has
        # no setting for its handler class; the subclass adds no state, so the
        # built server can take its behaviour over. The acceptance tests fail
        # if an aiohttp upgrade changes this.
        server.__class__ = ProblemServer
        return server
