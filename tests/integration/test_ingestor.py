"""The webhook ingestor on its own, against the real database."""

from __future__ import annotations

import asyncio
import gc
import weakref

import asyncpg

from service.webhooks.ingest import DEADLINE_CHECK, Delivery, WebhookIngestor
from service.webhooks.verify import WebhookVerifier

from ..support.factories import POLICY, replicate_training
from ..support.webhooks import signed_webhook
from .conftest import WEBHOOK_SECRET


async def test_an_answered_webhook_is_not_kept_until_its_deadline(
    pool: asyncpg.Pool,
) -> None:
    # Every waiting webhook has a deadline; one answered long before it must not
    # be held (with its outcome and training) for the rest of it: under load,
    # that was seconds' worth of webhooks in memory.
    ingestor = WebhookIngestor(pool, POLICY, writers=1, answer_within=60)
    ingestor.start()
    try:
        verifier = WebhookVerifier([WEBHOOK_SECRET])
        answered = []
        for replicate_id in ("r8a", "r8b", "r8c"):
            body, headers = signed_webhook(
                WEBHOOK_SECRET, replicate_training(replicate_id, "processing").raw()
            )
            outcome = await ingestor.receive(Delivery(headers, body, None, verifier))
            assert outcome.duplicate is False
            answered.append(weakref.ref(outcome))
            del outcome
        await asyncio.sleep(DEADLINE_CHECK * 2 + 0.1)
        gc.collect()
        # The last batch may still be in the ingestor's hands; the ones before
        # it are gone.
        assert [ref() for ref in answered[:-1]] == [None, None]
    finally:
        await ingestor.stop()
