"""Replicate's webhooks as the scenarios send them, and raw HTTP for the shapes
a client library would refuse to send.

Bodies have the shape of `../shared/bench/make_webhooks.py`'s: the whole training
object, with its logs, as Replicate sends it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from service.simulator.trainers import (
    FLUX_DEV_LORA_TRAINER,
    FLUX_DEV_LORA_TRAINER_VERSION,
)
from tests.support.webhooks import signed_webhook

from .tuneyard import training_input

LOGS = "".join(f"step {i}: loss={1 / (i + 1):.4f}\n" for i in range(40))


def replicate_id() -> str:
    """An id shaped like Replicate's."""
    return "r8" + secrets.token_hex(12)


def version_id() -> str:
    return secrets.token_hex(32)


def training_body(
    training_id: str,
    status: str,
    *,
    n: int,
    destination: str,
    version: str | None = None,
    logs: str = LOGS,
) -> dict[str, Any]:
    """Replicate's training object at `status`; a succeeded one carries the new
    version of `destination`."""
    done = status == "succeeded"
    return {
        "id": training_id,
        "model": FLUX_DEV_LORA_TRAINER,
        "version": FLUX_DEV_LORA_TRAINER_VERSION,
        "input": training_input(n),
        "logs": logs,
        "output": {
            "version": f"{destination}:{version}",
            "weights": f"https://replicate.delivery/chaos/{training_id}/weights.tar",
        }
        if done
        else None,
        "error": None,
        "status": status,
        "created_at": "2026-12-03T10:00:00.000000Z",
        "started_at": None if status == "starting" else "2026-12-03T10:00:05.000000Z",
        "completed_at": "2026-12-03T10:20:00.000000Z" if done else None,
        "urls": {
            "get": f"https://api.replicate.com/v1/trainings/{training_id}",
            "cancel": f"https://api.replicate.com/v1/trainings/{training_id}/cancel",
        },
        "metrics": {"predict_time": 1195.2} if done else {},
    }


@dataclass(frozen=True)
class Webhook:
    """One message: its id and body stay the same on every delivery."""

    webhook_id: str
    body: bytes

    def signed(
        self, secret: str, when: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Headers for one delivery, signed now (or `when`), as Replicate signs
        each resend."""
        return signed_webhook(
            secret, self.body, webhook_id=self.webhook_id, timestamp=when
        )

    @classmethod
    def of(cls, body: dict[str, Any] | bytes) -> Webhook:
        raw = body if isinstance(body, bytes) else _json(body)
        return cls(f"msg_{uuid.uuid4().hex}", raw)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Delivery:
    """What happened to one webhook until it was acknowledged."""

    webhook: Webhook
    answers: list[int | str] = field(default_factory=list)
    acknowledged_at: float | None = None
    duplicate: bool | None = None


@dataclass
class SenderTally:
    deliveries: list[Delivery]
    # (monotonic time, status code or exception name) of every attempt that failed.
    failures: list[tuple[float, str]]


class Progress:
    """Acknowledgements counted across senders, to act once some have come."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def add(self) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def reach(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= count)


class Sender:
    """Delivers webhooks as Replicate does: each until a 2xx acknowledges it.

    A 5xx or a failed connection is retried with the same webhook-id and a fresh
    signature, after a short backoff; a 4xx is not retried (Replicate gives up on
    it too) and is kept as the answer. Attempts and time are bounded.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        concurrency: int = 32,
        max_attempts: int = 60,
        timeout: float = 10.0,
        progress: Progress | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.failures: list[tuple[float, str]] = []
        self.progress = progress or Progress()

    async def deliver_all(self, webhooks: list[Webhook]) -> SenderTally:
        deliveries = [Delivery(w) for w in webhooks]
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        for delivery in deliveries:
            queue.put_nowait(delivery)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(
            connector=connector, timeout=self.timeout
        ) as http:
            workers = [
                asyncio.create_task(self._work(http, queue))
                for _ in range(self.concurrency)
            ]
            await asyncio.gather(*workers)
        return SenderTally(deliveries, self.failures)

    async def _work(
        self, http: aiohttp.ClientSession, queue: asyncio.Queue[Delivery]
    ) -> None:
        while not queue.empty():
            await self.deliver(http, queue.get_nowait())

    async def deliver(self, http: aiohttp.ClientSession, delivery: Delivery) -> None:
        backoff = 0.05
        while len(delivery.answers) < self.max_attempts:
            body, headers = delivery.webhook.signed(self.secret)
            try:
                async with http.post(self.url, data=body, headers=headers) as response:
                    answer: int | str = response.status
                    payload = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                answer, payload = type(exc).__name__, None
            delivery.answers.append(answer)
            if isinstance(answer, int) and 200 <= answer < 300:
                delivery.acknowledged_at = time.monotonic()
                delivery.duplicate = bool(payload and payload.get("duplicate"))
                await self.progress.add()
                return
            self.failures.append((time.monotonic(), str(answer)))
            if isinstance(answer, int) and 400 <= answer < 500:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


async def raw_request(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    timeout: float = 15.0,
) -> RawAnswer:
    """One request written byte for byte on a fresh connection, and its answer.

    Header names and values go out exactly as given, whatever their bytes, so a
    scenario can send what a well-behaved client library never would.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
        lines += [b"Connection: close", b"Content-Length: %d" % len(body)]
        lines += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(timeout):
            raw = await reader.read()
    finally:
        writer.close()
    return parse_answer(raw)


def parse_answer(raw: bytes) -> RawAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def stream_request(
    port: int,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: Iterable[bytes],
    *,
    length: int | None,
    timeout: float = 60.0,
) -> tuple[RawAnswer | None, int]:
    """POST a body piece by piece, reading the answer at the same time, and stop
    sending once the answer has come (a server refusing a body early answers
    before it is all sent). `length` None sends it chunked. Returns the answer
    (None if the connection closed without one) and the bytes of body sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = (
        [b"Transfer-Encoding: chunked"]
        if length is None
        else [b"Content-Length: %d" % length]
    )
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *framing]
    lines += [name + b": " + value for name, value in headers]
    answer = asyncio.create_task(_read_answer(reader))
    sent = 0
    try:
        async with asyncio.timeout(timeout):
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            for chunk in chunks:
                if answer.done():
                    break
                writer.write(
                    chunk
                    if length is not None
                    else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                )
                await writer.drain()
                sent += len(chunk)
            else:
                if length is None:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
            raw = await answer
    except (ConnectionError, OSError):
        # The server closed its end while the body was still going out; what it
        # answered before is still in the read buffer.
        raw = await asyncio.wait_for(answer, timeout=10)
    finally:
        answer.cancel()
        writer.close()
    return (parse_answer(raw) if raw else None), sent


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP answer: its head, then as many bytes as Content-Length says."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        return head + await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        return head + exc.partial
