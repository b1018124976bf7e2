"""The offline simulator, over a real loopback HTTP server (daphne) and in-process."""

import asyncio
import base64
import io
import json
import math
import struct
import time
import wave
from array import array
from typing import Any

import av
import httpx
import pytest
from httpx_sse import aconnect_sse
from PIL import Image

from chat.simulator import SimulatorTransport, create_app, request_errors

FLASH = "alibaba/qwen3.5-omni-flash"
PLUS = "alibaba/qwen3.5-omni-plus"
TIMEOUT = httpx.Timeout(10.0)


def chat(text: str = "Hello there", **settings: Any) -> dict[str, Any]:
    return {
        "model": FLASH,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
        **settings,
    }


def with_parts(*parts: dict[str, Any], text: str = "What is in these?") -> dict[str, Any]:
    body = chat()
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]
    return body


async def stream_events(base_url: str, body: dict[str, Any], **client_args: Any) -> list[Any]:
    """Every event's data, parsed as JSON except [DONE]."""
    async with httpx.AsyncClient(timeout=TIMEOUT, **client_args) as client:
        async with aconnect_sse(client, "POST", f"{base_url}/chat/completions", json=body) as es:
            assert es.response.status_code == 200
            return [
                sse.data if sse.data == "[DONE]" else json.loads(sse.data)
                async for sse in es.aiter_sse()
            ]


def deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]


def content_of(events: list[Any]) -> str:
    return "".join(d.get("content") or "" for d in deltas(events))


def usage_of(events: list[Any]) -> dict[str, Any]:
    return next(e for e in events if isinstance(e, dict) and e.get("usage"))["usage"]


async def post(base_url: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        if isinstance(body, bytes):
            return await client.post(f"{base_url}/chat/completions", content=body)
        return await client.post(f"{base_url}/chat/completions", json=body)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        count = int(seconds * rate)
        samples = [int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(count)]
        out.writeframes(struct.pack(f"<{count}h", *samples))
    return buffer.getvalue()


def mp4_bytes() -> bytes:
    """About one second of 64x48 H.264 at 10 fps, made here so nothing binary is checked in."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(10):
            image = Image.new("RGB", (64, 48), (n * 25, 100, 200))
            frame = av.VideoFrame.from_image(image)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


# Over the real server ------------------------------------------------------------------------


async def test_a_valid_request_streams_role_then_content_then_finish_then_usage_then_done(
    simulator_url: str,
) -> None:
    events = await stream_events(simulator_url, chat())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for event in chunks:
        assert event["object"] == "chat.completion.chunk"
        assert event["id"] == chunks[0]["id"] and event["model"] == FLASH
        assert isinstance(event["created"], int)
    first, finish, usage = chunks[0], chunks[-2], chunks[-1]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    middle = [e["choices"][0] for e in chunks[1:-2]]
    assert middle and all(c["delta"].get("content") and c["finish_reason"] is None for c in middle)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(middle)
    assert usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )
    assert usage["usage"]["prompt_tokens_details"]["text_tokens"] > 0
    assert usage["meta"]["usage"]["credits_used"] > 0
    assert usage["meta"]["usage"]["usd_spent"] > 0


async def test_the_reply_is_markdown_reporting_the_model_messages_text_and_settings(
    simulator_url: str,
) -> None:
    body = chat("Tell me *everything*", temperature=0.7, max_tokens=900, seed=42, model=PLUS)
    body["messages"].insert(0, {"role": "system", "content": "Be brief."})
    text = content_of(await stream_events(simulator_url, body))
    assert "simulator" in text.lower()
    assert f"`{PLUS}`" in text
    assert "Messages: 2 (1 system, 1 user)" in text
    assert "“Tell me *everything*”" in text
    assert "\n- " in text
    settings = json.loads(text.split("```json\n")[1].split("\n```")[0])
    assert settings == {"temperature": 0.7, "max_tokens": 900, "seed": 42}


async def test_the_same_request_gets_the_same_reply(simulator_url: str) -> None:
    first = content_of(await stream_events(simulator_url, chat("Same words")))
    second = content_of(await stream_events(simulator_url, chat("Same words")))
    assert first == second


async def test_a_base_url_without_v1_works_too(simulator_url: str) -> None:
    events = await stream_events(simulator_url.removesuffix("/v1"), chat("[sim:length=3]"))
    assert content_of(events) == "The quick brown"


async def test_models_are_listed_and_unknown_paths_are_a_json_404(simulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        models = (await client.get(f"{simulator_url}/models")).json()
        missing = await client.get(f"{simulator_url}/nothing-here")
    assert [m["id"] for m in models["data"]] == [FLASH, PLUS]
    assert missing.status_code == 404
    assert missing.json()["statusCode"] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": FLASH, "stream": True}, "'messages' is a required property"),
        (chat(temperature=5), "temperature: 5 is greater than the maximum of 2"),
        (with_parts({"type": "file", "file": {}}), "messages[0].content[1].type: 'file'"),
        (chat(stream=False), "stream: must be true"),
        (chat(model="openai/gpt-4o"), "model: 'openai/gpt-4o' is not one of"),
    ],
    ids=["missing messages", "temperature 5", "bad part type", "stream false", "unknown model"],
)
async def test_an_invalid_request_gets_a_400_in_the_gateway_shape_naming_the_field(
    simulator_url: str, body: dict[str, Any], field: str
) -> None:
    response = await post(simulator_url, body)
    assert response.status_code == 400
    error = response.json()
    assert error["message"] and error["statusCode"] == 400
    assert error["path"] == "/v1/chat/completions"
    assert error["requestId"] and error["timestamp"].endswith("Z")
    assert any(field in reason for reason in error["errors"]), error["errors"]


async def test_a_body_that_is_not_json_gets_a_400(simulator_url: str) -> None:
    response = await post(simulator_url, b"{not json")
    assert response.status_code == 400
    assert "not JSON" in response.json()["errors"][0]


async def test_thinking_streams_reasoning_before_the_answer(simulator_url: str) -> None:
    events = await stream_events(simulator_url, chat("[sim:length=4]", enable_thinking=True))
    kinds = [
        "reasoning" if d.get("reasoning_content") else "content"
        for d in deltas(events)
        if d.get("reasoning_content") or d.get("content")
    ]
    assert kinds[0] == "reasoning" and kinds[-1] == "content"
    assert kinds == sorted(kinds, key=["reasoning", "content"].index)
    assert usage_of(events)["completion_tokens_details"]["reasoning_tokens"] == kinds.count(
        "reasoning"
    )


async def test_audio_output_streams_even_sized_audible_pcm_with_transcripts(
    simulator_url: str,
) -> None:
    body = chat("[sim:length=6]", modalities=["text", "audio"])
    body["audio"] = {"voice": "Tina", "format": "wav"}
    events = await stream_events(simulator_url, body)
    audio = [d["audio"] for d in deltas(events) if d.get("audio")]
    assert len(audio) == 6
    pcm = b""
    for piece in audio:
        data = base64.b64decode(piece["data"])
        assert len(data) % 2 == 0
        assert piece["id"].startswith("audio_") and isinstance(piece["expires_at"], int)
        pcm += data
    assert "".join(a["transcript"] for a in audio) == content_of(events)
    samples = array("h", pcm)
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert rms > 1000
    assert usage_of(events)["completion_tokens_details"]["audio_tokens"] > 0


async def test_thinking_together_with_audio_output_is_refused(simulator_url: str) -> None:
    body = chat(enable_thinking=True, modalities=["text", "audio"])
    body["audio"] = {"voice": "Tina", "format": "wav"}
    response = await post(simulator_url, body)
    assert response.status_code == 400
    assert "enable_thinking" in response.json()["error"]["message"]


async def test_logprobs_come_with_each_content_token_when_asked(simulator_url: str) -> None:
    body = chat("[sim:length=5]", logprobs=True, top_logprobs=3)
    events = await stream_events(simulator_url, body)
    choices = [e["choices"][0] for e in events if isinstance(e, dict) and e["choices"]]
    with_content = [c for c in choices if c["delta"].get("content")]
    assert len(with_content) == 5
    for choice in with_content:
        entry = choice["logprobs"]["content"][0]
        assert entry["token"] == choice["delta"]["content"]
        assert entry["logprob"] < 0 and entry["bytes"] == list(entry["token"].encode())
        assert len(entry["top_logprobs"]) == 3


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city", "unit", "days"],
        },
    },
}


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("[sim:tool] weather?", None),
        ("weather?", "required"),
        ("weather?", {"type": "function", "function": {"name": "get_weather"}}),
    ],
    ids=["directive", "required", "named"],
)
async def test_tool_call_fragments_concatenate_to_valid_json_arguments(
    simulator_url: str, text: str, choice: Any
) -> None:
    body = chat(text, tools=[WEATHER_TOOL])
    if choice:
        body["tool_choice"] = choice
    events = await stream_events(simulator_url, body)
    fragments = [f for d in deltas(events) for f in d.get("tool_calls", [])]
    assert len(fragments) > 2
    head = fragments[0]
    assert head["index"] == 0 and head["id"] and head["type"] == "function"
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    arguments = json.loads("".join(f["function"]["arguments"] for f in fragments))
    assert arguments == {"city": "Paris", "unit": "celsius", "days": 1}
    assert [e for e in events if isinstance(e, dict) and e["choices"]][-1]["choices"][0][
        "finish_reason"
    ] == "tool_calls"


async def test_after_a_tool_result_the_simulator_answers_in_text(simulator_url: str) -> None:
    body = chat("[sim:tool] weather?", tools=[WEATHER_TOOL])
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    body["messages"] += [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    events = await stream_events(simulator_url, body)
    assert not [d for d in deltas(events) if d.get("tool_calls")]
    assert "Tool result for `call_1`: “Sunny, 21 C”" in content_of(events)


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(simulator_url: str) -> None:
    events = await stream_events(simulator_url, chat(max_tokens=7))
    contents = [d["content"] for d in deltas(events) if d.get("content")]
    assert len(contents) == 7
    choices = [e["choices"][0] for e in events if isinstance(e, dict) and e["choices"]]
    assert choices[-1]["finish_reason"] == "length"


async def test_length_directive_gives_exactly_that_many_content_tokens(simulator_url: str) -> None:
    events = await stream_events(simulator_url, chat("[sim:length=300]", max_tokens=1000))
    assert len([d for d in deltas(events) if d.get("content")]) == 300


@pytest.mark.parametrize("status", [401, 403, 429, 500, 502, 503])
async def test_status_directive_answers_that_status_in_the_gateway_shape(
    simulator_url: str, status: int
) -> None:
    response = await post(simulator_url, chat(f"[sim:status={status}]"))
    assert response.status_code == status
    error = response.json()
    assert error["statusCode"] == status and error["message"] and error["requestId"]
    if status == 401:
        assert error["message"].startswith("This request requires a valid API key")
    if status == 429:
        assert error["message"] == "Too Many Requests"
        assert response.headers["retry-after"] == "7"


async def test_vendor_error_directive_answers_in_the_vendor_shape(simulator_url: str) -> None:
    response = await post(simulator_url, chat("[sim:vendor-error]"))
    assert response.status_code == 400
    error = response.json()
    assert error["error"]["code"] == "invalid_parameter_error"
    assert error["error"]["message"] and error["error"]["type"] and error["request_id"]


async def test_unknown_or_bad_directives_are_a_400_not_silently_ignored(simulator_url: str) -> None:
    response = await post(simulator_url, chat("[sim:explode] [sim:length=0]"))
    assert response.status_code == 400
    reasons = " ".join(response.json()["errors"])
    assert "[sim:explode]" in reasons and "[sim:length=0]" in reasons


async def test_help_directive_lists_the_directives(simulator_url: str) -> None:
    text = content_of(await stream_events(simulator_url, chat("[sim:help]")))
    for marker in ("[sim:status=N]", "[sim:drop]", "[sim:stall]", "[sim:length=N]", "[sim:tool]"):
        assert marker in text


async def test_drop_directive_breaks_the_connection_mid_stream(simulator_url: str) -> None:
    received = []
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            async with aconnect_sse(
                client, "POST", f"{simulator_url}/chat/completions", json=chat("[sim:drop]")
            ) as es:
                async for sse in es.aiter_sse():
                    received.append(sse.data)
    assert len(received) >= 2 and "[DONE]" not in received
    # The server survives a dropped connection.
    assert content_of(await stream_events(simulator_url, chat("[sim:length=2]"))) == "The quick"


async def test_malformed_directive_sends_an_event_that_is_not_json(simulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        async with aconnect_sse(
            client, "POST", f"{simulator_url}/chat/completions", json=chat("[sim:malformed]")
        ) as es:
            data = [sse.data async for sse in es.aiter_sse()]
    json.loads(data[1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[-1])
    assert "[DONE]" not in data


async def test_error_directive_sends_an_in_stream_error_event_and_ends(simulator_url: str) -> None:
    events = await stream_events(simulator_url, chat("[sim:error]"))
    assert content_of(events)
    assert events[-1]["error"]["code"] == "internal_error"
    assert events[-1]["error"]["type"] == "server_error" and events[-1]["error"]["message"]


async def test_stall_directive_makes_the_client_time_out_reading(simulator_url: str) -> None:
    timeout = httpx.Timeout(10.0, read=0.5)
    received = []
    with pytest.raises(httpx.ReadTimeout):
        async with httpx.AsyncClient(timeout=timeout) as client:
            async with aconnect_sse(
                client, "POST", f"{simulator_url}/chat/completions", json=chat("[sim:stall]")
            ) as es:
                async for sse in es.aiter_sse():
                    received.append(sse.data)
    assert len(received) >= 2


async def test_delay_directive_slows_each_token(simulator_url: str) -> None:
    started = time.monotonic()
    await stream_events(simulator_url, chat("[sim:delay=0.05] [sim:length=6]"))
    assert time.monotonic() - started >= 0.3


async def test_attachments_are_measured_from_their_bytes(simulator_url: str) -> None:
    # The vendor's own examples send audio as "data:;base64,...", with no media type.
    audio = {"data": data_url("", wav_bytes()), "format": "wav"}
    body = with_parts(
        {"type": "image_url", "image_url": {"url": data_url("image/png", png_bytes())}},
        {"type": "input_audio", "input_audio": audio},
        {"type": "video_url", "video_url": {"url": data_url("video/mp4", mp4_bytes())}},
    )
    assert request_errors(body) == []
    events = await stream_events(simulator_url, body)
    lines = content_of(events).splitlines()
    image = next(line for line in lines if "Image (" in line)
    audio = next(line for line in lines if "Audio (" in line)
    video = next(line for line in lines if "Video (" in line)
    assert "PNG" in image and "40x30" in image and f"{len(png_bytes()):,} bytes" in image
    assert "`wav`" in audio and "pcm_s16le" in audio and "16000 Hz" in audio and "0.50 s" in audio
    assert "mp4" in video and "`h264`" in video and "64x48" in video
    assert "1.00 s" in video
    details = usage_of(events)["prompt_tokens_details"]
    assert details["image_tokens"] > 0 and details["audio_tokens"] > 0
    assert details["video_tokens"] > 0


async def test_urls_and_undecodable_attachments_are_reported_not_fatal(simulator_url: str) -> None:
    body = with_parts(
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": data_url("image/png", b"not a png")}},
        {"type": "input_audio", "input_audio": {"data": "data:;base64,%%%", "format": "mp3"}},
        {"type": "video_url", "video_url": {"url": data_url("video/mp4", b"\x00" * 64)}},
    )
    text = content_of(await stream_events(simulator_url, body))
    assert "<https://example.com/cat.png>; the simulator does not fetch URLs" in text
    assert "not a readable image" in text
    assert "base64 could not be decoded" in text
    assert "not decodable media" in text


# In-process --------------------------------------------------------------------------------


def in_process(delay: float = 0.0, on_emit: Any = None, **client_args: Any) -> httpx.AsyncClient:
    transport = SimulatorTransport(create_app(delay=delay, on_emit=on_emit))
    return httpx.AsyncClient(transport=transport, base_url="http://simulator/v1", **client_args)


async def test_the_in_process_transport_streams_while_the_app_is_still_producing() -> None:
    emitted: list[tuple[str, int, float]] = []
    first_arrival = None
    text = ""
    async with in_process(0.05, lambda *args: emitted.append(args)) as client:
        body = chat("[sim:length=20]")
        async with aconnect_sse(client, "POST", "/chat/completions", json=body) as es:
            async for sse in es.aiter_sse():
                if sse.data != "[DONE]" and (piece := deltas([json.loads(sse.data)])):
                    if piece[0].get("content"):
                        first_arrival = first_arrival or time.monotonic()
                        text += piece[0]["content"]
    assert len(emitted) == 20
    assert first_arrival is not None and first_arrival < emitted[-1][2]
    offsets = [offset for _, offset, _ in emitted]
    assert offsets == sorted(set(offsets)) and offsets[-1] == len(text)
    assert len({completion_id for completion_id, _, _ in emitted}) == 1


async def test_closing_the_response_early_cancels_the_app() -> None:
    emitted: list[tuple[str, int, float]] = []
    async with in_process(0.01, lambda *args: emitted.append(args)) as client:
        async with client.stream("POST", "/chat/completions", json=chat("[sim:length=1000]")) as r:
            async for _ in r.aiter_bytes():
                if len(emitted) >= 3:
                    break
        count = len(emitted)
        await asyncio.sleep(0.1)
    assert count < 10 and len(emitted) == count


async def test_the_in_process_transport_reports_a_drop_as_a_protocol_error() -> None:
    async with in_process() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("POST", "/chat/completions", json=chat("[sim:drop]")) as r:
                await r.aread()


async def test_the_in_process_transport_applies_the_read_timeout() -> None:
    async with in_process(timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            async with client.stream("POST", "/chat/completions", json=chat("[sim:stall]")) as r:
                await r.aread()


async def test_the_in_process_transport_passes_errors_and_json_through() -> None:
    async with in_process() as client:
        refused = await client.post("/chat/completions", json=chat("[sim:status=429]"))
        models = await client.get("/models")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
    assert models.json()["data"][0]["id"] == FLASH


async def test_a_hundred_thousand_token_stream_is_allowed_and_more_is_not() -> None:
    emitted = []
    async with in_process(on_emit=lambda *args: emitted.append(args[1])) as client:
        async with client.stream(
            "POST", "/chat/completions", json=chat("[sim:length=100000]")
        ) as response:
            async for _ in response.aiter_bytes():
                pass
        too_long = await client.post("/chat/completions", json=chat("[sim:length=100001]"))
    assert len(emitted) == 100_000
    assert too_long.status_code == 400


def test_request_errors_accepts_a_rich_valid_request() -> None:
    body = chat(
        temperature=1.2,
        top_p=0.9,
        max_tokens=512,
        seed=7,
        stop=None,
        logprobs=True,
        top_logprobs=2,
        enable_thinking=True,
        thinking_budget=256,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    body["messages"] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ]
    assert request_errors(body) == []
    assert request_errors({**body, "model": PLUS}) == []


def test_the_simulator_runs_without_the_apps_settings():
    """`python -m chat.simulator` is a server of its own: nothing it imports reads Django's
    settings (its directives are marked for the translators without Django's gettext_noop)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import chat.simulator.app, chat.simulator.directives as d; print(d.HELP[0][1])"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "this list"
