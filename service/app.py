"""The application factory."""

from __future__ import annotations

from aiohttp import web

from . import resources
from .api import health
from .api.middleware import problem_details, request_context
from .config import Settings
from .store import migrations


def create_app(settings: Settings) -> web.Application:
    """Build the Tuneyard application; resources open when it starts."""
    app = web.Application(middlewares=[request_context, problem_details])
    app[resources.SETTINGS] = settings
    app[resources.MIGRATIONS] = migrations.load()

    app.cleanup_ctx.append(resources.database_pool)
    app.cleanup_ctx.append(resources.http_session)

    app.add_routes(health.routes)
    return app
