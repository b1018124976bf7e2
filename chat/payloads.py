"""A conversation's messages and settings -> the request body the API expects.

Media travel inline as base64 data URLs. Building the body never reads a file: each media value
is an `InlineMedia` that `encode_body` streams from the storage (chat.files) as base64 while the
request is sent, so a 1 GB video is never held in memory. `elided` gives the same body with the
media summarised, for saving and showing.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import files
from .models import Attachment, Message

BASE64_CHUNK = 3 * 256 * 1024
MediaURL = Callable[[Attachment], str]  # a multiple of 3, so encoded pieces join into valid base64


@dataclass(frozen=True)
class InlineMedia:
    """Stands in a request body for `prefix` + the base64 of the stored file `name`."""

    name: str
    prefix: str
    size: int

    @property
    def encoded_length(self) -> int:
        return len(self.prefix) + 4 * ((self.size + 2) // 3)

    def describe(self) -> str:
        return f"{self.prefix}… ({_human_size(self.size)} elided)"


def _human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


def media_part(attachment: Attachment, media_url: MediaURL | None = None) -> dict[str, Any]:
    """The API's content part for one attachment (NOTES.md, "Input parts"): inline base64, or
    a link from `media_url` (signed, expiring) when media go by URL."""
    sent = attachment.sent_file
    content_type = attachment.sent_content_type

    def data(prefix: str) -> InlineMedia | str:
        return media_url(attachment) if media_url else InlineMedia(sent.name, prefix, sent.size)

    if attachment.kind == Attachment.Kind.IMAGE:
        url = data(f"data:{content_type};base64,")
        return {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}
    if attachment.kind == Attachment.Kind.AUDIO:
        audio_format = "mp3" if content_type == "audio/mpeg" else "wav"
        # The vendor's own examples use a data URL with no media type for audio.
        audio = data("data:;base64,")
        return {"type": "input_audio", "input_audio": {"data": audio, "format": audio_format}}
    return {"type": "video_url", "video_url": {"url": data(f"data:{content_type};base64,")}}


# Request fields a conversation's settings may carry, sent only when set.
SETTING_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "enable_thinking",
    "thinking_budget",
    "logprobs",
    "top_logprobs",
    "modalities",
    "audio",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
)


def message_part(
    message: Message, attachments: list[Attachment], media_url: MediaURL | None = None
) -> dict[str, Any] | None:
    """One stored message as an API message, or None when it has nothing to send."""
    if message.role == Message.Role.ASSISTANT:
        if message.tool_calls:
            part = {"role": "assistant", "tool_calls": message.tool_calls}
            if message.content:
                part["content"] = message.content
            return part
        if not message.content:
            return None
        return {"role": "assistant", "content": message.content}
    if message.role == Message.Role.TOOL:
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id}
    if message.role == Message.Role.USER:
        if not attachments:
            return {"role": "user", "content": message.content}
        parts: list[dict[str, Any]] = []
        if message.content.strip():
            parts.append({"type": "text", "text": message.content})
        parts.extend(media_part(a, media_url) for a in attachments)
        return {"role": "user", "content": parts}
    return {"role": "system", "content": message.content}


def build_request(
    history: Iterable[Message],
    conversation_settings: dict[str, Any],
    model: str,
    attachments: Mapping[int, list[Attachment]] | None = None,
    media_url: MediaURL | None = None,
) -> dict[str, Any]:
    """The request body for the next reply after `history` (oldest first). Pure.

    `attachments` maps a message's id to the files sent with it; with `media_url`, media go by
    link instead of inline.
    """
    attachments = attachments or {}
    messages: list[dict[str, Any]] = []
    system_prompt = (conversation_settings.get("system_prompt") or "").strip()
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for message in history:
        part = message_part(message, attachments.get(message.pk, []), media_url)
        if part is not None:
            messages.append(part)
    body: dict[str, Any] = {
        "model": conversation_settings.get("model") or model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for field in SETTING_FIELDS:
        value = conversation_settings.get(field)
        if value is not None and value != "" and value != []:
            body[field] = value
    return body


def _walk(value: Any, replace) -> Any:
    if isinstance(value, InlineMedia):
        return replace(value)
    if isinstance(value, dict):
        return {k: _walk(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, replace) for v in value]
    return value


def elided(body: dict[str, Any]) -> dict[str, Any]:
    """The body with each inline medium replaced by a short description. Pure."""
    return _walk(body, InlineMedia.describe)


def _holding_media(value: Any, found: set[int]) -> bool:
    """Whether `value` holds an InlineMedia; the ids of the containers that do go in `found`."""
    if isinstance(value, InlineMedia):
        return True
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, (list, tuple)):
        children = value
    else:
        return False
    holds = False
    for child in children:
        holds = _holding_media(child, found) or holds
    if holds:
        found.add(id(value))
    return holds


def _template(body: dict[str, Any]) -> tuple[list[str], list[InlineMedia]]:
    """The body's JSON split around its media: n + 1 text pieces around n media, each medium
    standing where its JSON string goes (without the quotes). Written by following the body's
    structure, not by marking places in its text, so no text in it, whatever it spells, can be
    taken for a medium. What holds no media is written by json.dumps in one go. Pure."""
    texts: list[str] = []
    media: list[InlineMedia] = []
    piece: list[str] = []
    holders: set[int] = set()
    _holding_media(body, holders)

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def write(value: Any) -> None:
        if isinstance(value, InlineMedia):
            texts.append("".join(piece))
            piece.clear()
            media.append(value)
        elif id(value) not in holders:
            piece.append(dump(value))
        elif isinstance(value, dict):
            piece.append("{")
            plain: dict[str, Any] = {}  # a run of entries without media: one json.dumps
            for key, item in value.items():
                if id(item) in holders or isinstance(item, InlineMedia):
                    if plain:
                        piece.append(dump(plain)[1:-1] + ",")
                        plain = {}
                    piece.append(f"{dump(str(key))}:")
                    write(item)
                    piece.append(",")
                else:
                    plain[key] = item
            if plain:
                piece.append(dump(plain)[1:-1])
            elif piece[-1] == ",":
                piece.pop()
            piece.append("}")
        else:
            piece.append("[")
            run: list[Any] = []  # a run of items without media: one json.dumps
            for item in value:
                if id(item) in holders or isinstance(item, InlineMedia):
                    if run:
                        piece.append(dump(run)[1:-1] + ",")
                        run = []
                    write(item)
                    piece.append(",")
                else:
                    run.append(item)
            if run:
                piece.append(dump(run)[1:-1])
            elif piece[-1] == ",":
                piece.pop()
            piece.append("]")

    write(body)
    texts.append("".join(piece))
    return texts, media


def body_length(body: dict[str, Any]) -> int:
    """Exact byte length of what `encode_body` sends, for a Content-Length header."""
    texts, media = _template(body)
    quotes = 2 * len(media)
    return sum(len(t.encode()) for t in texts) + quotes + sum(m.encoded_length for m in media)


async def encode_body(body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The body as JSON bytes, base64 of each medium streamed from its file piece by piece."""
    texts, media = _template(body)
    yield texts[0].encode()
    for item, text in zip(media, texts[1:], strict=True):
        yield b'"' + item.prefix.encode()
        with await asyncio.to_thread(files.open_stored, item.name) as source:
            while chunk := await asyncio.to_thread(source.read, BASE64_CHUNK):
                yield base64.b64encode(chunk)
        yield b'"' + text.encode()
