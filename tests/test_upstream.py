"""chat.upstream: chunk parsing, recorded streams, error mapping, the request, real sockets.

Recorded streams (tests/streams/*.sse) are served through httpx.MockTransport: these are parser
unit tests, fed the exact bytes a server sends, in small pieces so lines split across reads.
Connection failures, time-outs and dropped streams use real loopback sockets.
"""

import asyncio
import base64
import email.utils
import json
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest

from chat import upstream
from chat.sockets import BUFFER_LIMIT, AsyncioBackend
from chat.upstream import (
    StreamEvent,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamError,
    UpstreamTimeout,
    parse_chunk,
    request_headers,
    stream_chat,
)

STREAMS = Path(__file__).parent / "streams"
BASE = "https://api.example.test/v1"
KEY = "sk-SENTINEL-0123456789abcdef"
PAYLOAD = {"model": "alibaba/qwen3.5-omni-flash", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(autouse=True)
def upstream_settings(settings):
    settings.PLAYGROUND_API_BASE = BASE
    settings.PLAYGROUND_API_KEY = KEY
    settings.PLAYGROUND_USE_SIMULATOR = False
    settings.PLAYGROUND_CONNECT_TIMEOUT = 2.0
    settings.PLAYGROUND_READ_TIMEOUT = 5.0
    return settings


@pytest.fixture
async def shared_clients():
    yield
    await upstream.close_clients()


def mock_client(
    body: bytes | str = b"",
    status: int = 200,
    content_type: str | None = "text/event-stream",
    headers: dict | None = None,
    seen: list | None = None,
    piece: int = 7,
    fail_after: Exception | None = None,
) -> httpx.AsyncClient:
    """A client whose transport answers with `body`, streamed `piece` bytes at a time."""
    data = body.encode() if isinstance(body, str) else body

    async def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)

        async def chunks():
            for i in range(0, len(data), piece):
                yield data[i : i + piece]
            if fail_after is not None:
                raise fail_after

        response_headers = {"content-type": content_type} if content_type else {}
        response_headers.update(headers or {})
        return httpx.Response(status, headers=response_headers, content=chunks())

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE)


async def collect(client: httpx.AsyncClient, payload: dict = PAYLOAD) -> list[StreamEvent]:
    async with client:
        return [event async for event in stream_chat(payload, client=client)]


async def replay(name: str, piece: int = 7) -> list[StreamEvent]:
    return await collect(mock_client((STREAMS / name).read_bytes(), piece=piece))


async def fail(client: httpx.AsyncClient) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await collect(client)
    return info.value


def texts(events: list[StreamEvent], field: str = "content") -> dict[int, str]:
    """What a consumer builds: the concatenated field per choice index."""
    out: dict[int, str] = {}
    for event in events:
        if getattr(event, field):
            out[event.index] = out.get(event.index, "") + getattr(event, field)
    return out


def last_usage(events: list[StreamEvent]) -> dict | None:
    return next((e.usage for e in reversed(events) if e.usage), None)


# --- parse_chunk ---------------------------------------------------------------------------


def chunk(*choices: dict, **extra) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "choices": list(choices), **extra}


def test_role_only_first_chunk_gives_a_role_event():
    events = parse_chunk(chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}))
    assert events == [StreamEvent(role="assistant")]


@pytest.mark.parametrize(
    "choice",
    [
        {"index": 0, "delta": {"content": ""}, "finish_reason": None},
        {"index": 0, "delta": {"content": None, "reasoning_content": None}},
        {"index": 0, "delta": {}, "finish_reason": ""},
        {"index": 0, "delta": None, "logprobs": None},
        {"index": 0, "delta": {"tool_calls": None, "audio": None, "refusal": None}},
    ],
)
def test_empty_deltas_give_no_event(choice):
    assert parse_chunk(chunk(choice)) == []


def test_every_delta_field_is_carried():
    lp = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    call = {"index": 1, "id": "call_1", "type": "function", "function": {"name": "f"}}
    choice = {
        "index": 2,
        "delta": {
            "content": "Hi",
            "reasoning_content": "think",
            "refusal": "no",
            "audio": {"data": "AAAB", "transcript": "Hi", "id": "audio_1", "expires_at": 1},
            "tool_calls": [call],
        },
        "logprobs": {"content": [lp]},
        "finish_reason": "stop",
    }
    [event] = parse_chunk(chunk(choice))
    assert event == StreamEvent(
        index=2,
        content="Hi",
        reasoning="think",
        refusal="no",
        audio="AAAB",
        audio_transcript="Hi",
        audio_id="audio_1",
        tool_calls=(call,),
        logprobs=(lp,),
        finish_reason="stop",
    )


def test_reasoning_is_also_read_from_delta_reasoning():
    [event] = parse_chunk(chunk({"index": 0, "delta": {"reasoning": "hmm"}}))
    assert event.reasoning == "hmm"


def test_finish_reason_alone_gives_an_event():
    assert parse_chunk(chunk({"index": 1, "delta": {}, "finish_reason": "length"})) == [
        StreamEvent(index=1, finish_reason="length")
    ]


def test_usage_only_chunk_gives_one_event_with_usage_and_cost():
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    cost = {"credits_used": 10, "usd_spent": 0.001}
    assert parse_chunk(chunk(usage=usage, meta={"usage": cost})) == [
        StreamEvent(usage=usage, cost=cost)
    ]


def test_usage_beside_choices_rides_on_the_last_event():
    usage = {"total_tokens": 3}
    events = parse_chunk(
        chunk(
            {"index": 0, "delta": {"content": "a"}},
            {"index": 1, "delta": {"content": "b"}},
            usage=usage,
        )
    )
    assert [e.usage for e in events] == [None, usage]
    # and with only empty deltas, usage still comes out
    assert parse_chunk(chunk({"index": 0, "delta": {"content": ""}}, usage=usage)) == [
        StreamEvent(usage=usage)
    ]


@pytest.mark.parametrize("data", [{}, {"choices": None, "usage": None}, {"object": "ping"}])
def test_chunks_without_choices_or_usage_give_nothing(data):
    assert parse_chunk(data) == []


def test_error_object_raises_stream_error():
    with pytest.raises(UpstreamStreamError) as info:
        parse_chunk({"error": {"code": "overloaded", "message": "Try later", "type": "server"}})
    assert info.value.kind == "stream"
    assert info.value.message == "Try later (overloaded)"


@pytest.mark.parametrize(
    "data",
    [
        [],
        "text",
        {"choices": {"index": 0}},
        {"choices": ["x"]},
        {"choices": [{"index": 0, "delta": "text"}]},
        {"choices": [{"index": 0, "delta": {"content": ["a"]}}]},
        {"choices": [{"index": "0", "delta": {"content": "a"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]},
    ],
)
def test_shapes_that_are_not_chunks_raise_protocol_errors(data):
    with pytest.raises(UpstreamProtocolError) as info:
        parse_chunk(data)
    assert info.value.kind == "protocol"


# --- recorded streams ----------------------------------------------------------------------


async def test_plain_text():
    events = await replay("plain_text.sse")
    assert events[0] == StreamEvent(role="assistant")
    assert texts(events) == {0: "Hello! How can I help you today?"}
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    assert last_usage(events)["total_tokens"] == 33


@pytest.mark.parametrize("piece", [1, 3, 64, 100_000])
async def test_how_the_bytes_are_split_does_not_matter(piece):
    events = await replay("audio.sse", piece=piece)
    assert texts(events) == {0: "Hi there."}
    assert texts(events, "audio_transcript") == {0: "Hi there."}


async def test_thinking():
    events = await replay("thinking.sse")
    assert texts(events, "reasoning") == {0: "The user asks 2+2. That is 4. Answer briefly."}
    assert texts(events) == {0: "2 + 2 = 4."}
    # reasoning streams before the answer
    first_content = next(i for i, e in enumerate(events) if e.content)
    assert all(not e.reasoning for e in events[first_content:])
    assert last_usage(events)["completion_tokens_details"]["reasoning_tokens"] == 22


async def test_audio_is_raw_pcm_passed_through():
    events = await replay("audio.sse")
    audio = [e for e in events if e.audio]
    assert {e.audio_id for e in audio} == {"audio_9f2c1a7e3b1d4a0e"}
    pcm = b"".join(base64.b64decode(e.audio) for e in audio)
    assert len(pcm) == 960 * 2  # 960 s16le samples, no WAV header
    assert not pcm.startswith(b"RIFF")
    usage = last_usage(events)
    assert usage["completion_tokens_details"] == {"audio_tokens": 83, "text_tokens": 20}


async def test_tool_call_fragments_keep_their_indexes():
    events = await replay("tool_calls.sse")
    calls: dict[int, dict] = {}
    for event in events:
        for fragment in event.tool_calls:
            call = calls.setdefault(fragment["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] = fragment.get("id") or call["id"]
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
    assert calls == {
        0: {"id": "call_a1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_b2", "name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
    }
    assert events[-2].finish_reason == "tool_calls"


async def test_usage_on_every_chunk_latest_wins():
    events = await replay("usage_every_chunk.sse")
    assert [e.usage["completion_tokens"] for e in events if e.usage] == [1, 2, 3]
    assert last_usage(events)["total_tokens"] == 8
    assert events[-1].finish_reason == "stop"
    assert texts(events) == {0: "One two"}


async def test_usage_only_final_chunk_with_meta_usage():
    events = await replay("usage_meta.sse")
    assert events[-1] == StreamEvent(
        usage=events[-1].usage, cost={"credits_used": 1234, "usd_spent": 0.000617}
    )
    assert events[-1].usage["total_tokens"] == 310


async def test_litellm_cost_in_usage_is_shown_as_the_reported_cost():
    from chat.models import Message

    events = await replay("litellm_usage_cost.sse")
    assert texts(events) == {0: "Hi there."}
    usage = last_usage(events)
    assert (usage["total_tokens"], usage["cost"]) == (21, 0.00042)
    reply = Message(role="assistant", usage=usage, cost=None)
    assert (reply.usd_amount, reply.usd_spent) == (0.00042, "0.00042")
    assert ("Cost reported by the API", "$0.00042") in reply.facts


def test_the_gateway_meta_cost_wins_over_a_usage_cost():
    from chat.models import Message

    reply = Message(usage={"cost": 9.0}, cost={"usd_spent": 0.5})
    assert reply.usd_spent == "0.5"
    assert Message(usage={"cost": "0.1"}).usd_amount is None  # a number or nothing
    assert Message(usage={"cost": True}).usd_amount is None
    assert Message(usage={"cost": float("nan")}).usd_amount is None


async def test_n2_choices_stay_apart():
    events = await replay("n2_interleaved.sse")
    assert texts(events) == {0: "Blue sky", 1: "Red rose"}
    finishes = {e.index: e.finish_reason for e in events if e.finish_reason}
    assert finishes == {0: "length", 1: "stop"}


async def test_refusal():
    events = await replay("refusal.sse")
    assert texts(events, "refusal") == {0: "I can't help with that."}
    assert texts(events) == {}


async def test_empty_choices_first_chunk():
    events = await replay("empty_choices_first.sse")
    assert events[0] == StreamEvent(role="assistant")
    assert texts(events) == {0: "Fine."}


async def test_comments_event_lines_and_data_without_space():
    events = await replay("comments_events_nospace.sse")
    assert texts(events) == {0: "Hello"}
    assert events[-1].finish_reason == "stop"


async def test_crlf_line_endings():
    assert texts(await replay("crlf.sse")) == {0: "Windows lines"}


async def test_no_trailing_newline_after_done():
    events = await replay("no_trailing_newline.sse")
    assert texts(events) == {0: "Last words"}
    assert last_usage(events)["total_tokens"] == 33  # the unterminated last event is not lost


async def test_missing_blank_lines_between_events():
    events = await replay("no_blank_lines.sse")
    assert texts(events) == {0: "Packed tight"}


async def test_finish_reason_missing_or_empty_but_done_arrives():
    events = await replay("finish_missing.sse")
    assert texts(events) == {0: "No reason"}
    assert all(e.finish_reason is None for e in events)


async def test_logprobs():
    events = await replay("logprobs.sse")
    tokens = [lp["token"] for e in events for lp in e.logprobs]
    assert tokens == ["Yes", "."]
    assert events[1].logprobs[0]["logprob"] == -0.0123


async def test_nothing_after_done_is_read():
    events = await replay("after_done.sse")
    assert texts(events) == {0: "Kept"}


async def test_in_stream_error_object():
    client = mock_client((STREAMS / "in_stream_error.sse").read_bytes())
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamStreamError) as info:
        async with client:
            async for event in stream_chat(PAYLOAD, client=client):
                seen.append(event)
    assert texts(seen) == {0: "Partial"}  # what came before the error was delivered
    error = info.value
    assert error.kind == "stream" and error.status is None
    assert "Output data may contain inappropriate content." in error.message
    assert "content check" in error.hint


async def test_event_error_line():
    error = await fail(mock_client((STREAMS / "event_error.sse").read_bytes()))
    assert isinstance(error, UpstreamStreamError)
    assert error.message == "Upstream model overloaded"  # the code is in it already


async def test_event_error_with_plain_text_data():
    error = await fail(mock_client("event: error\ndata: upstream exploded\n\n"))
    assert (error.kind, error.message) == ("stream", "upstream exploded")


async def test_malformed_json():
    error = await fail(mock_client((STREAMS / "malformed_json.sse").read_bytes()))
    assert isinstance(error, UpstreamProtocolError)
    assert "malformed JSON" in error.message and "broken" in error.message
    assert "PLAYGROUND_API_BASE" in error.hint


async def test_stream_ended_early():
    error = await fail(mock_client((STREAMS / "ended_early.sse").read_bytes()))
    assert isinstance(error, UpstreamConnectionError)
    assert error.message == "the connection closed before the reply finished"


async def test_stream_cut_in_the_middle_of_an_event():
    error = await fail(mock_client((STREAMS / "cut_mid_event.sse").read_bytes()))
    assert isinstance(error, UpstreamConnectionError)
    assert "middle of an event" in error.message


async def test_empty_200_stream_is_not_finished():
    error = await fail(mock_client(b""))
    assert error.kind == "connection"


# --- error mapping -------------------------------------------------------------------------


def gateway_body(status: int, message, **extra) -> str:
    return json.dumps(
        {
            "message": message,
            "path": "/v1/chat/completions",
            "requestId": "0c5a9f0e-1d2b-4c3a-8e7f-6a5b4c3d2e1f",
            "statusCode": status,
            "timestamp": "2025-09-12T03:11:19.000Z",
            **extra,
        }
    )


async def test_401_gateway_body():
    message = "This request requires a valid API key. Get one at https://aimlapi.com/app/keys"
    error = await fail(mock_client(gateway_body(401, message), 401, "application/json"))
    assert isinstance(error, UpstreamHTTPError)
    assert (error.kind, error.status, error.message) == ("auth", 401, message)
    assert error.hint.startswith("Check PLAYGROUND_API_KEY")
    assert error.retry_after is None


async def test_401_without_a_key_says_to_set_one(settings):
    settings.PLAYGROUND_API_KEY = ""
    error = await fail(mock_client(gateway_body(401, "API key required"), 401, "application/json"))
    assert error.hint.startswith("Set PLAYGROUND_API_KEY")


async def test_403_out_of_credits():
    body = gateway_body(403, "You've run out of credits. Please top up your balance.")
    error = await fail(mock_client(body, 403, "application/json"))
    assert (error.kind, error.status) == ("forbidden", 403)
    assert "run out of credits" in error.message
    assert "credits" in error.hint


async def test_400_gateway_body_with_details():
    body = gateway_body(
        400,
        "Body validation error!",
        errors=[
            {"path": ["temperature"], "message": "Number must be less than or equal to 2"},
            {"path": ["messages", 0, "content"], "message": "Required"},
        ],
    )
    error = await fail(mock_client(body, 400, "application/json; charset=utf-8"))
    assert (error.kind, error.status) == ("bad_request", 400)
    assert error.message == (
        "Body validation error!: temperature: Number must be less than or equal to 2; "
        "messages.0.content: Required"
    )
    assert "Shorten the input" in error.hint


async def test_400_vendor_body():
    body = {
        "error": {
            "code": "invalid_parameter_error",
            "message": "The audio format is not supported.",
            "type": "invalid_request_error",
        },
        "request_id": "3f1c2b7a-8d9e-9a0b-b1c2-d3e4f5a6b7c8",
    }
    error = await fail(mock_client(json.dumps(body), 400, "application/json"))
    assert error.kind == "bad_request"
    assert error.message == "The audio format is not supported. (invalid_parameter_error)"


async def test_400_vendor_content_check_hint():
    body = {
        "error": {
            "code": "data_inspection_failed",
            "message": "Input data may contain inappropriate content.",
            "type": "data_inspection_failed",
        }
    }
    error = await fail(mock_client(json.dumps(body), 400, "application/json"))
    assert "content check" in error.hint


async def test_400_litellm_numeric_code_gives_way_to_the_type_and_a_model_hint():
    body = {
        "error": {
            "message": "litellm.BadRequestError: Invalid model name passed in model=omni-x. "
            "Call `/v1/models` to view available models for your key.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "400",
        }
    }
    error = await fail(mock_client(json.dumps(body), 400, "application/json"))
    assert (error.kind, error.status) == ("bad_request", 400)
    assert error.message.endswith("available models for your key. (invalid_request_error)")
    assert "(400)" not in error.message
    assert "PLAYGROUND_MODEL" in error.hint and "Shorten" not in error.hint


async def test_401_litellm_auth_error_keeps_its_type():
    body = {
        "error": {
            "message": "Authentication Error, Invalid proxy server token passed.",
            "type": "auth_error",
            "param": "None",
            "code": "401",
        }
    }
    error = await fail(mock_client(json.dumps(body), 401, "application/json"))
    assert error.message == "Authentication Error, Invalid proxy server token passed. (auth_error)"
    assert error.hint.startswith("Check PLAYGROUND_API_KEY")


async def test_400_vllm_context_length_says_shorten():
    body = {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "5000 tokens. Please reduce the length of the messages.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    error = await fail(mock_client(json.dumps(body), 400, "application/json"))
    assert error.message.endswith("(BadRequestError)")
    assert error.hint == upstream.CONTEXT_HINT


async def test_404_model_not_found_points_at_the_model_setting():
    body = {"error": {"message": 'model "omni-x" not found, try pulling it first'}}
    error = await fail(mock_client(json.dumps(body), 404, "application/json"))
    assert error.kind == "not_found"
    assert error.hint == upstream.MODEL_HINT


def test_a_numeric_code_is_kept_only_when_nothing_else_says_what_failed():
    assert parse_error({"error": {"message": "Bad", "code": "400"}}) == "Bad (400)"
    assert parse_error({"error": {"message": "Bad", "code": 400, "type": "x_error"}}) == (
        "Bad (x_error)"
    )


def parse_error(data: dict) -> str:
    with pytest.raises(UpstreamStreamError) as info:
        parse_chunk(data)
    return info.value.message


def test_an_error_inside_a_stream_gets_a_hint_by_what_it_says():
    with pytest.raises(UpstreamStreamError) as info:
        parse_chunk(
            {"error": {"message": "Input is too long for the context window", "code": "400"}}
        )
    assert info.value.hint == upstream.CONTEXT_HINT


GENERIC = "Shorten the input, remove an attachment, or change the setting the message names."


@pytest.mark.parametrize(
    ("kind", "status", "message", "code", "has_key", "hint"),
    [
        # the message says what is wrong
        ("bad_request", 400, "Invalid model name passed in model=x", "", True, "MODEL"),
        (
            "bad_request",
            400,
            "The model `x` does not exist",
            "invalid_request_error",
            True,
            "MODEL",
        ),
        ("not_found", 404, 'model "x" not found, try pulling it first', "", True, "MODEL"),
        ("bad_request", 400, "Unknown model: x", "", True, "MODEL"),
        ("bad_request", 400, "Incorrect API key provided", "", True, "KEY"),
        ("bad_request", 400, "Missing Authentication header", "", False, "SET_KEY"),
        ("bad_request", 400, "This model's maximum context length is 4096", "", True, "CONTEXT"),
        ("bad_request", 400, "Prompt is too long", "", True, "CONTEXT"),
        ("bad_request", 400, "Range of input length should be [1, 30720]", "", True, "CONTEXT"),
        ("stream", None, "context_length_exceeded", "", True, "CONTEXT"),
        ("bad_request", 400, "Output may contain inappropriate content.", "", True, "CONTENT"),
        ("bad_request", 400, "Blocked by the content filter", "", True, "CONTENT"),
        ("stream", None, "Response was blocked for safety reasons", "", True, "CONTENT"),
        # a vendor code says it plainly
        ("bad_request", 400, "Anything", "data_inspection_failed", True, "CONTENT"),
        ("bad_request", 400, "Anything", "context_length_exceeded", True, "CONTEXT"),
        ("not_found", 404, "Anything", "model_not_found", True, "MODEL"),
        ("bad_request", 400, "Anything", "invalid_api_key", True, "Check PLAYGROUND_API_KEY."),
        # nothing in the message: the status decides
        ("bad_request", 400, "Body validation error!: temperature: Too big", "", True, GENERIC),
        (
            "bad_request",
            400,
            "messages.0.content: Required (invalid_request_error)",
            "",
            True,
            GENERIC,
        ),
        ("bad_request", 413, "", "", True, "Shorten the input or remove an attachment."),
        (
            "not_found",
            404,
            "Cannot POST /v1/chat/completion",
            "",
            True,
            "Check PLAYGROUND_API_BASE and the model name.",
        ),
        (
            "stream",
            None,
            "Upstream model overloaded",
            "",
            True,
            "Try again; if it happens again, change the input or settings.",
        ),
        # the status is the stronger signal
        (
            "auth",
            401,
            "invalid model",
            "",
            True,
            "Check PLAYGROUND_API_KEY; the upstream did not accept it.",
        ),
        (
            "auth",
            401,
            "API key required",
            "",
            False,
            "Set PLAYGROUND_API_KEY; the upstream requires an API key.",
        ),
        ("rate_limited", 429, "Too many tokens per minute", "", True, "Wait a moment and retry."),
        ("server", 500, "The model crashed", "", True, "Try again; the upstream had a problem."),
        (
            "forbidden",
            403,
            "You've run out of credits",
            "",
            True,
            "Check the account's credits and that the key may use this model.",
        ),
    ],
)
def test_the_hint_follows_what_the_error_says(kind, status, message, code, has_key, hint):
    named = {
        "MODEL": upstream.MODEL_HINT,
        "KEY": "Check PLAYGROUND_API_KEY; the upstream did not accept it.",
        "SET_KEY": "Set PLAYGROUND_API_KEY; the upstream requires an API key.",
        "CONTEXT": upstream.CONTEXT_HINT,
        "CONTENT": upstream.CONTENT_HINT,
    }
    chosen = upstream.error_hint(kind, status=status, message=message, code=code, has_key=has_key)
    assert chosen == named.get(hint, hint)


def test_the_hints_name_the_settings_to_check():
    assert "PLAYGROUND_MODEL" in upstream.MODEL_HINT and "settings" in upstream.MODEL_HINT
    assert "Shorten" in upstream.CONTEXT_HINT
    assert "Rephrase" in upstream.CONTENT_HINT and "content check" in upstream.CONTENT_HINT


async def test_422_message_list():
    body = {
        "statusCode": 422,
        "message": ["top_p must be <= 1", "n must be >= 1"],
        "error": "Unprocessable Entity",
    }
    error = await fail(mock_client(json.dumps(body), 422, "application/json"))
    assert (error.kind, error.message) == ("bad_request", "top_p must be <= 1; n must be >= 1")


async def test_413_says_shorten():
    error = await fail(mock_client("", 413, None))
    assert error.kind == "bad_request"
    assert error.message == "413 Request Entity Too Large"
    assert error.hint == "Shorten the input or remove an attachment."


async def test_404():
    error = await fail(mock_client(gateway_body(404, "Cannot POST /v1/chat/completion"), 404))
    assert (error.kind, error.status) == ("not_found", 404)
    assert "PLAYGROUND_API_BASE" in error.hint


async def test_redirect_is_not_followed():
    client = mock_client("", 301, None, headers={"location": "https://elsewhere.test/v1"})
    error = await fail(client)
    assert (error.kind, error.status) == ("protocol", 301)
    assert "https://elsewhere.test/v1" in error.hint


async def test_429_retry_after_seconds():
    body = gateway_body(429, "Too Many Requests")
    error = await fail(mock_client(body, 429, "application/json", headers={"retry-after": "7"}))
    assert (error.kind, error.status, error.message) == ("rate_limited", 429, "Too Many Requests")
    assert error.retry_after == 7.0
    assert error.hint == "Wait 7 s and retry."


async def test_429_retry_after_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = await fail(
        mock_client("Too Many Requests", 429, "text/plain", headers={"retry-after": when})
    )
    assert 27 <= error.retry_after <= 30
    assert error.hint in ("Wait 29 s and retry.", "Wait 30 s and retry.", "Wait 28 s and retry.")
    assert error.message == "Too Many Requests"


async def test_429_without_retry_after():
    error = await fail(mock_client("", 429, None))
    assert error.retry_after is None
    assert error.hint == "Wait a moment and retry."


async def test_500_openai_shape():
    body = {
        "error": {
            "message": "The server had an error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    error = await fail(mock_client(json.dumps(body), 500, "application/json"))
    assert (error.kind, error.status) == ("server", 500)
    assert error.message == "The server had an error (server_error)"
    assert error.hint == "Try again; the upstream had a problem."


async def test_503_html_page():
    page = (
        "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
        "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    client = mock_client(page, 503, "text/html", headers={"retry-after": "120"})
    error = await fail(client)
    assert (error.kind, error.status) == ("server", 503)
    assert error.message == "503 Service Temporarily Unavailable"
    assert error.retry_after == 120.0
    assert error.hint.startswith("Wait 120 s and retry.")


async def test_502_html_without_title():
    error = await fail(
        mock_client("<h1>Bad   gateway</h1>\n<p>upstream reset</p>", 502, "text/html")
    )
    assert error.message == "Bad gateway upstream reset"


async def test_200_json_error_instead_of_a_stream():
    body = {
        "error": {
            "code": "invalid_api_key",
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
        }
    }
    error = await fail(mock_client(json.dumps(body), 200, "application/json"))
    assert isinstance(error, UpstreamProtocolError)
    assert (error.kind, error.status) == ("protocol", 200)
    assert error.message == "Incorrect API key provided. (invalid_api_key)"
    assert "PLAYGROUND_API_KEY" in error.hint and "application/json" in error.hint


async def test_200_html_page_instead_of_a_stream():
    page = "<!doctype html><html><head><title>Sign in - Corporate Proxy</title></head></html>"
    error = await fail(mock_client(page, 200, "text/html; charset=utf-8"))
    assert (error.kind, error.message) == ("protocol", "Sign in - Corporate Proxy")
    assert "PLAYGROUND_API_BASE" in error.hint


async def test_200_without_content_type():
    error = await fail(mock_client("", 200, None))
    assert error.kind == "protocol"
    assert error.message == "expected an event stream, got a body without a content type"


async def test_dropped_mid_stream():
    body = (STREAMS / "plain_text.sse").read_bytes()[:300]
    client = mock_client(body, fail_after=httpx.ReadError("connection reset by peer"))
    error = await fail(client)
    assert isinstance(error, UpstreamConnectionError)
    assert error.message == f"the connection to {BASE} dropped mid-stream"
    assert error.hint == "Try again; the connection was interrupted."


async def test_disconnected_before_answering():
    def handler(request):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE)
    error = await fail(client)
    assert error.kind == "connection"
    assert "closed the connection without answering" in error.message


async def test_the_key_never_leaks(settings, caplog):
    """Not in message, hint, str(), repr(), as_dict() or the log, even when echoed back."""
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}. Find yours at ...",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    caplog.set_level(logging.DEBUG)
    errors = [
        await fail(mock_client(json.dumps(body), 401, "application/json")),
        await fail(mock_client(gateway_body(403, "Forbidden"), 403, "application/json")),
        await fail(mock_client(f"event: error\ndata: bad key {KEY}\n\n")),
        await fail(mock_client(json.dumps(body), 200, "application/json")),
    ]
    assert "***" in errors[0].message
    for error in errors:
        for text in (
            error.message,
            error.hint,
            str(error),
            repr(error),
            json.dumps(error.as_dict()),
        ):
            assert KEY not in text
    assert caplog.records and KEY not in caplog.text


def test_as_dict_is_json_safe():
    error = UpstreamHTTPError(
        "Too Many Requests",
        kind="rate_limited",
        status=429,
        hint="Wait 7 s and retry.",
        retry_after=7.0,
    )
    assert json.loads(json.dumps(error.as_dict())) == {
        "kind": "rate_limited",
        "status": 429,
        "message": "Too Many Requests",
        "hint": "Wait 7 s and retry.",
        "retry_after": 7.0,
    }
    assert str(error) == "HTTP 429: Too Many Requests"
    assert str(UpstreamTimeout("no data")) == "timeout: no data"


# --- the request ---------------------------------------------------------------------------


async def test_request_url_headers_and_body():
    seen: list[httpx.Request] = []
    payload = {**PAYLOAD, "stream": False, "stream_options": {"other": 1}, "temperature": 0.3}
    original = json.loads(json.dumps(payload))
    await collect(mock_client((STREAMS / "plain_text.sse").read_bytes(), seen=seen), payload)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == BASE + "/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.content) == {
        **PAYLOAD,
        "temperature": 0.3,
        "stream": True,
        "stream_options": {"other": 1, "include_usage": True},
    }
    assert payload == original  # the caller's dict is not changed


async def test_no_authorization_without_a_key(settings):
    settings.PLAYGROUND_API_KEY = ""
    seen: list[httpx.Request] = []
    await collect(mock_client((STREAMS / "plain_text.sse").read_bytes(), seen=seen))
    assert "authorization" not in seen[0].headers
    assert "Authorization" not in request_headers()


def test_request_headers_with_a_key():
    assert request_headers() == {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {KEY}",
    }


# --- clients -------------------------------------------------------------------------------


async def test_get_client_is_shared_and_follows_settings(settings, shared_clients):
    client = upstream.get_client()
    assert upstream.get_client() is client
    assert str(client.base_url) == BASE + "/"
    assert client.timeout == httpx.Timeout(connect=2.0, read=5.0, write=60.0, pool=10.0)
    assert client._transport._pool._max_connections >= 1000
    assert client._transport._pool._max_keepalive_connections == 100
    assert isinstance(client._transport._pool._network_backend, AsyncioBackend)  # chat/sockets.py
    settings.PLAYGROUND_READ_TIMEOUT = 0.5
    changed = upstream.get_client()
    assert changed is not client and changed.timeout.read == 0.5
    await upstream.close_clients()
    assert client.is_closed and changed.is_closed
    assert upstream.get_client() is not changed


async def test_get_client_uses_the_simulator_when_asked(settings, shared_clients):
    pytest.importorskip("chat.simulator.transport")
    pytest.importorskip("chat.simulator.app")
    settings.PLAYGROUND_USE_SIMULATOR = True
    client = upstream.get_client()
    assert str(client.base_url) == "http://simulator/v1/"


# --- real sockets --------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def loopback(handler: Handler, tls: ssl.SSLContext | None = None):
    """A plain asyncio TCP server on 127.0.0.1 (TLS with `tls`); yields the API base URL
    pointing at it."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1"
    finally:
        server.close()
        if hasattr(server, "close_clients"):  # Python 3.13: don't wait on idle connections
            server.close_clients()
        await asyncio.wait_for(server.wait_closed(), 2)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + await reader.readexactly(length)


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


async def test_connection_refused_names_the_base_url(settings, shared_clients):
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PLAYGROUND_API_BASE = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UpstreamConnectionError) as info:
        async for _ in stream_chat(PAYLOAD):
            pass
    assert info.value.message.startswith(f"could not connect to http://127.0.0.1:{port}/v1")
    assert "PLAYGROUND_API_BASE" in info.value.hint


async def test_server_that_never_answers_times_out(settings, shared_clients):
    async def silent(reader, writer):
        await reader.read()  # accept, read, never answer; returns when the client hangs up
        writer.close()

    async with loopback(silent) as base:
        settings.PLAYGROUND_API_BASE = base
        settings.PLAYGROUND_READ_TIMEOUT = 0.2
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as info:
            async for _ in stream_chat(PAYLOAD):
                pass
    assert time.monotonic() - started < 2
    assert info.value.message == f"{base} sent no data for 0.2 s"
    assert "PLAYGROUND_READ_TIMEOUT" in info.value.hint


async def test_real_socket_stream_ending_at_eof_without_newline(settings, shared_clients):
    body = (STREAMS / "no_trailing_newline.sse").read_bytes()

    async def serve(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + b"connection: close\r\n\r\n")
        for i in range(0, len(body), 50):
            writer.write(body[i : i + 50])
            await writer.drain()
        writer.close()  # no content-length: the body ends at EOF

    async with loopback(serve) as base:
        settings.PLAYGROUND_API_BASE = base
        events = [event async for event in stream_chat(PAYLOAD)]
    assert texts(events) == {0: "Last words"}
    assert last_usage(events)["total_tokens"] == 33


async def test_real_socket_dropped_mid_chunk(settings, shared_clients):
    first = (STREAMS / "plain_text.sse").read_bytes()[:400]

    async def serve(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        writer.write(b"400\r\npartial")  # a chunk announced, then the peer goes away
        await writer.drain()
        writer.transport.abort()

    async with loopback(serve) as base:
        settings.PLAYGROUND_API_BASE = base
        seen = []
        with pytest.raises(UpstreamConnectionError) as info:
            async for event in stream_chat(PAYLOAD):
                seen.append(event)
    assert seen[0].role == "assistant"
    assert info.value.message == f"the connection to {base} dropped mid-stream"


async def test_stopping_early_releases_the_connection(settings, shared_clients):
    hung_up = asyncio.Event()
    first = (STREAMS / "plain_text.sse").read_bytes()[:400]

    async def serve(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        await reader.read()  # the rest never comes; wait for the client to hang up
        hung_up.set()
        writer.close()

    async with loopback(serve) as base:
        settings.PLAYGROUND_API_BASE = base
        async with aclosing(stream_chat(PAYLOAD)) as events:
            async for event in events:
                assert event.role == "assistant"
                break
        await asyncio.wait_for(hung_up.wait(), 2)


async def test_a_finished_stream_leaves_its_connection_for_the_next_reply(simulator_url):
    import httpx

    from chat.upstream import stream_chat

    body = {
        "model": "alibaba/qwen3.5-omni-flash",
        "messages": [{"role": "user", "content": "Hi [sim:delay=0] [sim:length=5]"}],
    }
    async with httpx.AsyncClient(base_url=simulator_url) as client:
        for _ in range(3):
            [event async for event in stream_chat(body, client=client)]
        connections = client._transport._pool.connections  # httpx's pool, for this check only
        assert len(connections) == 1


# --- the connections (chat/sockets.py: httpcore on asyncio's streams) ------------------------


async def test_replies_share_one_connection_through_the_shared_client(
    settings, shared_clients, simulator_url
):
    settings.PLAYGROUND_API_BASE = simulator_url
    body = {**PAYLOAD, "messages": [{"role": "user", "content": "Hi [sim:delay=0]"}]}
    for _ in range(3):
        events = [event async for event in stream_chat(body)]
        assert any(event.finish_reason == "stop" for event in events)
    assert len(upstream.get_client()._transport._pool.connections) == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused(settings, shared_clients):
    body = (STREAMS / "plain_text.sse").read_bytes()
    accepted = 0

    async def serve_once_then_hang_up(reader, writer):
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        writer.write(SSE_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()  # keep-alive was not refused, but the server goes away anyway

    async with loopback(serve_once_then_hang_up) as base:
        settings.PLAYGROUND_API_BASE = base
        first = [event async for event in stream_chat(PAYLOAD)]
        await asyncio.sleep(0.05)  # the close reaches the client's idle connection
        second = [event async for event in stream_chat(PAYLOAD)]
    assert texts(first) == texts(second) and texts(first)[0]
    assert accepted == 2


async def test_a_reply_larger_than_the_read_ahead_arrives_whole(settings, shared_clients):
    words = [f"w{i} " for i in range(BUFFER_LIMIT // 10)]
    events = b"".join(
        b"data: %s\n\n"
        % json.dumps({"choices": [{"index": 0, "delta": {"content": word}}]}).encode()
        for word in words
    )
    body = events + b"data: [DONE]\n\n"
    assert len(body) > 4 * BUFFER_LIMIT

    async def serve(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + b"content-length: %d\r\n\r\n" % len(body))
        writer.write(body)  # all at once: the client stops reading at its limit, then resumes
        await writer.drain()
        await reader.read()
        writer.close()

    async with loopback(serve) as base:
        settings.PLAYGROUND_API_BASE = base
        received = [event async for event in stream_chat(PAYLOAD)]
    assert texts(received) == {0: "".join(words)}


async def test_a_proxy_from_the_environment_is_still_used(settings, shared_clients, monkeypatch):
    body = (STREAMS / "plain_text.sse").read_bytes()
    request_lines = []

    async def proxy(reader, writer):  # answers for the upstream, as a caching proxy might
        request_lines.append((await read_request(reader)).split(b"\r\n", 1)[0])
        writer.write(SSE_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async with loopback(proxy) as proxy_base:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_base.removesuffix("/v1"))
        settings.PLAYGROUND_API_BASE = "http://upstream.test/v1"
        events = [event async for event in stream_chat(PAYLOAD)]
    assert texts(events)[0]
    assert request_lines == [b"POST http://upstream.test/v1/chat/completions HTTP/1.1"]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "upstream.pem", folder / "upstream.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server_context(tmp_path) -> tuple[ssl.SSLContext, Path]:
    cert_file, key_file = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


async def test_a_stream_over_tls(settings, shared_clients, monkeypatch, tls_server_context):
    context, cert_file = tls_server_context
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # httpx trusts it, as it would a CA's
    body = (STREAMS / "plain_text.sse").read_bytes()

    async def serve(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 60):
            piece = body[i : i + 60]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with loopback(serve, tls=context) as base:
        settings.PLAYGROUND_API_BASE = base
        events = [event async for event in stream_chat(PAYLOAD)]
        [connection] = upstream.get_client()._transport._pool.connections
        assert connection._connection._network_stream.get_extra_info("ssl_object") is not None
    assert texts(events) == texts(await collect(mock_client(body)))
    assert texts(events)[0]


async def test_an_untrusted_certificate_is_refused_with_the_reason(
    settings, shared_clients, tls_server_context
):
    context, _cert_file = tls_server_context
    answered = False

    async def serve(reader, writer):
        nonlocal answered
        answered = True
        writer.close()

    async with loopback(serve, tls=context) as base:
        settings.PLAYGROUND_API_BASE = base
        with pytest.raises(UpstreamConnectionError) as info:
            async for _ in stream_chat(PAYLOAD):
                pass
    assert info.value.message.startswith(f"could not connect to {base}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.message
