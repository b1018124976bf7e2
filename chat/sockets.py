"""The upstream's connections on asyncio's own streams: an httpcore network backend.

httpcore's default backend (anyio) stops reading a socket after each chunk it returns and starts
again before the next, which is two epoll_ctl system calls per chunk; a model sends a chunk per
token. With a hundred replies streaming on one process, those calls were a tenth of the event
loop's time, and the relay's latency grew with them (README "Performance"). An asyncio stream
keeps reading, up to BUFFER_LIMIT ahead of its reader, and wakes the reader when data comes.

Everything else (HTTP/1.1, the pool, keep-alive, TLS settings, proxies from the environment) is
httpx's and httpcore's.
"""

import asyncio
import ssl
from typing import Any

import httpcore
import httpx

# How far a connection reads ahead of its reader before asyncio stops reading it.
BUFFER_LIMIT = 256 * 1024

# Like anyio's: start a second address (IPv4 beside IPv6) after this long (RFC 8305).
HAPPY_EYEBALLS_DELAY = 0.25


# What httpcore asks a stream about, by the name asyncio's transport gives it.
_EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)  # b"" at the end, as httpcore expects
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    async def aclose(self) -> None:
        # As anyio does: close, let the transport flush what it can in one turn of the loop,
        # then drop the connection (a peer that stopped reading must not hold it open).
        transport = self._writer.transport
        transport.close()
        await asyncio.sleep(0)
        transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> "AsyncioStream":
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(exc) from exc
        except (ssl.SSLError, OSError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(exc) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of an idle pooled connection: readable means the server has
            # closed it (or sent what nobody asked for), so it cannot carry another request.
            return self._reader.at_eof() or self._reader.exception() is not None
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._writer.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options=None,
    ) -> AsyncioStream:
        # asyncio's own loop tries a second address after a delay; uvloop's takes no such option.
        loop = asyncio.get_running_loop()
        eyeballs = {"happy_eyeballs_delay": HAPPY_EYEBALLS_DELAY}
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    limit=BUFFER_LIMIT,
                    local_addr=(local_address, 0) if local_address else None,
                    **(eyeballs if isinstance(loop, asyncio.BaseEventLoop) else {}),
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def on_asyncio_streams(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """`client`, its connection pools (its own, and any proxy's it took from the environment)
    making their connections with `AsyncioBackend`. httpx takes no backend of its own, and a
    transport handed to it would make it ignore HTTP(S)_PROXY, so the pools it built are given
    the backend instead."""
    backend = AsyncioBackend()
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.AsyncConnectionPool):
            pool._network_backend = backend
    return client
