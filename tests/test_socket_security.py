"""The chat socket is safe to expose: only the site's own pages open it, it ends with the session
that opened it, and no frame a client sends can break it."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import AsyncClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat.models import Conversation, Message
from playground.asgi import application
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "http://127.0.0.1:8000"
UNREADABLE = "That message could not be read."


def served(server=("127.0.0.1", 8000), scheme="ws"):
    """The app as a server runs it: the scope says which scheme and port it was reached on."""

    async def app(scope, receive, send):
        extra = {"scheme": scheme}
        if server is not None:
            extra["server"] = server
        return await application({**scope, **extra}, receive, send)

    return app


def socket(
    conversation_id: int,
    session_key: str | None = None,
    origin: str | None = SITE,
    host: str | None = None,
    **served_on,
) -> WebsocketCommunicator:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if host is not None:
        headers.append((b"host", host.encode()))
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    return WebsocketCommunicator(
        served(**served_on), f"/ws/conversations/{conversation_id}/", headers=headers
    )


async def logged_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def session_of(client: AsyncClient) -> str:
    return client.cookies["sessionid"].value


@pytest.fixture
async def chat(alice):
    """Alice's conversation with one message in it, and a session of hers."""
    conversation = await Conversation.objects.acreate(owner=alice, title="Test")
    message = await Message.objects.acreate(
        conversation=conversation, role="user", content="Hello", status="complete"
    )
    client = await logged_in(alice)
    return conversation, message, client


async def opened(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def answers_a_sync(ws: WebsocketCommunicator, message: Message) -> bool:
    """A sync that names the message as streaming always answers with it, whatever came before."""
    await ws.send_json_to({"action": "sync", "after": message.pk, "streaming": [message.pk]})
    async with asyncio.timeout(5):
        while True:
            frame = await ws.receive_from(timeout=5)
            if f'id="message-{message.pk}"' in frame:
                return True


async def closed_with(ws: WebsocketCommunicator, timeout: float = 3) -> int:
    async with asyncio.timeout(timeout):
        while True:
            output = await ws.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output.get("code")


# Origins: only the site's own pages open the socket


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
        "HTTP://127.0.0.1:8000",
    ],
)
async def test_the_sites_own_pages_open_the_socket(chat, origin):
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client), origin=origin))
    await ws.disconnect()


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port of the same host
        "http://localhost:9999",
        "http://127.0.0.1",  # port 80
        "https://127.0.0.1:8000",  # another scheme
        "ws://127.0.0.1:8000",
        "http://evil.example:8000",
        "http://127.0.0.1.evil.example:8000",
        "null",
        "",
        "http://127.0.0.1:8000/path",
        "http://user@127.0.0.1:8000",
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:99999",
    ],
)
async def test_a_page_from_another_origin_cannot_open_the_socket(chat, origin):
    conversation, _, client = chat
    connected, _ = await socket(conversation.pk, session_of(client), origin=origin).connect()
    assert not connected


async def test_a_socket_without_an_origin_is_refused(chat):
    conversation, _, client = chat
    connected, _ = await socket(conversation.pk, session_of(client), origin=None).connect()
    assert not connected


async def test_default_ports_are_the_same_origin_written_either_way(chat):
    conversation, _, client = chat
    for origin in ("http://localhost", "http://localhost:80"):
        ws = socket(conversation.pk, session_of(client), origin=origin, server=("::", 80))
        await opened(ws)
        await ws.disconnect()
    for origin in ("https://localhost", "https://localhost:443"):
        ws = socket(
            conversation.pk, session_of(client), origin=origin, server=("::", 443), scheme="wss"
        )
        await opened(ws)
        await ws.disconnect()
    ws = socket(conversation.pk, session_of(client), origin="http://localhost", scheme="wss")
    assert not (await ws.connect())[0]


async def test_a_subdomain_pattern_allows_subdomains_on_the_sites_own_port_only(chat, settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    conversation, _, client = chat
    ws = await opened(
        socket(conversation.pk, session_of(client), origin="http://a.example.com:8000")
    )
    await ws.disconnect()
    for origin in ("http://a.example.com:9999", "http://example.org:8000"):
        connected, _ = await socket(conversation.pk, session_of(client), origin=origin).connect()
        assert not connected


async def test_a_page_must_come_from_the_host_the_socket_was_opened_on(chat, settings):
    settings.ALLOWED_HOSTS = ["*"]
    conversation, _, client = chat
    ws = await opened(
        socket(conversation.pk, session_of(client), origin=SITE, host="127.0.0.1:8000")
    )
    await ws.disconnect()
    connected, _ = await socket(
        conversation.pk,
        session_of(client),
        origin="http://evil.example:8000",
        host="127.0.0.1:8000",
    ).connect()
    assert not connected


async def test_a_trusted_origin_behind_a_proxy_opens_the_socket(chat, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    conversation, _, client = chat
    ws = await opened(
        socket(conversation.pk, session_of(client), origin="https://chat.example.com")
    )
    await ws.disconnect()
    for origin in ("https://chat.example.com:8443", "http://chat.example.com"):
        connected, _ = await socket(conversation.pk, session_of(client), origin=origin).connect()
        assert not connected


async def test_a_trusted_origin_pattern_allows_subdomains_as_django_reads_it(chat, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client), origin="https://a.example.com"))
    await ws.disconnect()
    for origin in ("https://a.example.com:8443", "http://a.example.com", "https://example.org"):
        connected, _ = await socket(conversation.pk, session_of(client), origin=origin).connect()
        assert not connected


# The socket ends with its session


async def test_logging_out_in_another_tab_ends_the_socket_at_once(chat):
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    other_tab = AsyncClient()
    other_tab.cookies["sessionid"] = session_of(client)
    response = await other_tab.post("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(ws) == 4401


async def test_logging_out_leaves_the_users_other_sessions_open(chat, alice):
    conversation, message, client = chat
    elsewhere = await logged_in(alice)
    ws = await opened(socket(conversation.pk, session_of(elsewhere)))
    await client.post("/accounts/logout/")
    assert await answers_a_sync(ws, message)
    await ws.disconnect()


async def test_changing_the_password_ends_the_sockets_of_other_sessions(chat, alice):
    conversation, message, client = chat
    alice.is_staff = alice.is_superuser = True
    await alice.asave()
    laptop = await logged_in(alice)
    ws = await opened(socket(conversation.pk, session_of(laptop)))
    response = await client.post(
        "/admin/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "another-horse-battery-7",
            "new_password2": "another-horse-battery-7",
        },
    )
    assert response.status_code == 302, response.content
    assert await closed_with(ws) == 4401


async def test_a_password_set_from_the_command_line_ends_the_sockets(chat, alice):
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))

    def change():
        alice.set_password("another-horse-battery-7")
        alice.save()

    await sync_to_async(change)()
    assert await closed_with(ws) == 4401


async def test_a_session_that_expires_ends_its_socket(chat):
    conversation, _, client = chat
    key = session_of(client)

    def expire_soon():
        from django.contrib.sessions.backends.db import SessionStore

        store = SessionStore(key)
        store.load()
        store.set_expiry(1)
        store.save()

    await sync_to_async(expire_soon)()
    ws = await opened(socket(conversation.pk, key))
    assert await closed_with(ws, timeout=4) == 4401


@pytest.mark.parametrize(
    "action",
    [
        {"action": "send", "text": "Still me?", "attachments": []},
        {"action": "stop"},
        {"action": "sync", "after": 0, "streaming": []},
    ],
)
async def test_every_action_checks_the_session_first(chat, action):
    """A session removed without a word to the socket (another process, the store cleared):
    the next thing the socket is asked to do ends it, and is not done."""
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    await Session.objects.filter(session_key=session_of(client)).adelete()
    await ws.send_json_to(action)
    assert await closed_with(ws) == 4401
    assert await conversation.messages.acount() == 1


# Bad input gets an error frame; the socket stays


BAD_FRAMES = [
    "{",
    "not json",
    "[]",
    "42",
    "null",
    '"sync"',
    "{}",
    '{"action": 5}',
    '{"action": "dance"}',
    '{"action": "sync"}',
    '{"action": "sync", "after": "1"}',
    '{"action": "sync", "after": true}',
    '{"action": "sync", "after": 1.5}',
    '{"action": "sync", "after": ' + "9" * 400 + "}",
    '{"action": "sync", "after": -' + "9" * 400 + "}",
    '{"action": "sync", "after": ' + "9" * 5000 + "}",
    '{"action": "sync", "after": 1e400}',
    '{"action": "sync", "after": -1}',
    '{"action": "sync", "after": 0, "streaming": 3}',
    '{"action": "sync", "after": 0, "streaming": ["1"]}',
    '{"action": "sync", "after": 0, "streaming": [' + "9" * 400 + "]}",
    '{"action": "sync", "after": 0, "streaming": [' + ",".join(["1"] * 1000) + "]}",
    '{"action": "send", "text": 5}',
    '{"action": "send", "text": ["a"]}',
    '{"action": "send", "text": "hi", "attachments": "abc"}',
    '{"action": "send", "text": "hi", "attachments": [5]}',
    '{"action": "send", "text": "hi", "attachments": ["' + "k" * 1000 + '"]}',
    '{"action": "send", "text": "hi", "attachments": ["\\u0000"]}',
    '{"action": "send", "text": "hi", "attachments": ["\\ud800"]}',
    '{"action": "\\ud800"}',
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
]


@pytest.mark.parametrize("frame", BAD_FRAMES, ids=lambda f: f[:40])
async def test_a_frame_that_cannot_be_read_gets_an_error_and_the_socket_stays(chat, frame, caplog):
    conversation, message, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    with caplog.at_level(logging.WARNING):
        await ws.send_to(text_data=frame)
        answer = await ws.receive_json_from(timeout=5)
        assert answer == {"type": "error", "message": UNREADABLE}
        assert await answers_a_sync(ws, message)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await conversation.messages.acount() == 1
    await ws.disconnect()


async def test_a_binary_frame_gets_an_error_and_the_socket_stays(chat):
    conversation, message, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    await ws.send_to(bytes_data=b'{"action": "sync", "after": 0}')
    assert await ws.receive_json_from(timeout=5) == {"type": "error", "message": UNREADABLE}
    assert await answers_a_sync(ws, message)
    await ws.disconnect()


@pytest.mark.parametrize("kind", ["text", "bytes"])
async def test_a_frame_over_the_size_limit_is_refused_with_1009(chat, kind):
    from chat.consumers import MAX_FRAME_CHARS

    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    frame = json.dumps({"action": "send", "text": "x" * MAX_FRAME_CHARS})
    if kind == "text":
        await ws.send_to(text_data=frame)
    else:
        await ws.send_to(bytes_data=frame.encode())
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "error" and "too large" in answer["message"]
    output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close" and output["code"] == 1009
    assert "too large" in output["reason"]
    assert await conversation.messages.acount() == 1


async def test_the_frame_limit_leaves_room_for_the_longest_message_the_composer_takes():
    from chat.consumers import MAX_FRAME_CHARS
    from chat.forms import ComposerForm

    longest = ComposerForm.base_fields["text"].max_length
    worst = json.dumps({"action": "send", "text": "\x01" * longest, "attachments": ["k" * 32] * 10})
    assert len(worst) < MAX_FRAME_CHARS


async def test_text_over_the_composer_limit_is_refused_with_its_reason(chat):
    from chat.forms import ComposerForm

    conversation, _, client = chat
    longest = ComposerForm.base_fields["text"].max_length
    ws = await opened(socket(conversation.pk, session_of(client)))
    await ws.send_json_to({"action": "send", "text": "x" * (longest + 1), "attachments": []})
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "refused"
    assert f"at most {longest} characters" in answer["html"]
    await ws.disconnect()


async def test_a_lone_surrogate_in_a_message_is_sent_as_a_replacement_character(
    chat, upstream_is_simulator
):
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    await ws.send_to(
        text_data='{"action": "send", "text": "a\\ud800b \\ud83d\\ude00 [sim:delay=0]"}'
    )
    async with asyncio.timeout(10):
        while True:
            frame = await ws.receive_from(timeout=10)
            if frame.startswith("{"):
                assert json.loads(frame) == {"type": "sent"}
                break
    saved = await conversation.messages.filter(role="user").alast()
    assert saved.content == "a\ufffdb \U0001f600 [sim:delay=0]"
    await ws.disconnect()


async def test_a_null_character_in_a_message_is_refused_with_its_reason(chat):
    conversation, _, client = chat
    ws = await opened(socket(conversation.pk, session_of(client)))
    await ws.send_json_to({"action": "send", "text": "a\x00b", "attachments": []})
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "refused" and "Null characters" in answer["html"]
    assert await conversation.messages.acount() == 1
    await ws.disconnect()


# Fuzzing: whatever arrives, the socket answers and stays usable

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.integers(min_value=-(10**400), max_value=-(10**300))
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc"]))
    | st.sampled_from(["", "\x00", "\ud800", "\udfff", "\ufeff", "\U0010ffff", "a" * 300])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
actions = st.sampled_from(
    ["sync", "send", "stop", "", "SYNC", "accept", "__init__", "close"]
) | st.text(max_size=10)


def no_real_send(frame: dict) -> dict:
    """A well-formed send would start a reply: the fuzz keeps to frames the form refuses."""
    if frame.get("action") == "send" and isinstance(frame.get("attachments"), list):
        frame["attachments"] = [*frame["attachments"], "no-such-upload"]
    elif frame.get("action") == "send" and "attachments" not in frame:
        frame["attachments"] = ["no-such-upload"]
    return frame


action_frames = st.builds(
    lambda action, fields: no_real_send({**fields, "action": action}),
    actions,
    st.dictionaries(
        st.sampled_from(["after", "streaming", "text", "attachments", "x"]), json_values
    ),
)
nested = st.integers(min_value=1, max_value=20_000).map(lambda depth: "[" * depth + "]" * depth)


def as_text(value) -> str:
    return json.dumps(value, ensure_ascii=True)  # lone surrogates travel as \\ud800 escapes


text_frames = (
    action_frames.map(as_text)
    | json_values.map(as_text)
    | st.text(max_size=50)
    | nested
    | st.sampled_from(["", " ", "{", '{"action":', "\x00", "1" * 5000])
)
frames = text_frames.map(lambda t: ("text", t)) | st.binary(max_size=200).map(
    lambda b: ("bytes", b)
)


@pytest.mark.django_db(transaction=True)
def test_no_frame_breaks_the_socket(alice, caplog):
    """One socket takes a stream of generated frames; after each, a sync still answers, and
    nothing was logged as an error. (Sync test with a loop of its own: hypothesis calls the body
    once per example.)"""
    loop = asyncio.new_event_loop()

    async def start():
        conversation = await Conversation.objects.acreate(owner=alice, title="Test")
        message = await Message.objects.acreate(
            conversation=conversation, role="user", content="Hello", status="complete"
        )
        client = await logged_in(alice)
        return conversation, message, await opened(socket(conversation.pk, session_of(client)))

    async def drive(ws, message, kind, data):
        # As a server hands frames over (the communicator's send_to refuses empty ones).
        await ws.send_input({"type": "websocket.receive", kind: data})
        assert await answers_a_sync(ws, message)

    try:
        conversation, message, ws = loop.run_until_complete(start())

        @hypothesis_settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(frames)
        def check(frame):
            kind, data = frame
            loop.run_until_complete(drive(ws, message, kind, data))

        with caplog.at_level(logging.WARNING):
            check()
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert loop.run_until_complete(conversation.messages.acount()) == 1
        loop.run_until_complete(ws.disconnect())
    finally:
        loop.close()


def test_the_composer_knows_the_servers_limit(alice_client):
    from chat.forms import ComposerForm

    longest = ComposerForm.base_fields["text"].max_length
    page = alice_client.get("/new/").content.decode()
    assert f'data-max-length="{longest}"' in page
