"""The API document: generated from the code, complete, and readable offline."""

from __future__ import annotations

import re

import pytest
import schemathesis
from aiohttp.test_utils import TestClient

from service.api import openapi


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: TestClient,
) -> None:
    app = client.server.app
    document = await (await client.get("/openapi.json")).json()

    routes = {(m.lower(), p) for m, p, _ in openapi.documented_routes(app)}
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    undocumented = [r for r in openapi.documented_routes(app) if r[2] is None]

    assert undocumented == []
    assert routes == documented


async def test_document_is_openapi_3_1_that_a_client_generator_can_load(
    client: TestClient,
) -> None:
    document = await (await client.get("/openapi.json")).json()

    schema = schemathesis.openapi.from_dict(document)

    assert document["openapi"] == "3.1.0"
    assert len(list(schema.get_all_operations())) == sum(
        len(ops) for ops in document["paths"].values()
    )


async def test_patterns_use_no_python_only_regex_syntax(client: TestClient) -> None:
    text = await (await client.get("/openapi.json")).text()

    # JSON Schema patterns are ECMA-262: Python's named groups would break clients.
    assert "(?P<" not in text


async def test_errors_are_documented_as_problems(client: TestClient) -> None:
    document = await (await client.get("/openapi.json")).json()

    create = document["paths"]["/v1/trainings"]["post"]["responses"]
    assert "application/problem+json" in create["422"]["content"]
    assert "application/problem+json" in create["401"]["content"]
    assert set(create) >= {"202", "400", "401", "403", "413", "422", "500", "503"}


async def test_docs_page_shows_every_operation_and_needs_nothing_from_outside(
    client: TestClient,
) -> None:
    response = await client.get("/docs")
    page = await response.text()
    document = await (await client.get("/openapi.json")).json()

    assert response.content_type == "text/html"
    for path in document["paths"]:
        assert path in page
    external = re.findall(r"""(?:src|href)=["']?(https?:)?//""", page)
    assert external == []
    assert "<script" not in page


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_document_and_page_are_open_without_a_token(
    app_client, clean_database: str, path: str
) -> None:
    client = await app_client(clean_database, TUNEYARD_AUTH_REQUIRED="true")

    response = await client.get(path)

    assert response.status == 200
