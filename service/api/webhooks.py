"""POST /webhooks/replicate: Replicate's signed reports on a training.

Verified over the raw body, recorded in one short transaction shared with the
webhooks arriving at the same time, answered once that transaction commits.
Anything that cannot be verified or read is a 4xx problem; a training Tuneyard does
not know, or a status it does not know, is still recorded and answered 200, since
refusing it would only make Replicate retry.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from .. import metrics
from ..errors import Unavailable
from ..replicate.models import Training
from ..resources import INGESTOR, SETTINGS, WEBHOOK_SECRETS
from ..webhooks.ingest import Delivery
from .openapi import Param, operation
from .requests import PayloadTooLarge, read_body

routes = web.RouteTableDef()


class WebhookReceipt(BaseModel):
    received: bool
    duplicate: bool
    known: bool


@routes.post("/webhooks/replicate")
@operation(
    "Replicate's signed webhooks (not for callers)",
    tag="webhooks",
    request=Training,
    responses={200: WebhookReceipt},
    params=(
        Param("webhook-id", "header", {"type": "string"}, required=True),
        Param("webhook-timestamp", "header", {"type": "string"}, required=True),
        Param("webhook-signature", "header", {"type": "string"}, required=True),
        Param(
            "training_id",
            "query",
            {"type": "string"},
            "The Tuneyard training this webhook is for.",
        ),
    ),
    errors=(401,),
    authenticated=False,
)
async def receive_webhook(request: web.Request) -> web.Response:
    verifier = request.app[WEBHOOK_SECRETS].verifier
    if verifier is None:
        # Only until the secret is fetched from Replicate at start. A 503 makes
        # Replicate retry a terminal webhook; the reconciler covers the rest.
        raise Unavailable("the webhook secret is not loaded yet; try again shortly")
    try:
        body = await read_body(request, request.app[SETTINGS].webhook_max_bytes)
    except PayloadTooLarge:
        metrics.WEBHOOKS_RECEIVED.inc()
        metrics.WEBHOOKS_REJECTED.labels("too_large").inc()
        raise

    # Verified and read by the ingestor, together with the webhooks arriving
    # beside it (webhooks.ingest).
    outcome = await request.app[INGESTOR].receive(
        Delivery(request.headers, body, request.query.get("training_id"), verifier)
    )

    return web.Response(
        body=_RECEIPTS[outcome.duplicate, outcome.training is not None],
        content_type="application/json",
        charset="utf-8",
    )


# The answers are few, so they are encoded once rather than on every webhook.
_RECEIPTS = {
    (duplicate, known): WebhookReceipt(received=True, duplicate=duplicate, known=known)
    .model_dump_json()
    .encode()
    for duplicate in (False, True)
    for known in (False, True)
}
