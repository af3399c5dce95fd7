"""Tuneyard's own identifiers: a prefix and a ULID, so they sort by creation time.

`trn_01JE...` sorts after every training made earlier, which makes "newest first"
an index scan on the primary key and a page cursor a plain id.
"""

from __future__ import annotations

import os
import re
import time

# Crockford's base32: no I, L, O or U, so ids survive being read aloud or retyped.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Every pair of characters, so an id is 13 look-ups of 10 bits each rather than
# 26 divisions of a 128-bit number: ids are made for every callback recorded.
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def ulid(now_ms: int | None = None) -> str:
    """A 26-character ULID: 48 bits of milliseconds, then 80 random bits."""
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    value = (timestamp << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


_TRAINING_ID = re.compile(rf"trn_[{_ALPHABET}]{{26}}")


def is_training_id(value: str) -> bool:
    """Whether `value` has the shape of an id new_id("trn") makes."""
    return _TRAINING_ID.fullmatch(value) is not None
