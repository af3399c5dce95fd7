"""Keyset pagination: absolute links with opaque cursors, walks with no
duplicates and no gaps while new items are created."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from ..support.simulator import Simulator
from .calls import create_model, create_training, get_json, walk
from .conftest import Started, StartSimulator

PAGE = 3


@pytest.fixture
async def paged_pair(simulator_with: StartSimulator) -> Started:
    return await simulator_with(page_size=PAGE)


@pytest.fixture
def paged(paged_pair: Started) -> Simulator:
    return paged_pair[0]


@pytest.fixture
def paged_api(paged_pair: Started) -> aiohttp.ClientSession:
    return paged_pair[1]


async def test_list_links_are_absolute_urls_with_a_cursor(
    paged: Simulator, paged_api: aiohttp.ClientSession
) -> None:
    for index in range(PAGE + 1):
        await create_model(paged_api, f"m{index}", visibility="public")

    first = await get_json(paged_api, "/v1/models")
    second = await get_json(paged_api, first["next"])

    assert first["previous"] is None
    assert len(first["results"]) == PAGE
    next_url = URL(first["next"])
    assert str(next_url.origin()) == paged.url
    assert next_url.path == "/v1/models"
    assert set(next_url.query) == {"cursor"}
    assert second["previous"] is not None
    back = await get_json(paged_api, second["previous"])
    assert back["results"] == first["results"]


async def test_walking_models_while_creating_yields_each_old_one_once(
    paged_api: aiohttp.ClientSession,
) -> None:
    for index in range(10):
        await create_model(paged_api, f"old{index}", visibility="public")
    existing = {
        f"{m['owner']}/{m['name']}" for m in await walk(paged_api, "/v1/models")
    }
    seen: list[str] = []
    url: str | None = "/v1/models"

    while url is not None:
        page = await get_json(paged_api, url)
        seen.extend(f"{m['owner']}/{m['name']}" for m in page["results"])
        await create_model(paged_api, f"new{len(seen)}", visibility="public")
        url = page["next"]

    assert len(seen) == len(set(seen))
    assert set(seen) == existing


async def test_walking_trainings_while_creating_yields_each_old_one_once(
    paged_api: aiohttp.ClientSession,
) -> None:
    await create_model(paged_api, "faces")
    before = [(await create_training(paged_api, "local/faces"))["id"] for _ in range(8)]
    seen: list[str] = []
    url: str | None = "/v1/trainings"

    while url is not None:
        page = await get_json(paged_api, url)
        seen.extend(t["id"] for t in page["results"])
        await create_training(paged_api, "local/faces")
        url = page["next"]

    assert seen == list(reversed(before))


async def test_walking_versions_backwards_with_previous_reaches_the_newest(
    paged: Simulator, paged_api: aiohttp.ClientSession
) -> None:
    await create_model(paged_api, "faces")
    pushed = [(await paged.push_version("local", "faces"))["id"] for _ in range(7)]
    pages = []
    url: str | None = "/v1/models/local/faces/versions"
    while url is not None:
        pages.append(await get_json(paged_api, url))
        url = pages[-1]["next"]
    seen_backwards: list[str] = []

    url = pages[-1]["previous"]
    while url is not None:
        page = await get_json(paged_api, url)
        seen_backwards = [v["id"] for v in page["results"]] + seen_backwards
        url = page["previous"]

    newest_first = list(reversed(pushed))
    assert [len(p["results"]) for p in pages] == [3, 3, 1]
    assert seen_backwards == newest_first[: 3 * 2]


@pytest.mark.parametrize("cursor", ["garbage", "", "bjEy%", "eDEy", "bi01"])
async def test_list_with_a_cursor_it_did_not_make_is_a_404(
    paged_api: aiohttp.ClientSession, cursor: str
) -> None:
    response = await paged_api.get("/v1/trainings", params={"cursor": cursor})

    assert response.status == 404
    assert await response.json() == {"detail": "Invalid cursor", "status": 404}


async def test_page_size_defaults_to_a_hundred(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    for _ in range(101):
        await simulator.push_version("ostris", "flux-dev-lora-trainer")

    page = await get_json(api, "/v1/models/ostris/flux-dev-lora-trainer/versions")

    assert len(page["results"]) == 100
    assert page["next"] is not None
