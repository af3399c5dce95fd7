"""Models and their versions."""

from __future__ import annotations

from aiohttp import web

from ..bodies import checked, optional, read_json
from ..config import NAME_PATTERN
from ..pagination import Cursor
from ..resources import CONFIG, STATS, STORE
from ..shapes import model_json, page_json, version_json
from ..state import HARDWARE, Model

routes = web.RouteTableDef()

_URL = optional("string", format="uri")

CREATE_BODY = {
    "type": "object",
    "required": ["owner", "name", "visibility", "hardware"],
    "additionalProperties": False,
    "properties": {
        "owner": {"type": "string", "pattern": NAME_PATTERN},
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "visibility": {"type": "string", "enum": ["public", "private"]},
        "hardware": {"type": "string", "enum": list(HARDWARE)},
        "description": optional("string"),
        "github_url": _URL,
        "paper_url": _URL,
        "license_url": _URL,
        "cover_image_url": _URL,
    },
}

# The fields Replicate lets `PATCH /v1/models/{owner}/{name}` change.
UPDATE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": optional("string"),
        "readme": optional("string"),
        "github_url": _URL,
        "paper_url": _URL,
        "weights_url": _URL,
        "license_url": _URL,
    },
}


def cursor_of(request: web.Request) -> Cursor | None:
    text = request.query.get("cursor")
    return None if text is None else Cursor.decode(text)


def _model(request: web.Request) -> Model:
    info = request.match_info
    return request.app[STORE].model(info["owner"], info["name"])


@routes.post("/v1/models", name="create_model")
async def create_model(request: web.Request) -> web.Response:
    fields = checked(await read_json(request), CREATE_BODY)

    model = request.app[STORE].create_model(**fields)

    request.app[STATS].creations["models"] += 1
    return web.json_response(model_json(model), status=201)


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    store, size = request.app[STORE], request.app[CONFIG].page_size
    page = store.public_models(cursor_of(request), size)
    return web.json_response(page_json(page, model_json, request.url))


@routes.get("/v1/models/{owner}/{name}")
async def get_model(request: web.Request) -> web.Response:
    return web.json_response(model_json(_model(request)))


@routes.patch("/v1/models/{owner}/{name}")
async def update_model(request: web.Request) -> web.Response:
    model = _model(request)
    changes = checked(await read_json(request), UPDATE_BODY)

    request.app[STORE].update_model(model, changes)

    return web.json_response(model_json(model))


@routes.delete("/v1/models/{owner}/{name}")
async def delete_model(request: web.Request) -> web.Response:
    request.app[STORE].delete_model(_model(request))
    return web.Response(status=204)


@routes.get("/v1/models/{owner}/{name}/versions")
async def list_versions(request: web.Request) -> web.Response:
    model = _model(request)
    page = model.versions.page(cursor_of(request), request.app[CONFIG].page_size)
    return web.json_response(page_json(page, version_json, request.url))


@routes.get("/v1/models/{owner}/{name}/versions/{version_id}")
async def get_version(request: web.Request) -> web.Response:
    model = _model(request)
    version = request.app[STORE].version(model, request.match_info["version_id"])
    return web.json_response(version_json(version))


@routes.delete("/v1/models/{owner}/{name}/versions/{version_id}")
async def delete_version(request: web.Request) -> web.Response:
    store = request.app[STORE]
    model = _model(request)
    version = store.version(model, request.match_info["version_id"])

    store.delete_version(model, version)

    # Replicate accepts the deletion and carries it out later: 202, no body. The
    # simulator deletes at once.
    return web.Response(status=202)
