"""/metrics: what operators graph and alert on, in Prometheus's text format."""

from __future__ import annotations

import base64

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ..support.factories import queued_training, replicate_training
from ..support.simulator import Simulator, wait_until
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET, LiveApp


async def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_are_counted_by_route_template_and_status(
    client: TestClient,
) -> None:
    before = await scrape(client)

    await client.get("/v1/trainings/trn_01JF0000000000000000000000")
    await client.get("/no/such/thing")
    after = await scrape(client)

    route = "/v1/trainings/{training_id}"
    counted = "tuneyard_http_requests_total"
    assert (
        value(after, counted, method="GET", route=route, status="404")
        - value(before, counted, method="GET", route=route, status="404")
        == 1
    )
    assert value(after, counted, method="GET", route="unmatched", status="404") > 0
    histogram = "tuneyard_http_request_duration_seconds_count"
    assert value(after, histogram, method="GET", route=route) >= 1


async def test_webhooks_are_counted_received_verified_rejected_and_duplicate(
    client: TestClient,
) -> None:
    before = await scrape(client)
    body, headers = signed_webhook(
        WEBHOOK_SECRET, replicate_training("r8m", "processing").raw()
    )
    await client.post("/webhooks/replicate", data=body, headers=headers)
    await client.post("/webhooks/replicate", data=body, headers=headers)
    forged = {
        **headers,
        "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
    }
    await client.post("/webhooks/replicate", data=body, headers=forged)

    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tuneyard_webhooks_received_total") == 3
    assert delta("tuneyard_webhooks_verified_total") == 2
    assert delta("tuneyard_webhooks_duplicates_total") == 1
    assert delta("tuneyard_webhooks_rejected_total", reason="bad_signature") == 1
    assert delta("tuneyard_webhooks_unknown_training_total") == 1


async def test_queue_depths_and_live_trainings_come_from_the_database(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        for _ in range(3):
            await queued_training(conn)
        unsettled = await queued_training(conn)
    await pool.execute(
        "UPDATE trainings SET create_sent_at = now() WHERE id = $1", unsettled.id
    )

    samples = await scrape(client)

    assert value(samples, "tuneyard_queue_depth", queue="queued") == 4
    assert value(samples, "tuneyard_queue_depth", queue="unsettled") == 1
    assert value(samples, "tuneyard_trainings", status="queued") == 4
    assert value(samples, "tuneyard_trainings", status="running") == 0


async def test_calls_to_replicate_and_submissions_are_counted(
    live_app: LiveApp, simulator: Simulator
) -> None:
    client = await live_app()
    before = await scrape(client)

    response = await client.post(
        "/v1/trainings",
        json={
            "destination": "local/m",
            "trainer": "ostris/flux-dev-lora-trainer:"
            "e68139c4d943ea56373d72b9108b5d36462756c30429d611e97b197d5dae9910",
            "input": {"input_images": "https://example.com/x.zip"},
        },
    )
    training_id = (await response.json())["id"]

    async def finished() -> bool:
        body = await (await client.get(f"/v1/trainings/{training_id}")).json()
        return body["status"] == "succeeded"

    await wait_until(finished, message="the training finished")
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta("tuneyard_replicate_requests_total", endpoint="models.get", status="404")
        == 1
    )
    assert (
        delta(
            "tuneyard_replicate_requests_total", endpoint="models.create", status="201"
        )
        == 1
    )
    assert (
        delta(
            "tuneyard_replicate_requests_total",
            endpoint="trainings.create",
            status="201",
        )
        == 1
    )
    assert delta("tuneyard_submissions_total", outcome="submitted") == 1
    assert (
        delta(
            "tuneyard_training_transitions_total", status="succeeded", source="webhook"
        )
        == 1
    )
