"""A local stand-in for Replicate's HTTP API, for tests, demos and development.

`create_simulator_app(SimulatorConfig(...))` builds it; `tuneyard simulator`
serves it. docs/SIMULATOR.md describes what it answers and how it differs from
Replicate.
"""

from .app import create_simulator_app
from .config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_simulator_app"]
