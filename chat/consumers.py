"""The WebSocket a chat page keeps open: it subscribes to its conversation, takes the page's
messages (the quickest way to the model: no new HTTP request) and forwards Stop.

Frames are HTML fragments that htmx's ws extension swaps in by id (out of band), but for a
streaming reply's deltas: those are compact frames the page's script applies (chat/frames.py).
Streamed text is appended, never re-sent: each delta carries the offsets it starts at, and a
page only gets a delta that continues exactly where its copy of the text ends.

A socket lives no longer than the session that opened it: log-out, a password change and the
session's expiry end it at once (close code 4401), and each thing the page asks of it checks
the session first. What the page sends is read strictly: a frame that is not a well-formed
action gets an error frame, and the socket carries on.
"""

import asyncio
import functools
import json
from datetime import datetime

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.db import OperationalError
from django.http import Http404, QueryDict
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.formats import number_format
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import admission, compare, frames, generation, languages, turns
from .forms import ComposerForm
from .live_markdown import normalize
from .models import Conversation, Message
from .rendering import message_html
from .socket_sessions import session_expiry, session_group, user_group

# A frame from the page is at most the composer's longest text, each character escaped as JSON
# can write it (six characters: \u0001), with room for the rest of the action; longer ones are
# refused unread (1009). Daphne refuses frames over 1 MiB before they reach the app.
MAX_FRAME_CHARS = ComposerForm.base_fields["text"].max_length * 6 + 64 * 1024
MAX_ID = 2**63 - 1  # a database id
MAX_STREAMING = 100  # ids a page names as streaming in one sync
MAX_KEYS = 100  # attachment keys in one send (the form says how many it takes)
MAX_KEY_LENGTH = 64
UNREADABLE = gettext_lazy("That message could not be read.")
CONVERSATION_GONE = gettext_lazy("This conversation no longer exists.")
LOGGED_OUT = 4401  # close code: the session ended (the page offers to log in again)
MESSAGE_TOO_BIG = 1009
# A socket checks its session at least this often even when nobody says a word: a password
# changed from the command line reaches no socket of an in-memory channel layer.
RECHECK_SECONDS = 60.0


def too_large() -> str:
    """What a page hears of a frame refused unread, in its language."""
    return _("That message is too large to read (over %(limit)s characters).") % {
        "limit": number_format(MAX_FRAME_CHARS, force_grouping=True)
    }


class UnreadableFrame(Exception):
    pass


def _refuse_constant(name: str):
    raise UnreadableFrame(name)  # NaN, Infinity: not JSON, though Python's parser takes them


def _an_id(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise UnreadableFrame("not an id")
    return value


def _well_formed(text: str) -> str:
    """Text as a browser's form post would send it: lone surrogates (JSON can escape them,
    UTF-8 cannot hold them) become U+FFFD; NUL is left for the form to refuse."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def read_frame(text: str) -> tuple[str, dict]:
    """A frame from the page as (action, its arguments), every field checked; UnreadableFrame
    if it is not one. Fields an action does not use are ignored."""
    try:
        content = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # malformed, too many digits, too deep
        raise UnreadableFrame("not JSON") from error
    if not isinstance(content, dict):
        raise UnreadableFrame("not an object")
    action = content.get("action")
    if action == "sync":
        streaming = content.get("streaming")
        if streaming is None:
            streaming = []
        if not isinstance(streaming, list) or len(streaming) > MAX_STREAMING:
            raise UnreadableFrame("streaming")
        return action, {
            "after": _an_id(content.get("after")),
            "streaming": [_an_id(i) for i in streaming],
        }
    if action in ("send", "compare"):
        text, keys = content.get("text", ""), content.get("attachments")
        if keys is None:
            keys = []
        if not isinstance(text, str) or not isinstance(keys, list) or len(keys) > MAX_KEYS:
            raise UnreadableFrame("send")
        for key in keys:
            # Keys are short printable ASCII: anything else is no key (and NUL or a lone
            # surrogate would reach the database query).
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
                raise UnreadableFrame("attachment key")
            if not (key.isascii() and key.isprintable()):
                raise UnreadableFrame("attachment key")
        if action == "compare":
            columns = content.get("columns")
            if not isinstance(columns, list) or len(columns) > compare.MAX_COLUMNS:
                raise UnreadableFrame("columns")
            if not all(isinstance(column, dict) for column in columns):
                raise UnreadableFrame("column")
            return action, {
                "text": _well_formed(text),
                "attachments": keys,
                "columns": compare.columns_data(columns),
            }
        return action, {"text": _well_formed(text), "attachments": keys}
    if action == "stop":
        return action, {}
    raise UnreadableFrame("no such action")


def _open(user, conversation_id: int, session_key: str | None):
    if not user.is_authenticated:
        return None, None
    conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
    if conversation is None:
        return None, None
    return conversation, session_expiry(session_key, user)


def signed_in(session_key: str | None, user, work, *args):
    """`work(*args)` if the session still signs the user in, in the same trip to a thread;
    LOGGED_OUT if not."""
    if session_expiry(session_key, user) is None:
        return LOGGED_OUT
    return work(*args)


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


def _final_html(message_id: int) -> str:
    """The finished message whole, for a page that did not follow its stream to the end."""
    message = Message.objects.select_related("conversation").filter(pk=message_id).first()
    return message_html(message, "replace") if message is not None else ""


def errors_html(form) -> str:
    return render_to_string("chat/chat.html#composer_errors", {"form": form})


def replace_html(message_id: int, part: str, text: str) -> str:
    return f'<span id="message-{message_id}-{part}" hx-swap-oob="innerHTML">{escape(text)}</span>'


# A streaming reply's answer and reasoning each show their complete Markdown blocks as HTML,
# then the open tail as text (`message-N-text`, `message-N-reasoning`): see live_markdown.
# Blocks go in before the tail's element (deltas do the same: chat/frames.py).
_TAIL = {"text": "message-{}-tail", "reasoning": "message-{}-reasoning"}


def blocks_html(message_id: int, part: str, html: str) -> str:
    """Rendered (sanitised) blocks, after the ones the page holds."""
    target = _TAIL[part].format(message_id)
    return f'<div hx-swap-oob="beforebegin:#{target}">{html}</div>'


def live_region_html(message_id: int, part: str, html: str, tail: str) -> str:
    """Every complete block and the tail, in place of what the page held (a snapshot): the
    same partial as the page's first render."""
    name = "live_text" if part == "text" else "live_reasoning"
    region = render_to_string(
        f"chat/chat.html#{name}",
        {"message_id": message_id, "blocks": mark_safe(html), "tail": tail.lstrip("\n")},
    )
    return f'<div hx-swap-oob="innerHTML:#message-{message_id}-{part}-md">{region}</div>'


async def dispatch_in_turn(sources, dispatch) -> None:
    """Read every source (an async callable returning the next message) and `dispatch` each
    message, one at a time, in the order they arrive; until `dispatch` raises.

    What channels' consumers do (`await_many_dispatch`), at less cost per message: channels
    starts a task and an `asyncio.wait` for every message, and a hundred streams bring two
    thousand a second. Here each source is read by one task for the consumer's life, handing
    over one message at a time, so a source is read no further ahead than channels reads it
    (the layer's capacity still bounds what waits for a slow page).
    """
    inbox: asyncio.Queue = asyncio.Queue(maxsize=1)

    async def read(source) -> None:
        try:
            while True:
                await inbox.put((await source(), None))
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the dispatching loop
            await inbox.put((None, error))

    readers = [asyncio.create_task(read(source)) for source in sources]
    try:
        while True:
            message, error = await inbox.get()
            if error is not None:
                raise error
            await dispatch(message)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: tuple[str, ...] = ()
    ended = False  # the session ended: the socket is closing
    recheck: asyncio.Task | None = None  # the next look at the session

    async def __call__(self, scope, receive, send) -> None:
        # As channels' AsyncConsumer.__call__, with `dispatch_in_turn` in place of its loop.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        try:
            await dispatch_in_turn([receive, self.channel_receive], self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels tidies the database connections (`aclose_old_connections`, a trip to a
        # worker thread) before every event. Frames from the channel layer only forward text
        # (a gap asks the job for a snapshot: a layer send, not a query), and what the page
        # sends queries through `database_sync_to_async`, which tidies in the same trip; so
        # only connecting and disconnecting take channels' way. A message sent reaches the
        # model one trip sooner.
        if message["type"] in ("websocket.connect", "websocket.disconnect"):
            await super().dispatch(message)
        elif self.ended:
            return  # the session ended: nothing more reaches the page
        else:
            await getattr(self, get_handler_name(message))(message)

    async def connect(self) -> None:
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.conversation, expires = await database_sync_to_async(_open)(
            self.scope["user"], conversation_id, self.session_key
        )
        if self.conversation is None or expires is None:
            await self.close()  # before accept: the handshake is refused, nothing is revealed
            return
        self.group = generation.conversation_group(self.conversation.pk)
        await self.begin(
            (self.group, session_group(self.session_key), user_group(self.scope["user"].pk)),
            expires,
        )

    async def begin(self, groups: tuple[str, ...], expires: datetime) -> None:
        """Accept the socket, holding no text yet, subscribed to `groups`; the session is
        checked again when it expires."""
        # Per streaming message: text lengths (answer, reasoning) and block counts the page
        # holds; absent = not synced.
        self.offsets: dict[int, tuple[int, int, int, int]] = {}
        self.last_seen = 0
        self.groups_joined = groups
        # What this socket renders, and the jobs it starts, speak its page's language.
        translation.activate(languages.of_scope(self.scope))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        generation.ensure_sweeper()
        self.recheck_at(expires)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.recheck:
            self.recheck.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    # The session

    def recheck_at(self, expires: datetime) -> None:
        """Check the session again when it expires, or in RECHECK_SECONDS if sooner."""
        if self.recheck:
            self.recheck.cancel()
        wait = min((expires - timezone.now()).total_seconds(), RECHECK_SECONDS)
        self.recheck = asyncio.create_task(self._recheck_after(max(wait, 0) + 0.05))

    async def _recheck_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        # Through the layer, so the check runs among this consumer's own events.
        await self.channel_layer.send(self.channel_name, {"type": "session.recheck"})

    async def logged_out(self) -> None:
        """The session ended: no more frames, and the page is told why (it offers to log in)."""
        if self.ended:
            return
        self.ended = True
        if self.recheck:
            self.recheck.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.close(code=LOGGED_OUT, reason="Logged out")

    async def session_end(self, event: dict) -> None:
        await self.logged_out()

    async def session_recheck(self, event: dict) -> None:
        if self.ended:
            return
        expires = await database_sync_to_async(session_expiry)(self.session_key, self.scope["user"])
        if expires is None:
            await self.logged_out()
        else:
            self.recheck_at(expires)

    # What the page sends

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self.ended:
            return
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_CHARS:
            await self.send_json({"type": "error", "message": too_large()})
            await self.close(code=MESSAGE_TOO_BIG, reason="Message too large")
            return
        try:
            if text_data is None:
                raise UnreadableFrame("binary")
            action, args = read_frame(text_data)
        except UnreadableFrame:
            await self.send_json({"type": "error", "message": str(UNREADABLE)})
            return
        if action == "sync":
            await self.sync(**args)
        elif action == "send":
            await self.send_turn(**args)
        elif action == "compare":
            await self.compare(**args)
        else:
            await self.stop()

    async def sync(self, after: int, streaming: list[int]) -> None:
        """Bring the page up to date: messages it lacks, then live text of streaming ones."""
        self.last_seen = max(self.last_seen, after)
        state = await database_sync_to_async(signed_in)(
            self.session_key,
            self.scope["user"],
            _sync_state,
            self.conversation,
            self.last_seen,
            streaming,
        )
        if state == LOGGED_OUT:
            await self.logged_out()
            return
        new, finished, streaming = state
        for message in new:
            await self.send_message(message)
        for message in finished:
            html = await database_sync_to_async(message_html)(message, "replace")
            await self.send(text_data=html)
        for message_id in streaming:
            self.offsets.pop(message_id, None)  # deltas wait for the snapshot
            await generation.request_snapshot(message_id, self.channel_name)

    async def send_turn(self, text: str, attachments: list[str]) -> None:
        """A message from the page's composer, taken as the form post would take it. The page
        hears `sent` (and the new messages, as every page does), `refused` with the reasons in
        place, or `busy` (no turn slot freed in time: chat/admission.py) with the seconds to
        wait before trying again; its text stays in the composer until then."""
        try:
            async with admission.turn_slot():
                turn = await self._take_turn(text, attachments)
        except (admission.Busy, OperationalError) as error:
            if (retry_after := admission.busy_retry_after(error)) is None:
                raise
            await self.send_json({"type": "busy", "retry_after": retry_after})
            return
        if turn is None:
            return
        # The slot is free again: starting the job needs no database.
        conversation, messages, payload, everything = turn
        await generation.start(
            messages[-1], payload, turns.announce(conversation, messages, everything)
        )
        await self.send_json({"type": "sent"})

    async def _take_turn(self, text: str, attachments: list[str]):
        """The saved turn, as `turns.take_turn` gives it; None once the page has been told
        why not (refused, or logged out)."""
        data = QueryDict(mutable=True)
        data["text"] = text
        data.setlist("attachments", attachments)
        try:
            taken = await database_sync_to_async(signed_in)(
                self.session_key,
                self.scope["user"],
                turns.take_turn,
                self.scope["user"],
                self.conversation.pk,
                data,
            )
            if taken == LOGGED_OUT:
                await self.logged_out()
                return None
            form, turn = taken
        except Http404:  # deleted meanwhile, from another tab
            form, turn = ComposerForm(data, user=self.scope["user"]), None
            await database_sync_to_async(form.is_valid)()
            form.add_error(None, CONVERSATION_GONE)
        if turn is None:
            html = await database_sync_to_async(errors_html)(form)
            await self.send_json({"type": "refused", "html": html})
        return turn

    async def compare(self, text: str, attachments: list[str], columns: QueryDict) -> None:
        """The composer's message to every column (chat/compare.py), answered as `send_turn`
        answers: `sent`, `refused` with the reasons, or `busy`."""
        data = columns.copy()
        data["text"] = text
        data.setlist("attachments", attachments)
        try:
            async with admission.turn_slot():
                taken = await database_sync_to_async(signed_in)(
                    self.session_key,
                    self.scope["user"],
                    compare.take_comparison,
                    self.scope["user"],
                    self.conversation.pk,
                    data,
                )
        except (admission.Busy, OperationalError) as error:
            if (retry_after := admission.busy_retry_after(error)) is None:
                raise
            await self.send_json({"type": "busy", "retry_after": retry_after})
            return
        except Http404:  # deleted meanwhile, from another tab
            taken = ([CONVERSATION_GONE], None)
        if taken == LOGGED_OUT:
            await self.logged_out()
            return
        reasons, comparison = taken
        if comparison is None:
            html = await database_sync_to_async(compare.refusal_html)(reasons)
            await self.send_json({"type": "refused", "html": html})
            return
        await compare.start(comparison)
        await self.send_json({"type": "sent"})

    async def send_message(self, message: Message) -> None:
        html = await database_sync_to_async(message_html)(message, "append")
        self.last_seen = max(self.last_seen, message.pk)
        if message.status == Message.Status.STREAMING:
            self.offsets.pop(message.pk, None)
        await self.send(text_data=html)

    async def stop(self) -> None:
        if await database_sync_to_async(session_expiry)(self.session_key, self.scope["user"]):
            await generation.stop_conversation(self.conversation.pk)
        else:
            await self.logged_out()

    # Frames from the channel layer

    async def message_insert(self, event: dict) -> None:
        """A new message in this conversation (sent from this tab, another, or another process)."""
        if event["message"] <= self.last_seen:
            return
        self.last_seen = event["message"]
        if event.get("streaming"):
            self.offsets[event["message"]] = (0, 0, 0, 0)
        await self.send(text_data=event["html"])

    async def stream_delta(self, event: dict) -> None:
        message_id = event["message"]
        held = self.offsets.get(message_id)
        if held is None:
            return
        content_len, reasoning_len, content_blocks, reasoning_blocks = held
        content_at, reasoning_at = event["content_at"], event["reasoning_at"]
        content_blocks_at = event.get("content_blocks_at", content_blocks)
        reasoning_blocks_at = event.get("reasoning_blocks_at", reasoning_blocks)
        if (
            content_at > content_len
            or reasoning_at > reasoning_len
            or content_blocks_at > content_blocks
            or reasoning_blocks_at > reasoning_blocks
        ):
            # A frame went missing: rather than show text with a hole, start again from the
            # job's whole text so far.
            self.offsets.pop(message_id, None)
            await generation.request_snapshot(message_id, self.channel_name)
            return
        new_blocks = (len(event.get("content_blocks", ())), len(event.get("reasoning_blocks", ())))
        if (content_at, reasoning_at, content_blocks_at, reasoning_blocks_at) == held:
            # The page holds the text up to where the frame starts: the job's frame as it is.
            page = event["page"]
            content_blocks += new_blocks[0]
            reasoning_blocks += new_blocks[1]
            content_len += len(event["content"])
            reasoning_len += len(event["reasoning"])
        else:
            # A snapshot gave the page part of this frame already: only the rest.
            parts = {}
            counts = []
            for name, held_len, held_blocks, added in (
                ("content", content_len, content_blocks, new_blocks[0]),
                ("reasoning", reasoning_len, reasoning_blocks, new_blocks[1]),
            ):
                text, at = event[name], event[f"{name}_at"]
                if text and at + len(text) > held_len:
                    parts[name] = normalize(text[held_len - at :])
                    held_len = at + len(text)
                blocks_at = event.get(f"{name}_blocks_at", 0)
                if added and blocks_at + added > held_blocks:
                    # Blocks the text showed complete take their source from the tail.
                    parts[f"{name}_blocks"] = "".join(
                        event[f"{name}_blocks"][held_blocks - blocks_at :]
                    )
                    held_blocks = blocks_at + added
                counts.append((held_len, held_blocks))
            (content_len, content_blocks), (reasoning_len, reasoning_blocks) = counts
            page = frames.delta_frame(
                message_id,
                text=parts.get("content", ""),
                blocks=parts.get("content_blocks"),
                tail=event.get("content_tail", ""),
                reasoning=parts.get("reasoning", ""),
                reasoning_blocks=parts.get("reasoning_blocks"),
                reasoning_tail=event.get("reasoning_tail", ""),
            )
        self.offsets[message_id] = (content_len, reasoning_len, content_blocks, reasoning_blocks)
        if page:
            await self.send(text_data=page)
        if event.get("audio"):
            # Speech is played, not shown (static/chat/speech.js).
            await self.send(text_data=event["audio"])

    async def stream_snapshot(self, event: dict) -> None:
        message_id = event["message"]
        content, reasoning = event["content"], event["reasoning"]
        self.offsets[message_id] = (
            len(content),
            len(reasoning),
            event.get("content_blocks", 0),
            event.get("reasoning_blocks", 0),
        )
        # The raw text first, as the tail's element takes it; then the rendered region in
        # its place (one frame: the page shows only the second).
        await self.send(
            text_data=replace_html(message_id, "text", content)
            + replace_html(message_id, "reasoning", reasoning)
            + live_region_html(
                message_id,
                "text",
                event.get("content_html", ""),
                event.get("content_tail", content),
            )
            + live_region_html(
                message_id,
                "reasoning",
                event.get("reasoning_html", ""),
                event.get("reasoning_tail", reasoning),
            )
        )

    async def transcript_replace(self, event: dict) -> None:
        """The conversation shows another path (a branch switched, a reply regenerated, a
        message edited or deleted): the whole transcript, then live text of what streams."""
        self.last_seen = max(self.last_seen, event["last"])
        await self.send(text_data=event["html"])
        for message_id in event["streaming"]:
            self.offsets.pop(message_id, None)
            await generation.request_snapshot(message_id, self.channel_name)

    async def comparison_summary(self, event: dict) -> None:
        """Every column of a comparison finished (chat/compare.py): its summary row."""
        await self.send(text_data=event["html"])

    async def conversation_retitled(self, event: dict) -> None:
        """The conversation got its title (chat/titles.py): the header and the list show it."""
        await self.send(text_data=event["html"])

    async def message_final(self, event: dict) -> None:
        message_id = event["message"]
        held = self.offsets.pop(message_id, None)
        if (
            held is not None
            and "kept_html" in event
            and held[2] == event["content_blocks_at"]
            and held[3] == event["reasoning_blocks_at"]
        ):
            # The page holds every block but the last ones: those in place of the tail, then
            # the finished message around the content the page keeps.
            parts = []
            for part, name in (("text", "content"), ("reasoning", "reasoning")):
                parts.append(blocks_html(message_id, part, "".join(event[f"{name}_blocks"])))
                parts.append(f'<div hx-swap-oob="delete:#{_TAIL[part].format(message_id)}"></div>')
            await self.send(text_data="".join(parts) + event["kept_html"])
            return
        html = event.get("html")
        if html is None:  # the job rendered it only for the pages that followed the stream
            html = await database_sync_to_async(_final_html)(message_id)
        if html:
            await self.send(text_data=html)
