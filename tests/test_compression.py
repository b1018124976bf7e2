"""Pages and JSON go out gzipped to those who ask (playground/middleware.py, Compression), the
same bytes once decoded; streamed files (media with ranges, zip exports) and requests another
site caused never are; and over a real daphne, pages shrink while files and the chat socket
stream as before."""

import asyncio
import contextlib
import gzip
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from chat.models import Conversation, Message
from chat.rendering import render_markdown
from tests.conftest import PASSWORD, REPO_ROOT, running
from tests.processes import free_port, manage
from tests.test_media_access import stored

pytestmark = pytest.mark.django_db(transaction=True)

GZIP = {"Accept-Encoding": "gzip, deflate, br"}
MEDIA = bytes(range(256)) * 400  # 102,400 bytes that gzip would shrink well


def long_conversation(owner, messages: int = 400) -> Conversation:
    """A conversation of `messages` messages (questions and Markdown answers, each turn its own
    text), saved as streaming leaves replies: usage, cost, timings, the request with its
    history."""
    conversation = Conversation.objects.create(owner=owner, title="A long conversation")
    started = timezone.now()
    history: list[dict] = []
    parent = None
    for turn in range(messages // 2):
        question = f"Question {turn}: how do I sort {turn * 7 % 31 + 2} items by key {turn}?"
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=question
        )
        history.append({"role": "user", "content": question})
        answer = (
            f"Use **sorted** with a key ({turn} of {messages // 2}):\n\n"
            f"```python\nitems = sorted(items, key=lambda item: item[{turn % 5}])\n```\n\n"
            f"| n | time |\n| --- | --- |\n| {turn} | {turn * 0.37:.2f} ms |\n"
        )
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role="assistant",
            content=answer,
            html=render_markdown(answer),
            status="complete",
            model="alibaba/qwen3.5-omni-flash",
            request={"model": "alibaba/qwen3.5-omni-flash", "messages": list(history)},
            usage={"prompt_tokens": 10 + 20 * turn, "completion_tokens": 20 + turn % 9},
            cost={"usd_spent": 7.6e-06 * (turn + 1)},
            finish_reason="stop",
            started_at=started,
            first_token_at=started + timedelta(seconds=0.4),
            finished_at=started + timedelta(seconds=3.2),
        )
        history.append({"role": "assistant", "content": answer})
    conversation.current = parent
    conversation.save(update_fields=["current"])
    return conversation


def same_page(html: str) -> str:
    """A page with what is new in every response (masked CSRF tokens, CSP nonces) blanked."""
    html = re.sub(r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")[A-Za-z0-9]+', r"\1-", html)
    return re.sub(r'nonce="[^"]*"', 'nonce=""', html)


@pytest.fixture
def conversation(alice) -> Conversation:
    return long_conversation(alice)


async def logged_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def test_a_400_message_page_arrives_gzipped_and_decodes_to_the_same_page(alice, conversation):
    client = await logged_in(alice)
    url = f"/c/{conversation.pk}/"
    plain = await client.get(url)
    packed = await client.get(url, headers=GZIP)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain
    assert packed["Content-Encoding"] == "gzip"
    assert int(packed["Content-Length"]) == len(packed.content)
    decoded = gzip.decompress(packed.content)
    assert decoded.count(b'data-testid="message"') == 400
    assert same_page(decoded.decode()) == same_page(plain.content.decode())
    print(f"400-message page: {len(plain.content):,} B plain, {len(packed.content):,} B gzip")
    assert len(packed.content) < len(plain.content) / 5
    for response in (plain, packed):
        assert "Accept-Encoding" in response["Vary"]


async def test_a_request_that_does_not_ask_for_gzip_gets_the_page_plain(alice, conversation):
    client = await logged_in(alice)
    for headers in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "br"}):
        response = await client.get(f"/c/{conversation.pk}/", headers=headers)
        assert "Content-Encoding" not in response
        assert response.content.count(b'data-testid="message"') == 400
        assert "Accept-Encoding" in response["Vary"]


async def test_json_answers_are_gzipped(alice, settings):
    attachment = await sync_to_async(stored)(alice, settings.MEDIA_ROOT, MEDIA)
    client = await logged_in(alice)
    plain = await client.get(f"/uploads/{attachment.key}/")
    packed = await client.get(f"/uploads/{attachment.key}/", headers=GZIP)
    assert packed["Content-Type"] == "application/json"
    assert packed["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed.content)) == plain.json()
    assert plain.json()["original_url"] == f"/media/{attachment.key}/original/"


async def test_the_markdown_export_is_gzipped_and_the_zip_export_is_not(alice, conversation):
    client = await logged_in(alice)
    markdown = await client.get(f"/c/{conversation.pk}/export.md", headers=GZIP)
    assert markdown["Content-Type"].startswith("text/markdown")
    assert markdown["Content-Encoding"] == "gzip"
    assert markdown["Content-Disposition"].startswith("attachment;")
    assert "Question 199" in gzip.decompress(markdown.content).decode()

    archive = await client.get(f"/c/{conversation.pk}/export.zip", headers=GZIP)
    assert archive.streaming and "Content-Encoding" not in archive
    body = b"".join(archive.streaming_content)
    assert int(archive["Content-Length"]) == len(body)
    assert zipfile.ZipFile(BytesIO(body)).testzip() is None


async def test_media_streams_untouched_with_its_length_and_ranges(alice, settings):
    for content_type in ("video/mp4", "text/plain"):  # text/plain is served as a download
        attachment = await sync_to_async(stored)(
            alice, settings.MEDIA_ROOT, MEDIA, name="clip.mp4", content_type=content_type
        )
        client = await logged_in(alice)
        url = f"/media/{attachment.key}/original/"
        whole = await client.get(url, headers=GZIP)
        assert whole.status_code == 200 and whole.streaming
        assert "Content-Encoding" not in whole
        assert "Accept-Encoding" not in whole.get("Vary", "")  # (Vary: Cookie, from the session)
        assert whole["Content-Length"] == str(len(MEDIA))
        assert b"".join(whole.streaming_content) == MEDIA

        part = await client.get(url, headers={**GZIP, "Range": "bytes=1000-5999"})
        assert part.status_code == 206
        assert "Content-Encoding" not in part
        assert part["Content-Range"] == f"bytes 1000-5999/{len(MEDIA)}"
        assert part["Content-Length"] == "5000"
        assert b"".join(part.streaming_content) == MEDIA[1000:6000]

        cached = await client.get(url, headers={**GZIP, "If-None-Match": whole["ETag"]})
        assert cached.status_code == 304 and cached.content == b""
        assert "Content-Encoding" not in cached


async def test_head_of_a_page_says_gzip_and_sends_no_body(alice, conversation):
    client = await logged_in(alice)
    response = await client.head(f"/c/{conversation.pk}/", headers=GZIP)
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert response.content == b""


async def test_requests_another_site_caused_get_the_page_plain(alice, conversation):
    """BREACH needs many requests, with guesses in them, sent from the attacker's page."""
    client = await logged_in(alice)
    url = f"/c/{conversation.pk}/"
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another subdomain may be someone else's
        {"Referer": "https://evil.example/attack"},  # a browser without Sec-Fetch-Site
        {"Sec-Fetch-Site": "cross-site", "Referer": "http://testserver/"},  # Sec-Fetch wins
    ):
        response = await client.get(url, headers={**GZIP, **headers})
        assert response.status_code == 200
        assert "Content-Encoding" not in response, headers
        assert "Accept-Encoding" in response["Vary"]
    for headers in (
        {"Sec-Fetch-Site": "same-origin"},  # the app's own links, forms and htmx
        {"Sec-Fetch-Site": "none"},  # typed, or a bookmark
        {"Referer": f"http://testserver/c/{conversation.pk}/"},
    ):
        response = await client.get(url, headers={**GZIP, **headers})
        assert response["Content-Encoding"] == "gzip", headers


async def test_the_csrf_token_in_a_page_is_masked_anew_in_every_response_and_padded(
    alice, conversation
):
    client = await logged_in(alice)
    tokens, sizes = [], set()
    for _ in range(3):
        response = await client.get(f"/c/{conversation.pk}/", headers=GZIP)
        body = gzip.decompress(response.content)
        sizes.add(len(response.content))
        tokens.append(set(re.findall(rb'"X-CSRFToken": "([A-Za-z0-9]+)"', body)))
        assert response.content[3] & gzip.FNAME  # Django's random-length padding is kept
    secret = client.cookies["csrftoken"].value
    assert all(len(found) == 1 for found in tokens)
    assert len(set.union(*tokens)) == 3  # a new mask each time: nothing constant to guess
    assert secret.encode() not in set.union(*tokens)
    assert len(sizes) > 1  # the padding changes the length of the same page


async def test_playground_compress_false_leaves_everything_plain(settings, alice, conversation):
    settings.PLAYGROUND_COMPRESS = False
    client = await logged_in(alice)  # a new client builds its middleware with the setting
    response = await client.get(f"/c/{conversation.pk}/", headers=GZIP)
    assert "Content-Encoding" not in response
    assert response.content.count(b'data-testid="message"') == 400


# Over a real daphne --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(simulator_url) -> Iterator[dict]:
    """The app under daphne with the simulator as its upstream: alice, her 400-message
    conversation, an empty one and a video file."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "PLAYGROUND_DATA_DIR": data_dir,
            "PLAYGROUND_MANIFEST_STATIC": "false",
            "PLAYGROUND_API_BASE": simulator_url,
            "PLAYGROUND_API_KEY": "",
            "PLAYGROUND_AUTO_TITLES": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": "",
            "REDIS_URL": "",
        }
        manage(env, "migrate", "--noinput", "-v", "0")
        created = manage(
            env,
            "shell",
            "-c",
            "import json; from django.conf import settings; "
            "from django.contrib.auth import get_user_model; from chat.models import Conversation; "
            "from tests.test_compression import MEDIA, long_conversation; "
            "from tests.test_media_access import stored; "
            f"alice = get_user_model().objects.create_user('alice', password={PASSWORD!r}); "
            "print(json.dumps({'long': long_conversation(alice).pk, "
            "'empty': Conversation.objects.create(owner=alice, title='Socket').pk, "
            "'video': stored(alice, settings.MEDIA_ROOT, MEDIA, name='clip.mp4', "
            "content_type='video/mp4').key}))",
        )
        ids = json.loads(created.strip().splitlines()[-1])
        port = free_port()
        args = [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(port)]
        with running(args + ["playground.asgi:application"], port, env):
            yield {**ids, "port": port, "url": f"http://127.0.0.1:{port}"}


@contextlib.asynccontextmanager
async def alice_over_http(server: dict):
    async with httpx.AsyncClient(base_url=server["url"], timeout=20) as client:
        form = await client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        response = await client.post(
            "/accounts/login/",
            data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
        )
        assert response.status_code == 302, response.text[:500]
        yield client


async def raw(client: httpx.AsyncClient, url: str, **headers) -> tuple[httpx.Response, bytes]:
    """The response and its body as it came over the wire (not decoded)."""
    async with client.stream("GET", url, headers=headers) as response:
        return response, b"".join([chunk async for chunk in response.aiter_raw()])


async def test_over_daphne_the_page_is_gzipped_on_the_wire(server):
    async with alice_over_http(server) as client:
        url = f"/c/{server['long']}/"
        plain, plain_body = await raw(client, url, **{"Accept-Encoding": "identity"})
        packed, packed_body = await raw(client, url, **{"Accept-Encoding": "gzip"})
    assert plain.status_code == packed.status_code == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(packed_body)
    decoded = gzip.decompress(packed_body).decode()
    assert same_page(decoded) == same_page(plain_body.decode())
    print(f"over daphne: {len(plain_body):,} B plain, {len(packed_body):,} B gzip")
    assert len(packed_body) < len(plain_body) / 5


async def test_over_daphne_media_ranges_arrive_whole_and_unencoded(server):
    async with alice_over_http(server) as client:
        url = f"/media/{server['video']}/original/"
        whole, body = await raw(client, url, **{"Accept-Encoding": "gzip"})
        assert whole.status_code == 200 and body == MEDIA
        assert "content-encoding" not in whole.headers
        assert whole.headers["content-length"] == str(len(MEDIA))
        part, body = await raw(client, url, **{"Accept-Encoding": "gzip", "Range": "bytes=-100"})
        assert part.status_code == 206 and body == MEDIA[-100:]
        assert "content-encoding" not in part.headers
        size = len(MEDIA)
        assert part.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
        assert part.headers["content-length"] == "100"


async def test_over_daphne_the_chat_socket_still_streams_a_reply(server):
    from websockets.asyncio.client import connect

    from tests.test_relay import Page
    from tests.test_scaled import Socket

    async with asyncio.timeout(60), alice_over_http(server) as client:
        async with connect(
            f"ws://127.0.0.1:{server['port']}/ws/conversations/{server['empty']}/",
            origin=server["url"],
            additional_headers={"Cookie": f"sessionid={client.cookies['sessionid']}"},
        ) as connection:
            page = Page(Socket(connection))
            await page.ws.send_json_to({"action": "sync", "after": 0, "streaming": []})
            answer = await page.send_message(text="Hello [sim:length=60] [sim:delay=0.01]")
            assert answer == {"type": "sent"}
            await page.receive_until(lambda p: len(p.inserted) >= 2)
            reply = max(page.inserted)
            assert await page.receive_until_final(reply, timeout=30) == "complete"
    assert page.frames > 3  # streamed in pieces, not held back and sent at the end
    assert "simulator" in page.text[reply]


async def test_static_files_are_left_to_whitenoise(settings):
    """WhiteNoise answers before Compression runs: with its own precompressed copies (made by
    CompressedManifestStaticFilesStorage at collectstatic), or here, from the source folders,
    the file as it is."""
    settings.WHITENOISE_USE_FINDERS = True
    response = await AsyncClient().get("/static/chat/chat.js", headers=GZIP)
    assert response.status_code == 200
    assert "Content-Encoding" not in response
    source = (Path(REPO_ROOT) / "static/chat/chat.js").read_bytes()
    assert b"".join(response.streaming_content) == source
