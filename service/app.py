"""The application factory."""

from __future__ import annotations

from aiohttp import web

from . import resources
from .api import (
    aliases,
    destinations,
    health,
    notifications,
    openapi,
    trainings,
    versions,
    webhooks,
)
from .api.callers import TOKEN_CACHE, TokenCache
from .api.middleware import tuneyard
from .config import Settings
from .errors import ConfigError
from .store import migrations
from .store.trainings import Policy


async def _build_document(app: web.Application) -> None:
    # Once every route is added: the document is built from the router.
    app[openapi.DOCUMENT] = openapi.build(app)


def create_app(settings: Settings) -> web.Application:
    """Build the Tuneyard application; resources open when it starts."""
    app = web.Application(
        middlewares=[tuneyard],
        # Bodies are read with per-endpoint limits; this is only the backstop.
        client_max_size=settings.webhook_max_bytes,
    )
    app[resources.SETTINGS] = settings
    app[resources.MIGRATIONS] = migrations.load()
    if settings.public_url is None:
        raise ConfigError("TUNEYARD_PUBLIC_URL: not set")
    app[resources.POLICY] = Policy.from_settings(settings)
    app[TOKEN_CACHE] = TokenCache()

    app.cleanup_ctx.append(resources.database_pool)
    app.cleanup_ctx.append(resources.http_session)
    app.cleanup_ctx.append(resources.replicate_client)
    app.cleanup_ctx.append(resources.webhook_secrets)
    app.cleanup_ctx.append(resources.workers)
    app.cleanup_ctx.append(resources.event_hub)
    app.cleanup_ctx.append(resources.webhook_ingestor)
    app.on_shutdown.append(resources.close_event_streams)
    app.on_shutdown.append(resources.stop_claiming_work)

    app.add_routes(health.routes)
    app.add_routes(trainings.routes)
    app.add_routes(destinations.routes)
    app.add_routes(versions.routes)
    app.add_routes(aliases.routes)
    app.add_routes(notifications.routes)
    app.add_routes(openapi.routes)
    app.on_startup.append(_build_document)
    app.add_routes(webhooks.routes)
    return app
