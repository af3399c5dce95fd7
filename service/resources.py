"""The application's shared resources: typed keys and the contexts that own them.

Each resource is an async generator in the app's `cleanup_ctx`: created before the
first request, closed after the last one has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

from .config import Settings
from .errors import ConfigError
from .logs import get_logger
from .replicate.client import ReplicateClient
from .replicate.errors import ReplicateError
from .replicate.ratelimit import RateLimiter
from .store import migrations
from .store.pool import RELEASE_TIMEOUT, create_pool
from .store.trainings import Policy
from .streams import EventHub
from .webhooks.ingest import WebhookIngestor
from .webhooks.verify import WebhookVerifier
from .workers.base import Worker
from .workers.notifier import Notifier
from .workers.reconciler import Reconciler
from .workers.submitter import Submitter

log = get_logger()


class WebhookSecrets:
    """The verifier of Replicate's webhooks, once a secret is known."""

    verifier: WebhookVerifier | None = None


SETTINGS = web.AppKey("settings", Settings)
MIGRATIONS = web.AppKey("migrations", list[migrations.Migration])
POOL = web.AppKey("pool", asyncpg.Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REPLICATE = web.AppKey("replicate", ReplicateClient)
WEBHOOK_SECRETS = web.AppKey("webhook_secrets", WebhookSecrets)
WORKERS = web.AppKey("workers", list[Worker])
POLICY = web.AppKey("policy", Policy)
EVENT_HUB = web.AppKey("event_hub", EventHub)
INGESTOR = web.AppKey("webhook_ingestor", WebhookIngestor)


async def database_pool(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool; the start fails unless every migration is applied."""
    settings = app[SETTINGS]
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: not set")
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        max_size=settings.db_pool_size,
        query_timeout=settings.db_timeout,
    )
    try:
        async with pool.acquire() as conn:
            await migrations.check_current(conn, app[MIGRATIONS])
        app[POOL] = pool
        yield
    finally:
        await pool.close()


async def http_session(app: web.Application) -> AsyncIterator[None]:
    """One client session for every outbound call, sharing its connection pool."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30, connect=5),
        raise_for_status=False,
    ) as session:
        app[HTTP] = session
        yield


async def replicate_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.replicate_api_token is None:
        raise ConfigError("REPLICATE_API_TOKEN: not set")
    app[REPLICATE] = ReplicateClient(
        app[HTTP],
        settings.replicate_base_url,
        settings.replicate_api_token,
        limiter=RateLimiter(
            settings.replicate_rate_limit, settings.replicate_create_rate_limit
        ),
        timeout=settings.replicate_timeout,
    )
    yield


async def webhook_secrets(app: web.Application) -> AsyncIterator[None]:
    """The configured secrets, else the account's own, fetched from Replicate.

    A fetch that fails does not stop the start: webhooks are answered 503 until
    it succeeds (Replicate retries them) and the reconciler covers the gap.
    """
    secrets = WebhookSecrets()
    app[WEBHOOK_SECRETS] = secrets
    configured = app[SETTINGS].webhook_secrets
    if configured:
        secrets.verifier = WebhookVerifier(configured)
        yield
        return
    task = asyncio.create_task(_fetch_webhook_secret(app[REPLICATE], secrets))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _fetch_webhook_secret(
    client: ReplicateClient, secrets: WebhookSecrets
) -> None:
    delay = 1.0
    while True:
        try:
            secret = await client.default_webhook_secret()
        except ReplicateError as exc:
            log.warning("webhook_secret_unavailable", error=exc.detail, retry_in=delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 60.0)
            continue
        secrets.verifier = WebhookVerifier([secret.get_secret_value()])
        log.info("webhook_secret_loaded")
        return


async def workers(app: web.Application) -> AsyncIterator[None]:
    """The submitter, reconciler and notifier, unless TUNEYARD_WORKERS is off.

    The notifier runs only where callbacks can be signed; without a secret no
    training with a callback URL is accepted.
    """
    settings = app[SETTINGS]
    running: list[Worker] = []
    app[WORKERS] = running
    if settings.workers:
        assert settings.database_url is not None
        dsn = settings.database_url.get_secret_value()
        running += [
            Submitter(app[POOL], dsn, app[REPLICATE], settings),
            Reconciler(app[POOL], dsn, app[REPLICATE], settings),
        ]
        if settings.callback_secrets:
            running.append(Notifier(app[POOL], dsn, app[HTTP], settings))
        for worker in running:
            worker.start()
    yield
    # Together, so the whole stop takes at most one grace period, not one each.
    await asyncio.gather(
        *(worker.stop(grace=settings.shutdown_timeout) for worker in running)
    )


async def stop_claiming_work(app: web.Application) -> None:
    """As shutdown begins: workers take nothing new while requests drain."""
    for worker in app[WORKERS]:
        worker.stop_claiming()


async def event_hub(app: web.Application) -> AsyncIterator[None]:
    """The listener that feeds live event streams; streams end at shutdown."""
    settings = app[SETTINGS]
    assert settings.database_url is not None
    hub = EventHub(settings.database_url.get_secret_value())
    app[EVENT_HUB] = hub
    hub.start()
    yield
    await hub.stop()


async def close_event_streams(app: web.Application) -> None:
    """Runs before the server waits for requests in flight, so open streams end
    at once instead of holding the shutdown for its whole timeout."""
    app[EVENT_HUB].close_streams()


async def webhook_ingestor(app: web.Application) -> AsyncIterator[None]:
    """Group commit for Replicate's webhooks; stops after requests are done."""
    settings = app[SETTINGS]
    ingestor = WebhookIngestor(
        app[POOL],
        app[POLICY],
        writers=settings.webhook_writers,
        # One query of a batch stuck for db_timeout, and its connection's
        # release for RELEASE_TIMEOUT: past both, the database is not answering.
        # A slow batch that still commits after this was answered 503; the
        # sender's retry of it is then a duplicate, acknowledged as such.
        answer_within=settings.db_timeout + RELEASE_TIMEOUT,
    )
    app[INGESTOR] = ingestor
    ingestor.start()
    yield
    await ingestor.stop()
