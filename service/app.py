"""The application factory."""

from __future__ import annotations

from aiohttp import web

from . import resources
from .api import aliases, destinations, health, trainings, versions, webhooks
from .api.middleware import problem_details, request_context
from .config import Settings
from .store import migrations


def create_app(settings: Settings) -> web.Application:
    """Build the Tuneyard application; resources open when it starts."""
    app = web.Application(
        middlewares=[request_context, problem_details],
        # Bodies are read with per-endpoint limits; this is only the backstop.
        client_max_size=settings.webhook_max_bytes,
    )
    app[resources.SETTINGS] = settings
    app[resources.MIGRATIONS] = migrations.load()

    app.cleanup_ctx.append(resources.database_pool)
    app.cleanup_ctx.append(resources.http_session)
    app.cleanup_ctx.append(resources.replicate_client)
    app.cleanup_ctx.append(resources.webhook_secrets)
    app.cleanup_ctx.append(resources.workers)

    app.add_routes(health.routes)
    app.add_routes(trainings.routes)
    app.add_routes(destinations.routes)
    app.add_routes(versions.routes)
    app.add_routes(aliases.routes)
    app.add_routes(webhooks.routes)
    return app
