"""Attachment files kept in a storage other than the data dir's folders: Django's in-memory
storage (no files on disk: the app streams them) and django-storages' S3Storage against a real
S3-compatible server on a loopback port (moto's; the app hands out the store's signed links).

Every path a file takes is covered: an upload is published to the storage once processed, a
refused one leaves nothing there; the files are served to those who may see them (also through
a share link), sent to the API inline, exported and imported, copied when a share is continued,
and deleted with their conversation.
"""

import base64
import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from chat import attachments, files, generation, payloads, speech
from chat.models import Attachment, Conversation, Message, Share
from tests.conftest import S3Bucket
from tests.media_files import make_random
from tests.test_uploads import make_png, upload

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 4096


@dataclass
class Store:
    kind: str  # "memory" or "s3"
    bucket: S3Bucket | None = None  # for "s3": looks into the store without the app

    def read(self, name: str) -> bytes:
        if self.bucket is not None:
            return self.bucket.read(name)
        with files.storage().open(name, "rb") as stored:
            return stored.read()

    def names(self, prefix: str = "attachments/") -> list[str]:
        if self.bucket is not None:
            return self.bucket.keys(prefix)
        kept = files.storage()

        def walk(folder: str) -> Iterator[str]:
            if not kept.exists(folder):
                return
            folders, names = kept.listdir(folder)
            yield from (f"{folder}/{name}" for name in names)
            for sub in folders:
                yield from walk(f"{folder}/{sub}")

        return sorted(walk(prefix.rstrip("/")))


@pytest.fixture(params=["memory", "s3"])
def store(request, settings) -> Store:
    settings.PLAYGROUND_UPLOAD_CHUNK_BYTES = CHUNK
    if request.param == "memory":
        backend = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
        settings.STORAGES = {**settings.STORAGES, "default": backend}
        return Store("memory")
    bucket = request.getfixturevalue("s3_bucket")
    backend = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": bucket.storage_options}
    settings.STORAGES = {**settings.STORAGES, "default": backend}
    return Store("s3", bucket)


@pytest.fixture(autouse=True)
def _no_processing_left_behind():
    yield
    assert attachments.wait_for_processing(30), "processing still running"


def uploaded_png(client: Client, tmp_path: Path) -> tuple[Attachment, bytes]:
    path = make_png(tmp_path / "noise.png", size=(48, 40))
    status = upload(client, path)
    assert status["status"] == "ready", status
    # Ready is said first; the processing thread then drops the working copy.
    assert attachments.wait_for_processing(30)
    return Attachment.objects.get(key=status["key"]), path.read_bytes()


def conversation_with(attachment: Attachment) -> Conversation:
    conversation = Conversation.objects.create(owner=attachment.owner, title="Noise")
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="What is this?"
    )
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content="Noise.",
        status=Message.Status.COMPLETE,
    )
    Attachment.objects.filter(pk=attachment.pk).update(message=question, conversation=conversation)
    Conversation.objects.filter(pk=conversation.pk).update(current=answer)
    conversation.refresh_from_db()
    return conversation


def fetch(client: Client, url: str, store: Store, **headers) -> httpx.Response | object:
    """GET a media URL as a browser would: the app's answer, or where it sends the browser."""
    response = client.get(url, headers=headers)
    if store.kind == "s3":
        assert response.status_code == 302, response.content
        # Never kept: the link expires, and a share link may be revoked.
        assert response["Cache-Control"] in ("private, no-store", "private, no-cache")
        return httpx.get(response["Location"], headers=headers)
    return response


def body_of(response) -> bytes:
    if isinstance(response, httpx.Response):
        return response.content
    return b"".join(response.streaming_content)


def test_a_processed_upload_is_kept_in_the_storage_and_nowhere_else(store, alice_client, tmp_path):
    attachment, data = uploaded_png(alice_client, tmp_path)
    assert attachment.file.name == f"attachments/{attachment.owner_id}/{attachment.key}/original"
    assert store.read(attachment.file.name) == data
    assert attachment.poster  # a thumbnail, made from the image
    assert store.read(attachment.poster.name)[:3] == b"\xff\xd8\xff"  # a JPEG
    assert set(store.names()) == {attachment.file.name, attachment.poster.name}
    assert files.local_path(attachment.file.name) is None
    assert not files.working_dir(attachment).exists()


def test_a_refused_upload_leaves_nothing_in_the_storage(store, alice_client, tmp_path):
    path = make_random(tmp_path / "notes.bin", 3 * CHUNK)
    status = upload(alice_client, path)
    assert attachments.wait_for_processing(30)
    assert status["status"] == "failed"
    assert "image, audio or video" in status["error"]
    assert store.names() == []
    assert not files.working_dir(Attachment.objects.get(key=status["key"])).exists()


def test_stored_files_are_served_to_their_owner_only(store, alice_client, bob_client, tmp_path):
    attachment, data = uploaded_png(alice_client, tmp_path)
    url = f"/media/{attachment.key}/original/"

    shown = fetch(alice_client, url, store)
    assert shown.status_code == 200
    assert body_of(shown) == data
    assert shown.headers["Content-Type"] == "image/png"
    assert shown.headers["Content-Disposition"] == "inline"
    download = fetch(alice_client, url + "?download=1", store)
    assert download.headers["Content-Disposition"] == 'attachment; filename="noise.png"'
    assert body_of(download) == data
    part = fetch(alice_client, url, store, Range="bytes=100-199")
    assert part.status_code == 206
    assert body_of(part) == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    poster = fetch(alice_client, f"/media/{attachment.key}/poster/", store)
    assert poster.headers["Content-Type"] == "image/jpeg"
    assert body_of(poster) == store.read(attachment.poster.name)

    assert bob_client.get(url).status_code == 404
    assert Client().get(url).status_code == 404


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_the_store_link_is_signed_and_expires(store, alice_client, tmp_path):
    attachment, _ = uploaded_png(alice_client, tmp_path)
    location = alice_client.get(f"/media/{attachment.key}/original/")["Location"]
    query = parse_qs(urlsplit(location).query)
    assert urlsplit(location).path == f"/{store.bucket.name}/{attachment.file.name}"
    assert query["Signature"]
    assert abs(int(query["Expires"][0]) - time.time() - attachments.DIRECT_URL_SECONDS) < 120
    assert S3Bucket.KEYS["secret_key"] not in location


async def test_a_message_sends_the_stored_file_inline(store, alice_client, tmp_path):
    from asgiref.sync import sync_to_async

    attachment, data = await sync_to_async(uploaded_png)(alice_client, tmp_path)
    part = await sync_to_async(payloads.media_part)(attachment)
    body = {"messages": [{"role": "user", "content": [part]}]}
    sent = b"".join([chunk async for chunk in payloads.encode_body(body)])
    assert len(sent) == payloads.body_length(body)
    url = json.loads(sent)["messages"][0]["content"][0]["image_url"]["url"]
    assert url == "data:image/png;base64," + base64.b64encode(data).decode()


def test_export_and_import_carry_stored_files(store, alice_client, tmp_path):
    attachment, data = uploaded_png(alice_client, tmp_path)
    conversation = conversation_with(attachment)

    response = alice_client.get(f"/c/{conversation.pk}/export.zip")
    assert response.status_code == 200
    exported = body_of(response)
    archive = zipfile.ZipFile(io.BytesIO(exported))
    media = [name for name in archive.namelist() if name.startswith("media/")]
    assert sorted(archive.read(name)[:4] for name in media) == [b"\x89PNG", b"\xff\xd8\xff\xe0"]
    assert data in [archive.read(name) for name in media]

    archive_file = tmp_path / "export.zip"
    archive_file.write_bytes(exported)
    with archive_file.open("rb") as sent:
        imported = alice_client.post("/import/", {"archive": sent})
    assert imported.status_code == 302, imported.content
    copy = Attachment.objects.exclude(pk=attachment.pk).get()
    assert copy.conversation_id != conversation.pk
    assert store.read(copy.file.name) == data
    assert store.read(copy.poster.name) == store.read(attachment.poster.name)
    assert not files.working_dir(copy).exists()
    assert fetch(alice_client, f"/media/{copy.key}/original/", store).status_code == 200


def test_a_continued_share_copies_stored_files_and_deleting_removes_only_the_copy(
    store, alice_client, bob_client, tmp_path
):
    attachment, data = uploaded_png(alice_client, tmp_path)
    conversation = conversation_with(attachment)
    shared = alice_client.post(f"/c/{conversation.pk}/share/", {"visibility": "anyone"})
    assert shared.status_code == 302
    share = Share.objects.get()
    shared = fetch(Client(), f"/s/{share.token}/media/{attachment.key}/sent/", store)
    assert body_of(shared) == data

    assert bob_client.post(f"/s/{share.token}/continue/").status_code == 302
    fork = Conversation.objects.exclude(pk=conversation.pk).get()
    copy = Attachment.objects.get(conversation=fork)
    assert copy.key != attachment.key
    assert store.read(copy.file.name) == data
    assert body_of(fetch(bob_client, f"/media/{copy.key}/original/", store)) == data

    assert bob_client.post(f"/c/{fork.pk}/delete/").status_code == 302
    assert not Attachment.objects.filter(pk=copy.pk).exists()
    assert set(store.names()) == {attachment.file.name, attachment.poster.name}
    assert store.read(attachment.file.name) == data


def test_a_spoken_answer_is_kept_in_the_storage_and_served(store, alice_client, tmp_path):
    attachment, _ = uploaded_png(alice_client, tmp_path)
    answer = conversation_with(attachment).current
    pcm = bytes(range(256)) * 48  # 12,288 bytes: 0.256 s of 24 kHz s16le mono
    spoken = generation.save_spoken_answer(answer, pcm)
    assert store.read(spoken.file.name) == speech.pcm_to_wav(pcm)
    heard = fetch(alice_client, f"/media/{spoken.key}/original/", store)
    assert heard.headers["Content-Type"] == "audio/wav"
    assert body_of(heard) == speech.pcm_to_wav(pcm)


def test_the_page_may_load_media_from_where_the_store_links(store):
    from django.apps import apps
    from django.conf import settings

    origin = files.direct_origin()
    if store.kind == "memory":
        assert origin is None  # the app serves those files itself
        return
    assert origin == store.bucket.endpoint
    before = settings.SECURE_CSP
    try:
        apps.get_app_config("chat").ready()
        assert origin in settings.SECURE_CSP["img-src"]
        assert origin in settings.SECURE_CSP["media-src"]
        assert origin not in settings.SECURE_CSP["script-src"]
    finally:
        settings.SECURE_CSP = before
