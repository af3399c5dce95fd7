"""The gates every API request passes, outermost first.

observe        counts the answer for the stats; nothing escapes as a 500 page
authenticate   the token, per Replicate's rules; 401 otherwise
limit_rate     the account's token buckets; 429 when empty; headers on every answer
inject_faults  latency, the 429 storm, and server errors, as the faults say
render_problems  errors raised by handlers and routing become problem+json

The admin API under /_sim/ passes through observe and render_problems only.
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from ..logs import get_logger
from . import auth
from .errors import (
    InjectedFailure,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ReplicateProblem,
    Throttled,
    problem_response,
)
from .ratelimit import REMAINING_HEADER, RESET_HEADER
from .resources import ACCOUNT, ANSWER_LOST, CONFIG, FAULTS, LIMITER, STATS
from .stats import LOST

log = get_logger()

ADMIN_PREFIX = "/_sim/"
CREATION_ROUTES = frozenset({"create_model", "create_training"})


def is_admin(request: web.Request) -> bool:
    return request.path.startswith(ADMIN_PREFIX)


def endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else "(no route)"
    return f"{request.method} {path}"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each API answer; turn anything unexpected into a 500 problem."""
    try:
        response = await handler(request)
    except Exception:
        log.exception("simulator_unhandled_error", path=request.path)
        response = problem_response(ReplicateProblem())
    if not is_admin(request):
        lost = request.get(ANSWER_LOST, False)
        request.app[STATS].record_request(
            endpoint(request), LOST if lost else response.status
        )
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_admin(request):
        return await handler(request)
    try:
        request[ACCOUNT] = auth.authenticate(request, request.app[CONFIG])
    except ReplicateProblem as problem:
        return problem_response(problem)
    return await handler(request)


@web.middleware
async def limit_rate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_admin(request):
        return await handler(request)
    creation = request.match_info.route.name in CREATION_ROUTES
    allowance = request.app[LIMITER].admit(request[ACCOUNT], creation=creation)
    if not allowance.allowed:
        request.app[STATS].throttled += 1
        return problem_response(Throttled(allowance.retry_after, allowance.headers()))
    response = await handler(request)
    for name, value in allowance.headers().items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_admin(request):
        return await handler(request)
    faults, stats = request.app[FAULTS], request.app[STATS]
    storm = faults.storm_remaining()
    if storm is not None:
        stats.storm_throttled += 1
        wait = 1 if math.isinf(storm) else max(1, math.ceil(storm))
        headers = {REMAINING_HEADER: "0", RESET_HEADER: str(wait)}
        return problem_response(Throttled(wait, headers))

    status = faults.injected_status()
    if status is not None:
        stats.errors_injected += 1
        return problem_response(InjectedFailure(status))
    response = await handler(request)
    # The latency holds back the answer, not the work: a create is made at once
    # and answered late, the window in which a client can die without knowing.
    delay = faults.latency()
    if delay > 0:
        await asyncio.sleep(delay)
    return response


@web.middleware
async def render_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ReplicateProblem as problem:
        return problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_routing_problem(exc))


def _routing_problem(exc: web.HTTPException) -> ReplicateProblem:
    """aiohttp's own refusals, in Replicate's words where it has them."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound()
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f'Method "{exc.method}" not allowed.', headers={"Allow": allowed}
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge()
    problem = ReplicateProblem(exc.reason)
    problem.status = exc.status
    return problem
