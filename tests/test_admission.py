"""Admission of turns (chat/admission.py): a burst of sends waits for a turn slot, and one that
finds none in time is answered busy (503 with Retry-After, or a `busy` frame), its text kept;
never a server error, even when the database pool runs dry."""

import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from chat import admission, turns
from chat.admission import Busy, Gate
from chat.models import Conversation, Message
from tests.conftest import PASSWORD, running
from tests.processes import free_port, manage, scratch_database
from tests.test_relay import logged_in, new_conversation, open_page

# The gate itself, with real asyncio


async def test_the_gate_lets_in_as_many_as_it_has_slots_and_the_next_waits_its_turn():
    gate = Gate()
    await gate.acquire(2, wait=1)
    await gate.acquire(2, wait=1)
    order = []

    async def third(name):
        await gate.acquire(2, wait=1)
        order.append(name)

    waiting = [asyncio.create_task(third("c")), asyncio.create_task(third("d"))]
    await asyncio.sleep(0.02)
    assert (gate.in_use, order) == (2, [])
    gate.release()
    await asyncio.sleep(0.02)
    assert (gate.in_use, order) == (2, ["c"])  # the first to come, and only one
    gate.release()
    await asyncio.gather(*waiting)
    assert order == ["c", "d"]
    for _ in range(2):
        gate.release()
    assert (gate.in_use, list(gate.waiters)) == (0, [])


async def test_a_newcomer_does_not_overtake_someone_waiting():
    gate = Gate()
    await gate.acquire(1, wait=1)
    early = asyncio.create_task(gate.acquire(1, wait=1))
    await asyncio.sleep(0.01)
    gate.release()  # handed straight to the one waiting
    with pytest.raises(Busy):
        await gate.acquire(1, wait=0.05)
    await early
    assert gate.in_use == 1


async def test_a_wait_with_no_slot_freed_is_refused_as_busy_and_leaves_nothing_behind():
    gate = Gate()
    await gate.acquire(1, wait=1)
    began = asyncio.get_running_loop().time()
    with pytest.raises(Busy) as refused:
        await gate.acquire(1, wait=0.1)
    assert asyncio.get_running_loop().time() - began == pytest.approx(0.1, abs=0.08)
    assert refused.value.retry_after == admission.RETRY_AFTER_SECONDS
    assert (gate.in_use, list(gate.waiters)) == (1, [])
    gate.release()
    assert gate.in_use == 0


async def test_the_slot_is_given_back_when_the_work_fails(settings):
    settings.PLAYGROUND_TURN_SLOTS, settings.PLAYGROUND_TURN_WAIT_SECONDS = 1, 0.05
    gate = Gate()
    with pytest.raises(ZeroDivisionError):
        async with admission.turn_slot(gate):
            assert gate.in_use == 1
            raise ZeroDivisionError
    assert gate.in_use == 0
    async with admission.turn_slot(gate):  # and it can be taken again
        assert gate.in_use == 1


async def test_the_slot_is_given_back_when_the_work_is_cancelled(settings):
    settings.PLAYGROUND_TURN_SLOTS, settings.PLAYGROUND_TURN_WAIT_SECONDS = 1, 5
    gate = Gate()
    inside = asyncio.Event()

    async def work():
        async with admission.turn_slot(gate):
            inside.set()
            await asyncio.sleep(60)

    holder = asyncio.create_task(work())
    await inside.wait()
    waiter = asyncio.create_task(gate.acquire(1, wait=5))  # waiting, then cancelled too
    await asyncio.sleep(0.01)
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    assert (gate.in_use, list(gate.waiters)) == (0, [])


async def test_a_slot_handed_over_as_the_wait_is_cancelled_is_passed_on():
    gate = Gate()
    await gate.acquire(1, wait=1)
    first = asyncio.create_task(gate.acquire(1, wait=5))
    second = asyncio.create_task(gate.acquire(1, wait=5))
    await asyncio.sleep(0.01)
    gate.release()  # first is handed the slot ...
    first.cancel()  # ... and cancelled before it runs: the slot goes on to second
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
    assert gate.in_use == 1


def test_the_default_slots_are_half_the_pool(monkeypatch):
    import importlib

    import playground.settings as project

    for size, slots in (("20", 10), ("1", 1), ("7", 3)):
        monkeypatch.setenv("PLAYGROUND_DB_POOL_SIZE", size)
        monkeypatch.delenv("PLAYGROUND_TURN_SLOTS", raising=False)
        assert importlib.reload(project).PLAYGROUND_TURN_SLOTS == slots
    monkeypatch.setenv("PLAYGROUND_DB_POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:5432/db")
    assert importlib.reload(project).DATABASES["default"]["OPTIONS"]["pool"]["timeout"] == 2.5
    monkeypatch.undo()
    importlib.reload(project)


# Sends with every slot taken


@contextlib.asynccontextmanager
async def slots_full(settings, wait: float = 0.1):
    """Every turn slot of this process held by someone else for the block."""
    settings.PLAYGROUND_TURN_SLOTS, settings.PLAYGROUND_TURN_WAIT_SECONDS = 1, wait
    await admission.TURNS.acquire(1, wait=1)
    try:
        yield
    finally:
        admission.TURNS.release()


@pytest.mark.django_db(transaction=True)
async def test_a_send_with_no_slot_free_is_answered_busy_with_the_text_kept(settings, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    async with slots_full(settings):
        response = await client.post(
            f"/c/{conversation.pk}/send/",
            {"text": "Keep <this> text"},
            headers={"HX-Request": "true"},
        )
        page = await client.post(f"/c/{conversation.pk}/send/", {"text": "And this one"})
    assert response.status_code == 503
    assert response["Retry-After"] == str(admission.RETRY_AFTER_SECONDS)
    body = response.content.decode()
    assert 'id="composer"' in body and "Keep &lt;this&gt; text</textarea>" in body
    assert 'role="status"' in body and "The server is busy; retrying…" in body
    # Without the page's script: a page that says so, with the text to send again.
    assert page.status_code == 503 and page["Retry-After"]
    assert "The server is busy" in page.content.decode()
    assert "And this one</textarea>" in page.content.decode()
    assert await Message.objects.filter(conversation=conversation).acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_send_waits_for_a_slot_and_is_taken_when_one_frees(
    upstream_is_simulator, settings, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    async with slots_full(settings, wait=5):
        sending = asyncio.create_task(
            client.post(f"/c/{conversation.pk}/send/", {"text": "Wait for me [sim:delay=0]"})
        )
        await asyncio.sleep(0.2)
        assert not sending.done()
    response = await asyncio.wait_for(sending, 10)
    assert response.status_code == 302
    assert await Message.objects.filter(conversation=conversation).acount() == 2


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_send_still_leads_to_the_log_in_page(settings):
    from django.test import AsyncClient

    response = await AsyncClient().post("/c/1/send/", {"text": "Hello"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/c/1/send/")


@pytest.mark.django_db(transaction=True)
async def test_a_socket_send_with_no_slot_free_is_answered_busy(
    upstream_is_simulator, settings, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    async with slots_full(settings):
        answer = await page.send_message(text="Over a busy socket")
    assert answer == {"type": "busy", "retry_after": admission.RETRY_AFTER_SECONDS}
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    # Tried again once a slot is free, as the page does: taken.
    assert await page.send_message(text="Over a busy socket [sim:delay=0]") == {"type": "sent"}
    await page.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_chat_s_first_message_with_no_slot_free_is_answered_busy(
    upstream_is_simulator, settings, alice
):
    from tests.test_new_chat_socket import answer as next_answer
    from tests.test_new_chat_socket import open_new_chat

    client = await logged_in(alice)
    page = await open_new_chat(client)
    async with slots_full(settings):
        answer = await page.send_message(text="A new chat on a busy server")
    assert answer == {"type": "busy", "retry_after": admission.RETRY_AFTER_SECONDS}
    assert not await Conversation.objects.filter(owner=alice).aexists()
    # Sent again once a slot is free: the conversation is created then, once.
    await page.ws.send_json_to({"action": "send", "text": "A new chat [sim:delay=0]"})
    assert (await next_answer(page, "sent", "busy"))["type"] == "sent"
    assert await Conversation.objects.filter(owner=alice).acount() == 1
    await page.ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_retry_with_no_slot_free_is_answered_busy_in_place(settings, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    prompt = await Message.objects.acreate(conversation=conversation, role="user", content="Hi")
    reply = await Message.objects.acreate(
        conversation=conversation, parent=prompt, role="assistant", content="Hello", status="error"
    )
    async with slots_full(settings):
        response = await client.post(
            f"/c/{conversation.pk}/m/{reply.pk}/retry/", headers={"HX-Request": "true"}
        )
    assert response.status_code == 503 and response["Retry-After"]
    assert response["HX-Retarget"] == f"#message-{reply.pk}"
    assert "The server is busy" in response.content.decode()
    assert await Message.objects.filter(conversation=conversation).acount() == 2


# What a turn costs


@pytest.mark.django_db(transaction=True)
def test_a_turn_costs_few_queries(settings, alice):
    conversation = Conversation.objects.create(owner=alice, title="Counted")
    turns.take_turn(alice, conversation.pk, QueryDict("text=First"))
    with CaptureQueriesContext(connection) as counted:
        form, turn = turns.take_turn(alice, conversation.pk, QueryDict("text=Second"))
    assert turn is not None
    queries = [
        q["sql"]
        for q in counted.captured_queries
        if not q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    ]
    # The conversation (locked), its messages, the two new rows, the conversation's current
    # reply and the path's attachments: nothing saved twice, nothing looked up again.
    assert len(queries) <= 6, "\n".join(queries)
    conversation.refresh_from_db()
    assert conversation.current_id == turn[1][-1].pk


# The pool running dry in a real process: busy, never a server error


@pytest.mark.services
def test_a_send_that_finds_no_database_connection_is_answered_busy_not_500(services):
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(scratch_database(services["database_url"], "admission"))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        simulator_port, port = free_port(), free_port()
        simulator = [sys.executable, "-m", "chat.simulator", "--host", "127.0.0.1"]
        stack.enter_context(running([*simulator, "--port", str(simulator_port)], simulator_port))
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": services["redis_url"],
            "PLAYGROUND_REDIS_PREFIX": f"playground-admission-{secrets.token_hex(6)}",
            "PLAYGROUND_DATA_DIR": str(data_dir),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_DEBUG": "false",
            "PLAYGROUND_MANIFEST_STATIC": "false",
            "PLAYGROUND_API_BASE": f"http://127.0.0.1:{simulator_port}/v1",
            "PLAYGROUND_API_KEY": "",
            # One connection, lent for at most a moment, and the gate wide open: sends at
            # once must run out of connections.
            "PLAYGROUND_DB_POOL_SIZE": "1",
            "PLAYGROUND_DB_POOL_TIMEOUT": "0.1",
            "PLAYGROUND_TURN_SLOTS": "100",
            "ASGI_THREADS": "8",
        }
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        created = manage(
            env,
            "shell",
            "-c",
            "import json; from django.contrib.auth import get_user_model; "
            "from chat.models import Conversation; "
            f"alice = get_user_model().objects.create_user('alice', password={PASSWORD!r}); "
            "print(json.dumps([Conversation.objects.create(owner=alice, title=str(i)).pk "
            "for i in range(30)]))",
        )
        ids = json.loads(created.strip().splitlines()[-1])
        daphne = str(Path(sys.executable).with_name("daphne"))
        stack.enter_context(
            running(
                [daphne, "-b", "127.0.0.1", "-p", str(port), "playground.asgi:application"],
                port,
                env,
            )
        )
        statuses = asyncio.run(burst(f"http://127.0.0.1:{port}", ids))
    assert 500 not in statuses, statuses
    assert 503 in statuses, statuses  # the pool did run dry: the test tested something
    assert set(statuses) <= {200, 503}, statuses


async def burst(base: str, conversation_ids: list[int]) -> list[int]:
    """Log in, then send one message to each conversation, all at once, as htmx posts."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        page = await client.get("/accounts/login/")
        token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        credentials = {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
        await client.post("/accounts/login/", data=credentials)
        assert "sessionid" in client.cookies
        token = client.cookies["csrftoken"]

        async def send(conversation_id: int) -> int:
            response = await client.post(
                f"/c/{conversation_id}/send/",
                data={"text": "Burst [sim:length=3] [sim:delay=0]"},
                headers={"HX-Request": "true", "X-CSRFToken": token},
            )
            if response.status_code == 503:
                assert "The server is busy" in response.text and response.headers["Retry-After"]
            return response.status_code

        return await asyncio.gather(*(send(cid) for cid in conversation_ids))
