"""Deciding the answer to a request: an error response, or the plan of what to stream.

Everything here is pure (bytes in, decision out) and runs in a worker thread, because decoding
and probing a large attachment would otherwise stall every other stream on the event loop.
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .audio import pcm_seconds, token_pcm
from .directives import Directives, Fault, parse_directives
from .errors import gateway_error, gateway_headers, vendor_error
from .media import AUDIO_TOKENS_PER_SECOND, FALLBACK_TOKENS, Attachment, describe_part, part_kind
from .reply import (
    compose_reasoning,
    compose_reply,
    compose_title,
    filler_tokens,
    heard,
    is_title_request,
    last_user_message,
    message_text,
    split_tokens,
)
from .schema import request_errors
from .tools import argument_pieces, chosen_tool, example_arguments

VALIDATION_MESSAGE = "Body validation error!"
# Rough tokenizer stand-in for prompt text: about four characters per token.
CHARS_PER_TOKEN = 4

THINKING_WITH_AUDIO = (
    "The audio output modality is not supported when enable_thinking is true. "
    'Set enable_thinking to false, or remove "audio" from modalities.'
)


@dataclass(frozen=True)
class Refusal:
    """An HTTP error answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCall:
    name: str
    argument_pieces: list[str]


@dataclass(frozen=True)
class Plan:
    """Everything the stream will contain, decided before the first byte is sent."""

    model: str
    reasoning: list[str]
    content: list[str]
    finish_reason: str
    tool_call: ToolCall | None
    audio: bool
    top_logprobs: int | None  # None: no logprobs asked for
    fault: Fault | None
    delay: float | None  # None: the server's default per-token delay
    include_usage: bool
    usage: dict[str, Any]


def decide(raw: bytes, path: str) -> Plan | Refusal:
    """The answer to a raw request body sent to `path`."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = f"body: not JSON ({exc})"
        return Refusal(400, gateway_error(400, path, VALIDATION_MESSAGE, [reason]))
    reasons = request_errors(body)
    if reasons:
        return Refusal(400, gateway_error(400, path, VALIDATION_MESSAGE, reasons))
    return plan_completion(body, path)


def plan_completion(body: dict[str, Any], path: str) -> Plan | Refusal:
    """Plan the stream for a schema-valid request body."""
    if body.get("stream") is not True:
        reason = 'stream: must be true; these omni models only answer as a stream ("stream": true)'
        return Refusal(400, gateway_error(400, path, VALIDATION_MESSAGE, [reason]))
    messages: list[dict[str, Any]] = body["messages"]
    last = last_user_message(messages)
    # A message with no text (a call's utterance) takes its directives from the system prompt.
    said = message_text(last) if last else ""
    if not said.strip():
        said = "\n".join(message_text(m) for m in messages if m.get("role") == "system")
    directives, problems = parse_directives(said)
    if problems:
        return Refusal(400, gateway_error(400, path, "Unusable simulator directive", problems))
    refusal = _directed_refusal(directives, path)
    if refusal:
        return refusal
    audio = "audio" in (body.get("modalities") or [])
    thinking = body.get("enable_thinking") is True
    if audio and thinking:
        return Refusal(400, vendor_error(THINKING_WITH_AUDIO))
    tool = chosen_tool(body, directives.tool)
    if isinstance(tool, str):
        return Refusal(400, gateway_error(400, path, VALIDATION_MESSAGE, [tool]))

    parts = last.get("content") if last else None
    attachments = [a for p in parts if (a := describe_part(p))] if isinstance(parts, list) else []
    reasoning: list[str] = []
    if thinking:
        tool_name = tool["name"] if tool else None
        reasoning = split_tokens(compose_reasoning(body, attachments, tool_name))
        if body.get("thinking_budget"):
            reasoning = reasoning[: body["thinking_budget"]]

    tool_call = None
    content: list[str] = []
    if tool is not None:
        pieces = argument_pieces(example_arguments(tool.get("parameters") or {}))
        tool_call = ToolCall(tool["name"], pieces)
        finish_reason = "tool_calls"
    else:
        if directives.length:
            content = filler_tokens(directives.length)
        elif is_title_request(body):
            content = split_tokens(compose_title(body))
        elif audio and (spoken := heard(attachments, message_text(last) if last else "")):
            content = split_tokens(spoken)
        else:
            content = split_tokens(
                compose_reply(
                    body,
                    attachments,
                    show_help=directives.help,
                    tool_asked_without_tools=directives.tool and not body.get("tools"),
                )
            )
        finish_reason = "stop"
        # max_tokens is a number in the schema, so 2.5 is valid; count whole tokens.
        limit = math.floor(body["max_tokens"]) if body.get("max_tokens") else None
        if limit is not None and len(content) > limit:
            content, finish_reason = content[:limit], "length"

    top_logprobs = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
    usage = _usage(messages, last, attachments, reasoning, content, tool_call, audio)
    return Plan(
        model=body["model"],
        reasoning=reasoning,
        content=content,
        finish_reason=finish_reason,
        tool_call=tool_call,
        audio=audio,
        top_logprobs=top_logprobs,
        fault=directives.fault,
        delay=directives.delay,
        include_usage=(body.get("stream_options") or {}).get("include_usage") is True,
        usage=usage,
    )


def _directed_refusal(directives: Directives, path: str) -> Refusal | None:
    if directives.status:
        status = directives.status
        return Refusal(status, gateway_error(status, path), gateway_headers(status))
    if directives.vendor_error:
        message = "Simulated vendor error: the request was refused, as [sim:vendor-error] asked."
        return Refusal(400, vendor_error(message))
    return None


def _usage(
    messages: list[dict[str, Any]],
    last: dict[str, Any] | None,
    attachments: list[Attachment],
    reasoning: list[str],
    content: list[str],
    tool_call: ToolCall | None,
    audio: bool,
) -> dict[str, Any]:
    """Plausible usage figures: measured attachments for the last turn, estimates for earlier."""
    prompt = {"text_tokens": 0, "image_tokens": 0, "audio_tokens": 0, "video_tokens": 0}
    sent = set()
    for message in messages:
        prompt["text_tokens"] += max(1, math.ceil(len(message_text(message)) / CHARS_PER_TOKEN))
        parts = message.get("content")
        if message is last or not isinstance(parts, list):
            continue
        for part in parts:
            if kind := part_kind(part):
                sent.add(kind)
                prompt[f"{kind}_tokens"] += FALLBACK_TOKENS[kind]
    for attachment in attachments:
        sent.add(attachment.kind)
        prompt["image_tokens"] += attachment.image_tokens
        prompt["audio_tokens"] += attachment.audio_tokens
        prompt["video_tokens"] += attachment.video_tokens
    # Details list only the modalities that were sent, as the vendor's do; a video's sound
    # track counts as audio.
    if "video" in sent and prompt["audio_tokens"]:
        sent.add("audio")
    prompt_details = {
        key: value
        for key, value in prompt.items()
        if key == "text_tokens" or key.removesuffix("_tokens") in sent
    }
    completion_details = {
        "text_tokens": len(content) + (len(tool_call.argument_pieces) if tool_call else 0)
    }
    if reasoning:
        completion_details["reasoning_tokens"] = len(reasoning)
    if audio:
        seconds = sum(pcm_seconds(token_pcm(token)) for token in content)
        completion_details["audio_tokens"] = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    prompt_tokens = sum(prompt_details.values())
    completion_tokens = sum(completion_details.values())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": completion_details,
    }
