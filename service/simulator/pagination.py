"""Keyset pagination: pages newest first, walked with opaque cursors.

A cursor remembers the key of the item at the edge of the page it came from, not
an offset, so items created during a walk never shift the pages after it: walking
`next` to the end yields every item that existed when the walk began, once.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from .errors import NotFound

T = TypeVar("T")

Direction = Literal["next", "previous"]
_PREFIX: dict[Direction, str] = {"next": "n", "previous": "p"}
_DIRECTION: dict[str, Direction] = {"n": "next", "p": "previous"}


class InvalidCursor(NotFound):
    """A cursor the simulator did not make; Replicate answers these with a 404."""

    default_detail = "Invalid cursor"


@dataclass(frozen=True)
class Cursor:
    """`next` pages hold items older than `key`; `previous` pages newer ones."""

    direction: Direction
    key: int

    def encode(self) -> str:
        raw = f"{_PREFIX[self.direction]}{self.key}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
            direction, key = _DIRECTION[raw[:1]], int(raw[1:])
        except (binascii.Error, UnicodeDecodeError, KeyError, ValueError):
            raise InvalidCursor() from None
        if key < 0:
            raise InvalidCursor()
        return cls(direction, key)


@dataclass(frozen=True)
class Page(Generic[T]):
    results: list[T]
    next: Cursor | None
    previous: Cursor | None


class Timeline(Generic[T]):
    """Items in the order they were made, each under a unique increasing key."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._items: list[T] = []

    def add(self, key: int, item: T) -> None:
        if self._keys and key <= self._keys[-1]:
            raise ValueError("keys must increase")
        self._keys.append(key)
        self._items.append(item)

    def remove(self, key: int) -> None:
        index = bisect_left(self._keys, key)
        if index == len(self._keys) or self._keys[index] != key:
            raise KeyError(key)
        del self._keys[index]
        del self._items[index]

    def newest(self) -> T | None:
        return self._items[-1] if self._items else None

    def newest_first(self) -> Iterator[T]:
        return reversed(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def page(self, cursor: Cursor | None, size: int) -> Page[T]:
        """One page, newest first, and the cursors to its neighbours."""
        if cursor is None:
            end = len(self._keys)
            start = max(0, end - size)
        elif cursor.direction == "next":
            end = bisect_left(self._keys, cursor.key)
            start = max(0, end - size)
        else:
            start = bisect_right(self._keys, cursor.key)
            end = min(len(self._keys), start + size)

        if start >= end:
            return Page([], None, None)
        older = Cursor("next", self._keys[start]) if start > 0 else None
        newer_exists = end < len(self._keys)
        newer = Cursor("previous", self._keys[end - 1]) if newer_exists else None
        return Page(list(reversed(self._items[start:end])), older, newer)
