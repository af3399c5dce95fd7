"""Text that PostgreSQL can store.

PostgreSQL's text and jsonb hold no NUL character, and JSON from outside can
carry escaped surrogates that are not valid UTF-8. Callers' requests holding
either are refused (a 4xx naming the field); Replicate's data is scrubbed
instead, since refusing it would only make Replicate send it again. NaN and
Infinity, which Python's JSON readers take, are not JSON (RFC 8259) and jsonb
refuses them: `json_loads` refuses them too, from anyone.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

REPLACEMENT = "\ufffd"


def json_loads(data: bytes | str) -> Any:
    """json.loads, but only for JSON: ValueError for NaN, Infinity or -Infinity."""
    return json.loads(data, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_unstorable(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) that cannot be stored."""
    if isinstance(value, str):
        return None if storable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not storable(key):
                return path or "body"
            found = first_unstorable(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unstorable(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def scrub(value: Any) -> Any:
    """The value with every unstorable character replaced by U+FFFD."""
    if isinstance(value, str):
        if storable(value):
            return value
        cleaned = value.replace("\x00", REPLACEMENT)
        # An unpaired surrogate cannot be encoded; "replace" writes "?" for it.
        return cleaned.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value
