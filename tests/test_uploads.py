"""Resumable chunked uploads: the protocol, processing in the background, and who may do what."""

import hashlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image

from chat import attachments
from chat.models import Attachment, Conversation, Message
from tests.media_files import make_audio, make_random

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 1024
WAIT_SECONDS = 30


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PLAYGROUND_UPLOAD_CHUNK_BYTES = CHUNK
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _no_processing_left_behind():
    yield
    assert attachments.wait_for_processing(WAIT_SECONDS), "processing still running"


@pytest.fixture
def as_alice(client, alice, media_root) -> Client:
    client.force_login(alice)
    return client


def begin(client: Client, name: str, size: int, type: str = "") -> dict:
    response = client.post("/uploads/", {"name": name, "size": size, "type": type})
    assert response.status_code == 201, response.content
    return response.json()


def put(client: Client, url: str, offset: int, data: bytes):
    return client.put(
        url, data, content_type="application/octet-stream", headers={"Upload-Offset": str(offset)}
    )


def send_all(client: Client, url: str, data: bytes, start: int = 0, chunk: int = CHUNK) -> dict:
    answer = {}
    for offset in range(start, len(data), chunk):
        response = put(client, url, offset, data[offset : offset + chunk])
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["received"] == min(offset + chunk, len(data))
    return answer


def wait_done(client: Client, url: str) -> dict:
    """Poll the status while the upload is processing (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        status = client.get(url).json()
        if status["status"] != "processing":
            return status
        assert time.monotonic() < deadline, "processing did not finish"
        time.sleep(0.05)


def upload(client: Client, path: Path, name: str | None = None) -> dict:
    data = path.read_bytes()
    started = begin(client, name or path.name, len(data))
    last = send_all(client, started["upload_url"], data)
    assert last["status"] == "processing"
    return wait_done(client, started["upload_url"])


def make_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A PNG of noise: it does not compress, so it takes several chunks."""
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, "PNG")
    return path


def folder_of(media_root: Path, key: str) -> Path:
    attachment = Attachment.objects.get(key=key)
    return Path(media_root) / "attachments" / str(attachment.owner_id) / key


def test_starting_an_upload_says_where_and_in_what_pieces_to_send_it(as_alice, alice, media_root):
    started = begin(as_alice, "photo.png", 5000, "image/png")
    assert started["chunk_size"] == CHUNK
    assert started["received"] == 0
    assert started["status"] == "uploading"
    assert started["upload_url"] == f"/uploads/{started['key']}/"
    attachment = Attachment.objects.get(key=started["key"])
    assert attachment.owner == alice
    assert attachment.declared_size == 5000
    assert attachment.original_name == "photo.png"
    assert attachment.file.name == f"attachments/{alice.pk}/{attachment.key}/original"
    assert (Path(media_root) / attachment.file.name).is_file()


def test_an_image_sent_in_chunks_becomes_ready_with_its_measurements(as_alice, tmp_path):
    path = make_png(tmp_path / "photo.png")
    data = path.read_bytes()
    assert len(data) > 2 * CHUNK
    status = upload(as_alice, path)
    assert status["status"] == "ready", status
    assert status["error"] is None
    assert status["kind"] == "image"
    assert status["content_type"] == "image/png"
    assert (status["width"], status["height"]) == (64, 48)
    assert status["received"] == status["size"] == len(data)
    assert status["progress"] == 1.0
    assert status["original_url"] == f"/media/{status['key']}/original/"
    attachment = Attachment.objects.get(key=status["key"])
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert attachment.size == len(data)
    assert Path(attachment.file.path).read_bytes() == data
    assert as_alice.get(status["original_url"]).getvalue() == data


def test_a_wav_recording_becomes_ready_with_its_duration(as_alice, tmp_path):
    path = make_audio(tmp_path / "voice.wav", "wav", "pcm_s16le", seconds=1.0, rate=8000)
    status = upload(as_alice, path)
    assert status["status"] == "ready", status
    assert status["kind"] == "audio"
    assert status["duration"] == pytest.approx(1.0, abs=0.05)
    assert status["poster_url"] is None


def test_an_upload_resumes_from_where_the_server_says_after_a_dropped_chunk(as_alice, tmp_path):
    data = make_png(tmp_path / "photo.png").read_bytes()
    url = begin(as_alice, "photo.png", len(data))["upload_url"]
    assert put(as_alice, url, 0, data[:CHUNK]).status_code == 200
    # The second chunk is lost on the way; the third arrives.
    response = put(as_alice, url, 2 * CHUNK, data[2 * CHUNK : 3 * CHUNK])
    assert response.status_code == 409
    assert response.json()["received"] == CHUNK
    assert response.json()["status"] == "uploading"
    assert "error" in response.json()
    # The client asks where to go on, and sends from there.
    resume_at = as_alice.get(url).json()["received"]
    assert resume_at == CHUNK
    send_all(as_alice, url, data, start=resume_at)
    status = wait_done(as_alice, url)
    assert status["status"] == "ready"
    assert Path(Attachment.objects.get(key=status["key"]).file.path).read_bytes() == data


def test_sending_the_last_chunk_again_is_harmless(as_alice, tmp_path):
    data = make_png(tmp_path / "photo.png").read_bytes()
    url = begin(as_alice, "photo.png", len(data))["upload_url"]
    assert put(as_alice, url, 0, data[:CHUNK]).json() == {"received": CHUNK, "status": "uploading"}
    again = put(as_alice, url, 0, data[:CHUNK])
    assert again.status_code == 200
    assert again.json() == {"received": CHUNK, "status": "uploading"}
    send_all(as_alice, url, data, start=CHUNK)
    wait_done(as_alice, url)
    last = (len(data) - 1) // CHUNK * CHUNK
    again = put(as_alice, url, last, data[last:])
    assert again.status_code == 200
    assert again.json() == {"received": len(data), "status": "ready"}
    assert Path(Attachment.objects.get(key=url.split("/")[2]).file.path).read_bytes() == data


def test_an_offset_behind_the_last_chunk_is_a_conflict(as_alice):
    url = begin(as_alice, "clip.mp4", 3 * CHUNK)["upload_url"]
    put(as_alice, url, 0, b"a" * CHUNK)
    put(as_alice, url, CHUNK, b"b" * CHUNK)
    response = put(as_alice, url, 0, b"a" * 10)
    assert response.status_code == 409
    assert response.json()["received"] == 2 * CHUNK


def test_a_size_of_zero_or_above_the_limit_is_refused_at_once(as_alice, settings):
    settings.PLAYGROUND_MAX_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024
    refusals = [
        (0, "This file is empty."),
        (2 * 1024**3 + 1, "This file is more than 2 GB."),
        (3 * 1024**3, "This file is 3 GB."),
        ("lots", "Say how big the file is"),
        (-5, "Say how big the file is"),
    ]
    for size, words in refusals:
        response = as_alice.post("/uploads/", {"name": "big.mp4", "size": size})
        assert response.status_code == 400
        error = response.json()["error"]
        assert words in error
        assert "up to 2 GB" in error
    assert not Attachment.objects.exists()


def test_bytes_past_the_declared_size_are_refused(as_alice):
    url = begin(as_alice, "note.wav", CHUNK + 10)["upload_url"]
    put(as_alice, url, 0, b"x" * CHUNK)
    response = put(as_alice, url, CHUNK, b"x" * 11)
    assert response.status_code == 400
    assert "declared size" in response.json()["error"]
    assert response.json()["received"] == CHUNK
    assert Attachment.objects.get().received == CHUNK


def test_a_chunk_larger_than_the_chunk_size_is_refused(as_alice):
    url = begin(as_alice, "clip.mp4", 10 * CHUNK)["upload_url"]
    response = put(as_alice, url, 0, b"x" * (CHUNK + 1))
    assert response.status_code == 413
    assert str(CHUNK) in response.json()["error"]
    assert Attachment.objects.get().received == 0


def test_a_chunk_needs_its_offset(as_alice):
    url = begin(as_alice, "clip.mp4", 10 * CHUNK)["upload_url"]
    response = as_alice.put(url, b"x" * 10, content_type="application/octet-stream")
    assert response.status_code == 400
    assert "Upload-Offset" in response.json()["error"]


def test_a_file_that_is_not_what_its_name_says_fails_and_leaves_nothing_on_disk(
    as_alice, media_root, tmp_path
):
    path = make_random(tmp_path / "photo.png", 3000)
    status = upload(as_alice, path)
    assert status["status"] == "failed"
    assert status["error"]
    assert status["original_url"] is None
    assert not folder_of(media_root, status["key"]).exists()
    # The row stays so the page can show why, until the page removes it.
    assert as_alice.delete(status["upload_url"]).status_code == 204
    assert not Attachment.objects.exists()


def test_an_unexpected_error_while_processing_fails_with_a_general_message(
    as_alice, media_root, tmp_path, monkeypatch
):
    from chat import media

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(media, "prepare", broken)
    status = upload(as_alice, make_png(tmp_path / "photo.png"))
    assert status["status"] == "failed"
    assert status["error"] == attachments.GENERIC_FAILURE
    assert "fire" not in status["error"]
    assert not folder_of(media_root, status["key"]).exists()


def test_processing_runs_in_the_background_and_reports_progress(as_alice, tmp_path, monkeypatch):
    from chat import media

    real_prepare = media.prepare
    gate = threading.Event()

    def slow(*args, progress=None, **kwargs):
        progress(0.5)
        assert gate.wait(WAIT_SECONDS)
        return real_prepare(*args, progress=progress, **kwargs)

    monkeypatch.setattr(media, "prepare", slow)
    data = make_png(tmp_path / "photo.png").read_bytes()
    url = begin(as_alice, "photo.png", len(data))["upload_url"]
    assert send_all(as_alice, url, data)["status"] == "processing"
    deadline = time.monotonic() + WAIT_SECONDS
    while (status := as_alice.get(url).json())["progress"] != 0.5:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["status"] == "processing"
    gate.set()
    assert wait_done(as_alice, url)["status"] == "ready"


def test_processing_renews_its_lease_while_it_runs(as_alice, tmp_path, monkeypatch, settings):
    from chat import media

    settings.PLAYGROUND_CHECKPOINT_SECONDS = 0.1
    real_prepare = media.prepare
    gate = threading.Event()
    monkeypatch.setattr(
        media, "prepare", lambda *a, **k: gate.wait(WAIT_SECONDS) and real_prepare(*a, **k)
    )
    data = make_png(tmp_path / "photo.png").read_bytes()
    started = begin(as_alice, "photo.png", len(data))
    send_all(as_alice, started["upload_url"], data)
    first = Attachment.objects.get(key=started["key"]).processing_at
    deadline = time.monotonic() + WAIT_SECONDS
    while Attachment.objects.get(key=started["key"]).processing_at == first:
        assert time.monotonic() < deadline, "the lease was not renewed"
        time.sleep(0.05)
    gate.set()
    assert wait_done(as_alice, started["upload_url"])["status"] == "ready"


def test_an_upload_whose_process_died_while_processing_is_processed_again_by_another(
    as_alice, tmp_path, monkeypatch, settings, media_root
):
    started_here = []
    monkeypatch.setattr(attachments, "start_processing", started_here.append)
    data = make_png(tmp_path / "photo.png").read_bytes()
    started = begin(as_alice, "photo.png", len(data))
    url = started["upload_url"]
    assert send_all(as_alice, url, data)["status"] == "processing"
    # The process that took the last chunk dies before finishing: its lease is still fresh,
    # so nobody else steps in yet.
    assert len(started_here) == 1
    work = folder_of(media_root, started["key"]) / attachments.WORK_DIR
    work.mkdir()
    (work / "half-written.tmp").write_bytes(b"left by the dead process")
    assert as_alice.get(url).json()["status"] == "processing"
    assert len(started_here) == 1

    monkeypatch.undo()  # this process processes for real
    stale = timezone.now() - timedelta(seconds=settings.PLAYGROUND_LEASE_SECONDS + 1)
    Attachment.objects.filter(key=started["key"]).update(processing_at=stale)
    status = wait_done(as_alice, url)
    assert status["status"] == "ready"
    assert (status["kind"], status["width"], status["height"]) == ("image", 64, 48)
    assert not (work / "half-written.tmp").exists()


def test_another_persons_upload_is_not_found_on_every_endpoint(client, alice, bob, media_root):
    client.force_login(alice)
    url = begin(client, "photo.png", 3 * CHUNK)["upload_url"]
    put(client, url, 0, b"a" * CHUNK)
    client.force_login(bob)
    assert client.get(url).status_code == 404
    assert put(client, url, CHUNK, b"b" * CHUNK).status_code == 404
    assert client.delete(url).status_code == 404
    assert client.post(url + "delete/").status_code == 404
    assert client.get(url).json() == {"error": "No such upload."}
    attachment = Attachment.objects.get()
    assert attachment.received == CHUNK
    assert folder_of(media_root, attachment.key).exists()


def test_anonymous_visitors_are_told_to_log_in(client, alice, media_root):
    client.force_login(alice)
    url = begin(client, "photo.png", 3 * CHUNK)["upload_url"]
    client.logout()
    for response in (
        client.post("/uploads/", {"name": "x.png", "size": 10}),
        client.get(url),
        put(client, url, 0, b"a" * CHUNK),
        client.delete(url),
        client.post(url + "delete/"),
    ):
        assert response.status_code == 403
        assert response.json() == {"error": "Log in first."}
    assert Attachment.objects.get().received == 0


def test_delete_removes_an_unfinished_upload_and_its_files(as_alice, media_root):
    url = begin(as_alice, "clip.mp4", 3 * CHUNK)["upload_url"]
    put(as_alice, url, 0, b"a" * CHUNK)
    key = url.split("/")[2]
    folder = folder_of(media_root, key)
    assert (folder / "original").stat().st_size == CHUNK
    assert as_alice.delete(url).status_code == 204
    assert not folder.exists()
    assert not Attachment.objects.exists()
    assert as_alice.get(url).status_code == 404
    assert put(as_alice, url, CHUNK, b"b" * CHUNK).status_code == 404


def test_delete_by_post_removes_a_ready_upload_with_every_file(as_alice, media_root, tmp_path):
    status = upload(as_alice, make_png(tmp_path / "photo.png"))
    assert status["status"] == "ready"
    folder = folder_of(media_root, status["key"])
    assert folder.exists()
    assert as_alice.post(status["upload_url"] + "delete/").status_code == 204
    assert not folder.exists()
    assert not Attachment.objects.exists()


def test_an_attachment_sent_with_a_message_stays_with_its_conversation(as_alice, alice):
    url = begin(as_alice, "clip.mp4", 3 * CHUNK)["upload_url"]
    conversation = Conversation.objects.create(owner=alice)
    message = Message.objects.create(conversation=conversation, role=Message.Role.USER)
    Attachment.objects.update(conversation=conversation, message=message)
    response = as_alice.delete(url)
    assert response.status_code == 409
    assert "message" in response.json()["error"]
    assert Attachment.objects.exists()


def test_uploads_keep_csrf_protection(alice, media_root):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/accounts/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    assert client.post("/uploads/", {"name": "a.png", "size": 10}).status_code == 403
    response = client.post(
        "/uploads/", {"name": "a.png", "size": 10}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 201
    url = response.json()["upload_url"]
    assert put(client, url, 0, b"x" * 10).status_code == 403
    response = client.put(
        url,
        b"x" * 10,
        content_type="application/octet-stream",
        headers={"Upload-Offset": "0", "X-CSRFToken": token},
    )
    assert response.status_code == 200


def test_the_name_is_only_shown_never_used_in_a_path(as_alice, alice, media_root):
    started = begin(as_alice, "../../etc/pass\x00wd" + "x" * 300 + ".png", 10)
    attachment = Attachment.objects.get(key=started["key"])
    assert attachment.original_name.startswith("passwd")
    assert len(attachment.original_name) == 255
    assert attachment.file.name == f"attachments/{alice.pk}/{attachment.key}/original"
    assert as_alice.get(started["upload_url"]).json()["name"] == attachment.original_name


def test_stale_unfinished_uploads_are_discarded_with_their_files(as_alice, alice, media_root):
    old, recent, sent = (begin(as_alice, "a.mp4", 3 * CHUNK)["key"] for _ in range(3))
    long_ago = timezone.now() - timedelta(days=2)
    Attachment.objects.filter(key__in=[old, sent]).update(created_at=long_ago)
    conversation = Conversation.objects.create(owner=alice)
    message = Message.objects.create(conversation=conversation, role=Message.Role.USER)
    Attachment.objects.filter(key=sent).update(message=message, conversation=conversation)
    folders = {key: folder_of(media_root, key) for key in (old, recent, sent)}
    assert attachments.discard_stale_uploads(timedelta(days=1)) == 1
    assert set(Attachment.objects.values_list("key", flat=True)) == {recent, sent}
    assert not folders[old].exists()
    assert folders[recent].exists() and folders[sent].exists()
