"""Running Tuneyard as a process: which database, serving until a signal."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
from aiohttp import web
from pydantic import SecretStr

from .api.server import AppRunner
from .app import create_app
from .config import Settings
from .logs import get_logger
from .simulator import SimulatorConfig, create_simulator_app
from .simulator.trainers import FLUX_DEV_LORA_TRAINER, FLUX_DEV_LORA_TRAINER_VERSION
from .store import migrations, tokens
from .store.embedded import EmbeddedPostgres
from .store.pool import CONNECT_TIMEOUT
from .webhooks.sign import new_webhook_secret

log = get_logger()

# The caller `tuneyard dev` makes a token for on each start.
DEV_TOKEN_NAME = "dev"  # noqa: S105 (a caller name, not a secret)


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose DATABASE_URL points at a running database.

    With DATABASE_URL set, that is the configured server. Without it, an embedded
    PostgreSQL is started with its data in TUNEYARD_DATA_DIR and released on exit.
    """
    if settings.database_url is not None:
        yield settings
        return

    embedded = EmbeddedPostgres(settings.data_dir)
    embedded.start()
    try:
        url = asyncio.run(embedded.create_database())
        yield settings.model_copy(update={"database_url": SecretStr(url)})
    finally:
        embedded.stop()


async def apply_migrations(settings: Settings) -> list[migrations.Migration]:
    """Apply pending migrations to the configured database."""
    conn = await _connect(settings)
    try:
        return await migrations.migrate(conn, migrations.load())
    finally:
        await conn.close()


async def _connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url is not None
    return await asyncpg.connect(
        settings.database_url.get_secret_value(), timeout=CONNECT_TIMEOUT
    )


async def create_token(settings: Settings, name: str, owners: list[str]) -> str | None:
    conn = await _connect(settings)
    try:
        return await tokens.create(conn, name, owners)
    finally:
        await conn.close()


async def list_tokens(settings: Settings) -> list[tokens.TokenRecord]:
    conn = await _connect(settings)
    try:
        return await tokens.all_tokens(conn)
    finally:
        await conn.close()


async def revoke_token(settings: Settings, name: str) -> bool:
    conn = await _connect(settings)
    try:
        return await tokens.revoke(conn, name)
    finally:
        await conn.close()


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    service: str = "tuneyard",
    on_started: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully.

    Graceful means: stop accepting connections, let requests in flight finish (up
    to `shutdown_timeout` seconds), then close the app's resources. A second
    signal stops waiting for them. `service` names what is served in the logs.
    """
    runner = AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal(signum: signal.Signals) -> None:
        if stopping.is_set():
            log.warning("shutdown_forced", service=service, signal=signum.name)
            main_task.cancel()
            return
        log.info("shutdown_started", service=service, signal=signum.name)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await web.TCPSite(runner, host, port).start()
        # The port actually bound, which differs from `port` when that is 0.
        url = f"http://{host}:{runner.addresses[0][1]}"
        log.info("server_started", service=service, url=url)
        _settle_garbage_collector()
        if on_started is not None:
            result = on_started(url)
            if result is not None:
                await result
        await stopping.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("server_stopped", service=service)


# Allocations between collections of the youngest generation (CPython's default
# is 700). A webhook makes a few hundred objects, nearly all freed at once by
# reference counting, so the default collects every other request or so.
GC_YOUNG_THRESHOLD = 20_000


def _settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the request path.

    What start-up made (modules, pydantic's schemas, the app) lives as long as
    the process; frozen, a full collection no longer walks it, and those walks
    were the slowest answers under load: in bench/ingestion.py, p99 went from
    about 60 ms to about 15 ms in most rounds. Collections also run less often.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve_settings(
    app: web.Application,
    settings: Settings,
    *,
    on_started: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve Tuneyard's app where its settings say."""
    await serve(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        on_started=on_started,
    )


@asynccontextmanager
async def local_simulator(settings: Settings) -> AsyncIterator[Settings]:
    """Run the Replicate simulator beside the service when no token is set.

    Yields settings pointing the service at it: its URL, a token, and the secret
    its webhooks are signed with. With REPLICATE_API_TOKEN set, yields the
    settings unchanged and Replicate itself is used.
    """
    if settings.replicate_api_token is not None:
        yield settings
        return
    config = SimulatorConfig(host=settings.host, port=settings.simulator_port)
    runner = web.AppRunner(
        create_simulator_app(config), access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.simulator_port).start()
        url = f"http://{settings.host}:{settings.simulator_port}"
        log.info("simulator_started", url=url, account=config.account)
        yield settings.model_copy(
            update={
                "replicate_api_token": SecretStr("r8_local_simulator"),
                "replicate_base_url": url,
                "replicate_webhook_secret": SecretStr(config.secret),
            }
        )
    finally:
        await runner.cleanup()


async def dev(settings: Settings) -> None:
    """Serve the API locally, against the simulator unless a token is set.

    Callbacks are signed with TUNEYARD_WEBHOOK_SECRET, or with a development
    secret made now and printed, so a local receiver can verify them.
    """
    changes: dict[str, object] = {}
    if settings.public_url is None:
        changes["public_url"] = f"http://{settings.host}:{settings.port}"
    callback_secret = None
    if settings.tuneyard_webhook_secret is None:
        callback_secret = new_webhook_secret()
        changes["tuneyard_webhook_secret"] = SecretStr(callback_secret)
    settings = settings.model_copy(update=changes)
    simulated = settings.replicate_api_token is None
    token = await _fresh_dev_token(settings) if settings.auth_required else None
    async with local_simulator(settings) as settings:

        def welcome(url: str) -> None:
            text = welcome_text(url, settings, simulated, token)
            if callback_secret is not None:
                # Made for this run only, so showing it gives nothing away.
                text += f"Callbacks are signed with: {callback_secret}\n"
            print(text, flush=True)

        await serve_settings(create_app(settings), settings, on_started=welcome)


async def _fresh_dev_token(settings: Settings) -> str:
    """A caller token named `dev`, replacing the one from the last run: only a
    hash of it was kept, so it cannot be shown again."""
    await revoke_token(settings, DEV_TOKEN_NAME)
    token = await create_token(settings, DEV_TOKEN_NAME, [])
    assert token is not None
    return token


def welcome_text(
    url: str, settings: Settings, simulated: bool, token: str | None = None
) -> str:
    """What `tuneyard dev` prints once it answers: where, and a first call."""
    trainer = f"{FLUX_DEV_LORA_TRAINER}:{FLUX_DEV_LORA_TRAINER_VERSION}"
    owner = "local" if simulated else "your-account"
    against = (
        f"the Replicate simulator at {settings.replicate_base_url}"
        if simulated
        else f"Replicate at {settings.replicate_base_url}"
    )
    auth = ' -H "Authorization: Bearer $TUNEYARD_TOKEN"' if token else ""
    lines = [
        f"\nTuneyard is answering at {url}, against {against}.",
        f"The API is described at {url}/docs.\n",
    ]
    if token:
        lines.append(f"Your token for this run:\n  export TUNEYARD_TOKEN={token}\n")
    lines += [
        "Submit a training:",
        f"  curl -s -X POST {url}/v1/trainings{auth} \\",
        "    -H 'Content-Type: application/json' \\",
        f'    -d \'{{"destination": "{owner}/faces", "trainer": "{trainer}",',
        '         "input": {"input_images": "https://example.com/faces.zip"}}\'',
        f"Watch it: curl -s{auth} {url}/v1/trainings",
        f"Its versions: curl -s{auth} {url}/v1/destinations/{owner}/faces/versions",
        "Stop: Ctrl-C\n",
    ]
    return "\n".join(lines)
