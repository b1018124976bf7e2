"""The simulator's words: a deterministic Markdown report of the request, and its "reasoning".

The reply restates what arrived (model, messages, settings, measured attachments) so a person
or a test reading it can tell exactly what the app sent. It is Markdown with a list and a fenced
block so the app's renderer is exercised by every simulated turn.
"""

import json
import re
from collections import Counter
from typing import Any

from .directives import HELP, strip_directives
from .media import Attachment

# Keys that every request carries; the rest are "settings" worth reporting.
STRUCTURAL_KEYS = ("model", "messages", "stream", "stream_options")
QUOTE_CHARS = 200
FILLER = "The quick brown fox jumps over the lazy dog while the simulator streams filler text."
FILLER_WORDS_PER_PARAGRAPH = 48

_TOKEN = re.compile(r"\S+\s*|\s+")
# A request whose system prompt starts so asks for a conversation's title (chat/titles.py):
# the simulator answers with the first TITLE_WORDS words of the user's text.
TITLE_PROMPT_START = "Write a title of 3 to 6 words"
TITLE_WORDS = 5


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that keep their trailing whitespace, so they join back to `text`."""
    return _TOKEN.findall(text)


def filler_tokens(count: int) -> list[str]:
    """Exactly `count` tokens of filler prose in paragraphs, for long streams and benchmarks."""
    words = FILLER.split()
    tokens = []
    for n in range(count):
        end_of_paragraph = (n + 1) % FILLER_WORDS_PER_PARAGRAPH == 0 and n + 1 < count
        tokens.append(words[n % len(words)] + ("\n\n" if end_of_paragraph else " "))
    if tokens:
        tokens[-1] = tokens[-1].rstrip()
    return tokens


def message_text(message: dict[str, Any]) -> str:
    """The text of a message, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p.get("text", "")) for p in texts)
    return ""


def last_user_message(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((m for m in reversed(messages) if m.get("role") == "user"), None)


def settings_of(body: dict[str, Any]) -> dict[str, Any]:
    """The request's settings; tools shrink to their names, their schemas would drown the reply."""
    settings = {k: v for k, v in body.items() if k not in STRUCTURAL_KEYS}
    if isinstance(settings.get("tools"), list):
        settings["tools"] = [
            t.get("function", {}).get("name", "?") for t in settings["tools"] if isinstance(t, dict)
        ]
    return settings


def quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > QUOTE_CHARS:
        flat = flat[: QUOTE_CHARS - 1] + "…"
    return f"“{flat}”" if flat else "(no text)"


def heard(attachments: list[Attachment], text: str) -> str | None:
    """A short spoken answer to a message that is only a recording (a call's utterance), so a
    call's loop stays quick offline: what the simulator heard, and for how long. None for any
    other message (it gets the full report)."""
    sounds = [a for a in attachments if a.has_audio and a.seconds is not None]
    if text.strip() or not sounds or len(sounds) != len(attachments):
        return None
    seconds = sum(a.seconds for a in sounds)
    saw = " and saw you" if any(a.kind == "video" for a in sounds) else ""
    return f"Offline simulator: I heard {seconds:.1f} seconds of audio{saw}. Say something else."


def compose_reply(
    body: dict[str, Any],
    attachments: list[Attachment],
    *,
    show_help: bool = False,
    tool_asked_without_tools: bool = False,
) -> str:
    messages = body["messages"]
    roles = Counter(m.get("role", "?") for m in messages)
    breakdown = ", ".join(f"{count} {role}" for role, count in roles.items())
    last = last_user_message(messages)
    lines = [
        "**Offline simulator**: this reply comes from the playground's built-in simulator, "
        "not a model. It reports what it received.",
        "",
        f"- Model: `{body['model']}`",
        f"- Messages: {len(messages)} ({breakdown})",
        f"- Last user message: {quote(message_text(last)) if last else '(none)'}",
    ]
    if attachments:
        lines.append(f"- Attachments: {len(attachments)}")
        lines += [f"  - {a.summary}" for a in attachments]
    else:
        lines.append("- Attachments: none")
    if messages[-1].get("role") == "tool":
        result = messages[-1]
        lines.append(
            f"- Tool result for `{result.get('tool_call_id')}`: {quote(result['content'])}"
        )
    if tool_asked_without_tools:
        lines.append("- `[sim:tool]` was asked for, but the request sent no tools")
    if show_help:
        lines.append("- Directives, anywhere in the last user message:")
        lines += [f"  - `{marker}` {meaning}" for marker, meaning in HELP]
    settings = settings_of(body)
    lines += [
        "",
        "Settings sent (everything but model, messages, stream and stream_options):",
        "",
        "```json",
        json.dumps(settings, indent=2, ensure_ascii=False, sort_keys=True),
        "```",
        "",
        "Send `[sim:help]` to list the directives that make the simulator fail on purpose.",
    ]
    return "\n".join(lines)


def compose_reasoning(
    body: dict[str, Any], attachments: list[Attachment], tool_name: str | None = None
) -> str:
    messages = body["messages"]
    last = last_user_message(messages)
    text = message_text(last) if last else ""
    kinds = ", ".join(a.kind for a in attachments)
    kinds = f"attachments: {kinds}" if kinds else "no attachments"
    plural = "" if len(messages) == 1 else "s"
    names = ", ".join(sorted(settings_of(body))) or "no settings"
    return (
        f"The request asks {body['model']} to continue a conversation of {len(messages)} "
        f"message{plural}. The last user message has {len(text)} characters of text and {kinds}. "
        f"The settings present are: {names}. I am the offline simulator, so instead of "
        "thinking I restate the request. Next, "
        + (
            f"I will call the tool {tool_name} with example arguments."
            if tool_name
            else "I will write the report as a short Markdown list."
        )
    )


def is_title_request(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    first = messages[0] if messages else {}
    return first.get("role") == "system" and message_text(first).startswith(TITLE_PROMPT_START)


def compose_title(body: dict[str, Any]) -> str:
    """The title of a title request: the first words of the user's text, directives left out."""
    last = last_user_message(body["messages"])
    words = strip_directives(message_text(last) if last else "").split()
    return " ".join(words[:TITLE_WORDS]).rstrip(".,;:!?") or "Untitled chat"
