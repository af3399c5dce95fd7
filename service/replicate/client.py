"""Replicate's API over the app's shared aiohttp session.

Three layers: public verbs (`get_model`, `create_training`, ...) name what Tuneyard
does; `_call` paces, retries and turns answers into objects or typed errors;
`_send_once` makes one HTTP exchange.

Retries cover 429, 5xx and lost connections, waiting as Replicate asks
(`Retry-After`, else `ratelimit-reset`, else exponential backoff with jitter).
A training create is the exception: it is made in one attempt, and never
repeated here. Replicate has no idempotency key, so a create whose answer was lost
raises CreateOutcomeUnknown and the submitter settles what happened first. Even a
create that certainly did not arrive (429, no connection) goes back to the
submitter, because only its claim on the training says whether it may still
send one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from .. import __version__, metrics
from ..domain.names import ModelRef, VersionRef
from ..domain.text import scrub
from ..logs import get_logger
from ..retry import retry_after_seconds
from .errors import (
    CreateOutcomeUnknown,
    ReplicateError,
    ReplicateUnavailable,
    describe,
    refused,
)
from .models import Model, Page, ReplicateObject, Training, Version
from .ratelimit import Kind, RateLimiter

log = get_logger()

T = TypeVar("T", bound=ReplicateObject)

# What `_call` answers when `before_send` declined to send.
_NOT_SENT = object()

# Webhook events Tuneyard asks for: `start` settles a create whose answer was lost
# within seconds, `completed` ends the training. Output and log events would only
# add load: Tuneyard reads neither before completion.
WEBHOOK_EVENTS = ("start", "completed")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to the exponential ceiling."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class ReplicateClient:
    """Replicate's API for one account token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: SecretStr,
        *,
        limiter: RateLimiter,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._token = token
        self._limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()

    # Models and versions

    async def get_model(self, model: ModelRef) -> Model:
        body = await self._call("GET", f"/v1/models/{model}", endpoint="models.get")
        return Model.model_validate(body)

    async def create_model(
        self,
        model: ModelRef,
        *,
        visibility: str,
        hardware: str,
        description: str | None = None,
    ) -> Model:
        """Create a model. Retrying is safe: a second create is refused as a
        duplicate (ReplicateConflict), which callers read as "it exists"."""
        payload: dict[str, Any] = {
            "owner": model.owner,
            "name": model.name,
            "visibility": visibility,
            "hardware": hardware,
        }
        if description is not None:
            payload["description"] = description
        body = await self._call(
            "POST",
            "/v1/models",
            payload=payload,
            kind=Kind.CREATE,
            endpoint="models.create",
        )
        return Model.model_validate(body)

    async def list_versions(
        self, model: ModelRef, *, page_url: str | None = None
    ) -> Page[Version]:
        body = await self._call(
            "GET", page_url or f"/v1/models/{model}/versions", endpoint="versions.list"
        )
        return Page[Version].model_validate(body)

    async def iter_versions(self, model: ModelRef) -> AsyncIterator[Version]:
        """Every version, newest first, following `next` to the last page."""
        async for version in self._walk(
            f"/v1/models/{model}/versions", Page[Version], "versions.list"
        ):
            yield version

    async def get_version(self, model: ModelRef, version_id: str) -> Version:
        body = await self._call(
            "GET", f"/v1/models/{model}/versions/{version_id}", endpoint="versions.get"
        )
        return Version.model_validate(body)

    async def delete_version(self, model: ModelRef, version_id: str) -> None:
        """Ask Replicate to delete a version; it answers 202 and deletes later."""
        await self._call(
            "DELETE",
            f"/v1/models/{model}/versions/{version_id}",
            endpoint="versions.delete",
        )

    # Trainings

    async def create_training(
        self,
        trainer: VersionRef,
        destination: ModelRef,
        training_input: dict[str, Any],
        *,
        webhook: str | None,
        before_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> Training | None:
        """Start a training, in a single attempt.

        `before_send` runs once the pace of creates allows this one, right before
        it is sent, so that what it commits (the submitter's mark that a create
        is going out) is not followed by a long wait. If it answers False,
        nothing is sent and the result is None.
        """
        payload: dict[str, Any] = {
            "destination": str(destination),
            "input": training_input,
        }
        if webhook is not None:
            payload["webhook"] = webhook
            payload["webhook_events_filter"] = list(WEBHOOK_EVENTS)
        path = (
            f"/v1/models/{trainer.owner}/{trainer.name}"
            f"/versions/{trainer.version}/trainings"
        )
        body = await self._call(
            "POST",
            path,
            payload=payload,
            kind=Kind.CREATE,
            idempotent=False,
            endpoint="trainings.create",
            before_send=before_send,
        )
        return None if body is _NOT_SENT else Training.model_validate(body)

    async def get_training(self, training_id: str) -> Training:
        body = await self._call(
            "GET", f"/v1/trainings/{training_id}", endpoint="trainings.get"
        )
        return Training.model_validate(body)

    async def list_trainings(self, *, page_url: str | None = None) -> Page[Training]:
        body = await self._call(
            "GET", page_url or "/v1/trainings", endpoint="trainings.list"
        )
        return Page[Training].model_validate(body)

    async def cancel_training(self, training_id: str) -> Training:
        body = await self._call(
            "POST", f"/v1/trainings/{training_id}/cancel", endpoint="trainings.cancel"
        )
        return Training.model_validate(body)

    async def default_webhook_secret(self) -> SecretStr:
        body = await self._call(
            "GET", "/v1/webhooks/default/secret", endpoint="webhooks.secret"
        )
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            raise ReplicateError("Replicate's webhook secret answer has no key")
        return SecretStr(body["key"])

    # Plumbing

    async def _walk(
        self, path: str, page_type: type[Page[T]], endpoint: str
    ) -> AsyncIterator[T]:
        url: str | None = path
        while url is not None:
            answer = await self._call("GET", url, endpoint=endpoint)
            page = page_type.model_validate(answer)
            for item in page.results:
                yield item
            url = page.next

    async def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        payload: Any = None,
        kind: Kind = Kind.READ,
        idempotent: bool = True,
        endpoint: str,
        before_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> Any:
        url = self._url(path_or_url)
        attempts = self._retry.attempts if idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire(kind)
            if before_send is not None and not await before_send():
                return _NOT_SENT
            try:
                answer = await self._send_once(method, url, payload, endpoint)
            except aiohttp.ClientConnectorError as exc:
                metrics.REPLICATE_REQUESTS.labels(endpoint, "connect_error").inc()
                # Not even connected: nothing reached Replicate, so any request,
                # a create included, can be sent again.
                failure: ReplicateError = ReplicateUnavailable(
                    f"cannot connect to Replicate: {_reason(exc)}"
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                metrics.REPLICATE_REQUESTS.labels(endpoint, "no_answer").inc()
                if not idempotent:
                    raise CreateOutcomeUnknown(
                        f"no answer to {method} {_path(url)}: {_reason(exc)}"
                    ) from None
                failure = ReplicateUnavailable(
                    f"no answer from Replicate: {_reason(exc)}"
                )
            else:
                if answer.status < 300:
                    return answer.body
                retry_after = _retry_after(answer.headers)
                if answer.status == 429:
                    # A throttled request was not processed. Every request of this
                    # kind waits as long as Replicate asks.
                    self._limiter.pause(kind, retry_after or self._retry.backoff(1))
                    failure = ReplicateUnavailable(
                        describe(429, answer.body),
                        http_status=429,
                        retry_after=retry_after,
                    )
                elif answer.status >= 500:
                    if not idempotent:
                        # A server error after a create may still have created it.
                        raise CreateOutcomeUnknown(
                            f"Replicate answered {answer.status} to "
                            f"{method} {_path(url)}",
                            http_status=answer.status,
                            body=answer.body,
                        )
                    failure = ReplicateUnavailable(
                        describe(answer.status, answer.body),
                        http_status=answer.status,
                        retry_after=retry_after,
                    )
                else:
                    raise refused(answer.status, answer.body)

            if attempt >= attempts:
                raise failure
            delay = failure.retry_after or self._retry.backoff(attempt)
            delay = min(delay, self._retry.max_delay)
            log.info(
                "replicate_retry",
                method=method,
                path=_path(url),
                attempt=attempt,
                status=failure.http_status,
                delay=round(delay, 2),
            )
            await asyncio.sleep(delay)

    async def _send_once(
        self, method: str, url: str, payload: Any, endpoint: str
    ) -> _Answer:
        started = time.perf_counter()
        async with self._session.request(
            method,
            url,
            json=payload,
            headers={
                "Authorization": f"Bearer {self._token.get_secret_value()}",
                "User-Agent": f"tuneyard/{__version__}",
            },
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            raw = await response.read()
        body: Any = None
        if raw:
            try:
                # Anything kept from Replicate must be storable; see domain.text.
                body = scrub(json.loads(raw))
            except ValueError:
                body = raw[:200].decode(errors="replace")
        elapsed = time.perf_counter() - started
        metrics.REPLICATE_REQUESTS.labels(endpoint, str(response.status)).inc()
        metrics.REPLICATE_DURATION.labels(endpoint).observe(elapsed)
        log.debug(
            "replicate_call",
            endpoint=endpoint,
            status=response.status,
            duration_ms=round(elapsed * 1000, 1),
        )
        return _Answer(response.status, response.headers, body)

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith("/"):
            return self.base_url + path_or_url
        # A pagination link is followed as given, but only to Replicate itself:
        # the token must never be sent to another host.
        if not path_or_url.startswith(self.base_url + "/"):
            raise ReplicateError(f"refusing to follow a link off {self.base_url}")
        return path_or_url


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    """Seconds to wait: Retry-After, else Replicate's ratelimit-reset."""
    seconds = retry_after_seconds(headers.get("Retry-After"))
    if seconds is not None:
        return seconds
    try:
        return max(float(headers.get("ratelimit-reset", "")), 0.0)
    except ValueError:
        return None


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
