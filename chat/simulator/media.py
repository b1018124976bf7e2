"""Attachments of a user message: decoded and measured from their bytes, never trusted by name.

The simulator's reply is the app's best test oracle for uploads: if the reply says "H.264,
64x48, 1.00 s", the app really sent that video. So everything here is measured with Pillow or
PyAV, and anything that cannot be decoded is reported as such instead of raising.
"""

import base64
import binascii
import io
import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import av
from PIL import Image

# Token estimates modelled on the vendor's documentation: images in 28x28 patches, audio at
# 25 tokens per second, video sampled at 2 frames per second. Used for the fake usage figures.
PATCH = 28
AUDIO_TOKENS_PER_SECOND = 25
VIDEO_FRAMES_PER_SECOND = 2
# For parts the simulator cannot measure (URLs, undecodable data, earlier turns).
FALLBACK_TOKENS = {"image": 256, "audio": 100, "video": 1024}

_DATA_URL = re.compile(r"data:(?P<meta>[^,]*),(?P<data>.*)", re.DOTALL)
_BASE64 = re.compile(r"[A-Za-z0-9+/=_\-\s]+")


@dataclass(frozen=True)
class Attachment:
    """What the simulator found in one non-text part."""

    kind: str  # "image", "audio" or "video"
    summary: str  # one Markdown line for the reply
    image_tokens: int = 0
    audio_tokens: int = 0
    video_tokens: int = 0
    seconds: float | None = None  # audio and video, when measured
    has_audio: bool = False


@dataclass(frozen=True)
class Payload:
    """A part's value: either bytes, a URL the simulator will not fetch, or a decoding failure."""

    data: bytes | None = None
    url: str | None = None
    problem: str | None = None
    source: str = ""


def part_kind(part: dict[str, Any]) -> str | None:
    return {"image_url": "image", "input_audio": "audio", "video_url": "video"}.get(
        str(part.get("type"))
    )


def decode_payload(value: str) -> Payload:
    """Decode a data URL, bare base64, or recognise an http(s) URL."""
    if re.match(r"https?://", value, re.IGNORECASE):
        return Payload(url=value, source="URL")
    match = _DATA_URL.match(value)
    if match:
        meta = match["meta"]
        mime = meta.split(";")[0] or "no media type"
        source = f"data URL, {mime}"
        if ";base64" in meta.lower():
            return _base64(match["data"], source)
        return Payload(data=urllib.parse.unquote_to_bytes(match["data"]), source=source)
    if _BASE64.fullmatch(value[:4096]):
        return _base64(value, "base64")
    return Payload(problem="neither a URL, a data URL nor base64", source="unrecognised value")


def _base64(text: str, source: str) -> Payload:
    compact = "".join(text.split())
    try:
        if "-" in compact or "_" in compact:
            data = base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        else:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return Payload(problem="the base64 could not be decoded", source=source)
    return Payload(data=data, source=source)


def describe_part(part: dict[str, Any]) -> Attachment | None:
    """Measure one content part; None for text parts and unknown types."""
    kind = part_kind(part)
    if kind is None:
        return None
    inner = part.get(part["type"]) or {}
    if kind == "audio":
        value, extra = inner.get("data", ""), f", declared format `{inner.get('format')}`"
    else:
        value, extra = inner.get("url", ""), ""
    if kind == "image" and inner.get("detail"):
        extra = f", detail `{inner['detail']}`"
    payload = decode_payload(str(value))
    label = f"{kind.capitalize()} ({payload.source}{extra})"
    if payload.url is not None:
        shown = payload.url if len(payload.url) <= 120 else payload.url[:119] + "…"
        return Attachment(
            kind,
            f"{label}: <{shown}>; the simulator does not fetch URLs",
            **{f"{kind}_tokens": FALLBACK_TOKENS[kind]},
        )
    if payload.data is None:
        return Attachment(kind, f"{label}: {payload.problem}")
    if kind == "image":
        return _describe_image(label, payload.data)
    return _describe_media(kind, label, payload.data)


def _describe_image(label: str, data: bytes) -> Attachment:
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height), mode = image.format, image.size, image.mode
    except Exception as exc:  # Pillow raises many types for bad input; all mean "not an image".
        return Attachment("image", f"{label}: {_size(data)}, not a readable image ({_why(exc)})")
    tokens = math.ceil(width / PATCH) * math.ceil(height / PATCH) + 2
    return Attachment(
        "image", f"{label}: {fmt}, {width}x{height}, {mode}, {_size(data)}", image_tokens=tokens
    )


def _describe_media(kind: str, label: str, data: bytes) -> Attachment:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            container_name = container.format.name
            duration = _duration(container)
            streams = [_stream_summary(stream) for stream in container.streams]
            video = next(iter(container.streams.video), None)
            size = (video.codec_context.width, video.codec_context.height) if video else None
            has_audio = bool(container.streams.audio)
    except Exception as exc:  # PyAV raises its own error family for anything undecodable.
        return Attachment(kind, f"{label}: {_size(data)}, not decodable media ({_why(exc)})")
    parts = [f"container `{container_name}`", "streams " + (", ".join(streams) or "none")]
    # Video dimensions are in the stream summary.
    parts.append(f"{duration:.2f} s" if duration is not None else "duration unknown")
    parts.append(_size(data))
    seconds = duration or 0.0
    audio_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND) if has_audio else 0
    video_tokens = 0
    if size:
        frames = max(1, math.ceil(seconds * VIDEO_FRAMES_PER_SECOND))
        video_tokens = frames * math.ceil(size[0] / PATCH) * math.ceil(size[1] / PATCH)
    return Attachment(
        kind,
        f"{label}: {', '.join(parts)}",
        audio_tokens=audio_tokens,
        video_tokens=video_tokens,
        seconds=duration,
        has_audio=has_audio,
    )


def _duration(container: Any) -> float | None:
    if container.duration is not None:
        return container.duration / av.time_base
    lengths = [
        float(stream.duration * stream.time_base)
        for stream in container.streams
        if stream.duration is not None and stream.time_base is not None
    ]
    return max(lengths) if lengths else None


def _stream_summary(stream: Any) -> str:
    codec = stream.codec_context.name if stream.codec_context else "unknown"
    if stream.type == "video":
        ctx = stream.codec_context
        rate = f", {float(stream.average_rate):g} fps" if stream.average_rate else ""
        return f"video `{codec}` {ctx.width}x{ctx.height}{rate}"
    if stream.type == "audio":
        ctx = stream.codec_context
        channels = getattr(ctx, "channels", None) or ctx.layout.nb_channels
        return f"audio `{codec}` {ctx.sample_rate} Hz {channels} ch"
    return f"{stream.type} `{codec}`"


def _size(data: bytes) -> str:
    return f"{len(data):,} bytes"


def _why(exc: Exception) -> str:
    # FFmpeg errors render as "[Errno -1094995529] Invalid data ...: '<none>'"; keep the words.
    text = exc.strerror if isinstance(exc, av.FFmpegError) else str(exc)
    text = (text or "").strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"
