"""Rate limits like Replicate's: token buckets, 429 problems, headers always."""

from __future__ import annotations

import aiohttp
import pytest

from service.simulator.errors import Throttled
from service.simulator.ratelimit import TokenBucket

from .calls import create_model
from .conftest import StartSimulator

# Six a minute with ten seconds of burst: one token, the next ten seconds later.
ONE_TOKEN = 6


async def test_request_past_the_burst_is_a_429_problem_with_retry_after(
    simulator_with: StartSimulator,
) -> None:
    _, api = await simulator_with(rate_limit=ONE_TOKEN)
    allowed = await api.get("/v1/account")

    refused = await api.get("/v1/account")

    assert allowed.status == 200
    assert allowed.headers["ratelimit-remaining"] == "0"
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 10
    assert await refused.json() == {
        "detail": f"Request was throttled. Expected available in {wait} seconds.",
        "status": 429,
    }
    assert refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["ratelimit-reset"]) >= wait


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/account", 200),
        ("GET", "/v1/no-such-thing", 404),
        ("POST", "/v1/models", 422),
        ("GET", "/v1/trainings/missing", 404),
    ],
)
async def test_every_api_answer_carries_ratelimit_headers(
    api: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    response = await api.request(method, path, json={})

    assert response.status == status
    assert int(response.headers["ratelimit-remaining"]) >= 0
    assert int(response.headers["ratelimit-reset"]) >= 0


async def test_creations_draw_from_their_own_smaller_bucket(
    simulator_with: StartSimulator,
) -> None:
    _, api = await simulator_with(create_rate_limit=ONE_TOKEN)
    await create_model(api, "first")

    refused = await api.post(
        "/v1/models",
        json={
            "owner": "local",
            "name": "second",
            "visibility": "private",
            "hardware": "cpu",
        },
    )
    listed = await api.get("/v1/models")

    assert refused.status == 429
    assert listed.status == 200


async def test_admin_api_is_never_rate_limited(
    simulator_with: StartSimulator,
) -> None:
    simulator, api = await simulator_with(rate_limit=ONE_TOKEN)
    await api.get("/v1/account")

    for _ in range(20):
        await simulator.faults()

    assert (await simulator.stats())["throttled"] == 0


def test_bucket_holds_ten_seconds_of_refill_and_refills_steadily() -> None:
    now = [0.0]
    bucket = TokenBucket(3000, burst_seconds=10, clock=lambda: now[0])

    allowed = [bucket.take().allowed for _ in range(501)]
    now[0] += 1.0
    after_a_second = [bucket.take().allowed for _ in range(51)]

    assert allowed == [True] * 500 + [False]
    assert after_a_second == [True] * 50 + [False]


def test_bucket_says_when_the_next_token_comes_and_when_it_is_full() -> None:
    now = [0.0]
    bucket = TokenBucket(60, burst_seconds=10, clock=lambda: now[0])
    for _ in range(10):
        bucket.take()

    refused = bucket.take()

    assert not refused.allowed
    assert (refused.remaining, refused.retry_after, refused.reset_seconds) == (
        0,
        1,
        10,
    )


@pytest.mark.parametrize(
    ("wait", "detail"),
    [
        (1, "Request was throttled. Expected available in 1 second."),
        (7, "Request was throttled. Expected available in 7 seconds."),
    ],
)
def test_throttled_detail_is_worded_as_replicates(wait: int, detail: str) -> None:
    problem = Throttled(wait, {})

    assert problem.body() == {"detail": detail, "status": 429}
    assert problem.headers["Retry-After"] == str(wait)
