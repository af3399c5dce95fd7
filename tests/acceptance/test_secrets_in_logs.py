"""No secret or token ever appears in what Tuneyard writes."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..support.simulator import Simulator, WebhookReceiver, wait_until
from .conftest import ServiceFactory, submit, wait_finished

CALLBACK_SECRET = "whsec_" + base64.b64encode(b"callback-secret-never-logged").decode()
OPS_TOKEN = "ops-token-never-logged-7f3a"
DB_PASSWORD = "db-password-never-logged-91c2"
WRONG_TOKEN = "ty_wrong-token-never-logged-55"


def with_password(url: str) -> str:
    """The same database URL with a password (trust authentication ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.split("@")[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{DB_PASSWORD}@{host}"))


async def test_no_secret_or_token_appears_in_the_logs_at_debug_level(
    start_service: ServiceFactory,
    simulator: Simulator,
    clean_database: str,
    api_token: str,
) -> None:
    await simulator.set_faults(error_rate=0.3)
    async with WebhookReceiver() as receiver:
        service = await start_service(
            DATABASE_URL=with_password(clean_database),
            TUNEYARD_LOG_LEVEL="debug",
            TUNEYARD_WEBHOOK_SECRET=CALLBACK_SECRET,
            TUNEYARD_OPS_TOKEN=OPS_TOKEN,
        )
        created = await submit(service, callback_url=receiver.url)
        await wait_finished(service, created["id"])
        await wait_until(
            lambda: any(
                json.loads(h.body)["type"] == "training.succeeded"
                for h in receiver.received
            ),
            message="the success callback",
        )
        async with aiohttp.ClientSession() as http:
            for path, token in [
                ("/v1/trainings", WRONG_TOKEN),
                ("/metrics", WRONG_TOKEN),
                ("/metrics", OPS_TOKEN),
            ]:
                async with http.get(
                    f"{service.url}{path}", headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    await response.read()

    logs = service.output
    secrets = {
        "the Replicate token": simulator.token,
        "Replicate's webhook secret": simulator.secret,
        "its key": simulator.secret.removeprefix("whsec_"),
        "the callback secret": CALLBACK_SECRET,
        "its key too": CALLBACK_SECRET.removeprefix("whsec_"),
        "the ops token": OPS_TOKEN,
        "the caller's token": api_token,
        "a wrong token": WRONG_TOKEN,
        "the database password": DB_PASSWORD,
    }
    assert "replicate_call" in logs, "debug logging was on"
    assert "notification_delivered" in logs
    leaked = [name for name, secret in secrets.items() if secret in logs]
    assert leaked == []
