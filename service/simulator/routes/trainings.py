"""Trainings: create, read, list, cancel."""

from __future__ import annotations

from aiohttp import web

from ..bodies import read_json
from ..resources import ANSWER_LOST, CONFIG, FAULTS, RUNNER, STATS, STORE
from ..shapes import page_json, training_json
from ..submissions import read_submission
from . import api_base
from .models import cursor_of

routes = web.RouteTableDef()


@routes.post(
    "/v1/models/{owner}/{name}/versions/{version_id}/trainings",
    name="create_training",
)
async def create_training(request: web.Request) -> web.Response:
    info = request.match_info
    body = await read_json(request)
    submission = read_submission(
        request.app[STORE], info["owner"], info["name"], info["version_id"], body
    )

    training = request.app[RUNNER].submit(submission, "api", api_base(request))

    request.app[STATS].creations["trainings"] += 1
    if request.app[FAULTS].loses_create():
        _lose_answer(request)
        training.answer_lost = True
    return web.json_response(training_json(training), status=201)


def _lose_answer(request: web.Request) -> None:
    """The lost-create fault: the training exists, but the caller only sees the
    connection drop, as when a network fails after Replicate acted."""
    request[ANSWER_LOST] = True
    request.app[STATS].lost_creates += 1
    if request.transport is not None:
        request.transport.abort()


@routes.get("/v1/trainings")
async def list_trainings(request: web.Request) -> web.Response:
    page = request.app[STORE].trainings(
        cursor_of(request), request.app[CONFIG].page_size
    )
    return web.json_response(page_json(page, training_json, request.url))


@routes.get("/v1/trainings/{training_id}")
async def get_training(request: web.Request) -> web.Response:
    training = request.app[STORE].training(request.match_info["training_id"])
    return web.json_response(training_json(training))


@routes.post("/v1/trainings/{training_id}/cancel")
async def cancel_training(request: web.Request) -> web.Response:
    training = request.app[STORE].training(request.match_info["training_id"])

    request.app[RUNNER].cancel(training)

    return web.json_response(training_json(training))
