"""Titles asked of the model after a conversation's first reply (the simulator on a loopback
port answers them), directives kept out, a rename always winning."""

import asyncio
import logging
import socket

import pytest
from asgiref.sync import sync_to_async

from chat import titles
from chat.models import Conversation, Message, title_from_text
from chat.simulator.reply import TITLE_PROMPT_START
from tests.test_relay import logged_in, open_page, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_title_prompt_is_the_one_the_simulator_recognises():
    assert titles.TITLE_PROMPT.startswith(TITLE_PROMPT_START)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Trip to Lisbon", "Trip to Lisbon"),
        ('"Trip to Lisbon."', "Trip to Lisbon"),
        ("Title: Trip to Lisbon\nBecause it is about Lisbon.", "Trip to Lisbon"),
        ("Trip [sim:error] to Lisbon", "Trip to Lisbon"),
        ("[sim:delay=1]", ""),
        ("  \n ", ""),
    ],
)
def test_an_answer_becomes_a_clean_title(answer, title):
    assert titles.clean_title(answer) == title


def test_the_title_request_leaves_directives_out():
    body = titles.title_request("m", "Plan a trip [sim:length=5] to Lisbon [sim:drop]")
    assert body["messages"][1]["content"] == "Plan a trip to Lisbon"
    assert body["max_tokens"] <= 32


async def untitled(user) -> Conversation:
    return await Conversation.objects.acreate(owner=user, title="")


async def wait_for_title(conversation: Conversation, timeout: float = 10) -> str:
    async with asyncio.timeout(timeout):
        while True:
            await conversation.arefresh_from_db()
            if conversation.title != provisional_of(conversation):
                return conversation.title
            await asyncio.sleep(0.05)


def provisional_of(conversation: Conversation) -> str:
    return getattr(conversation, "provisional", "")


async def test_the_first_reply_brings_a_title_from_the_model_and_the_page_shows_it(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await untitled(alice)
    page = await open_page(client, conversation.pk)
    text = "Plan a [sim:delay=0.001] weekend trip to Lisbon in spring, please"
    reply = await send(client, conversation, text)
    conversation.provisional = title_from_text(text)
    assert await page.receive_until_final(reply.pk) == "complete"

    assert await wait_for_title(conversation) == "Plan a weekend trip to"
    frames = []
    async with asyncio.timeout(10):
        while not any("conversation-title" in f for f in frames):
            frames.append(await page.ws.receive_from(timeout=10))
    frame = frames[-1]
    assert 'hx-swap-oob="innerHTML:#conversation-title">Plan a weekend trip to<' in frame
    assert f"a.conversation-link[href=&#x27;/c/{conversation.pk}/&#x27;]" in frame
    assert "sim:" not in frame
    await page.ws.disconnect()

    # The second reply keeps the title.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="Plan a weekend")
    second = await send(client, conversation, "And in autumn? [sim:delay=0.001]")
    async with asyncio.timeout(10):
        while (await Message.objects.aget(pk=second.pk)).status == "streaming":
            await asyncio.sleep(0.05)
    assert await titles.retitle(second.pk) is None
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == "Plan a weekend"


async def complete_turn(user, text: str, title: str | None = None) -> Message:
    """A conversation with one question and its complete reply, saved as a turn leaves them."""
    conversation = await Conversation.objects.acreate(
        owner=user, title=title_from_text(text) if title is None else title
    )
    question = await Message.objects.acreate(conversation=conversation, role="user", content=text)
    return await Message.objects.acreate(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="complete",
        content="An answer.",
        model="alibaba/qwen3.5-omni-flash",
    )


async def test_a_renamed_conversation_keeps_its_name(upstream_is_simulator, alice):
    reply = await complete_turn(alice, "Explain rainbows to me")
    client = await logged_in(alice)
    response = await client.post(f"/c/{reply.conversation_id}/rename/", {"title": "Mine"})
    assert response.status_code == 302
    assert await titles.retitle(reply.pk) is None
    assert (await Conversation.objects.aget(pk=reply.conversation_id)).title == "Mine"


async def test_a_rename_while_the_title_is_asked_for_wins(alice):
    reply = await complete_turn(alice, "Explain rainbows to me")
    conversation = await Conversation.objects.aget(pk=reply.conversation_id)
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="Mine")
    saved = await sync_to_async(titles._save)(conversation.pk, conversation.title, "Rainbows")
    assert saved is None
    assert (await Conversation.objects.aget(pk=conversation.pk)).title == "Mine"


async def test_directives_never_reach_a_title(upstream_is_simulator, alice):
    reply = await complete_turn(alice, "[sim:help] Describe [sim:length=9] the moon landing")
    assert await titles.retitle(reply.pk) == "Describe the moon landing"


async def test_titles_can_be_turned_off(upstream_is_simulator, alice, settings):
    settings.PLAYGROUND_AUTO_TITLES = False
    client = await logged_in(alice)
    conversation = await untitled(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Tell me about owls [sim:delay=0.001]")
    assert await page.receive_until_final(reply.pk) == "complete"
    await asyncio.sleep(0.5)
    await conversation.arefresh_from_db()
    assert conversation.title == title_from_text("Tell me about owls [sim:delay=0.001]")
    await page.ws.disconnect()


async def test_a_failed_title_request_changes_nothing_and_is_no_error(
    upstream_is_simulator, alice, settings, caplog
):
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PLAYGROUND_API_BASE = f"http://127.0.0.1:{port}/v1"
    reply = await complete_turn(alice, "Explain rainbows to me")
    with caplog.at_level(logging.INFO):
        assert await titles.retitle(reply.pk) is None
    assert (await Conversation.objects.aget(pk=reply.conversation_id)).title == (
        "Explain rainbows to me"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("no title" in r.getMessage() for r in caplog.records)


async def test_an_upstream_refusal_changes_nothing(upstream_is_simulator, alice):
    reply = await complete_turn(alice, "Explain rainbows to me")
    await Message.objects.filter(pk=reply.pk).aupdate(model="no/such-model")
    assert await titles.retitle(reply.pk) is None  # the simulator answers 400
    assert (await Conversation.objects.aget(pk=reply.conversation_id)).title == (
        "Explain rainbows to me"
    )
