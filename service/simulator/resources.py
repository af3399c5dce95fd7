"""The simulator's typed application and request keys."""

from __future__ import annotations

from aiohttp import web

from .config import SimulatorConfig
from .faults import Faults
from .notifier import Notifier
from .ratelimit import RateLimiter
from .state import Store
from .stats import Stats
from .training_runner import TrainingRunner
from .webhooks import DeliveryLog

CONFIG = web.AppKey("simulator_config", SimulatorConfig)
STORE = web.AppKey("simulator_store", Store)
FAULTS = web.AppKey("simulator_faults", Faults)
LIMITER = web.AppKey("simulator_limiter", RateLimiter)
STATS = web.AppKey("simulator_stats", Stats)
DELIVERIES = web.AppKey("simulator_deliveries", DeliveryLog)
NOTIFIER = web.AppKey("simulator_notifier", Notifier)
RUNNER = web.AppKey("simulator_runner", TrainingRunner)

ACCOUNT = web.RequestKey("simulator_account", str)
ANSWER_LOST = web.RequestKey("simulator_answer_lost", bool)
