"""The socket of the empty new-chat page: open while the first message is typed, so that message
reaches the model as quickly as in an open chat (no form post, no page load, no socket to open
after it).

Until then the socket belongs to no conversation. Its first message taken creates one (as the
form post would), and the socket becomes that conversation's, as if it had connected to it:
it joins the conversation's group before the new messages are announced, so none is missed.
The page hears `created` (the conversation's id, address, title and socket), the composer of
the conversation's page (it sends there, and has Stop) and `sent`, then the messages and the
reply as any page of the conversation does. The other parts of the page that name the
conversation (header, conversation list, settings panel) follow the reply's first text, or
PARTS_WAIT_SECONDS if that is sooner: rendering them, and the page swapping
them in, would otherwise hold the first token back. With them in, the page pushes the address
(static/chat/chat.js). A socket creates one conversation at most: what it is sent after that
goes to it.

The session checks, the frame limits and the origin check are the conversation socket's
(chat/consumers.py, playground/origins.py).
"""

import asyncio

from channels.db import database_sync_to_async
from django.db import OperationalError
from django.http import HttpRequest, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.template.loader import render_to_string

from . import admission, compare, generation, turns
from .consumers import LOGGED_OUT, ConversationConsumer, errors_html, signed_in
from .conversations import sidebar
from .forms import ComposerForm
from .models import Conversation
from .settings_form import KNOWN_VOICES
from .socket_sessions import session_expiry, session_group, user_group

# The longest the parts of the page wait for the reply's first text (see above), and how long
# after that text they go: time for the page to paint it first (a frame or two).
PARTS_WAIT_SECONDS = 0.3
PAINT_SECONDS = 0.05


def socket_path(conversation: Conversation) -> str:
    """Where a page opens the conversation's socket (chat/routing.py)."""
    return f"/ws/conversations/{conversation.pk}/"


def created_frame(conversation: Conversation) -> dict:
    """What the page needs first: where the conversation now lives, and its title."""
    return {
        "type": "created",
        "id": conversation.pk,
        "url": conversation.get_absolute_url(),
        "socket": socket_path(conversation),
        "title": conversation.title,
    }


def page_request(scope: dict) -> HttpRequest:
    """A request standing for the page, to render its parts as the page's own view would: the
    person, the session, and the page's CSRF secret (from its cookie), so forms in the parts
    carry a token that matches."""
    request = HttpRequest()
    request.method = "GET"
    request.user = scope["user"]
    request.session = scope.get("session")
    request.COOKIES = dict(scope.get("cookies") or {})
    CsrfViewMiddleware(lambda r: None).process_request(request)
    return request


def composer_html(scope: dict, conversation: Conversation, columns: QueryDict | None = None) -> str:
    """The composer of the conversation's page: it sends to the conversation, and has Stop;
    `columns`: compare's columns as they were sent, still set up (without, the page's Compare
    button brings them with the page)."""
    context = {"conversation": conversation, "form": ComposerForm()}
    if columns is not None:
        presets = compare.presets_of(scope["user"])
        formset = compare.ColumnFormSet(columns, presets=presets)
        context["setup"] = compare.setup(presets, None, formset)
    return render_to_string("chat/chat.html#composer", context, request=page_request(scope))


def first_turn(user, data: QueryDict, scope: dict):
    """`turns.take_turn` for a new conversation and, if it was taken, its page's composer: the
    page needs that at once (Stop), and it costs less than another trip to a thread."""
    form, turn = turns.take_turn(user, None, data)
    composer = composer_html(scope, turn[0]) if turn is not None else ""
    return form, turn, composer


def first_comparison(user, data: QueryDict, scope: dict):
    """`compare.take_comparison` for a new conversation and, if it was taken, its page's
    composer with the columns still set up."""
    reasons, taken = compare.take_comparison(user, None, data)
    composer = composer_html(scope, taken.conversation, data) if taken is not None else ""
    return reasons, taken, composer


def page_parts(scope: dict, conversation: Conversation, comparing: bool = False) -> str:
    """The other parts of the chat page that differ between a new chat and its conversation,
    each swapped in by its id: the header (title, the conversation's menu, share), the
    conversation list (with this one in it) and the settings panel (saving to it)."""
    from .views import SIDEBAR_SIZE, settings_form_for, usage_totals

    request = page_request(scope)
    user = scope["user"]
    context = {
        "conversation": conversation,
        "groups": sidebar(user, SIDEBAR_SIZE),
        "totals": usage_totals([]),
        "settings_form": settings_form_for(user, conversation),
        "presets": user.presets.all(),
        "known_voices": KNOWN_VOICES,
        "setup": compare.setup({}, compare.MIN_COLUMNS if comparing else None),  # its button
    }
    return "".join(
        render_to_string(name, context, request=request)
        for name in ("chat/chat.html#topbar", "chat/sidebar.html#list", "chat/settings.html#panel")
    )


class NewChatConsumer(ConversationConsumer):
    """`ws/conversations/new/`: unbound until its first message creates the conversation."""

    conversation: Conversation | None = None
    parts_task: asyncio.Task | None = None  # the parts of the page, on their way

    async def connect(self) -> None:
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        user = self.scope["user"]
        expires = await database_sync_to_async(session_expiry)(self.session_key, user)
        if expires is None:
            await self.close()  # before accept: anonymous, or a session that ended
            return
        self.creating = asyncio.Lock()
        self.reply_shown = asyncio.Event()  # the first reply's text (or its end) went out
        await self.begin((session_group(self.session_key), user_group(user.pk)), expires)

    async def bind(self, conversation: Conversation) -> None:
        """From now on the socket is the conversation's, as if it had connected to it."""
        self.conversation = conversation
        self.group = generation.conversation_group(conversation.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.groups_joined = (self.group, *self.groups_joined)

    async def disconnect(self, code: int) -> None:
        if self.parts_task:
            self.parts_task.cancel()
        await super().disconnect(code)

    async def sync(self, after: int, streaming: list[int]) -> None:
        if self.conversation is not None:  # before, there is nothing to show
            await super().sync(after, streaming)

    async def stop(self) -> None:
        if self.conversation is not None:
            await super().stop()

    async def send_turn(self, text: str, attachments: list[str]) -> None:
        # One message at a time: a second one sent while the first creates the conversation
        # waits, then goes to that conversation.
        async with self.creating:
            if self.conversation is not None:
                await super().send_turn(text, attachments)
            else:
                await self.create(text, attachments)

    async def compare(self, text: str, attachments: list[str], columns: QueryDict) -> None:
        async with self.creating:
            if self.conversation is not None:
                await super().compare(text, attachments, columns)
            else:
                await self.create(text, attachments, columns)

    async def create(
        self, text: str, attachments: list[str], columns: QueryDict | None = None
    ) -> None:
        """The first message: the conversation is created with it, as the form post does."""
        data = QueryDict(mutable=True) if columns is None else columns.copy()
        data["text"] = text
        data.setlist("attachments", attachments)
        user = self.scope["user"]
        first = first_turn if columns is None else first_comparison
        try:
            async with admission.turn_slot():  # as every turn (chat/admission.py)
                taken = await database_sync_to_async(signed_in)(
                    self.session_key, user, first, user, data, self.scope
                )
        except (admission.Busy, OperationalError) as error:
            if (retry_after := admission.busy_retry_after(error)) is None:
                raise
            await self.send_json({"type": "busy", "retry_after": retry_after})
            return  # still unbound: the page keeps its text and sends it again
        if taken == LOGGED_OUT:
            await self.logged_out()
            return
        refusal, turn, composer = taken
        if turn is None:  # still unbound: the page keeps its text, with the reasons
            if columns is None:
                html = await database_sync_to_async(errors_html)(refusal)
            else:
                html = await database_sync_to_async(compare.refusal_html)(refusal)
            await self.send_json({"type": "refused", "html": html})
            return
        if columns is None:
            conversation, messages, payload, everything = turn
            await self.bind(conversation)  # before the messages are announced to its group
            await generation.start(
                messages[-1], payload, turns.announce(conversation, messages, everything)
            )
        else:
            conversation = turn.conversation
            await self.bind(conversation)
            await compare.start(turn)
        await self.send_json(created_frame(conversation))
        await self.send(text_data=composer)
        await self.send_json({"type": "sent"})
        self.parts_task = asyncio.create_task(
            self.parts_after_first_text(conversation, columns is not None)
        )

    async def parts_after_first_text(self, conversation: Conversation, comparing: bool) -> None:
        """Render the parts of the page once the reply's first text has gone out and had time
        to be painted (or PARTS_WAIT_SECONDS passed), and hand them to this consumer through
        the channel layer, so they go out among its other frames, in order."""
        try:
            async with asyncio.timeout(PARTS_WAIT_SECONDS):
                await self.reply_shown.wait()
                await asyncio.sleep(PAINT_SECONDS)
        except TimeoutError:
            pass
        html = await database_sync_to_async(page_parts)(self.scope, conversation, comparing)
        await self.channel_layer.send(self.channel_name, {"type": "new_chat.parts", "html": html})

    # Frames from the channel layer

    async def new_chat_parts(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def stream_delta(self, event: dict) -> None:
        await super().stream_delta(event)
        self.reply_shown.set()

    async def message_final(self, event: dict) -> None:
        await super().message_final(event)
        self.reply_shown.set()
