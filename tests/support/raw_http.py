"""HTTP requests written byte for byte, for what client libraries refuse to send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> RawAnswer:
    """One request on a fresh connection; header bytes go out exactly as given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
        lines += [b"Connection: close", b"Content-Length: %d" % len(body)]
        lines += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(15):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return RawAnswer(
        int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, content
    )
