"""Authentication: Replicate's token schemes and its 401 problem."""

from __future__ import annotations

import aiohttp
import pytest

from ..support.simulator import Simulator
from .calls import PROBLEM_JSON

UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}


@pytest.mark.parametrize(
    "authorization", ["Bearer r8_abc", "Token r8_abc", "bearer r8_abc"]
)
async def test_account_with_any_token_scheme_answers_the_account(
    simulator: Simulator, authorization: str
) -> None:
    async with aiohttp.ClientSession(base_url=simulator.url) as http:
        response = await http.get(
            "/v1/account", headers={"Authorization": authorization}
        )

        assert response.status == 200
        assert await response.json() == {
            "type": "organization",
            "username": "local",
            "name": "local",
            "github_url": None,
        }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "r8_abc"},
    ],
    ids=["missing", "no-token", "blank-token", "basic", "no-scheme"],
)
async def test_request_without_a_usable_token_is_a_401_problem(
    simulator: Simulator, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession(base_url=simulator.url) as http:
        response = await http.get("/v1/trainings", headers=headers)

        assert response.status == 401
        assert response.content_type == PROBLEM_JSON
        assert await response.json() == UNAUTHENTICATED


@pytest.mark.parametrize(("sent", "status"), [("r8_right", 200), ("r8_wrong", 401)])
async def test_configured_token_is_the_only_one_accepted(
    sent: str, status: int
) -> None:
    async with (
        Simulator(token="r8_right") as simulator,
        aiohttp.ClientSession(base_url=simulator.url) as http,
    ):
        response = await http.get(
            "/v1/account", headers={"Authorization": f"Bearer {sent}"}
        )

        assert response.status == status


async def test_account_name_is_the_configured_one() -> None:
    async with (
        Simulator(account="acme") as simulator,
        simulator.api_session() as api,
    ):
        response = await api.get("/v1/account")

        assert (await response.json())["username"] == "acme"


async def test_admin_api_needs_no_token(simulator: Simulator) -> None:
    async with aiohttp.ClientSession(base_url=simulator.url) as http:
        response = await http.get("/_sim/faults")

        assert response.status == 200
