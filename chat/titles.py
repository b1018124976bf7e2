"""A conversation's title, asked of the model after its first reply.

Until then a conversation is titled with the start of its first message (`title_from_text`).
Once the first reply completes, a second small request asks the model for a title of a few
words; it replaces that provisional title only if nobody renamed the conversation meanwhile
(the update is conditional on the title still being the provisional one, so a rename always
wins). The open pages are told, so the header and the list change at once. A failed request
changes nothing and is only logged as a warning: the provisional title is a fine title.
"""

import asyncio
import contextvars
import logging
import re

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import translation
from django.utils.html import format_html

from . import upstream
from .models import Conversation, Message, title_from_text

log = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title of 3 to 6 words for a conversation that starts with the user's message "
    "below. Reply with the title only: no quotes, no full stop, no explanation."
)
MAX_TOKENS = 24
MAX_SOURCE_CHARS = 2000  # of the first message: enough to tell what it is about
MAX_TITLE_CHARS = 80
TITLE_SECONDS = 30
DIRECTIVE = re.compile(r"\[sim:[^\]]*\]")
PREFIX = re.compile(r"^(title|titre|titel)\s*[:：]\s*", re.IGNORECASE)
QUOTES = "\"'“”‘’«»`*#"

# Running title requests, kept referenced so the event loop does not drop them.
_tasks: set[asyncio.Task] = set()


def strip_directives(text: str) -> str:
    return " ".join(DIRECTIVE.sub(" ", text).split())


def clean_title(text: str) -> str:
    """The model's answer as a title: one line, no directives, quotes, "Title:" or full stop;
    "" when nothing usable is left. Pure."""
    lines = [line for line in strip_directives_lines(text) if line]
    if not lines:
        return ""
    title = PREFIX.sub("", lines[0]).strip().strip(QUOTES).strip()
    title = title.rstrip(".。!！ ").strip(QUOTES).strip()
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return title


def strip_directives_lines(text: str) -> list[str]:
    return [strip_directives(line) for line in text.splitlines()]


def title_request(model: str, first_text: str) -> dict:
    """The body of the title request. Pure."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": strip_directives(first_text)[:MAX_SOURCE_CHARS]},
        ],
        "max_tokens": MAX_TOKENS,
    }


async def after_reply(message_id: int, status: str) -> None:
    """Called when a reply is saved: if it is a conversation's first complete reply and its
    title is still the provisional one, ask for a title in the background."""
    if status != Message.Status.COMPLETE or not settings.PLAYGROUND_AUTO_TITLES:
        return
    # A fresh context, as the reply's job has, in the same language (its provisional title,
    # "New chat", was written in it).
    context = contextvars.Context()
    context.run(translation.activate, translation.get_language() or settings.LANGUAGE_CODE)
    task = asyncio.get_running_loop().create_task(retitle(message_id), context=context)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _candidate(message_id: int) -> tuple[int, str, dict] | None:
    """(conversation id, its provisional title, the title request), or None if this reply
    does not call for one."""
    reply = (
        Message.objects.select_related("conversation", "parent")
        .filter(pk=message_id, role=Message.Role.ASSISTANT)
        .first()
    )
    if reply is None or reply.parent is None or reply.parent.role != Message.Role.USER:
        return None
    conversation = reply.conversation
    earlier = conversation.messages.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE
    ).exclude(pk=reply.pk)
    if earlier.exists():
        return None
    first = reply.parent
    # The attachments' names stand in for a message without text (as title_from_text did).
    source = first.content or " ".join(first.attachments.values_list("original_name", flat=True))
    provisional = title_from_text(source)
    if conversation.title not in (provisional, title_from_text(first.content), ""):
        return None  # renamed (or imported with a title of its own)
    if not strip_directives(source):
        return None
    return conversation.pk, conversation.title, title_request(reply.model, source)


def _save(conversation_id: int, provisional: str, title: str) -> Conversation | None:
    changed = Conversation.objects.filter(pk=conversation_id, title=provisional).update(title=title)
    return Conversation.objects.get(pk=conversation_id) if changed else None


async def retitle(message_id: int) -> str | None:
    """Ask for and save the title after `message_id`; the title saved, or None."""
    try:
        candidate = await database_sync_to_async(_candidate)(message_id)
        if candidate is None:
            return None
        conversation_id, provisional, body = candidate
        parts = []
        async with asyncio.timeout(TITLE_SECONDS):
            async for event in upstream.stream_chat(body):
                if event.index == 0:
                    parts.append(event.content)
        title = clean_title("".join(parts))
        if not title or title == provisional:
            return None
        conversation = await database_sync_to_async(_save)(conversation_id, provisional, title)
        if conversation is None:
            return None  # renamed while the title was asked for
        await get_channel_layer().group_send(
            conversation.group_name,
            {"type": "conversation.retitled", "html": title_frame(conversation)},
        )
        return title
    except upstream.UpstreamError as exc:
        log.warning("no title for the conversation of message %s: %s", message_id, exc)
    except TimeoutError:
        log.warning("no title for the conversation of message %s: it took too long", message_id)
    except Exception:
        log.warning("no title for the conversation of message %s", message_id, exc_info=True)
    return None


def title_frame(conversation: Conversation) -> str:
    """Out-of-band swaps for the open pages: the header's title, the list's link (unless it
    carries a pin mark) and the rename box."""
    link = f"#conversation-list a.conversation-link[href='{conversation.get_absolute_url()}']"
    swaps = [
        format_html(
            '<span hx-swap-oob="innerHTML:#conversation-title">{}</span>', conversation.title
        )
    ]
    if not conversation.pinned:
        swaps.append(
            format_html('<span hx-swap-oob="innerHTML:{}">{}</span>', link, conversation.title)
        )
    swaps.append(
        format_html(
            '<input hx-swap-oob="outerHTML:#rename-title" id="rename-title" name="title" '
            'value="{}" maxlength="200" data-testid="rename-input">',
            conversation.title,
        )
    )
    return "".join(swaps)
