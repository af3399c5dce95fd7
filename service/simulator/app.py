"""The simulator's application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..api.middleware import request_context
from .config import SimulatorConfig
from .faults import Faults
from .middleware import (
    authenticate,
    inject_faults,
    limit_rate,
    observe,
    render_problems,
)
from .notifier import Notifier
from .ratelimit import RateLimiter
from .resources import (
    CONFIG,
    DELIVERIES,
    FAULTS,
    LIMITER,
    NOTIFIER,
    RUNNER,
    STATS,
    STORE,
)
from .routes import account, admin, models, trainings
from .state import Store
from .stats import Stats
from .training_runner import TrainingRunner
from .webhooks import DeliveryLog, WebhookSender


def create_simulator_app(config: SimulatorConfig) -> web.Application:
    """Build the simulator; its clock and webhook sender start with the app."""
    app = web.Application(
        middlewares=[
            request_context,
            observe,
            authenticate,
            limit_rate,
            inject_faults,
            render_problems,
        ]
    )
    app[CONFIG] = config
    app[STORE] = Store(config.account)
    app[FAULTS] = Faults(config.faults, config.seed)
    app[LIMITER] = RateLimiter(
        config.rate_limit, config.create_rate_limit, config.rate_limit_burst_seconds
    )
    app[STATS] = Stats()
    app[DELIVERIES] = DeliveryLog(config.delivery_log_limit)

    app.cleanup_ctx.append(training_machinery)

    for table in (account.routes, models.routes, trainings.routes, admin.routes):
        app.add_routes(table)
    return app


async def training_machinery(app: web.Application) -> AsyncIterator[None]:
    """The webhook session, sender and notifier, and the training clock."""
    config = app[CONFIG]
    async with aiohttp.ClientSession(raise_for_status=False) as session:
        sender = WebhookSender(
            session,
            config.secret,
            app[DELIVERIES],
            timeout=config.webhook_timeout,
            retry_delay=config.webhook_retry_delay,
            retry_window=config.webhook_retry_window,
        )
        notifier = Notifier(sender, app[FAULTS], config.webhook_throttle)
        runner = TrainingRunner(
            app[STORE], notifier, app[FAULTS], config.training_seconds
        )
        app[NOTIFIER] = notifier
        app[RUNNER] = runner
        try:
            yield
        finally:
            await runner.close()
            await notifier.close()
