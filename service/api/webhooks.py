"""POST /webhooks/replicate: Replicate's signed reports on a training.

Verified over the raw body, recorded in one short transaction, answered at once.
Anything that cannot be verified or read is a 4xx problem; a training Tuneyard does
not know, or a status it does not know, is still recorded and answered 200, since
refusing it would only make Replicate retry.
"""

from __future__ import annotations

import json
import re

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .. import metrics
from ..domain.ids import is_training_id
from ..domain.text import first_unstorable, scrub
from ..errors import InvalidRequest, Unavailable
from ..replicate.models import Training
from ..resources import INGESTOR, SETTINGS, WEBHOOK_SECRETS
from ..store.trainings import Report
from ..store.transitions import Item
from ..webhooks.verify import WebhookRejected
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
    settings = request.app[SETTINGS]
    metrics.WEBHOOKS_RECEIVED.inc()
    try:
        body = await read_body(request, settings.webhook_max_bytes)
        verified = verifier.verify(request.headers, body)
    except PayloadTooLarge:
        metrics.WEBHOOKS_REJECTED.labels("too_large").inc()
        raise
    except WebhookRejected as exc:
        metrics.WEBHOOKS_REJECTED.labels(exc.reason).inc()
        raise
    metrics.WEBHOOKS_VERIFIED.inc()
    try:
        training, raw_text = _parse(body)
    except InvalidRequest:
        metrics.WEBHOOKS_REJECTED.labels("bad_body").inc()
        raise
    training_id = request.query.get("training_id")
    if training_id is not None and not is_training_id(training_id):
        training_id = None

    outcome = await request.app[INGESTOR].apply(
        Item(
            Report(
                source="webhook",
                training=training,
                webhook_id=verified.webhook_id,
                raw_body=raw_text,
            ),
            training_id,
        )
    )

    if outcome.duplicate:
        metrics.WEBHOOKS_DUPLICATE.inc()
    elif outcome.training is None:
        metrics.WEBHOOKS_UNKNOWN.inc()
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


# JSON escapes of the characters PostgreSQL cannot store: NUL, and surrogates
# (a lone one is invalid; a paired one is checked on the slow path too).
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")


def _parse(body: bytes) -> tuple[Training, str]:
    """The training the body describes, and the body's text to keep.

    A body with no escape of an unstorable character (nearly every one) is
    parsed once, by pydantic; raw UTF-8 cannot hold such a character, so the
    escapes are the only way in.
    """
    if not _UNSTORABLE_ESCAPE.search(body):
        try:
            return Training.model_validate_json(body), body.decode()
        except (ValidationError, UnicodeDecodeError):
            pass  # the slow path below says precisely what is wrong
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the webhook body is not a training object")
    text = body.decode()
    if first_unstorable(payload) is not None:
        # Replicate's words (a training's logs, say) are kept even when they hold
        # a character PostgreSQL cannot: refusing them would only be repeated.
        payload = scrub(payload)
        text = json.dumps(payload)
    try:
        return Training.model_validate(payload), text
    except ValidationError:
        raise InvalidRequest(
            "the webhook body is not a training: it needs a string id and status"
        ) from None
