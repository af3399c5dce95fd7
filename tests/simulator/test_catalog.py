"""The hardware list and the account's webhook signing secret."""

from __future__ import annotations

import aiohttp

from ..support.simulator import Simulator


async def test_hardware_is_a_plain_array_of_sku_and_name(
    api: aiohttp.ClientSession,
) -> None:
    response = await api.get("/v1/hardware")

    assert response.status == 200
    hardware = await response.json()
    assert [item["sku"] for item in hardware] == [
        "cpu",
        "gpu-t4",
        "gpu-a40-small",
        "gpu-a40-large",
        "gpu-a100-large",
        "gpu-h100",
    ]
    assert all(set(item) == {"sku", "name"} and item["name"] for item in hardware)


async def test_webhook_secret_is_the_signing_secret(
    simulator: Simulator, api: aiohttp.ClientSession
) -> None:
    response = await api.get("/v1/webhooks/default/secret")

    assert response.status == 200
    assert await response.json() == {"key": simulator.secret}
    assert simulator.secret.startswith("whsec_")
