"""The Replicate client against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from service.domain.names import ModelRef, parse_version
from service.replicate.client import ReplicateClient, RetryPolicy
from service.replicate.errors import (
    CreateOutcomeUnknown,
    ReplicateConflict,
    ReplicateError,
    ReplicateInvalid,
    ReplicateNotFound,
    ReplicateUnauthorized,
    ReplicateUnavailable,
)
from service.replicate.ratelimit import Kind, RateLimiter
from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)

from ..support.simulator import Simulator

TRAINER = parse_version(f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}")
FACES = ModelRef("local", "faces")
INPUT = {"input_images": "https://example.com/faces.zip"}
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client_for(
    session: aiohttp.ClientSession,
    simulator: Simulator,
    *,
    token: str | None = None,
    retry: RetryPolicy = FAST_RETRY,
    timeout: float = 5.0,
) -> ReplicateClient:
    return ReplicateClient(
        session,
        simulator.url,
        SecretStr(token or simulator.token),
        limiter=RateLimiter(60_000, 60_000),
        timeout=timeout,
        retry=retry,
    )


@pytest.fixture
def client(session: aiohttp.ClientSession, simulator: Simulator) -> ReplicateClient:
    return client_for(session, simulator)


async def test_model_is_created_then_read_back(client: ReplicateClient) -> None:
    created = await client.create_model(FACES, visibility="private", hardware="cpu")

    read = await client.get_model(FACES)

    assert (created.owner, created.name) == ("local", "faces")
    assert read.latest_version is None
    assert read.visibility == "private"


async def test_missing_model_is_not_found_with_replicates_words(
    client: ReplicateClient,
) -> None:
    with pytest.raises(ReplicateNotFound) as raised:
        await client.get_model(ModelRef("local", "nothing"))

    assert raised.value.detail == "The requested resource could not be found."
    assert raised.value.http_status == 404


async def test_creating_an_existing_model_is_a_conflict(
    client: ReplicateClient,
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")

    with pytest.raises(ReplicateConflict):
        await client.create_model(FACES, visibility="private", hardware="cpu")


async def test_wrong_token_is_unauthorized(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    strict = Simulator(token="r8_right", training_seconds=0.3)
    await strict.start()
    try:
        client = client_for(session, strict, token="r8_wrong")
        with pytest.raises(ReplicateUnauthorized) as raised:
            await client.get_model(FACES)
    finally:
        await strict.stop()

    assert "authentication token" in raised.value.detail


async def test_invalid_training_input_is_refused_with_replicates_message(
    client: ReplicateClient,
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")

    with pytest.raises(ReplicateInvalid) as raised:
        await client.create_training(TRAINER, FACES, {"steps": "many"}, webhook=None)

    assert raised.value.http_status == 422
    assert "input_images" in raised.value.detail


async def test_training_into_missing_destination_is_not_found(
    client: ReplicateClient,
) -> None:
    with pytest.raises(ReplicateNotFound) as raised:
        await client.create_training(TRAINER, FACES, INPUT, webhook=None)

    assert raised.value.detail == "The specified training destination does not exist"


async def test_training_is_created_read_listed_and_cancelled(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await simulator.set_faults(training_hang_rate=1.0)
    await client.create_model(FACES, visibility="private", hardware="cpu")

    created = await client.create_training(TRAINER, FACES, INPUT, webhook=None)
    read = await client.get_training(created.id)
    listed = await client.list_trainings()
    cancelled = await client.cancel_training(created.id)

    assert created.status == "starting"
    assert read.id == created.id
    assert created.id in [t.id for t in listed.results]
    assert cancelled.status == "canceled"


async def test_versions_are_walked_across_every_page(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")
    pushed = [(await simulator.push_version("local", "faces"))["id"] for _ in range(7)]

    walked = [v.id async for v in client.iter_versions(FACES)]

    assert walked == list(reversed(pushed))


async def test_version_delete_is_accepted_and_refused_as_replicate_does(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")
    public = ModelRef("local", "public-faces")
    await client.create_model(public, visibility="public", hardware="cpu")
    private_version = (await simulator.push_version("local", "faces"))["id"]
    public_version = (await simulator.push_version("local", "public-faces"))["id"]

    await client.delete_version(FACES, private_version)

    with pytest.raises(ReplicateConflict):
        await client.delete_version(public, public_version)
    with pytest.raises(ReplicateNotFound):
        await client.get_version(FACES, private_version)


async def test_server_errors_are_retried_until_they_pass(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    # Half the answers fail; with 20 attempts a call fails one time in a million.
    patient = RetryPolicy(attempts=20, base_delay=0.01, max_delay=0.02)
    client = client_for(session, simulator, retry=patient)
    await client.create_model(FACES, visibility="private", hardware="cpu")
    await simulator.set_faults(error_rate=0.5)

    for _ in range(10):
        await client.get_model(FACES)

    assert (await simulator.stats())["errors_injected"] > 0


async def test_server_errors_that_persist_are_unavailable_after_the_attempts(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await simulator.set_faults(error_rate=1.0)

    with pytest.raises(ReplicateUnavailable):
        await client.get_model(FACES)

    assert (await simulator.stats())["errors_injected"] == FAST_RETRY.attempts


async def test_throttled_request_waits_as_retry_after_says_then_fails(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    # Retry-After says one second; a policy whose own backoff is far shorter
    # still waits that long between attempts.
    client = client_for(
        session, simulator, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=5)
    )
    await simulator.set_faults(throttle_storm=True)
    loop = asyncio.get_running_loop()

    started = loop.time()
    with pytest.raises(ReplicateUnavailable) as raised:
        await client.get_model(FACES)

    assert raised.value.http_status == 429
    assert raised.value.retry_after == 1
    assert loop.time() - started >= 0.9


async def test_create_with_server_error_is_never_sent_twice(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")
    await simulator.set_faults(error_rate=1.0)

    with pytest.raises(CreateOutcomeUnknown):
        await client.create_training(TRAINER, FACES, INPUT, webhook=None)

    creates = [
        count
        for endpoint, by_status in (await simulator.stats())["requests"].items()
        if endpoint.endswith("/trainings") and endpoint.startswith("POST")
        for count in by_status.values()
    ]
    assert sum(creates) == 1


async def test_create_whose_answer_is_lost_is_an_unknown_outcome(
    client: ReplicateClient, simulator: Simulator
) -> None:
    await client.create_model(FACES, visibility="private", hardware="cpu")
    await simulator.set_faults(lost_create_rate=1.0)

    with pytest.raises(CreateOutcomeUnknown):
        await client.create_training(TRAINER, FACES, INPUT, webhook=None)

    assert len(await simulator.trainings()) == 1


async def test_throttled_create_is_handed_back_after_one_attempt(
    client: ReplicateClient, simulator: Simulator
) -> None:
    # The submitter, not the client, decides whether this create may still be
    # sent; its claim on the training may lapse during a Retry-After wait.
    await client.create_model(FACES, visibility="private", hardware="cpu")
    await simulator.set_faults(throttle_storm=True)

    with pytest.raises(ReplicateUnavailable) as raised:
        await client.create_training(TRAINER, FACES, INPUT, webhook=None)

    assert (raised.value.http_status, raised.value.retry_after) == (429, 1)
    assert (await simulator.stats())["storm_throttled"] == 1
    assert await simulator.trainings() == []


async def test_create_is_sent_only_once_its_turn_has_come_and_the_caller_agrees(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    limiter = RateLimiter(60_000, 60_000)
    client = ReplicateClient(
        session, simulator.url, SecretStr(simulator.token), limiter=limiter
    )
    await client.create_model(FACES, visibility="private", hardware="cpu")
    loop = asyncio.get_running_loop()
    asked_at: list[float] = []

    async def decline() -> bool:
        asked_at.append(loop.time())
        return False

    started = loop.time()
    limiter.pause(Kind.CREATE, 0.5)
    declined = await client.create_training(
        TRAINER, FACES, INPUT, webhook=None, before_send=decline
    )

    assert declined is None
    assert len(asked_at) == 1
    assert asked_at[0] - started >= 0.45
    assert await simulator.trainings() == []


async def test_create_that_never_connected_is_unavailable(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    nowhere = ReplicateClient(
        session,
        "http://127.0.0.1:9",
        SecretStr("r8_x"),
        limiter=RateLimiter(60_000, 60_000),
        retry=FAST_RETRY,
    )

    with pytest.raises(ReplicateUnavailable, match="cannot connect"):
        await nowhere.create_training(TRAINER, FACES, INPUT, webhook=None)


async def test_default_webhook_secret_is_the_simulators(
    client: ReplicateClient, simulator: Simulator
) -> None:
    secret = await client.default_webhook_secret()

    assert secret.get_secret_value() == simulator.secret


async def test_links_off_replicates_host_are_not_followed(
    client: ReplicateClient,
) -> None:
    with pytest.raises(ReplicateError, match="refusing to follow a link"):
        await client.list_trainings(page_url="http://evil.example/v1/trainings")
