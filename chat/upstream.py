"""The only module that speaks HTTP to the model API (an OpenAI-compatible /chat/completions).

`stream_chat(payload)` posts a request and yields `StreamEvent`s, one per meaningful piece of a
streamed chunk. Every failure becomes an `UpstreamError` whose fields (kind, status, message,
hint, retry_after) the UI shows as they are. The API key goes into the Authorization header and
nowhere else: error messages are scrubbed of it in case an upstream echoes it back.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from httpx_sse import EventSource, aconnect_sse

from .payloads import body_length, encode_body
from .sockets import on_asyncio_streams

logger = logging.getLogger(__name__)

MAX_MESSAGE = 1000  # characters of an upstream message kept for the UI
MAX_ERROR_BODY = 64 * 1024  # bytes read from a non-stream body: a proxy page can be large


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One meaningful piece of one chunk. Fields left at their defaults carry nothing."""

    index: int = 0  # choice index: n > 1 streams interleave choices
    role: str | None = None
    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    audio: str = ""  # base64 of raw 24 kHz s16le mono PCM, passed through untouched
    audio_transcript: str = ""
    audio_id: str = ""
    tool_calls: tuple[dict, ...] = ()  # raw fragments; `arguments` concatenate per tool index
    logprobs: tuple[dict, ...] = ()
    finish_reason: str | None = None
    usage: dict | None = None  # the latest one seen is the one that counts
    cost: dict | None = None  # the gateway's meta.usage {credits_used, usd_spent}


# ---------------------------------------------------------------------------------------------
# Errors


class UpstreamError(Exception):
    """A failure talking to the upstream, described for a person: what happened and what to do."""

    kind = "connection"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        status: int | None = None,
        hint: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind or self.kind
        self.status = status
        self.message = _redact(str(message))
        self.hint = _redact(str(hint))
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{f'HTTP {self.status}' if self.status else self.kind}: {self.message}"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
            "retry_after": self.retry_after,
        }


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an error status (kind follows the status)."""


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class UpstreamConnectionError(UpstreamError):
    kind = "connection"


class UpstreamProtocolError(UpstreamError):
    kind = "protocol"


class UpstreamStreamError(UpstreamError):
    """An error object inside a 200 event stream."""

    kind = "stream"


# Lazy: translated into the language active where an error is made (the page's, the job's).
PROTOCOL_HINT = gettext_lazy("Check that PLAYGROUND_API_BASE points at an OpenAI-compatible API.")
RETRY_HINT = gettext_lazy("Try again; the upstream had a problem.")
DROPPED_HINT = gettext_lazy("Try again; the connection was interrupted.")
STREAM_HINT = gettext_lazy("Try again; if it happens again, change the input or settings.")
BAD_REQUEST_HINT = gettext_lazy(
    "Shorten the input, remove an attachment, or change the setting the message names."
)
MODEL_HINT = gettext_lazy(
    "Check the model: the one chosen in the settings panel, or PLAYGROUND_MODEL and "
    "PLAYGROUND_MODELS, must name a model the upstream serves."
)
CONTEXT_HINT = gettext_lazy("Shorten the input or the conversation, or remove an attachment.")
CONTENT_HINT = gettext_lazy("Rephrase the message; the upstream's content check refused it.")

# Vendor error codes that say more about what to do than the HTTP status does.
CODE_HINTS = {
    "invalid_api_key": gettext_lazy("Check PLAYGROUND_API_KEY."),
    "insufficient_quota": gettext_lazy("Check the account's credits."),
    "data_inspection_failed": CONTENT_HINT,
    "content_filter": CONTENT_HINT,
    "context_length_exceeded": CONTEXT_HINT,
    "model_not_found": MODEL_HINT,
}

# What an error message says, as servers word it (OpenAI, the vendor, LiteLLM, vLLM, Ollama).
# Checked in this order: "This model's maximum context length" is about the context, not the model.
CONTEXT_WORDS = re.compile(
    r"context[ _](length|window)|maximum context|too long|too many tokens|input length|"
    r"reduce the length",
    re.IGNORECASE,
)
CONTENT_WORDS = re.compile(
    r"content[ _-]?(filter|policy|management)|inappropriate|\bsafety\b|moderation|data_inspection",
    re.IGNORECASE,
)
KEY_WORDS = re.compile(
    r"\bapi[ _-]?key|authenticat|unauthori[sz]ed|\bbearer\b|server token", re.IGNORECASE
)
MODEL_WORDS = re.compile(
    r"model[ _]name|model_not_found|\b(invalid|unknown|unsupported|no such) model\b|"
    r"\bmodel\b[^.;]*\b(not found|does not exist|not exist|is not available|unknown)\b",
    re.IGNORECASE,
)


def error_hint(
    kind: str,
    *,
    status: int | None = None,
    message: str = "",
    code: str = "",
    retry_after: float | None = None,
    has_key: bool = True,
) -> str:
    """What to do about an upstream error, for a person. Pure.

    A vendor code says it plainly; then the kinds whose status says more than any message
    (authentication, rate limits, server trouble); then what the message says; then the status.
    """
    key_hint = (
        _("Check PLAYGROUND_API_KEY; the upstream did not accept it.")
        if has_key
        else _("Set PLAYGROUND_API_KEY; the upstream requires an API key.")
    )
    if code in CODE_HINTS:
        return str(CODE_HINTS[code])
    seconds = max(1, math.ceil(retry_after)) if retry_after is not None else 0
    if kind == "auth":
        return key_hint
    if kind == "forbidden":
        return _("Check the account's credits and that the key may use this model.")
    if kind == "rate_limited":
        if retry_after is None:
            return _("Wait a moment and retry.")
        return _("Wait %(seconds)s s and retry.") % {"seconds": seconds}
    if kind == "server":
        if retry_after is None:
            return str(RETRY_HINT)
        return _("Wait %(seconds)s s and retry. The upstream had a problem.") % {"seconds": seconds}
    if kind == "timeout":
        return _("Try again; the upstream took too long.")
    if CONTEXT_WORDS.search(message):
        return str(CONTEXT_HINT)
    if CONTENT_WORDS.search(message):
        return str(CONTENT_HINT)
    if KEY_WORDS.search(message):
        return key_hint
    if MODEL_WORDS.search(message):
        return str(MODEL_HINT)
    if kind == "not_found":
        return _("Check PLAYGROUND_API_BASE and the model name.")
    if kind == "protocol":
        return str(PROTOCOL_HINT)
    if kind == "stream":
        return str(STREAM_HINT)
    if status == 413:
        return _("Shorten the input or remove an attachment.")
    return str(BAD_REQUEST_HINT)


def _redact(text: str) -> str:
    key = getattr(settings, "PLAYGROUND_API_KEY", "") if settings.configured else ""
    return text.replace(key, "***") if key else text


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flatten(value: Any) -> str:
    """Readable text from a message or details value: a string, a list of them, or objects."""
    if value is None or value == "" or value == [] or value == {}:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(filter(None, map(_flatten, value)))
    if isinstance(value, dict):
        # Validation details name a field and a problem, under various keys.
        where = next((value[k] for k in ("path", "loc", "field", "param") if value.get(k)), "")
        if isinstance(where, list):
            where = ".".join(map(str, where))
        what = next((value[k] for k in ("message", "msg", "detail") if value.get(k)), None)
        if what is None:
            return json.dumps(value, separators=(",", ":"))[:300]
        return f"{where}: {_flatten(what)}" if where else _flatten(what)
    return str(value)


def _describe(body: Any, status: int | None = None) -> tuple[str, str]:
    """(message, code) from an error body in the gateway, vendor or OpenAI shape, or text."""
    if isinstance(body, str):
        return _text_message(body), ""
    if not isinstance(body, dict):
        return _clip(_flatten(body)), ""
    error = body.get("error")
    inner = error if isinstance(error, dict) else {}
    # Gateways put the message at the top ("error" may then be a bare status name like
    # "Bad Request"); the vendor and OpenAI nest it under "error".
    message = _flatten(inner.get("message")) or _flatten(body.get("message"))
    if not message and isinstance(error, str):
        message = error
    code = _error_code(inner, body, status)
    # Validation details (400 "Body validation error!") sit beside the message, under some key.
    found = [inner.get("details"), body.get("errors"), body.get("details"), body.get("issues")]
    details = [text for text in map(_flatten, found) if text and text not in message]
    if details:
        message = f"{message}: {'; '.join(details)}" if message else "; ".join(details)
    if code and message and code not in message:
        message = f"{message} ({code})"
    return _clip(message or code), code


def _error_code(inner: dict, body: dict, status: int | None) -> str:
    """The word that names the error: a code like "invalid_api_key", else the type
    ("auth_error"). Some servers (LiteLLM, vLLM) put the HTTP status in `code`: "400" says
    nothing the status does not, so it is kept only when nothing else names the error."""
    found = [inner.get("code"), inner.get("type"), body.get("code"), body.get("type")]
    named = [str(v) for v in found if isinstance(v, str | int) and not isinstance(v, bool)]
    words = [v for v in named if v.strip() and not v.strip().isdigit()]
    if words:
        return words[0]
    numbers = [v.strip() for v in named if v.strip()]
    return numbers[0] if numbers and numbers[0] != str(status) else ""


def _text_message(text: str) -> str:
    """A short message from a plain-text or HTML body (a proxy's error page)."""
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    elif "<" in text:
        text = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", text, flags=re.I | re.DOTALL)
    return _clip(text, 300)


def _parse_body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, round(seconds, 1)) if math.isfinite(seconds) else None


def _kind_for(status: int) -> str:
    if status == 401:
        return "auth"
    if status in (402, 403):  # 402/403: out of credits or no access to the model
        return "forbidden"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server"
    if status < 400:  # a redirect: httpx does not follow them, and a POST should not
        return "protocol"
    return "bad_request"


def _http_error(response: httpx.Response, text: str) -> UpstreamHTTPError:
    status = response.status_code
    retry_after = _retry_after(response.headers.get("retry-after"))
    message, code = _describe(_parse_body(text), status)
    kind = _kind_for(status)
    hint = error_hint(
        kind,
        status=status,
        message=message,
        code=code,
        retry_after=retry_after,
        has_key=bool(settings.PLAYGROUND_API_KEY),
    )
    if kind == "protocol":
        location = response.headers.get("location", "")
        if location:
            hint = _("Check PLAYGROUND_API_BASE; the upstream redirects to %(location)s.") % {
                "location": location
            }
        else:
            hint = _("Check PLAYGROUND_API_BASE; the upstream redirects elsewhere.")
    message = message or f"{status} {response.reason_phrase}".strip()
    return UpstreamHTTPError(message, kind=kind, status=status, hint=hint, retry_after=retry_after)


def _stream_error(body: Any) -> UpstreamStreamError:
    message, code = _describe(body)
    hint = error_hint(
        "stream", message=message, code=code, has_key=bool(settings.PLAYGROUND_API_KEY)
    )
    return UpstreamStreamError(
        message or _("the upstream reported an error in the stream"), hint=hint
    )


def _protocol_error(message: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(message, hint=PROTOCOL_HINT)


# ---------------------------------------------------------------------------------------------
# Chunks


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _protocol_error(
            _("the stream sent a non-text %(key)s: %(value)s")
            % {"key": repr(key), "value": f"{value!r:.100}"}
        )
    return value


def _dicts(value: Any, what: str) -> tuple[dict, ...]:
    if not value:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _protocol_error(
            _("the stream sent %(field)s that is not a list of objects") % {"field": what}
        )
    return tuple(value)


def _choice_event(choice: Any) -> StreamEvent | None:
    if not isinstance(choice, dict):
        raise _protocol_error(_("the stream sent a choice that is not an object"))
    delta = choice.get("delta") or {}
    audio = (delta.get("audio") or {}) if isinstance(delta, dict) else None
    logprobs = choice.get("logprobs") or {}
    index = choice.get("index") or 0
    if not (isinstance(audio, dict) and isinstance(logprobs, dict) and type(index) is int):
        raise _protocol_error(
            _("the stream sent a malformed choice: %(choice)s")
            % {"choice": f"{json.dumps(choice):.200}"}
        )
    event = StreamEvent(
        index=index,
        role=_text(delta, "role") or None,
        content=_text(delta, "content"),
        # The vendor calls it reasoning_content; some OpenAI-compatible servers say reasoning.
        reasoning=_text(delta, "reasoning_content") or _text(delta, "reasoning"),
        refusal=_text(delta, "refusal"),
        audio=_text(audio, "data"),
        audio_transcript=_text(audio, "transcript"),
        audio_id=_text(audio, "id"),
        tool_calls=_dicts(delta.get("tool_calls"), "tool_calls"),
        logprobs=_dicts(logprobs.get("content"), "logprobs"),
        finish_reason=_text(choice, "finish_reason") or None,  # "" means not finished yet
    )
    return None if event == StreamEvent(index=index) else event


def parse_chunk(data: Any) -> list[StreamEvent]:
    """The events in one decoded `data:` object. Pure: no I/O, no settings."""
    if not isinstance(data, dict):
        raise _protocol_error(
            _("the stream sent %(type)s where a chunk belongs") % {"type": type(data).__name__}
        )
    if data.get("error"):
        raise _stream_error(data)
    choices = data.get("choices") or []  # [] on usage-only and some first chunks
    if not isinstance(choices, list):
        raise _protocol_error(_("the stream sent a chunk whose choices are not a list"))
    events = [event for event in map(_choice_event, choices) if event is not None]
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    cost = meta.get("usage") if isinstance(meta.get("usage"), dict) else None
    if usage or cost:
        if events:  # usage is for the whole request: ride on the chunk's last event
            events[-1] = replace(events[-1], usage=usage or None, cost=cost or None)
        else:
            events.append(StreamEvent(usage=usage or None, cost=cost or None))
    return events


# ---------------------------------------------------------------------------------------------
# The stream


class _EndsWithBlankLine:
    """The response as EventSource sees it, with a blank line added at the end of its text.

    httpx-sse emits an event only at a blank line, so a last event the server did not end with
    one (`data: [DONE]` and EOF, seen from real servers) would be lost. `ended` tells events
    from that unterminated tail apart: one that does not parse was cut off, not malformed.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.headers = response.headers
        self.ended = False
        self._response = response

    async def aiter_text(self) -> AsyncIterator[str]:
        async for text in self._response.aiter_text():
            yield text
        self.ended = True
        yield "\n\n"


def _pieces(data: str) -> list[str]:
    """The payloads in one event's data: itself, or its lines when they are separate documents.

    A multi-line `data:` event is valid SSE (one JSON document split over lines), but some
    servers instead forget the blank line between events, joining several chunks into one.
    """
    data = data.strip()
    if "\n" not in data:
        return [data] if data else []
    try:
        json.loads(data)
        return [data]
    except ValueError:
        return [line.strip() for line in data.split("\n") if line.strip()]


async def _read_body(response: httpx.Response) -> str:
    body = b""
    async for part in response.aiter_bytes():
        body += part
        if len(body) >= MAX_ERROR_BODY:
            break
    return body[:MAX_ERROR_BODY].decode(response.encoding or "utf-8", errors="replace")


async def _check_response(response: httpx.Response) -> None:
    if not response.is_success:
        raise _http_error(response, await _read_body(response))
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if content_type.lower() != "text/event-stream":
        message, code = _describe(_parse_body(await _read_body(response)))
        has_key = bool(settings.PLAYGROUND_API_KEY)
        hint = error_hint("protocol", message=message, code=code, has_key=has_key)
        if content_type:
            fallback = _("expected an event stream, got %(type)s") % {"type": content_type}
            hint = _("%(hint)s (The reply was %(type)s, not an event stream.)") % {
                "hint": hint,
                "type": content_type,
            }
        else:
            fallback = _("expected an event stream, got a body without a content type")
            hint = _(
                "%(hint)s (The reply was a body without a content type, not an event stream.)"
            ) % {"hint": hint}
        raise UpstreamProtocolError(message or fallback, status=response.status_code, hint=hint)


async def _events(response: httpx.Response) -> AsyncIterator[StreamEvent]:
    view = _EndsWithBlankLine(response)
    finished = False
    source = EventSource(cast(httpx.Response, view))
    async with aclosing(source.aiter_sse()) as server_events:
        async for sse in server_events:
            if sse.event == "error":
                raise _stream_error(_parse_body(sse.data) if sse.data.strip() else {})
            for piece in _pieces(sse.data):
                if piece == "[DONE]":
                    # Nothing after it counts, but read the body to its end: a response read
                    # to the end lets httpx keep the connection for the next reply.
                    await _drain(server_events)
                    return
                try:
                    chunk = json.loads(piece)
                except ValueError:
                    if view.ended:
                        raise UpstreamConnectionError(
                            _("the connection closed in the middle of an event"),
                            hint=DROPPED_HINT,
                        ) from None
                    raise _protocol_error(
                        _("the stream sent malformed JSON: %(data)s") % {"data": f"{piece:.200}"}
                    ) from None
                for event in parse_chunk(chunk):
                    finished = finished or event.finish_reason is not None
                    yield event
    if not finished:
        raise UpstreamConnectionError(
            _("the connection closed before the reply finished"), hint=DROPPED_HINT
        )


async def _drain(server_events: AsyncIterator, limit: int = 100) -> None:
    count = 0
    async for _event in server_events:
        count += 1
        if count > limit:  # an upstream that keeps talking after [DONE] loses its connection
            break


def _seconds(value: float | None) -> str:
    if value is None:  # an injected client without this timeout
        return _("too long")
    return _("%(seconds)s s") % {"seconds": f"{value:g}"}


def _where(client: httpx.AsyncClient) -> str:
    url = client.base_url
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    return str(url).rstrip("/") or _("the upstream")


def _transport_error(
    exc: httpx.TransportError, client: httpx.AsyncClient, answered: bool
) -> UpstreamError:
    where = _where(client)
    timeout = client.timeout
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(
            _("could not connect to %(where)s within %(seconds)s")
            % {"where": where, "seconds": _seconds(timeout.connect)},
            hint=_("Check PLAYGROUND_API_BASE and the network, then try again."),
        )
    if isinstance(exc, httpx.ReadTimeout):
        return UpstreamTimeout(
            _("%(where)s sent no data for %(seconds)s")
            % {"where": where, "seconds": _seconds(timeout.read)},
            hint=_("Try again; raise PLAYGROUND_READ_TIMEOUT if the model needs longer."),
        )
    if isinstance(exc, httpx.WriteTimeout):
        return UpstreamTimeout(
            _("sending the request to %(where)s took more than %(seconds)s")
            % {"where": where, "seconds": _seconds(timeout.write)},
            hint=_("Shorten the input or remove an attachment, then try again."),
        )
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamTimeout(
            _("no free connection to %(where)s within %(seconds)s")
            % {"where": where, "seconds": _seconds(timeout.pool)},
            hint=_("Too many replies are streaming at once; wait and retry."),
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectionError(
            _("could not connect to %(where)s: %(error)s")
            % {"where": where, "error": exc or type(exc).__name__},
            hint=_("Check PLAYGROUND_API_BASE and that the server is running."),
        )
    if answered:
        return UpstreamConnectionError(
            _("the connection to %(where)s dropped mid-stream") % {"where": where},
            hint=DROPPED_HINT,
        )
    return UpstreamConnectionError(
        _("%(where)s closed the connection without answering (%(error)s)")
        % {"where": where, "error": exc or type(exc).__name__},
        hint=DROPPED_HINT,
    )


def request_headers() -> dict:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if settings.PLAYGROUND_API_KEY:
        headers["Authorization"] = f"Bearer {settings.PLAYGROUND_API_KEY}"
    return headers


async def _then_set(chunks: AsyncIterator[bytes], event: asyncio.Event) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk
    event.set()  # httpx writes each chunk before it asks for the next


async def stream_chat(
    payload: dict, *, client: httpx.AsyncClient | None = None, sent: asyncio.Event | None = None
) -> AsyncIterator[StreamEvent]:
    """POST the payload to {base}/chat/completions and yield its events until it finishes.

    The body is streamed (`payloads.encode_body`): media in it are read from disk as it is sent.

    `sent` is set once the whole request has been written to the connection.

    `client` (tests, tools) must have a base_url; the default is get_client(). Close the
    generator (`contextlib.aclosing`) if you stop early, so the connection is released at once.
    """
    client = client or get_client()
    body = {
        **payload,
        "stream": True,
        "stream_options": {**(payload.get("stream_options") or {}), "include_usage": True},
    }
    answered = False
    try:
        try:
            headers = {**request_headers(), "Content-Length": str(body_length(body))}
            content = encode_body(body) if sent is None else _then_set(encode_body(body), sent)
            async with aconnect_sse(
                client, "POST", "chat/completions", content=content, headers=headers
            ) as source:
                answered = True
                await _check_response(source.response)
                async with aclosing(_events(source.response)) as events:
                    async for event in events:
                        yield event
        except httpx.TransportError as exc:
            raise _transport_error(exc, client, answered) from exc
        except httpx.DecodingError as exc:  # e.g. a broken gzip body
            raise _protocol_error(
                _("the stream could not be decoded: %(error)s") % {"error": exc}
            ) from exc
    except UpstreamError as exc:
        logger.warning("upstream request failed: %s", exc)  # str() is scrubbed of the key
        raise


# ---------------------------------------------------------------------------------------------
# Clients: an httpx.AsyncClient is bound to the event loop it first ran on, so keep one per
# loop (tests run many), and per configuration so changed settings take effect.

_clients: dict[tuple, httpx.AsyncClient] = {}
_clients_lock = threading.Lock()  # loops in several threads (async_to_sync) may ask at once


def _config() -> tuple:
    return (
        bool(settings.PLAYGROUND_USE_SIMULATOR),
        settings.PLAYGROUND_API_BASE,
        float(settings.PLAYGROUND_SIMULATOR_DELAY),
        float(settings.PLAYGROUND_CONNECT_TIMEOUT),
        float(settings.PLAYGROUND_READ_TIMEOUT),
    )


def _new_client(
    use_simulator: bool, base: str, delay: float, connect: float, read: float
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(connect=connect, read=read, write=60.0, pool=10.0)
    if use_simulator:
        # Imported here: the simulator is only needed, and only loaded, when no upstream is set.
        from chat.simulator.app import create_app
        from chat.simulator.transport import SimulatorTransport

        transport = SimulatorTransport(create_app(delay=delay))
        return httpx.AsyncClient(
            transport=transport, base_url="http://simulator/v1", timeout=timeout
        )
    # Hundreds of concurrent streams must not queue for a connection.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    client = httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits)
    return on_asyncio_streams(client)  # see chat/sockets.py


def get_client() -> httpx.AsyncClient:
    """The shared client for the running event loop and the current settings."""
    loop = asyncio.get_running_loop()
    key = (loop, *_config())
    with _clients_lock:
        for stale in [k for k in _clients if k[0].is_closed()]:
            del _clients[stale]  # its loop is gone, so it cannot be closed; let it go
        client = _clients.get(key)
        if client is None or client.is_closed:
            client = _clients[key] = _new_client(*key[1:])
    return client


async def close_clients() -> None:
    """Close the clients of the running loop (and forget those of loops already closed)."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        mine = [k for k in _clients if k[0] is loop or k[0].is_closed()]
        clients = [(k[0], _clients.pop(k)) for k in mine]
    for owner, client in clients:
        if owner is loop:
            await client.aclose()


# ---------------------------------------------------------------------------------------------
# The models the upstream serves


async def list_models(
    *, client: httpx.AsyncClient | None = None, timeout: float = 3.0
) -> list[str]:
    """The model ids of GET {base}/models (OpenAI's {"data": [{"id": ...}]}), in its order.

    Raises UpstreamError when it does not answer that in `timeout` seconds. Without `client` a
    client of its own is made and closed: this runs on a short-lived loop of its own."""
    own = client is None
    if own:
        client = _new_client(*_config())
    headers = {"Accept": "application/json"}
    if settings.PLAYGROUND_API_KEY:
        headers["Authorization"] = f"Bearer {settings.PLAYGROUND_API_KEY}"
    try:
        try:
            response = await client.get("models", headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise _transport_error(exc, client, False) from exc
        if response.status_code != 200:
            raise _http_error(response, response.text[:MAX_ERROR_BODY])
        try:
            data = response.json()["data"]
            ids = [item["id"] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise _protocol_error(
                _("GET models did not answer a list of models: %(error)s") % {"error": exc}
            ) from exc
        if not all(isinstance(i, str) and i.strip() for i in ids):
            raise _protocol_error(_("GET models answered a model without a usable id"))
        return list(dict.fromkeys(i.strip() for i in ids))
    finally:
        if own:
            await client.aclose()
