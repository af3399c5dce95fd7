"""The simulator's own API under /_sim/: not Replicate's, never authenticated,
faulted or rate limited. Tests and demos use it to set faults, look inside, and
act as someone working on Replicate's website would."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from ..bodies import checked, optional, read_json
from ..errors import Conflict, InputValidationFailed, InvalidField, NotFound
from ..resources import (
    CONFIG,
    DELIVERIES,
    FAULTS,
    LIMITER,
    NOTIFIER,
    RUNNER,
    STATS,
    STORE,
)
from ..shapes import admin_training_json, version_json
from ..submissions import DESTINATION_PATTERN, read_submission
from ..trainers import COG_VERSION, PUSHED_VERSION_SCHEMA
from . import api_base

routes = web.RouteTableDef()

WEB_TRAINING_BODY = {
    "type": "object",
    "required": ["model", "destination", "input"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "pattern": DESTINATION_PATTERN},
        "version": optional("string"),
        "destination": {"type": "string"},
        "input": {"type": "object"},
    },
}
PUSHED_VERSION_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cog_version": optional("string", minLength=1),
        "openapi_schema": optional("object"),
    },
}
FINISH_BODY = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {
        "status": {"type": "string", "enum": ["succeeded", "failed", "canceled"]},
    },
}


@routes.get("/_sim/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "account": request.app[CONFIG].account})


@routes.get("/_sim/faults")
async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].describe())


@routes.patch("/_sim/faults")
async def update_faults(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InputValidationFailed(
            [InvalidField("invalid_type", "", "Invalid type. Expected: object")]
        )
    try:
        request.app[FAULTS].update(body)
    except ValidationError as exc:
        raise InputValidationFailed(_invalid_fields(exc)) from None
    return web.json_response(request.app[FAULTS].describe())


@routes.get("/_sim/trainings")
async def list_trainings(request: web.Request) -> web.Response:
    destination = request.query.get("destination")
    trainings = [
        admin_training_json(training)
        for training in request.app[STORE].every_training()
        if destination is None or training.destination == destination
    ]
    return web.json_response({"results": trainings})


@routes.post("/_sim/trainings")
async def create_web_training(request: web.Request) -> web.Response:
    """A training "made on the web": source web, no webhook."""
    store = request.app[STORE]
    fields = checked(await read_json(request), WEB_TRAINING_BODY)
    owner, name = fields["model"].split("/")
    version = fields.get("version") or _latest_version_id(request, owner, name)
    body = {"destination": fields["destination"], "input": fields["input"]}
    submission = read_submission(store, owner, name, version, body)

    training = request.app[RUNNER].submit(submission, "web", api_base(request))

    return web.json_response(admin_training_json(training), status=201)


@routes.post("/_sim/trainings/{training_id}/finish")
async def finish_training(request: web.Request) -> web.Response:
    """End a training now, typically one the hang fault keeps processing."""
    training = request.app[STORE].training(request.match_info["training_id"])
    status = checked(await read_json(request), FINISH_BODY)["status"]
    if training.finished:
        raise Conflict(f"The training has already finished ({training.status}).")

    request.app[RUNNER].end(training, status)

    return web.json_response(admin_training_json(training))


@routes.post("/_sim/models/{owner}/{name}/versions")
async def push_version(request: web.Request) -> web.Response:
    """A version "pushed from the web" (by cog push), outside any training."""
    store = request.app[STORE]
    model = store.model(request.match_info["owner"], request.match_info["name"])
    fields = checked(await read_json(request), PUSHED_VERSION_BODY)

    version = store.add_version(
        model,
        fields.get("openapi_schema") or PUSHED_VERSION_SCHEMA,
        fields.get("cog_version") or COG_VERSION,
    )

    return web.json_response(version_json(version), status=201)


@routes.get("/_sim/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    entries = [entry.to_json() for entry in request.app[DELIVERIES].entries()]
    training_id = request.query.get("training_id")
    if training_id is not None:
        entries = [entry for entry in entries if entry["training_id"] == training_id]
    return web.json_response({"results": entries})


@routes.get("/_sim/stats")
async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS].to_json())


@routes.post("/_sim/reset")
async def reset(request: web.Request) -> web.Response:
    """Forget models, versions, trainings, deliveries and stats; keep the
    trainers and the settings, faults included."""
    app = request.app
    await app[RUNNER].close()
    await app[NOTIFIER].close()
    app[STORE].reset()
    app[DELIVERIES].clear()
    app[STATS].clear()
    app[LIMITER].reset()
    return web.json_response({"status": "reset"})


def _latest_version_id(request: web.Request, owner: str, name: str) -> str:
    """The model's newest version, or "" (which no trainer has) when none."""
    try:
        latest = request.app[STORE].model(owner, name).latest_version
    except NotFound:
        return ""
    return "" if latest is None else latest.id


def _invalid_fields(exc: ValidationError) -> list[InvalidField]:
    invalid = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        invalid.append(InvalidField(error["type"], field, error["msg"]))
    return invalid
