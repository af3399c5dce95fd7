"""The account, the hardware list, and the account's webhook signing secret."""

from __future__ import annotations

from aiohttp import web

from ..resources import ACCOUNT, CONFIG
from ..shapes import account_json, hardware_json

routes = web.RouteTableDef()


@routes.get("/v1/account")
async def get_account(request: web.Request) -> web.Response:
    return web.json_response(account_json(request[ACCOUNT]))


@routes.get("/v1/hardware")
async def list_hardware(request: web.Request) -> web.Response:
    return web.json_response(hardware_json())


@routes.get("/v1/webhooks/default/secret")
async def get_webhook_secret(request: web.Request) -> web.Response:
    return web.json_response({"key": request.app[CONFIG].secret})
