"""The WebSocket a chat page keeps open: it subscribes to its conversation, takes the page's
messages (the quickest way to the model: no new HTTP request) and forwards Stop.

Frames are HTML fragments that htmx's ws extension swaps in by id (out of band). Streamed text
is appended, never re-sent: each delta frame carries the offsets it starts at, and a page only
gets a delta that continues exactly where its copy of the text ends.
"""

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404, QueryDict
from django.template.loader import render_to_string
from django.utils.html import escape

from . import generation, turns
from .forms import ComposerForm
from .models import Conversation, Message
from .rendering import message_html


def _load_conversation(user, conversation_id: int) -> Conversation | None:
    if not user.is_authenticated:
        return None
    return Conversation.objects.filter(pk=conversation_id, owner=user).first()


def _sync_state(
    conversation: Conversation, after: int, shown_streaming: list[int]
) -> tuple[list[Message], list[Message], list[int]]:
    """What a page lacks: messages after `after`, those it shows as streaming that have since
    finished, and the ids still streaming (whose live text it must ask the job for)."""
    new = list(conversation.messages.filter(pk__gt=after))
    finished = list(
        conversation.messages.filter(pk__in=shown_streaming, pk__lte=after).exclude(
            status=Message.Status.STREAMING
        )
    )
    streaming = list(
        conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    return new, finished, streaming


def _errors_html(form) -> str:
    return render_to_string("chat/chat.html#composer_errors", {"form": form})


def append_html(message_id: int, part: str, text: str) -> str:
    return f'<span id="message-{message_id}-{part}" hx-swap-oob="beforeend">{escape(text)}</span>'


def replace_html(message_id: int, part: str, text: str) -> str:
    return f'<span id="message-{message_id}-{part}" hx-swap-oob="innerHTML">{escape(text)}</span>'


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        # Channels tidies the database connections (`aclose_old_connections`, a trip to a
        # worker thread) before every event. Frames from the channel layer only forward text
        # (a gap asks the job for a snapshot: a layer send, not a query), and what the page
        # sends queries through `database_sync_to_async`, which tidies in the same trip; so
        # only connecting and disconnecting take channels' way. A message sent reaches the
        # model one trip sooner.
        if message["type"] in ("websocket.connect", "websocket.disconnect"):
            await super().dispatch(message)
        else:
            await getattr(self, get_handler_name(message))(message)

    async def connect(self) -> None:
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await database_sync_to_async(_load_conversation)(
            self.scope["user"], conversation_id
        )
        if self.conversation is None:
            await self.close()  # before accept: the handshake is refused, nothing is revealed
            return
        self.group = generation.conversation_group(self.conversation.pk)
        # message id -> (content length, reasoning length) this page holds; absent = not synced.
        self.offsets: dict[int, tuple[int, int]] = {}
        self.last_seen = 0
        await self.channel_layer.group_add(self.group, self.channel_name)
        generation.ensure_sweeper()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs) -> None:
        action = content.get("action")
        if action == "sync":
            await self.sync(content.get("after"), content.get("streaming"))
        elif action == "send":
            await self.send_turn(content.get("text"), content.get("attachments"))
        elif action == "stop":
            await self.stop()

    async def sync(self, after: object, shown_streaming: object) -> None:
        """Bring the page up to date: messages it lacks, then live text of streaming ones."""
        try:
            after_id = max(int(after), 0)
            shown = [int(i) for i in shown_streaming or []][:100]
        except (TypeError, ValueError):
            return
        self.last_seen = max(self.last_seen, after_id)
        new, finished, streaming = await database_sync_to_async(_sync_state)(
            self.conversation, self.last_seen, shown
        )
        for message in new:
            await self.send_message(message)
        for message in finished:
            html = await database_sync_to_async(message_html)(message, "replace")
            await self.send(text_data=html)
        for message_id in streaming:
            self.offsets.pop(message_id, None)  # deltas wait for the snapshot
            await generation.request_snapshot(message_id, self.channel_name)

    async def send_turn(self, text: object, attachments: object) -> None:
        """A message from the page's composer, taken as the form post would take it. The page
        hears `sent` (and the new messages, as every page does), or `refused` with the reasons
        in place; its text stays in the composer until then."""
        data = QueryDict(mutable=True)
        data["text"] = text if isinstance(text, str) else ""
        keys = attachments if isinstance(attachments, list) else []
        data.setlist("attachments", [str(key) for key in keys[:100]])
        try:
            form, turn = await database_sync_to_async(turns.take_turn)(
                self.scope["user"], self.conversation.pk, data
            )
        except Http404:  # deleted meanwhile, from another tab
            form, turn = ComposerForm(data, user=self.scope["user"]), None
            await database_sync_to_async(form.is_valid)()
            form.add_error(None, "This conversation no longer exists.")
        if turn is None:
            html = await database_sync_to_async(_errors_html)(form)
            await self.send_json({"type": "refused", "html": html})
            return
        conversation, messages, payload, frames = turn
        await generation.start(messages[-1], payload, turns.announce(conversation, frames))
        await self.send_json({"type": "sent"})

    async def send_message(self, message: Message) -> None:
        html = await database_sync_to_async(message_html)(message, "append")
        self.last_seen = max(self.last_seen, message.pk)
        if message.status == Message.Status.STREAMING:
            self.offsets.pop(message.pk, None)
        await self.send(text_data=html)

    async def stop(self) -> None:
        await generation.stop_conversation(self.conversation.pk)

    # Frames from the channel layer

    async def message_insert(self, event: dict) -> None:
        """A new message in this conversation (sent from this tab, another, or another process)."""
        if event["message"] <= self.last_seen:
            return
        self.last_seen = event["message"]
        if event.get("streaming"):
            self.offsets[event["message"]] = (0, 0)
        await self.send(text_data=event["html"])

    async def stream_delta(self, event: dict) -> None:
        message_id = event["message"]
        held = self.offsets.get(message_id)
        if held is None:
            return
        content_len, reasoning_len = held
        if event["content_at"] > content_len or event["reasoning_at"] > reasoning_len:
            # A frame went missing: rather than show text with a hole, start again from the
            # job's whole text so far.
            self.offsets.pop(message_id, None)
            await generation.request_snapshot(message_id, self.channel_name)
            return
        parts = []
        content, content_at = event["content"], event["content_at"]
        if content and content_at + len(content) > content_len and content_at <= content_len:
            tail = content[content_len - content_at :]
            parts.append(append_html(message_id, "text", tail))
            content_len += len(tail)
        reasoning, reasoning_at = event["reasoning"], event["reasoning_at"]
        if (
            reasoning
            and reasoning_at + len(reasoning) > reasoning_len
            and reasoning_at <= reasoning_len
        ):
            tail = reasoning[reasoning_len - reasoning_at :]
            parts.append(append_html(message_id, "reasoning", tail))
            reasoning_len += len(tail)
        self.offsets[message_id] = (content_len, reasoning_len)
        if parts:
            await self.send(text_data="".join(parts))
        if event.get("audio"):
            # Speech is played, not shown: the page's script takes JSON frames before htmx does.
            await self.send_json({"type": "audio", "message": message_id, "pcm": event["audio"]})

    async def stream_snapshot(self, event: dict) -> None:
        message_id = event["message"]
        content, reasoning = event["content"], event["reasoning"]
        self.offsets[message_id] = (len(content), len(reasoning))
        await self.send(
            text_data=replace_html(message_id, "text", content)
            + replace_html(message_id, "reasoning", reasoning)
        )

    async def transcript_replace(self, event: dict) -> None:
        """The conversation shows another path (a branch switched, a reply regenerated, a
        message edited or deleted): the whole transcript, then live text of what streams."""
        self.last_seen = max(self.last_seen, event["last"])
        await self.send(text_data=event["html"])
        for message_id in event["streaming"]:
            self.offsets.pop(message_id, None)
            await generation.request_snapshot(message_id, self.channel_name)

    async def message_final(self, event: dict) -> None:
        self.offsets.pop(event["message"], None)
        await self.send(text_data=event["html"])
