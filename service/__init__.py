"""Tuneyard: fine-tune models on Replicate for a company's services."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuneyard")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
