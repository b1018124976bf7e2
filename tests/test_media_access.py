"""Attachment files are served only to those who may see them, safely, and with byte ranges."""

import asyncio
import functools
import os
import warnings
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

from chat import attachments
from chat.models import Attachment

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored(
    owner,
    media_root: Path,
    data: bytes,
    name: str = "photo.png",
    content_type: str = "image/png",
    kind: str = "image",
    derived: tuple[bytes, str, str] | None = None,
    poster: bytes | None = None,
    status: str = Attachment.Status.READY,
) -> Attachment:
    """A processed attachment with real files, as the upload path leaves it."""
    attachment = Attachment(
        owner=owner,
        key=os.urandom(8).hex(),
        original_name=name,
        status=status,
        kind=kind,
        content_type=content_type,
        size=len(data),
        declared_size=len(data),
        received=len(data),
    )
    folder = Path(media_root) / "attachments" / str(owner.pk) / attachment.key
    (folder / "work").mkdir(parents=True)
    (folder / "original").write_bytes(data)
    attachment.file.name = f"attachments/{owner.pk}/{attachment.key}/original"
    if derived is not None:
        body, file_name, derived_type = derived
        (folder / "work" / file_name).write_bytes(body)
        attachment.derived.name = f"attachments/{owner.pk}/{attachment.key}/work/{file_name}"
        attachment.derived_content_type = derived_type
    if poster is not None:
        (folder / "work" / "poster.jpg").write_bytes(poster)
        attachment.poster.name = f"attachments/{owner.pk}/{attachment.key}/work/poster.jpg"
    attachment.save()
    return attachment


def url(attachment: Attachment, variant: str = "original") -> str:
    return f"/media/{attachment.key}/{variant}/"


DATA = bytes(range(256)) * 40  # 10,240 bytes, each offset recognisable


def test_the_owner_gets_the_file_inline_with_safe_headers(client, alice, media_root):
    attachment = stored(alice, media_root, DATA)
    client.force_login(alice)
    response = client.get(url(attachment))
    assert response.status_code == 200
    assert response.getvalue() == DATA
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == "inline"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert response["Content-Length"] == str(len(DATA))
    assert response["Accept-Ranges"] == "bytes"


def test_download_asks_the_browser_to_save_the_file_under_a_safe_name(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name='holiday "best".png')
    client.force_login(alice)
    response = client.get(url(attachment) + "?download=1")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        "attachment; filename=\"holiday _best_.png\"; filename*=UTF-8''holiday%20%22best%22.png"
    )
    assert response["Content-Type"] == "image/png"


def test_a_name_in_any_script_gets_an_ascii_fallback(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name="café 東京.png")
    client.force_login(alice)
    disposition = client.get(url(attachment) + "?download=1")["Content-Disposition"]
    assert disposition.startswith('attachment; filename="cafe.png"; ')
    assert "filename*=UTF-8''caf%C3%A9%20%E6%9D%B1%E4%BA%AC.png" in disposition
    assert disposition.isascii()
    attachment = stored(alice, media_root, DATA, name="東京.png")
    disposition = client.get(url(attachment) + "?download=1")["Content-Disposition"]
    assert disposition.startswith('attachment; filename="attachment.png"; ')


def test_a_type_outside_the_allow_list_is_served_as_a_download_of_bytes(client, alice, media_root):
    for claimed in ("text/html", "image/svg+xml", "application/pdf", ""):
        attachment = stored(alice, media_root, b"<script>alert(1)</script>", content_type=claimed)
        client.force_login(alice)
        response = client.get(url(attachment))
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["X-Content-Type-Options"] == "nosniff"


def test_a_range_request_gets_those_bytes_only(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name="clip.mp4", content_type="video/mp4")
    client.force_login(alice)
    response = client.get(url(attachment), headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.getvalue() == DATA[1000:2000]
    assert response["Content-Range"] == f"bytes 1000-1999/{len(DATA)}"
    assert response["Content-Length"] == "1000"
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == "inline"


def test_open_and_suffix_ranges_reach_the_end_of_the_file(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name="clip.mp4", content_type="video/mp4")
    client.force_login(alice)
    response = client.get(url(attachment), headers={"Range": "bytes=10000-"})
    assert response.status_code == 206
    assert response.getvalue() == DATA[10000:]
    assert response["Content-Range"] == f"bytes 10000-{len(DATA) - 1}/{len(DATA)}"
    response = client.get(url(attachment), headers={"Range": "bytes=-100"})
    assert response.getvalue() == DATA[-100:]
    response = client.get(url(attachment), headers={"Range": "bytes=10200-99999"})
    assert response.getvalue() == DATA[10200:]


def test_a_range_past_the_end_is_unsatisfiable(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name="clip.mp4", content_type="video/mp4")
    client.force_login(alice)
    response = client.get(url(attachment), headers={"Range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(DATA)}"


def test_several_ranges_or_a_stale_if_range_get_the_whole_file(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, name="clip.mp4", content_type="video/mp4")
    client.force_login(alice)
    response = client.get(url(attachment), headers={"Range": "bytes=0-9,20-29"})
    assert response.status_code == 200
    assert response.getvalue() == DATA
    etag = response["ETag"]
    response = client.get(url(attachment), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert response.status_code == 200
    response = client.get(url(attachment), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert response.status_code == 206
    assert response.getvalue() == DATA[:10]


def test_one_answer_carries_at_most_the_range_window(client, alice, media_root, monkeypatch):
    monkeypatch.setattr(attachments, "RANGE_WINDOW_BYTES", 4096)
    attachment = stored(alice, media_root, DATA, name="clip.mp4", content_type="video/mp4")
    client.force_login(alice)
    response = client.get(url(attachment), headers={"Range": "bytes=100-"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-4195/{len(DATA)}"
    assert response.getvalue() == DATA[100:4196]


def test_the_sent_variant_is_the_converted_file_when_there_is_one(client, alice, media_root):
    converted = b"converted mp4 bytes" * 10
    attachment = stored(
        alice,
        media_root,
        DATA,
        name="clip.mkv",
        content_type="video/x-matroska",
        kind="video",
        derived=(converted, "derived.mp4", "video/mp4"),
    )
    client.force_login(alice)
    response = client.get(url(attachment, "sent"))
    assert response.getvalue() == converted
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == "inline"
    download = client.get(url(attachment, "sent") + "?download=1")
    assert download["Content-Disposition"] == 'attachment; filename="clip.mp4"'
    original = client.get(url(attachment, "original"))
    assert original.getvalue() == DATA
    assert original["Content-Type"] == "application/octet-stream"  # not one browsers play
    assert original["Content-Disposition"] == 'attachment; filename="clip.mkv"'


def test_the_sent_variant_is_the_original_when_nothing_was_converted(client, alice, media_root):
    attachment = stored(alice, media_root, DATA)
    client.force_login(alice)
    response = client.get(url(attachment, "sent"))
    assert response.getvalue() == DATA
    assert response["Content-Type"] == "image/png"


def test_the_poster_is_an_inline_jpeg(client, alice, media_root):
    attachment = stored(alice, media_root, DATA, kind="video", poster=b"\xff\xd8jpeg")
    client.force_login(alice)
    response = client.get(url(attachment, "poster"))
    assert response.getvalue() == b"\xff\xd8jpeg"
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == "inline"


def test_missing_variants_and_unfinished_attachments_are_not_found(client, alice, media_root):
    client.force_login(alice)
    ready = stored(alice, media_root, DATA)
    assert client.get(url(ready, "poster")).status_code == 404  # it has none
    assert client.get(url(ready, "thumbnail")).status_code == 404
    for status in ("uploading", "processing", "failed"):
        unfinished = stored(alice, media_root, DATA, status=status)
        assert client.get(url(unfinished)).status_code == 404
    assert client.get("/media/nosuchkey/original/").status_code == 404


def test_another_person_and_anonymous_visitors_get_not_found(client, alice, bob, media_root):
    attachment = stored(alice, media_root, DATA, poster=b"\xff\xd8jpeg")
    for variant in ("original", "sent", "poster"):
        response = client.get(url(attachment, variant))
        assert response.status_code == 404  # not a redirect to the log-in page
    client.force_login(bob)
    for variant in ("original", "sent", "poster"):
        assert client.get(url(attachment, variant)).status_code == 404
        assert client.get(url(attachment, variant) + "?download=1").status_code == 404


def test_access_is_decided_in_one_place(alice, bob, media_root):
    from django.contrib.auth.models import AnonymousUser

    attachment = stored(alice, media_root, DATA)
    assert attachments.can_view(alice, attachment)
    assert not attachments.can_view(bob, attachment)
    assert not attachments.can_view(AnonymousUser(), attachment)


def test_head_answers_the_headers_without_the_body(client, alice, media_root):
    attachment = stored(alice, media_root, DATA)
    client.force_login(alice)
    response = client.head(url(attachment))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(DATA))
    assert response.content == b""


def test_a_cached_copy_is_confirmed_without_sending_it_again(client, alice, media_root):
    attachment = stored(alice, media_root, DATA)
    client.force_login(alice)
    etag = client.get(url(attachment))["ETag"]
    response = client.get(url(attachment), headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


@pytest.mark.django_db(transaction=True)
async def test_over_asgi_the_file_streams_in_blocks_from_a_worker_thread(client, alice, media_root):
    """Django's own FileResponse would be read whole into memory under ASGI; this must not."""
    data = os.urandom(3 * attachments.SERVE_BLOCK_BYTES + 123)
    attachment = await sync_to_async(stored)(
        alice, media_root, data, name="clip.mp4", content_type="video/mp4"
    )
    await sync_to_async(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    sent: list[dict] = []
    done = asyncio.Event()
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    scope = {
        "type": "http",
        "method": "GET",
        "path": url(attachment),
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("localhost", 80),
    }
    with warnings.catch_warnings():
        # Django warns when an async server has to drain a synchronous iterator: make it fail.
        warnings.filterwarnings("error", message=".*synchronous iterators.*")
        await asyncio.wait_for(ASGIHandler()(scope, receive, send), 30)
    assert sent[0]["status"] == 200
    bodies = [m["body"] for m in sent[1:] if m.get("body")]
    assert b"".join(bodies) == data
    assert len(bodies) >= 4


class FakeTwistedRequest:
    """What daphne's `send` is bound to: a Twisted request that takes push producers."""

    def __init__(self):
        self.producer = None
        self.events: list[str] = []

    def registerProducer(self, producer, streaming):
        assert streaming and self.producer is None
        self.producer = producer
        self.events.append("register")

    def unregisterProducer(self):
        self.producer = None
        self.events.append("unregister")


async def test_a_body_waits_while_the_connection_buffer_is_full():
    protocol = FakeTwistedRequest()
    sent: list[bytes] = []

    async def handle_reply(protocol, message):  # daphne's Server.handle_reply
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            protocol.events.append(f"body {message['body']!r}")
            if message["body"] == b"first":
                protocol.producer.pauseProducing()  # Twisted: the send buffer is full

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"first", b"second"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    paced = attachments.paced_http(app)
    task = asyncio.create_task(
        paced({"type": "http"}, None, functools.partial(handle_reply, protocol))
    )
    await asyncio.sleep(0.05)
    assert sent == [b"first"]  # held back until the client reads
    protocol.producer.resumeProducing()
    await asyncio.wait_for(task, 5)
    assert sent == [b"first", b"second", b""]
    # Unregistered before the last message, which finishes the Twisted request.
    assert protocol.events == [
        "register",
        "body b'first'",
        "body b'second'",
        "unregister",
        "body b''",
    ]


async def test_pacing_lets_other_servers_and_websockets_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(send)

    async def plain_send(message):
        pass

    await attachments.paced_http(app)({"type": "http"}, None, plain_send)
    protocol = FakeTwistedRequest()
    daphne_send = functools.partial(plain_send, protocol)
    await attachments.paced_http(app)({"type": "websocket"}, None, daphne_send)
    assert seen == [plain_send, daphne_send]
