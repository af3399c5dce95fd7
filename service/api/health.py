"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from .. import metrics
from ..errors import MigrationError, Unavailable
from ..resources import MIGRATIONS, POOL
from ..store import migrations
from ..store.pool import DATABASE_UNAVAILABLE
from .openapi import operation

routes = web.RouteTableDef()


class HealthStatus(BaseModel):
    status: Literal["ok", "ready"]


# A readiness probe that hangs is worse than one that fails: the orchestrator's own
# timeout would hide why.
READY_TIMEOUT = 3.0


@routes.get("/healthz")
@operation(
    "Liveness",
    tag="operations",
    responses={200: HealthStatus},
    errors=(401,),
    authenticated=False,
)
async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving; says nothing about its dependencies."""
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
@operation(
    "Prometheus metrics",
    tag="operations",
    raw={200: "text/plain"},
    errors=(401,),
    authenticated=False,
)
async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus metrics of this process, and gauges of the shared state."""
    return await metrics.render(request.app[POOL])


@routes.get("/readyz")
@operation(
    "Readiness",
    tag="operations",
    responses={200: HealthStatus},
    errors=(401,),
    authenticated=False,
)
async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers and its schema is current."""
    check = asyncio.ensure_future(_check_database(request.app))
    check.add_done_callback(_consume)
    # Waited for, not cancelled: cancelling a query that the database does not
    # answer makes asyncpg wait for the cancel's confirmation as well. The check
    # goes on alone, bounded by the pool's query timeout.
    done, _ = await asyncio.wait({check}, timeout=READY_TIMEOUT)
    if not done:
        raise Unavailable(f"the database did not answer within {READY_TIMEOUT:g} s")
    try:
        check.result()
    except MigrationError as exc:
        raise Unavailable(str(exc)) from None
    except TimeoutError:
        # A query, or the wait for a connection, ran into the pool's bound.
        raise Unavailable("the database did not answer in time") from None
    except DATABASE_UNAVAILABLE as exc:
        reason = type(exc).__name__
        raise Unavailable(f"database unreachable ({reason})") from None
    return web.json_response({"status": "ready"})


async def _check_database(app: web.Application) -> None:
    async with app[POOL].acquire() as conn:
        await migrations.check_current(conn, app[MIGRATIONS])


def _consume(task: asyncio.Future[None]) -> None:
    # Retrieved so that asyncio does not log it as never retrieved when the
    # probe has answered without it.
    if not task.cancelled():
        task.exception()
