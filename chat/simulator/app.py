"""The simulator's ASGI application: an OpenAI-compatible `/chat/completions` upstream.

Routes: `POST /v1/chat/completions` (and `/chat/completions`, so a base URL with or without
`/v1` works), `GET /v1/models`; anything else is a 404 in the gateway's error shape. Any
Authorization header, or none, is accepted. As at the vendor, only `"stream": true` is served,
and the closing usage chunk is sent when `stream_options.include_usage` is true.

Serve it with `python -m chat.simulator` or `daphne chat.simulator.app:application`; the app
runs it in-process with `SimulatorTransport`.

See `chat.simulator.directives` for the `[sim:...]` markers that trigger failures.
"""

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from .audio import token_pcm
from .chunks import chunk, error_event, logprobs_for, sse, usage_chunk
from .directives import Fault
from .errors import gateway_error
from .plan import Plan, Refusal, ToolCall, decide
from .schema import MODELS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnEmit = Callable[[str, int, float], None]

logger = logging.getLogger(__name__)

COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")
# How many answer tokens a faulty stream sends before its fault, so clients see a partial reply.
TOKENS_BEFORE_FAULT = 5
STALL_SECONDS = 600
AUDIO_EXPIRY_SECONDS = 24 * 3600


class ConnectionDropped(Exception):
    """Raised mid-stream for [sim:drop]: an ASGI server closes the connection without ending
    the body, which is the only way ASGI has to say "the connection broke"."""


def create_app(delay: float = 0.03, on_emit: OnEmit | None = None) -> ASGIApp:
    """An ASGI 3 app; `delay` is the pause before each streamed token, `on_emit` is told
    (completion id, content characters so far, time.monotonic()) after each content delta."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        if method == "POST" and path in COMPLETION_PATHS:
            await _chat_completions(scope, receive, send, delay, on_emit)
        elif method == "GET" and path in MODEL_PATHS:
            await _send_json(send, 200, _models())
        else:
            body = gateway_error(404, scope["path"], f"Cannot {method} {scope['path']}")
            await _send_json(send, 404, body)

    return app


# For `daphne chat.simulator.app:application`.
application = create_app()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "alibaba"}
            for model in MODELS
        ],
    }


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _chat_completions(
    scope: Scope, receive: Receive, send: Send, delay: float, on_emit: OnEmit | None
) -> None:
    raw = await _read_body(receive)
    if raw is None:
        return
    decision = await asyncio.to_thread(decide, raw, scope["path"])
    if isinstance(decision, Refusal):
        await _send_json(send, decision.status, decision.body, decision.headers)
        return
    stream = asyncio.ensure_future(_stream(send, decision, delay, on_emit))
    gone = asyncio.ensure_future(_wait_for_disconnect(receive))
    # A client that hangs up must stop the stream now: servers only cancel the app much later
    # (daphne after 10 s), and a stalled or 100000-token stream would run on for nothing.
    try:
        await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stream, gone):
            task.cancel()
        await asyncio.wait({stream, gone})
    if not stream.cancelled():
        stream.result()  # re-raises ConnectionDropped for the server to act on


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stream(send: Send, plan: Plan, delay: float, on_emit: OnEmit | None) -> None:
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    pause = plan.delay if plan.delay is not None else delay

    async def event(payload: dict[str, Any] | str) -> None:
        await send({"type": "http.response.body", "body": sse(payload), "more_body": True})

    def delta(content: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return chunk(completion_id, created, plan.model, content, **extra)

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-request-id", completion_id.encode()),
            ],
        }
    )
    limit = TOKENS_BEFORE_FAULT if plan.fault else None
    try:
        await event(delta({"role": "assistant", "content": ""}))
        for token in plan.reasoning:
            await asyncio.sleep(pause)
            await event(delta({"reasoning_content": token}))
        if plan.tool_call:
            await _send_tool_call(plan.tool_call, event, delta, pause, limit)
        else:
            await _send_content(plan, event, delta, pause, limit, on_emit, completion_id)
        if plan.fault:
            await _send_fault(plan.fault, completion_id, event)
        else:
            await event(delta({}, finish_reason=plan.finish_reason))
            if plan.include_usage:
                await event(usage_chunk(completion_id, created, plan.model, plan.usage))
            await event("[DONE]")
    except ConnectionDropped:
        raise
    except Exception:
        # A bug here must not look like a dropped connection: report it the way the vendor
        # reports its own failures, inside the stream.
        logger.exception("simulator stream failed")
        await event(error_event("The offline simulator failed while streaming; see its log."))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


Event = Callable[[dict[str, Any] | str], Awaitable[None]]
Delta = Callable[..., dict[str, Any]]


async def _send_content(
    plan: Plan,
    event: Event,
    delta: Delta,
    pause: float,
    limit: int | None,
    on_emit: OnEmit | None,
    completion_id: str,
) -> None:
    """Content tokens, each followed by its audio when audio output was asked for."""
    audio_id = f"audio_{uuid.uuid4().hex[:24]}"
    offset = 0
    for token in plan.content[:limit]:
        await asyncio.sleep(pause)
        top = plan.top_logprobs
        logprobs = None if top is None else logprobs_for(token, top)
        await event(delta({"content": token}, logprobs=logprobs))
        offset += len(token)
        if on_emit:
            on_emit(completion_id, offset, time.monotonic())
        if plan.audio:
            audio = {
                "id": audio_id,
                "data": base64.b64encode(token_pcm(token)).decode(),
                "expires_at": int(time.time()) + AUDIO_EXPIRY_SECONDS,
                "transcript": token,
            }
            await event(delta({"audio": audio}))


async def _send_tool_call(
    call: ToolCall, event: Event, delta: Delta, pause: float, limit: int | None
) -> None:
    """One function call as OpenAI streams it: a header fragment, then the arguments in pieces."""
    head = {
        "index": 0,
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    fragments = [head] + [
        {"index": 0, "function": {"arguments": piece}} for piece in call.argument_pieces
    ]
    for fragment in fragments[:limit]:
        await asyncio.sleep(pause)
        await event(delta({"tool_calls": [fragment]}))


async def _send_fault(fault: Fault, completion_id: str, event: Event) -> None:
    if fault == "drop":
        raise ConnectionDropped("connection dropped mid-stream, as [sim:drop] asked")
    if fault == "malformed":
        # Cut mid-object, as a broken proxy would: valid SSE framing, data that is not JSON.
        await event(f'{{"id": "{completion_id}", "choices": [{{"delta": {{"content": "unfini')
    elif fault == "error":
        await event(error_event("Simulated failure mid-stream, as [sim:error] asked."))
    elif fault == "stall":
        await asyncio.sleep(STALL_SECONDS)
