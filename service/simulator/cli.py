"""`tuneyard simulator`: serve the Replicate simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from typing import Any, get_args

from ..config import LogFormat, LogLevel
from ..logs import configure_logging, get_logger
from ..runtime import serve
from .app import create_simulator_app
from .config import (
    DEFAULT_ACCOUNT,
    DEFAULT_CREATE_RATE_LIMIT,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT,
    SimulatorConfig,
    new_webhook_secret,
)
from .faults import FaultSettings

log = get_logger()

SUMMARY = "serve a local stand-in for Replicate's API"
DESCRIPTION = (
    "Serve a simulator of Replicate's HTTP API (models, versions, trainings, "
    "webhooks, rate limits) with state in memory, plus an admin API under /_sim/ "
    "to inject faults and look inside. Point REPLICATE_BASE_URL at it. See "
    "docs/SIMULATOR.md."
)
SHUTDOWN_TIMEOUT = 5.0


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def milliseconds(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 600_000:
        raise argparse.ArgumentTypeError(f"{text} is not 0 to 600000 milliseconds")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


# (FaultSettings field, argument type, help): each fault's flag is its field's
# name with dashes, e.g. --error-rate.
FAULT_FLAGS: list[tuple[str, Callable[[str], Any], str]] = [
    ("latency_ms", milliseconds, "add this many ms before every API answer"),
    ("latency_jitter_ms", milliseconds, "add up to this many ms more, at random"),
    ("error_rate", share, "share of API requests answered 500, 502 or 503"),
    ("throttle_storm_seconds", seconds, "answer every API request 429 for N s"),
    ("webhook_drop_rate", share, "share of webhooks never sent"),
    ("webhook_duplicate_rate", share, "share of webhooks sent twice, same id"),
    ("webhook_delay_ms", milliseconds, "hold each webhook this many ms"),
    (
        "webhook_reorder_rate",
        share,
        "share of trainings whose webhooks are held "
        "and sent newest first once the training ends",
    ),
    (
        "training_failure_rate",
        share,
        "share of trainings that fail after a successful-looking run",
    ),
    (
        "training_hang_rate",
        share,
        "share of trainings that stay processing until "
        "cancelled or finished through the admin API",
    ),
    (
        "lost_create_rate",
        share,
        "share of training creates whose answer is lost: "
        "the training is made, the connection is closed",
    ),
]


_METAVARS: dict[Callable[[str], Any], str] = {
    share: "SHARE",
    milliseconds: "MS",
    seconds: "SECONDS",
}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every flag of `tuneyard simulator` on `parser`."""
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: %(default)s)",
    )
    server.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on (default: %(default)s)",
    )
    server.add_argument(
        "--log-level",
        choices=get_args(LogLevel),
        default=os.environ.get("TUNEYARD_LOG_LEVEL", "info"),
        help="default: TUNEYARD_LOG_LEVEL, else info",
    )
    server.add_argument(
        "--log-format",
        choices=get_args(LogFormat),
        default=os.environ.get("TUNEYARD_LOG_FORMAT", "auto"),
        help="default: TUNEYARD_LOG_FORMAT, else auto",
    )

    replicate = parser.add_argument_group("Replicate's behaviour")
    replicate.add_argument(
        "--account",
        default=DEFAULT_ACCOUNT,
        help="the account every token belongs to (default: %(default)s)",
    )
    replicate.add_argument(
        "--token", help="accept only this API token (default: any non-empty token)"
    )
    replicate.add_argument(
        "--secret",
        help="webhook signing secret, whsec_... "
        "(default: generated and printed at start)",
    )
    replicate.add_argument(
        "--training-seconds",
        type=seconds,
        metavar="SECONDS",
        default=10.0,
        help="how long a training runs (default: %(default)s)",
    )
    replicate.add_argument(
        "--page-size",
        type=positive,
        metavar="N",
        default=100,
        help="results per list page (default: %(default)s)",
    )
    replicate.add_argument(
        "--rate-limit",
        type=positive,
        metavar="N",
        default=DEFAULT_RATE_LIMIT,
        help="API requests a minute per account (default: %(default)s)",
    )
    replicate.add_argument(
        "--create-rate-limit",
        type=positive,
        metavar="N",
        default=DEFAULT_CREATE_RATE_LIMIT,
        help="model and training creations a minute per account (default: %(default)s)",
    )
    replicate.add_argument(
        "--webhook-timeout",
        type=seconds,
        metavar="SECONDS",
        default=10.0,
        help="seconds each webhook attempt may take (default: %(default)s)",
    )
    replicate.add_argument(
        "--webhook-retry-delay",
        type=seconds,
        metavar="SECONDS",
        default=1.0,
        help="first wait before resending a failed terminal "
        "webhook; doubles each time (default: %(default)s)",
    )
    replicate.add_argument(
        "--webhook-retry-window",
        type=seconds,
        metavar="SECONDS",
        default=60.0,
        help="seconds to keep resending a failed terminal "
        "webhook (default: %(default)s)",
    )
    replicate.add_argument(
        "--seed", type=int, help="seed for the faults' randomness (default: random)"
    )

    faults = parser.add_argument_group(
        "faults", "all off by default; change them while running: PATCH /_sim/faults"
    )
    faults.add_argument(
        "--throttle-storm",
        action="store_true",
        help="answer every API request 429 until switched off",
    )
    for field, kind, text in FAULT_FLAGS:
        faults.add_argument(
            _flag(field), dest=field, type=kind, metavar=_METAVARS[kind], help=text
        )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The configuration the flags describe; raises ConfigError when invalid."""
    fault_values = {
        field: getattr(args, field)
        for field, _, _ in FAULT_FLAGS
        if getattr(args, field) is not None
    }
    if args.throttle_storm or "throttle_storm_seconds" in fault_values:
        fault_values["throttle_storm"] = True
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        account=args.account,
        token=args.token,
        secret=args.secret or new_webhook_secret(),
        training_seconds=args.training_seconds,
        page_size=args.page_size,
        rate_limit=args.rate_limit,
        create_rate_limit=args.create_rate_limit,
        seed=args.seed,
        webhook_timeout=args.webhook_timeout,
        webhook_retry_delay=args.webhook_retry_delay,
        webhook_retry_window=args.webhook_retry_window,
        faults=FaultSettings(**fault_values),
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit code for the command."""
    config = config_from_args(args)
    configure_logging(args.log_level, args.log_format)
    generated = args.secret is None
    asyncio.run(
        serve(
            create_simulator_app(config),
            host=config.host,
            port=config.port,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            service="simulator",
            on_started=lambda url: _print_banner(url, config, generated),
        )
    )
    return 0


def _print_banner(url: str, config: SimulatorConfig, secret_generated: bool) -> None:
    # The secret is printed only when generated here: it is a throwaway for
    # development. One given with --secret is never echoed.
    secret = config.secret if secret_generated else "(as given by --secret)"
    print(
        f"\nReplicate simulator answering at {url} as account {config.account!r}\n"
        f"  use:     REPLICATE_BASE_URL={url}\n"
        f"  webhook secret: {secret}\n"
        f"  faults:  curl {url}/_sim/faults\n"
        "  stop:    Ctrl-C\n",
        flush=True,
    )
