"""Pure functions: a conversation's messages and settings -> the request body the API expects."""

from collections.abc import Iterable
from typing import Any

from .models import Message

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


def message_part(message: Message) -> dict[str, Any] | None:
    """One stored message as an API message, or None when it has nothing to send."""
    if message.role == Message.Role.ASSISTANT:
        if not message.content:
            return None
        return {"role": "assistant", "content": message.content}
    if message.role == Message.Role.USER:
        return {"role": "user", "content": message.content}
    if message.role == Message.Role.SYSTEM:
        return {"role": "system", "content": message.content}
    return None


def build_request(
    history: Iterable[Message], conversation_settings: dict[str, Any], model: str
) -> dict[str, Any]:
    """The request body for the next reply after `history` (oldest first)."""
    messages: list[dict[str, Any]] = []
    system_prompt = (conversation_settings.get("system_prompt") or "").strip()
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for message in history:
        part = message_part(message)
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
