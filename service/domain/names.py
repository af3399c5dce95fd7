"""Replicate's naming rules, checked before anything is sent to Replicate."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Replicate accepts lowercase letters, digits, dashes, underscores and dots in model
# and account names; a name starts with a letter or digit.
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,99}"
VERSION_ID_PATTERN = r"[0-9a-f]{64}"
MODEL_REF = re.compile(rf"^(?P<owner>{NAME_PATTERN})/(?P<name>{NAME_PATTERN})$")
VERSION_REF = re.compile(
    rf"^(?P<owner>{NAME_PATTERN})/(?P<name>{NAME_PATTERN}):(?P<version>{VERSION_ID_PATTERN})$"
)
NAME = re.compile(rf"^{NAME_PATTERN}$")
# The same rules without named groups, for JSON Schema (ECMA-262 regular
# expressions) in the API document.
MODEL_PATTERN = rf"^{NAME_PATTERN}/{NAME_PATTERN}$"
VERSION_PATTERN = rf"^{NAME_PATTERN}/{NAME_PATTERN}:{VERSION_ID_PATTERN}$"
# An alias: a lowercase letter, then up to 62 of a-z, 0-9, '-' and '_'. `latest`
# is reserved: it always means the newest live version.
ALIAS_PATTERN = r"[a-z][a-z0-9_-]{0,62}"
ALIAS_NAME = rf"^(?!latest$){ALIAS_PATTERN}$"
# Where a version is named: its id, or @alias (including @latest).
VERSION_OR_ALIAS = rf"^({VERSION_ID_PATTERN}|@{ALIAS_PATTERN})$"


@dataclass(frozen=True)
class ModelRef:
    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class VersionRef:
    owner: str
    name: str
    version: str

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.owner, self.name)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}:{self.version}"


def parse_model(text: str) -> ModelRef:
    """`owner/name`; raises ValueError saying what a valid one looks like."""
    match = MODEL_REF.match(text)
    if match is None:
        raise ValueError(
            "must be owner/name: lowercase letters, digits, '-', '_' or '.'"
        )
    return ModelRef(match["owner"], match["name"])


def parse_version(text: str) -> VersionRef:
    """`owner/name:version_id` with a 64-hex version id."""
    match = VERSION_REF.match(text)
    if match is None:
        raise ValueError("must be owner/name:version_id with a 64-hex version id")
    return VersionRef(match["owner"], match["name"], match["version"])
