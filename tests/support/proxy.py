"""A TCP proxy in front of PostgreSQL that a test can cut, restore or hold.

It stands in for the network between Tuneyard and its database, so a test can make
the database unreachable (or slow) without stopping the server other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib

from .databases import Endpoint


class DatabaseProxy:
    def __init__(self, upstream: Endpoint) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        # Whether the client's side stays open after the server closes its own.
        self.linger = False
        self._stops: list[Stop] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        await self.cut()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a dead network would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._server is None:
            await self.start()

    def hold(self) -> None:
        """Stop forwarding bytes (both ways) until release()."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def stop_at(self, marker: bytes) -> Stop:
        """Stop one connection, once: the first whose client sends bytes that
        hold `marker` (a query's parameters, say). Those bytes, and all after
        them on that connection, wait for the stop's release(); other
        connections go on."""
        stop = Stop(marker)
        self._stops.append(stop)
        return stop

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            if self.upstream.socket_path is not None:
                server_reader, server_writer = await asyncio.open_unix_connection(
                    self.upstream.socket_path
                )
            else:
                server_reader, server_writer = await asyncio.open_connection(
                    self.upstream.host, self.upstream.port
                )
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pump(client_reader, server_writer),
            self._pump(server_reader, client_writer, from_server=True),
        )
        # A lingering client side stays open, and is closed by cut().
        self._writers.difference_update(
            w for w in (client_writer, server_writer) if w.is_closing()
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_server: bool = False,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not from_server:
                    for stop in self._stops:
                        if stop.marker in data:
                            self._stops.remove(stop)
                            await stop.hold()
                            break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        if not (from_server and self.linger):
            writer.close()


class Stop:
    """Where DatabaseProxy.stop_at holds a connection."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self._reached = asyncio.Event()
        self._released = asyncio.Event()

    async def hold(self) -> None:
        self._reached.set()
        await self._released.wait()

    async def reached(self) -> None:
        await self._reached.wait()

    def release(self) -> None:
        self._released.set()
