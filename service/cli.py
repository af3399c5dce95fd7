"""The `tuneyard` command: wiring only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from . import runtime
from .app import create_app
from .config import Settings, load_settings
from .domain.names import parse_model
from .errors import ConfigError, MigrationError, ProblemError
from .logs import configure_logging
from .simulator import cli as simulator_cli

Command = Callable[[argparse.Namespace], int]

DATABASE_HELP = (
    "Without DATABASE_URL, an embedded PostgreSQL is started with its data in "
    "TUNEYARD_DATA_DIR (default .tuneyard/)."
)


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    with runtime.database(_settings()) as settings:
        applied = asyncio.run(runtime.apply_migrations(settings))
    names = ", ".join(m.file_name for m in applied) or "nothing to apply"
    print(f"migrations: {names}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    settings.require("REPLICATE_API_TOKEN", "TUNEYARD_PUBLIC_URL", command="serve")
    with runtime.database(settings) as settings:
        asyncio.run(runtime.serve_settings(create_app(settings), settings))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    with runtime.database(_settings()) as settings:
        asyncio.run(runtime.apply_migrations(settings))
        asyncio.run(runtime.dev(settings))
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    try:
        for name in (args.name, *args.owner):
            parse_model(f"{name}/x")
    except ValueError:
        raise ConfigError(
            "token names and owners use lowercase letters, digits, '-', '_' and '.'"
        ) from None
    with runtime.database(_settings()) as settings:
        token = asyncio.run(runtime.create_token(settings, args.name, args.owner))
    if token is None:
        _fail(f"a token named {args.name} is active; revoke it first")
        return 1
    owners = ", ".join(args.owner) or "any"
    print(f"created token {args.name} for destinations of: {owners}")
    print("it is shown only now; store it where the caller keeps secrets")
    print(token)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    with runtime.database(_settings()) as settings:
        records = asyncio.run(runtime.list_tokens(settings))
    print(f"{'NAME':<24} {'OWNERS':<30} {'CREATED':<17} REVOKED")
    for record in records:
        owners = ",".join(record.owners) or "any"
        created = record.created_at.strftime("%Y-%m-%d %H:%M")
        revoked = "-"
        if record.revoked_at is not None:
            revoked = record.revoked_at.strftime("%Y-%m-%d %H:%M")
        print(f"{record.name:<24} {owners:<30} {created:<17} {revoked}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with runtime.database(_settings()) as settings:
        revoked = asyncio.run(runtime.revoke_token(settings, args.name))
    if not revoked:
        _fail(f"no active token named {args.name}")
        return 1
    print(f"revoked token {args.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneyard",
        description=(
            "Fine-tune models on Replicate for your services. Settings come from "
            "the environment and a .env file; see the README for the list."
        ),
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def add(name: str, run: Command, summary: str, details: str) -> None:
        sub = commands.add_parser(name, help=summary, description=details)
        sub.set_defaults(run=run)

    add(
        "serve",
        cmd_serve,
        "serve the API (migrations must be current)",
        "Serve the API on TUNEYARD_HOST:TUNEYARD_PORT until SIGINT or SIGTERM, then "
        "finish the requests in flight and stop. Refuses to start while migrations "
        f"are pending. {DATABASE_HELP}",
    )
    add(
        "migrate",
        cmd_migrate,
        "apply pending database migrations",
        "Apply the pending migrations in order, each in its own transaction. Safe to "
        "run from several processes at once: they take turns under a lock. "
        f"{DATABASE_HELP}",
    )
    add(
        "dev",
        cmd_dev,
        "run everything locally: database, simulator, migrations, API",
        "Start an embedded PostgreSQL when DATABASE_URL is not set and the Replicate "
        "simulator when REPLICATE_API_TOKEN is not set, apply migrations, and serve "
        "the API, printing where it answers and how to submit a first training.",
    )
    tokens = commands.add_parser(
        "tokens",
        help="create, list and revoke callers' API tokens",
        description=(
            "Callers send a token as 'Authorization: Bearer <token>'. Only a hash is "
            f"stored, so a token is shown once, when made. {DATABASE_HELP}"
        ),
    )
    token_commands = tokens.add_subparsers(
        title="commands", required=True, metavar="COMMAND"
    )
    create = token_commands.add_parser(
        "create",
        help="make a token and print it",
        description=(
            "Make a token for a caller and print it alone on the last line. The name "
            "is recorded as the caller of everything done with the token."
        ),
    )
    create.add_argument("name", help="the caller's name, e.g. the calling service")
    create.add_argument(
        "--owner",
        action="append",
        default=[],
        help="limit the token to destinations of this owner (repeatable; default: any)",
    )
    create.set_defaults(run=cmd_tokens_create)
    listing = token_commands.add_parser(
        "list", help="list tokens", description="List every token, active or revoked."
    )
    listing.set_defaults(run=cmd_tokens_list)
    revoke = token_commands.add_parser(
        "revoke",
        help="revoke a caller's token",
        description=(
            "Revoke the active token of this name; requests with it are refused "
            "within seconds on every replica."
        ),
    )
    revoke.add_argument("name")
    revoke.set_defaults(run=cmd_tokens_revoke)

    simulator = commands.add_parser(
        "simulator", help=simulator_cli.SUMMARY, description=simulator_cli.DESCRIPTION
    )
    simulator_cli.add_arguments(simulator)
    simulator.set_defaults(run=simulator_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except ConfigError as exc:
        _fail(str(exc))
        code = 2
    except (MigrationError, ProblemError) as exc:
        _fail(str(exc))
        code = 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        _fail("stopped before shutdown finished")
        code = 130
    sys.exit(code)


def _fail(message: str) -> None:
    for line in message.splitlines():
        print(f"tuneyard: {line}", file=sys.stderr)
