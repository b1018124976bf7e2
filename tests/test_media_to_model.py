"""Every accepted kind of file, from upload to the model: uploaded in chunks, checked and
converted, sent as the part the API expects, and described back by the simulator from the bytes
it received."""

import asyncio
import base64
import json

import pytest

from chat import attachments
from chat.models import Attachment, Message
from chat.payloads import build_request, encode_body
from chat.simulator.schema import request_errors
from tests.media_files import make_audio, make_image, make_mediarecorder_webm, make_video
from tests.test_relay import logged_in, new_conversation, open_page

pytestmark = pytest.mark.django_db(transaction=True)


def is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def is_mp3(data: bytes) -> bool:
    return data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def is_matroska(data: bytes) -> bool:
    return data[:4] == b"\x1a\x45\xdf\xa3"


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


CASES = {
    "png": (lambda p: make_image(p, "PNG"), "image_url", lambda d: d[:8] == b"\x89PNG\r\n\x1a\n"),
    "jpg": (lambda p: make_image(p, "JPEG"), "image_url", lambda d: d[:3] == b"\xff\xd8\xff"),
    "gif": (lambda p: make_image(p, "GIF"), "image_url", lambda d: d[:4] == b"GIF8"),
    "webp": (lambda p: make_image(p, "WEBP"), "image_url", lambda d: d[8:12] == b"WEBP"),
    "wav": (lambda p: make_audio(p, "wav", "pcm_s16le"), "input_audio", is_wav),
    "mp3": (lambda p: make_audio(p, "mp3", "libmp3lame"), "input_audio", is_mp3),
    "ogg": (lambda p: make_audio(p, "ogg", "libopus", rate=48000), "input_audio", is_mp3),
    "m4a": (lambda p: make_audio(p, "m4a", "aac"), "input_audio", is_mp3),
    "flac": (lambda p: make_audio(p, "flac", "flac"), "input_audio", is_mp3),
    "webm": (make_mediarecorder_webm, "input_audio", is_mp3),
    "mp4": (lambda p: make_video(p, "mp4", "libx264", "aac"), "video_url", is_mp4),
    "mov": (lambda p: make_video(p, "mov", "libx264"), "video_url", lambda d: d[4:8] == b"ftyp"),
    "mkv": (lambda p: make_video(p, "mkv", "libx264", "aac"), "video_url", is_matroska),
    "vp9.webm": (lambda p: make_video(p, "webm", "libvpx-vp9", "libopus"), "video_url", is_mp4),
}


async def upload(client, path) -> dict:
    data = path.read_bytes()
    started = await client.post("/uploads/", {"name": path.name, "size": len(data)})
    assert started.status_code == 201, started.content
    url = started.json()["upload_url"]
    response = await client.put(
        url, data, content_type="application/octet-stream", headers={"Upload-Offset": "0"}
    )
    assert response.status_code == 200, response.content
    for _ in range(400):
        status = (await client.get(url)).json()
        if status["status"] not in ("uploading", "processing"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("processing did not finish")


@pytest.mark.parametrize("suffix", list(CASES))
async def test_each_kind_reaches_the_model_as_the_part_the_api_expects(
    upstream_is_simulator, alice, tmp_path, suffix
):
    make, part_type, right_container = CASES[suffix]
    path = tmp_path / f"sample.{suffix}"
    make(path)
    client = await logged_in(alice)
    status = await upload(client, path)
    assert status["status"] == "ready", status

    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    response = await client.post(
        f"/c/{conversation.pk}/send/",
        {"text": "Describe this [sim:delay=0]", "attachments": status["key"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.content
    reply = await conversation.messages.filter(role="assistant").alast()
    # The simulator validates the request against the schema: an invalid part would be a 400.
    assert await page.receive_until_final(reply.pk) == "complete"
    await page.ws.disconnect()

    # The exact bytes sent: the request body as the upstream client streams it.
    user_message = await Message.objects.aget(pk=reply.parent_id)
    sent = await asyncio.to_thread(_sent_body, user_message)
    assert request_errors(sent) == []
    [part] = [p for p in sent["messages"][-1]["content"] if p["type"] != "text"]
    assert part["type"] == part_type
    data_url = (
        part.get("image_url", part.get("video_url", {})).get("url") or part["input_audio"]["data"]
    )
    payload = base64.b64decode(data_url.split(",", 1)[1])
    assert right_container(payload), payload[:16]
    if part_type == "input_audio":
        assert part["input_audio"]["format"] == ("wav" if is_wav(payload) else "mp3")
    await reply.arefresh_from_db()
    assert f"{len(payload):,} bytes" in reply.content  # described from what it received


def _sent_body(user_message: Message) -> dict:
    files = list(Attachment.objects.filter(message=user_message))
    body = build_request([user_message], {}, "alibaba/qwen3.5-omni-flash", {user_message.pk: files})

    async def collect() -> bytes:
        return b"".join([piece async for piece in encode_body(body)])

    return json.loads(asyncio.run(collect()))


async def test_media_can_go_by_signed_expiring_link_instead_of_inline(
    upstream_is_simulator, alice, tmp_path, settings
):
    settings.PLAYGROUND_MEDIA_DELIVERY = "url"
    settings.PLAYGROUND_PUBLIC_URL = "https://playground.example"
    path = make_image(tmp_path / "photo.png", "PNG")
    client = await logged_in(alice)
    status = await upload(client, path)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    await client.post(
        f"/c/{conversation.pk}/send/",
        {"text": "Look [sim:delay=0]", "attachments": status["key"]},
        headers={"HX-Request": "true"},
    )
    reply = await conversation.messages.filter(role="assistant").alast()
    await page.receive_until_final(reply.pk)
    await page.ws.disconnect()
    await reply.arefresh_from_db()
    url = reply.request["messages"][-1]["content"][1]["image_url"]["url"]
    assert url.startswith("https://playground.example/media/signed/")
    assert request_errors(reply.request) == []

    from django.test import AsyncClient

    anonymous = AsyncClient()
    link = url.removeprefix("https://playground.example")
    fetched = await anonymous.get(link)
    assert fetched.status_code == 200
    assert b"".join([chunk async for chunk in fetched]) == path.read_bytes()
    tampered = link.replace("/signed/", "/signed/x")
    assert (await anonymous.get(tampered)).status_code == 404
    settings.PLAYGROUND_MEDIA_URL_SECONDS = -1  # every link has expired
    assert (await anonymous.get(link)).status_code == 404


@pytest.fixture(autouse=True)
def _no_processing_left_behind():
    yield
    assert attachments.wait_for_processing(30)
