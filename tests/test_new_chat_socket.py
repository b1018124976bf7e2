"""The new-chat page's socket: its first message creates the conversation, the socket becomes
that conversation's and the reply streams to it; it creates one conversation at most, and it is
as closed to strangers as a conversation's socket."""

import asyncio
import html
import re

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat.models import Conversation, Message
from playground.asgi import application
from tests.test_relay import Page
from tests.test_socket_security import SITE, closed_with, served

pytestmark = pytest.mark.django_db(transaction=True)

NEW_CHAT = "/ws/conversations/new/"


async def logged_in(user) -> AsyncClient:
    """A browser of `user`'s that has loaded the new-chat page (session and CSRF cookies)."""
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await client.get("/new/")
    assert response.status_code == 200
    return client


def cookies(client: AsyncClient) -> str:
    return "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())


def new_chat_socket(client: AsyncClient | None, origin: str = SITE) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())]
    if client is not None:
        headers.append((b"cookie", cookies(client).encode()))
    return WebsocketCommunicator(served(), NEW_CHAT, headers=headers)


async def open_new_chat(client: AsyncClient) -> Page:
    communicator = new_chat_socket(client)
    connected, _ = await communicator.connect()
    assert connected
    return Page(communicator)


async def answer(page: Page, *types: str) -> dict:
    """The next answer of one of `types` this page gets (others are kept in `page.answers`)."""
    seen = len(page.answers)

    def arrived(p: Page) -> bool:
        return any(a["type"] in types for a in p.answers[seen:])

    await page.receive_until(arrived)
    return next(a for a in page.answers[seen:] if a["type"] in types)


class PartsPage(Page):
    """A page that also keeps the parts of the page the socket sends once it has created the
    conversation: the composer, then the header, the list and the settings panel."""

    def __init__(self, communicator):
        super().__init__(communicator)
        self.parts: list[str] = []
        self.composer = ""
        self.order: list[str] = []  # "parts", "text" (a delta's) and "final", as they came

    def apply(self, frame: str) -> None:
        if 'id="topbar"' in frame:
            self.parts.append(frame)
            self.order.append("parts")
        elif '<form id="composer"' in frame:
            self.composer = frame
            self.order.append("composer")
        elif frame.startswith('{"d":'):
            self.order.append("text")
        super().apply(frame)
        if self.final and "final" not in self.order:
            self.order.append("final")

    async def receive_parts(self) -> str:
        await self.receive_until(lambda p: p.parts)
        return self.parts[0]


async def test_the_first_message_creates_the_conversation_and_its_reply_streams_to_the_socket(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    page = PartsPage((await open_new_chat(client)).ws)

    await page.ws.send_json_to({"action": "send", "text": "First words [sim:delay=0.005]"})
    created = await answer(page, "created")
    conversation = await Conversation.objects.aget()
    assert conversation.owner_id == alice.pk
    assert created == {
        "type": "created",
        "id": conversation.pk,
        "url": f"/c/{conversation.pk}/",
        "socket": f"/ws/conversations/{conversation.pk}/",
        "title": conversation.title,
    }
    assert (await answer(page, "sent", "refused"))["type"] == "sent"

    person, reply = [m async for m in conversation.messages.order_by("pk")]
    assert await page.receive_until_final(reply.pk) == "complete"
    assert page.inserted == [person.pk, reply.pk]
    await reply.arefresh_from_db()
    assert page.text[reply.pk] == reply.content and "First words" in reply.content

    # The composer of the conversation's page (sending to it, with Stop) came at once; the other
    # parts that name it follow the reply's first text: header, list and the settings panel
    # (saving to it).
    assert page.order.index("composer") < page.order.index("text")
    assert f'hx-post="/c/{conversation.pk}/send/"' in page.composer
    assert 'data-testid="stop"' in page.composer
    parts = await page.receive_parts()
    assert page.order.index("text") < page.order.index("parts")
    assert len(page.parts) == 1
    assert 'id="topbar"' in parts and 'data-testid="conversation-menu"' in parts
    assert f'href="/c/{conversation.pk}/" class="conversation-link current"' in parts
    assert f'hx-post="/c/{conversation.pk}/settings/"' in parts
    await page.ws.disconnect()


async def test_a_reply_slow_to_start_does_not_hold_the_parts_back(upstream_is_simulator, alice):
    client = await logged_in(alice)
    page = PartsPage((await open_new_chat(client)).ws)
    await page.ws.send_json_to({"action": "send", "text": "Slowly [sim:delay=1] [sim:length=2]"})
    await answer(page, "sent")
    async with asyncio.timeout(0.9):  # the first token is a second away
        await page.receive_parts()
    reply = await Message.objects.filter(role="assistant").aget()
    await page.receive_until_final(reply.pk)
    assert page.order.index("parts") < page.order.index("text")
    await page.ws.disconnect()


async def test_the_parts_carry_a_csrf_token_the_page_can_post_with(upstream_is_simulator, alice):
    client = await logged_in(alice)
    page = PartsPage((await open_new_chat(client)).ws)
    await page.ws.send_json_to({"action": "send", "text": "Hello [sim:delay=0]"})
    await answer(page, "sent")
    conversation = await Conversation.objects.aget()
    reply = await conversation.messages.filter(role="assistant").aget()
    await page.receive_until_final(reply.pk)

    parts = await page.receive_parts()
    for html_with_forms in (page.composer, parts):
        assert 'name="csrfmiddlewaretoken"' in html_with_forms
    composer = re.search(r'<form id="composer".*?</form>', page.composer, re.S).group(0)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', composer).group(1)
    # Without htmx, as a browser with JavaScript off posts the composer.
    response = await client.post(
        f"/c/{conversation.pk}/send/",
        {"text": "Second [sim:delay=0]", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert await conversation.messages.filter(role="user").acount() == 2
    await page.ws.disconnect()


async def test_later_messages_go_to_the_conversation_the_first_created(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    page = await open_new_chat(client)
    await page.ws.send_json_to({"action": "send", "text": "One [sim:delay=0]"})
    await answer(page, "sent")
    conversation = await Conversation.objects.aget()
    first = await conversation.messages.filter(role="assistant").aget()
    await page.receive_until_final(first.pk)

    assert await page.send_message(text="Two [sim:delay=0]") == {"type": "sent"}
    second = await conversation.messages.filter(role="assistant").exclude(pk=first.pk).aget()
    assert await page.receive_until_final(second.pk) == "complete"
    assert await Conversation.objects.acount() == 1
    assert [m.content async for m in conversation.messages.filter(role="user").order_by("pk")] == [
        "One [sim:delay=0]",
        "Two [sim:delay=0]",
    ]
    await page.ws.disconnect()


async def test_two_messages_sent_at_once_create_one_conversation(upstream_is_simulator, alice):
    client = await logged_in(alice)
    page = await open_new_chat(client)
    await page.ws.send_json_to({"action": "send", "text": "Quick [sim:delay=0]"})
    await page.ws.send_json_to({"action": "send", "text": "Quicker [sim:delay=0]"})
    await answer(page, "sent")
    await answer(page, "sent", "refused", "busy")  # the second, whatever the conversation says

    assert [a["type"] for a in page.answers].count("created") == 1
    conversation = await Conversation.objects.aget()
    assert not await Message.objects.exclude(conversation=conversation).aexists()
    await page.ws.disconnect()


async def test_a_refused_first_message_creates_nothing_and_the_socket_stays_new(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    page = await open_new_chat(client)

    refused = await page.send_message(text="   ")
    assert refused["type"] == "refused"
    assert "Type a message or attach a file first." in html.unescape(refused["html"])
    assert not await Conversation.objects.aexists()
    # Nothing to sync or stop yet: the socket answers neither, and stays open.
    await page.ws.send_json_to({"action": "sync", "after": 0, "streaming": []})
    await page.ws.send_json_to({"action": "stop"})
    assert await page.ws.receive_nothing(timeout=0.2)

    await page.ws.send_json_to({"action": "send", "text": "Now properly [sim:delay=0]"})
    assert (await answer(page, "created"))["id"] == (await Conversation.objects.aget()).pk
    assert (await answer(page, "sent"))["type"] == "sent"
    await page.ws.disconnect()


async def test_an_unreadable_frame_is_answered_and_the_socket_carries_on(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    page = await open_new_chat(client)
    await page.ws.send_to(text_data='{"action": "send", "text": 5}')
    assert await page.ws.receive_json_from() == {
        "type": "error",
        "message": "That message could not be read.",
    }
    await page.ws.send_to(text_data="x" * 1_000_000)
    assert (await page.ws.receive_json_from())["type"] == "error"
    assert await closed_with(page.ws) == 1009
    assert not await Conversation.objects.aexists()


async def test_an_anonymous_visitor_cannot_open_it():
    communicator = new_chat_socket(None)
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.parametrize("origin", ["http://evil.example:8000", "http://127.0.0.1:9999", "null"])
async def test_a_page_from_another_origin_cannot_open_it(alice, origin):
    client = await logged_in(alice)
    communicator = new_chat_socket(client, origin=origin)
    connected, _ = await communicator.connect()
    assert not connected


async def test_logging_out_closes_it(alice):
    client = await logged_in(alice)
    page = await open_new_chat(client)
    token = client.cookies["csrftoken"].value
    await client.post("/accounts/logout/", headers={"X-CSRFToken": token})
    assert await closed_with(page.ws) == 4401


async def test_a_session_that_ended_cannot_open_it(alice):
    client = await logged_in(alice)
    token = client.cookies["csrftoken"].value
    ended = new_chat_socket(client)  # the cookies as they were before logging out
    await client.post("/accounts/logout/", headers={"X-CSRFToken": token})
    connected, _ = await ended.connect()
    assert not connected


async def test_the_conversations_other_pages_see_the_first_message_too(
    upstream_is_simulator, alice
):
    """Another tab that opens the new conversation follows the reply like the sender."""
    client = await logged_in(alice)
    page = await open_new_chat(client)
    await page.ws.send_json_to({"action": "send", "text": "Shared [sim:delay=0.02]"})
    created = await answer(page, "created")
    other = WebsocketCommunicator(
        application,
        created["socket"],
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookies(client).encode())],
    )
    assert (await other.connect())[0]
    reply = await Message.objects.filter(role="assistant").aget()
    await other.send_json_to({"action": "sync", "after": 0, "streaming": [reply.pk]})
    watcher = Page(other)
    for tab in (page, watcher):
        assert await tab.receive_until_final(reply.pk) == "complete"
    await asyncio.gather(page.ws.disconnect(), other.disconnect())
