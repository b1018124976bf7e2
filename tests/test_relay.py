"""The streaming relay end to end: a real view starts the job, the real httpx client streams
from the simulator on a loopback port, and pages subscribe through the real consumer."""

import asyncio
import base64
import html
import io
import json
import re
import wave

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat.models import Attachment, Conversation, Message
from chat.simulator.reply import filler_tokens
from playground.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

REPLACE = re.compile(
    r'<span id="message-(\d+)-(text|reasoning)" hx-swap-oob="innerHTML">(.*?)</span>', re.S
)
# A snapshot's rendered region: its tail is what the page's tail shows from then on.
REGION_TAIL = re.compile(
    r'hx-swap-oob="innerHTML:#message-(\d+)-text-md">.*?<span id="message-\d+-text">(.*?)</span>',
    re.S,
)
INSERT = re.compile(r'hx-swap-oob="beforeend:#transcript">\s*<article id="message-(\d+)"')
FINAL = re.compile(
    r'<article id="message-(\d+)"[^>]*data-status="(\w+)"[^>]*hx-swap-oob="outerHTML"', re.S
)


def read_delta(frame: str) -> tuple[dict, str]:
    """A delta frame (chat/frames.py) as its JSON line and the blocks' HTML after it."""
    line, _, body = frame.partition("\n")
    return json.loads(line), body


def keep_last(text: str, units: int) -> str:
    """The last `units` UTF-16 code units of `text`, as the page's script keeps them."""
    data = text.encode("utf-16-le")
    return data[max(0, len(data) - 2 * units) :].decode("utf-16-le")


class Page:
    """What one browser tab holds of a conversation, rebuilt from the frames it receives."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.ws = communicator
        self.text: dict[int, str] = {}  # every text delta, added up
        self.reasoning: dict[int, str] = {}
        self.blocks: dict[int, list[str]] = {}  # the answer's blocks, as deltas brought them
        self.tail: dict[int, str] = {}  # the answer's open tail, as the page shows it
        self.final: dict[int, str] = {}
        self.inserted: list[int] = []
        self.audio: dict[int, bytearray] = {}
        self.answers: list[dict] = []  # "sent" or "refused", for messages this page sent
        self.frames = 0

    def apply(self, frame: str) -> None:
        self.frames += 1
        if frame.startswith("{"):  # JSON: deltas, speech, and answers to a message sent
            data, body = read_delta(frame)
            if "d" in data:
                self.apply_delta(data, body)
            elif data["type"] == "audio":
                self.audio.setdefault(data["message"], bytearray()).extend(
                    base64.b64decode(data["pcm"])
                )
            else:
                self.answers.append(data)
            return
        for message_id, part, text in REPLACE.findall(frame):
            store = self.text if part == "text" else self.reasoning
            store[int(message_id)] = html.unescape(text)
        for message_id, text in REGION_TAIL.findall(frame):
            self.tail[int(message_id)] = html.unescape(text)
        for message_id in INSERT.findall(frame):
            self.inserted.append(int(message_id))
        for message_id, status in FINAL.findall(frame):
            self.final[int(message_id)] = status

    def apply_delta(self, data: dict, body: str) -> None:
        message_id = data["d"]
        self.text[message_id] = self.text.get(message_id, "") + data.get("t", "")
        self.reasoning[message_id] = self.reasoning.get(message_id, "") + data.get("r", "")
        self.tail[message_id] = self.tail.get(message_id, "") + data.get("t", "")
        if "k" in data:
            if "rk" in data:  # the reasoning's blocks follow the answer's
                body = body.encode("utf-16-le")[: 2 * data["b"]].decode("utf-16-le")
            self.blocks.setdefault(message_id, []).append(body)
            self.tail[message_id] = keep_last(self.tail[message_id], data["k"]).lstrip("\n")

    async def receive_until_final(self, message_id: int, timeout: float = 20) -> str:
        async with asyncio.timeout(timeout):
            while message_id not in self.final:
                self.apply(await self.ws.receive_from(timeout=timeout))
        return self.final[message_id]

    async def send_message(self, **message) -> dict:
        """Send a message over this page's socket, as the composer does: the page's answer."""
        answered = len(self.answers)
        await self.ws.send_json_to({"action": "send", **message})
        await self.receive_until(lambda p: len(p.answers) > answered)
        return self.answers[answered]

    async def receive_until(self, predicate, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.apply(await self.ws.receive_from(timeout=timeout))


async def logged_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def open_page(
    client: AsyncClient, conversation_id: int, after: int = 0, streaming: tuple = ()
) -> Page:
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    # A page of a conversation with no messages yet has nothing to sync; not sending it also
    # keeps its (unanswered) sync from racing with a message the test sends next, which could
    # make the page wait for a snapshot of a job that has already ended.
    has_messages = await Message.objects.filter(conversation_id=conversation_id).aexists()
    if after or streaming or has_messages:
        await communicator.send_json_to(
            {"action": "sync", "after": after, "streaming": list(streaming)}
        )
    return Page(communicator)


async def new_conversation(user) -> Conversation:
    return await Conversation.objects.acreate(owner=user, title="Test")


async def send(client: AsyncClient, conversation: Conversation, text: str) -> Message:
    response = await client.post(
        f"/c/{conversation.pk}/send/", {"text": text}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200, response.content
    return await conversation.messages.filter(role="assistant").alast()


async def test_a_reply_streams_to_the_page_and_is_saved_complete(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)

    reply = await send(client, conversation, "Hello there [sim:delay=0.01]")
    assert await page.receive_until_final(reply.pk) == "complete"

    await reply.arefresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert "offline simulator" in reply.content.lower()
    assert page.text[reply.pk] == reply.content  # appended deltas add up to the saved text
    assert page.inserted[-2:] == [reply.pk - 1, reply.pk]
    assert reply.finish_reason == "stop"
    assert reply.usage["completion_tokens"] > 0
    assert reply.cost is not None and "usd_spent" in reply.cost
    assert reply.first_token_at is not None and reply.finished_at >= reply.first_token_at
    assert "<" in reply.html  # rendered Markdown
    await page.ws.disconnect()


async def test_deltas_are_coalesced_into_few_frames(upstream_is_simulator, alice, settings):
    settings.PLAYGROUND_FRAME_INTERVAL = 0.05
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)

    reply = await send(client, conversation, "Count [sim:length=300] [sim:delay=0.001]")
    await page.receive_until_final(reply.pk)

    await reply.arefresh_from_db()
    assert page.text[reply.pk] == reply.content
    # 300 tokens at 1 ms each take ~0.3 s: at 20 frames/s that is about 6 frames, not 300.
    assert page.frames < 40
    await page.ws.disconnect()


async def test_thinking_is_streamed_and_kept_apart_from_the_answer(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"enable_thinking": True}
    await conversation.asave()
    page = await open_page(client, conversation.pk)

    reply = await send(client, conversation, "Think first")
    await page.receive_until_final(reply.pk)

    await reply.arefresh_from_db()
    assert reply.reasoning
    assert page.reasoning[reply.pk] == reply.reasoning
    assert reply.reasoning not in reply.content
    await page.ws.disconnect()


async def test_stop_from_a_second_tab_stops_the_job_and_keeps_the_partial_text(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    first = await open_page(client, conversation.pk)
    second = await open_page(client, conversation.pk)

    reply = await send(client, conversation, "Slow one [sim:delay=0.05] [sim:length=400]")
    await first.receive_until(lambda p: len(p.text.get(reply.pk, "")) > 10)
    await second.ws.send_json_to({"action": "stop"})

    assert await first.receive_until_final(reply.pk) == "stopped"
    assert await second.receive_until_final(reply.pk) == "stopped"
    await reply.arefresh_from_db()
    assert reply.status == Message.Status.STOPPED
    assert reply.content and first.text[reply.pk] == reply.content
    assert reply.content.count(" ") < 399  # it did stop early
    for page in (first, second):
        await page.ws.disconnect()


async def test_stop_over_http_stops_the_job(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Slow [sim:delay=0.05] [sim:length=400]")
    await page.receive_until(lambda p: p.text.get(reply.pk))

    response = await client.post(f"/c/{conversation.pk}/stop/", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert await page.receive_until_final(reply.pk) == "stopped"
    await page.ws.disconnect()


async def test_two_tabs_see_the_same_stream(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    first = await open_page(client, conversation.pk)
    second = await open_page(client, conversation.pk)

    reply = await send(client, conversation, "Both of you [sim:delay=0.005]")
    await first.receive_until_final(reply.pk)
    await second.receive_until_final(reply.pk)

    await reply.arefresh_from_db()
    assert first.text[reply.pk] == second.text[reply.pk] == reply.content
    for page in (first, second):
        await page.ws.disconnect()


async def test_a_page_that_reconnects_mid_stream_gets_the_text_so_far_then_the_rest(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Long [sim:delay=0.02] [sim:length=150]")
    await page.receive_until(lambda p: len(p.text.get(reply.pk, "")) > 20)
    await page.ws.disconnect()  # the tab closes; the job goes on
    await asyncio.sleep(0.3)

    reopened = await open_page(client, conversation.pk, after=reply.pk)
    assert await reopened.receive_until_final(reply.pk) == "complete"
    await reply.arefresh_from_db()
    assert reopened.text[reply.pk] == reply.content  # snapshot + appended deltas, no gap
    assert reply.content.count("\n") + reply.content.count(" ") >= 100
    await reopened.ws.disconnect()


async def test_a_page_that_missed_messages_gets_them_on_sync(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    reply = await send(client, conversation, "Nobody is watching [sim:delay=0.001]")
    for _ in range(200):
        await reply.arefresh_from_db()
        if reply.status != "streaming":
            break
        await asyncio.sleep(0.05)

    page = await open_page(client, conversation.pk, after=0)
    await page.receive_until(lambda p: reply.pk in p.inserted)
    assert page.inserted == [reply.pk - 1, reply.pk]
    await page.ws.disconnect()


async def test_a_page_rendered_mid_stream_that_connects_after_the_end_gets_the_final_reply(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    reply = await send(client, conversation, "Quick one [sim:delay=0]")
    for _ in range(200):  # the page was rendered while streaming; the reply ends before it connects
        await reply.arefresh_from_db()
        if reply.status != "streaming":
            break
        await asyncio.sleep(0.05)

    page = await open_page(client, conversation.pk, after=reply.pk, streaming=[reply.pk])
    assert await page.receive_until_final(reply.pk) == "complete"
    await page.ws.disconnect()


async def test_the_checkpoint_saves_the_text_while_it_streams(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Checkpoint me [sim:delay=0.02] [sim:length=200]")
    await page.receive_until(lambda p: len(p.text.get(reply.pk, "")) > 50)
    await asyncio.sleep(0.5)  # more than one checkpoint interval

    saved = await Message.objects.aget(pk=reply.pk)
    assert saved.status == Message.Status.STREAMING
    assert len(saved.content) > 20
    await client.post(f"/c/{conversation.pk}/stop/", headers={"HX-Request": "true"})
    await page.receive_until_final(reply.pk)
    await reply.arefresh_from_db()
    assert reply.content.startswith(saved.content)
    await page.ws.disconnect()


@pytest.mark.parametrize(
    ("directive", "kind", "status"),
    [
        ("[sim:status=401]", "auth", 401),
        ("[sim:status=403]", "forbidden", 403),
        ("[sim:status=429]", "rate_limited", 429),
        ("[sim:status=500]", "server", 500),
        ("[sim:vendor-error]", "bad_request", 400),
        ("[sim:drop]", "connection", None),
        ("[sim:malformed]", "protocol", None),
        ("[sim:error]", "stream", None),
    ],
)
async def test_each_upstream_failure_ends_in_error_with_the_partial_text_kept(
    upstream_is_simulator, alice, directive, kind, status
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, f"Break please {directive} [sim:delay=0.005]")
    assert await page.receive_until_final(reply.pk) == "error"

    await reply.arefresh_from_db()
    assert reply.status == Message.Status.ERROR
    assert reply.error["kind"] == kind
    assert reply.error["status"] == status
    assert reply.error["message"] and reply.error["hint"]
    if status is None:  # failures inside a stream keep what arrived before them
        assert reply.content and page.text[reply.pk] == reply.content
    if status == 429:
        assert reply.error["retry_after"] == 7
    user_message = await Message.objects.aget(pk=reply.parent_id)
    assert user_message.content.startswith("Break please")  # what the person typed is kept
    await page.ws.disconnect()


async def test_a_silent_upstream_times_out_into_an_error(upstream_is_simulator, alice, settings):
    settings.PLAYGROUND_READ_TIMEOUT = 0.5
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Hang [sim:stall]")
    assert await page.receive_until_final(reply.pk) == "error"
    await reply.arefresh_from_db()
    assert reply.error["kind"] == "timeout"
    assert reply.content  # the tokens before the stall are kept
    await page.ws.disconnect()


async def test_retry_after_an_error_streams_a_new_reply_to_the_same_question(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    failed = await send(client, conversation, "Flaky [sim:status=503]")
    await page.receive_until_final(failed.pk)

    response = await client.post(
        f"/c/{conversation.pk}/m/{failed.pk}/retry/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    retried = await conversation.messages.filter(role="assistant").alast()
    assert retried.pk != failed.pk and retried.parent_id == failed.parent_id
    assert await page.receive_until_final(retried.pk) == "error"  # the directive is still there
    assert await Message.objects.filter(pk=failed.pk).aexists()  # the failed reply is kept
    await page.ws.disconnect()


async def test_another_user_cannot_subscribe_to_a_conversation(upstream_is_simulator, alice, bob):
    conversation = await new_conversation(alice)
    client = await logged_in(bob)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_an_anonymous_visitor_cannot_subscribe(alice):
    conversation = await new_conversation(alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[(b"origin", b"http://localhost")],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_the_requests_the_app_sends_are_schema_valid(upstream_is_simulator, alice):
    from chat.simulator.schema import request_errors

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"system_prompt": "Be brief.", "temperature": 0.3, "seed": 7}
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    first = await send(client, conversation, "One [sim:delay=0]")
    await page.receive_until_final(first.pk)
    second = await send(client, conversation, "Two [sim:delay=0]")
    await page.receive_until_final(second.pk)

    await second.arefresh_from_db()
    assert request_errors(second.request) == []
    roles = [m["role"] for m in second.request["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second.request["stream"] is True
    assert second.request["stream_options"] == {"include_usage": True}
    assert second.request["temperature"] == 0.3
    await page.ws.disconnect()


async def test_a_process_that_died_leaves_interrupted_messages_with_their_text(alice):
    from chat.generation import interrupt_stale

    conversation = await new_conversation(alice)
    orphan = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", content="Half an ans"
    )
    interrupted = await sync_to_async(interrupt_stale)(None)

    assert [m.pk for m in interrupted] == [orphan.pk]
    await orphan.arefresh_from_db()
    assert orphan.status == Message.Status.INTERRUPTED
    assert orphan.content == "Half an ans"
    assert "Half an ans" in orphan.html


async def test_a_spoken_answer_streams_pcm_to_the_page_and_is_saved_as_a_wav(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {
        "modalities": ["text", "audio"],
        "audio": {"voice": "Tina", "format": "wav"},
    }
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Say something [sim:delay=0.005]")
    assert await page.receive_until_final(reply.pk) == "complete"

    attachment = await Attachment.objects.aget(message=reply)
    assert attachment.kind == "audio" and attachment.content_type == "audio/wav"
    data = attachment.file.read()
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
        frames = wav.readframes(wav.getnframes())
    assert frames == bytes(page.audio[reply.pk])  # the page heard exactly what was saved
    assert len(frames) > 24000  # more than half a second of speech
    assert (
        max(
            abs(int.from_bytes(frames[i : i + 2], "little", signed=True)) for i in range(0, 4800, 2)
        )
        > 1000
    )
    assert attachment.duration == pytest.approx(len(frames) / 48000)
    await page.ws.disconnect()


async def test_tool_call_fragments_are_assembled_into_calls(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        "tool_choice": "required",
    }
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Weather in Paris? [sim:delay=0]")
    await page.receive_until_final(reply.pk)

    await reply.arefresh_from_db()
    assert reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls
    assert call["id"] and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert "city" in json.loads(call["function"]["arguments"])
    await page.ws.disconnect()


async def test_log_probabilities_are_kept_per_token(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"logprobs": True, "top_logprobs": 3}
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Probabilities [sim:delay=0] [sim:length=20]")
    await page.receive_until_final(reply.pk)

    await reply.arefresh_from_db()
    assert len(reply.logprobs) == 20
    assert "".join(t["token"] for t in reply.logprobs) == reply.content
    assert all(len(t["top_logprobs"]) == 3 for t in reply.logprobs)
    await page.ws.disconnect()


async def test_tool_results_continue_the_conversation_in_the_right_order(
    upstream_is_simulator, alice
):
    from chat.simulator.schema import request_errors

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    }
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    calling = await send(client, conversation, "Weather? [sim:tool] [sim:delay=0]")
    await page.receive_until_final(calling.pk)
    await calling.arefresh_from_db()
    [call] = calling.tool_calls

    empty = await client.post(
        f"/c/{conversation.pk}/m/{calling.pk}/tool-results/",
        {f"result_{call['id']}": " "},
        headers={"HX-Request": "true"},
    )
    assert empty.status_code == 422 and "Give a result for get_weather" in empty.content.decode()

    response = await client.post(
        f"/c/{conversation.pk}/m/{calling.pk}/tool-results/",
        {f"result_{call['id']}": '{"temperature": 21}'},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    follow_up = await conversation.messages.filter(role="assistant").alast()
    assert follow_up.pk != calling.pk
    assert await page.receive_until_final(follow_up.pk) == "complete"
    await follow_up.arefresh_from_db()
    sent = follow_up.request["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call["id"]
    assert sent[2] == {"role": "tool", "content": '{"temperature": 21}', "tool_call_id": call["id"]}
    assert request_errors(follow_up.request) == []
    assert "21" in follow_up.content  # the simulator quotes the tool result
    await page.ws.disconnect()


async def test_a_reply_whose_process_died_is_settled_by_the_sweeper_and_pages_see_it(
    upstream_is_simulator, alice, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from chat import generation

    settings.PLAYGROUND_LEASE_SECONDS = 5
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    # A row left streaming by another process that stopped checkpointing a minute ago.
    orphan = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="Partial answer",
        checkpoint_at=timezone.now() - timedelta(minutes=1),
    )
    alive = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="Still going",
        checkpoint_at=timezone.now(),
    )
    page = await open_page(client, conversation.pk, after=alive.pk)

    settled = await generation.sweep()

    assert [m.pk for m in settled] == [orphan.pk]
    assert await page.receive_until_final(orphan.pk) == "interrupted"
    await orphan.arefresh_from_db()
    assert orphan.content == "Partial answer" and orphan.status == "interrupted"
    await alive.arefresh_from_db()
    assert alive.status == "streaming"
    await page.ws.disconnect()


async def test_a_silent_stream_keeps_its_lease_with_heartbeats(upstream_is_simulator, alice):
    from chat import generation

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Hang [sim:stall]")
    await page.receive_until(lambda p: p.text.get(reply.pk))
    await asyncio.sleep(0.7)  # silence for several checkpoint intervals (0.2 s here)
    first = (await Message.objects.aget(pk=reply.pk)).checkpoint_at
    await asyncio.sleep(0.5)
    second = (await Message.objects.aget(pk=reply.pk)).checkpoint_at
    assert second > first  # the job says it is alive although no token arrives
    assert await generation.sweep() == []
    await client.post(f"/c/{conversation.pk}/stop/", headers={"HX-Request": "true"})
    assert await page.receive_until_final(reply.pk) == "stopped"
    await page.ws.disconnect()


async def test_a_slow_checkpoint_neither_holds_up_the_stream_nor_overwrites_the_final_text(
    upstream_is_simulator, alice, settings, monkeypatch
):
    import threading

    from chat import generation

    settings.PLAYGROUND_CHECKPOINT_SECONDS = 0.1
    released = threading.Event()
    save = generation.save_checkpoint

    def queued_behind_other_writes(*args):
        released.wait(10)
        save(*args)

    monkeypatch.setattr(generation, "save_checkpoint", queued_behind_other_writes)
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Go on [sim:length=60] [sim:delay=0.01]")

    # The first checkpoint is due after 0.1 s and waits: the text keeps coming regardless.
    whole = "".join(filler_tokens(60))
    await page.receive_until(lambda p: p.text.get(reply.pk) == whole, timeout=5)
    await asyncio.sleep(0.3)  # time enough to save the final text, if the job did not wait
    released.set()
    assert await page.receive_until_final(reply.pk) == "complete"
    await asyncio.sleep(0.3)  # and for the checkpoint to land, wherever it does
    await reply.arefresh_from_db()
    assert reply.content == whole  # it landed before the final save, not over it
    await page.ws.disconnect()


async def test_a_page_that_misses_a_frame_resyncs_from_the_job_instead_of_leaving_a_hole(
    upstream_is_simulator, alice
):
    from channels.layers import get_channel_layer

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Long [sim:delay=0.03] [sim:length=200]")
    await page.receive_until(lambda p: len(p.text.get(reply.pk, "")) > 10)

    # A frame that starts past what the page holds: one before it was lost on the way.
    await get_channel_layer().group_send(
        conversation.group_name,
        {
            "type": "stream.delta",
            "message": reply.pk,
            "content": "XYZ",
            "content_at": 10**6,
            "reasoning": "",
            "reasoning_at": 0,
            "audio": "",
        },
    )
    assert await page.receive_until_final(reply.pk) == "complete"
    await reply.arefresh_from_db()
    assert page.text[reply.pk] == reply.content  # resynced: no hole, no stray text
    assert "XYZ" not in page.text[reply.pk]
    await page.ws.disconnect()


async def test_a_page_that_did_not_follow_a_stream_to_its_end_gets_the_whole_finished_reply(
    upstream_is_simulator, alice
):
    """The job renders a finished reply once, around the blocks the following pages hold; a
    page that holds none of them renders it whole for itself."""
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from chat.generation import final_frame

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Say **hello** [sim:length=6]")
    assert await page.receive_until_final(reply.pk) == "complete"
    await reply.arefresh_from_db()

    # The same reply finishing again, as the job would announce it to pages that followed it:
    # this page no longer follows it (it holds no blocks of it).
    frame = await database_sync_to_async(final_frame)(
        await Message.objects.select_related("conversation").aget(pk=reply.pk),
        {"content": (1, ["<p>last</p>"]), "reasoning": (0, [])},
    )
    assert "html" not in frame and "kept_html" in frame
    await get_channel_layer().group_send(conversation.group_name, frame)
    whole = await page.ws.receive_from(timeout=10)
    assert f'id="message-{reply.pk}"' in whole and 'hx-swap-oob="outerHTML"' in whole
    assert "hx-preserve" not in whole  # the content itself, not the page's kept copy
    assert reply.html and reply.html in whole
    await page.ws.disconnect()


# Sending over the page's socket (what a browser page does while its socket is open)


async def test_a_message_sent_over_the_socket_is_saved_and_streams_to_every_page(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    sender = await open_page(client, conversation.pk)
    watcher = await open_page(client, conversation.pk)

    answer = await sender.send_message(text="Over the socket [sim:delay=0.01]")
    assert answer == {"type": "sent"}
    person, reply = [m async for m in conversation.messages.order_by("pk")]
    assert (person.role, person.content) == ("user", "Over the socket [sim:delay=0.01]")
    for page in (sender, watcher):
        assert await page.receive_until_final(reply.pk) == "complete"
        assert page.inserted == [person.pk, reply.pk]
    await reply.arefresh_from_db()
    assert watcher.text[reply.pk] == reply.content
    assert "Over the socket" in reply.content  # the simulator describes what it received
    for page in (sender, watcher):
        await page.ws.disconnect()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"text": "   "}, "Type a message or attach a file first."),
        ({"text": "x" * 100_001}, "A message can be at most 100000 characters."),
        ({"text": "With a file", "attachments": ["no-such-key"]}, "no longer available"),
    ],
)
async def test_a_message_refused_over_the_socket_saves_nothing_and_says_why(
    upstream_is_simulator, alice, message, reason
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    sender = await open_page(client, conversation.pk)
    watcher = await open_page(client, conversation.pk)

    answer = await sender.send_message(**message)
    assert answer["type"] == "refused"
    assert 'data-testid="error"' in answer["html"] and reason in html.unescape(answer["html"])
    assert not await conversation.messages.aexists()
    assert await watcher.ws.receive_nothing(timeout=0.2)

    # The socket goes on serving the page.
    assert await sender.send_message(text="Now properly [sim:delay=0]") == {"type": "sent"}
    reply = await conversation.messages.filter(role="assistant").aget()
    assert await watcher.receive_until_final(reply.pk) == "complete"
    for page in (sender, watcher):
        await page.ws.disconnect()


async def test_an_upload_of_someone_else_cannot_be_sent_over_the_socket(
    upstream_is_simulator, alice, bob
):
    theirs = await Attachment.objects.acreate(owner=bob, key="b" * 22, status="ready", kind="image")
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)

    answer = await page.send_message(text="Mine?", attachments=[theirs.key])
    assert answer["type"] == "refused"
    await theirs.arefresh_from_db()
    assert theirs.message_id is None and not await conversation.messages.aexists()
    await page.ws.disconnect()


async def test_a_message_sent_to_a_conversation_deleted_meanwhile_is_refused(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    await Conversation.objects.filter(pk=conversation.pk).adelete()

    answer = await page.send_message(text="Anyone there?")
    assert answer["type"] == "refused" and "no longer exists" in answer["html"]
    assert not await Message.objects.aexists()
    await page.ws.disconnect()
