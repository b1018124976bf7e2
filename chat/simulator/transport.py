"""An httpx transport that runs an ASGI app in-process and streams its response as it is sent.

httpx's own ASGITransport collects the whole body before returning the response, which would
turn every simulated stream into one late burst. This one hands each body chunk to the reader
through a queue, so the app gets the simulator's timing without a socket, and behaves like a
connection where it matters: closing the response cancels the app, an app failure mid-body is
a `RemoteProtocolError`, and the request's read time-out applies.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .app import ASGIApp, Message

logger = logging.getLogger(__name__)

_END = object()  # queue marker: the body is complete
Item = bytes | BaseException | object


class SimulatorTransport(httpx.AsyncBaseTransport):
    """Serve httpx requests from `app` in the same event loop, streaming the body."""

    def __init__(self, app: ASGIApp, *, buffered_chunks: int = 64) -> None:
        self.app = app
        # Bounded, like a socket buffer: a slow reader slows the app down instead of letting it
        # queue a 100000-token reply in memory, so on_emit times reflect what the reader sees.
        self.buffered_chunks = buffered_chunks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        chunks: asyncio.Queue[Item] = asyncio.Queue(self.buffered_chunks)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[Message] = loop.create_future()
        disconnected = asyncio.Event()
        body_sent = False
        ended = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                if started.done():
                    raise RuntimeError("the response was already started")
                started.set_result(message)
            elif message["type"] == "http.response.body":
                if not started.done():
                    raise RuntimeError("body sent before the response was started")
                if ended or disconnected.is_set():
                    return
                if data := message.get("body", b""):
                    await chunks.put(bytes(data))
                if not message.get("more_body", False):
                    ended = True
                    await chunks.put(_END)

        async def run() -> None:
            nonlocal ended
            try:
                await self.app(_scope(request), receive, send)
            except Exception as exc:
                if started.done():
                    # Mid-body failure: what a server does is close the connection.
                    if not ended:
                        ended = True
                        await chunks.put(exc)
                    return
                logger.exception("simulator app failed before responding")
            if not started.done():
                # Like a server: an app that fails or answers nothing is a 500.
                started.set_result(_internal_error())
                await chunks.put(b"Internal Server Error")
            if not ended:
                ended = True
                await chunks.put(_END)

        task = asyncio.create_task(run())
        try:
            async with asyncio.timeout(read_timeout):
                start = await asyncio.shield(started)
        except TimeoutError:
            await _stop(task, disconnected)
            raise httpx.ReadTimeout("timed out waiting for the response", request=request) from None
        except BaseException:
            await _stop(task, disconnected)
            raise
        return httpx.Response(
            start["status"],
            headers=list(start.get("headers", [])),
            stream=_BodyStream(request, chunks, task, disconnected, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )


class _BodyStream(httpx.AsyncByteStream):
    def __init__(
        self,
        request: httpx.Request,
        chunks: asyncio.Queue[Item],
        task: asyncio.Task[None],
        disconnected: asyncio.Event,
        read_timeout: float | None,
    ) -> None:
        self._request = request
        self._chunks = chunks
        self._task = task
        self._disconnected = disconnected
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self._read_timeout):
                    item = await self._chunks.get()
            except TimeoutError:
                raise httpx.ReadTimeout(
                    "timed out reading the body", request=self._request
                ) from None
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body ({item})",
                    request=self._request,
                ) from item
            assert isinstance(item, bytes)
            yield item

    async def aclose(self) -> None:
        await _stop(self._task, self._disconnected)


async def _stop(task: asyncio.Task[None], disconnected: asyncio.Event) -> None:
    """Hang up: tell the app the client left, and cancel it."""
    disconnected.set()
    task.cancel()
    # asyncio.wait, not await task: it neither raises the task's CancelledError here nor
    # swallows a cancellation of the caller.
    await asyncio.wait({task})


def _scope(request: httpx.Request) -> dict[str, Any]:
    url = request.url
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": url.path,
        "raw_path": url.raw_path.split(b"?")[0],
        "query_string": url.query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("127.0.0.1", 0),
        "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
        "extensions": {},
    }


def _internal_error() -> Message:
    return {
        "type": "http.response.start",
        "status": 500,
        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
    }
