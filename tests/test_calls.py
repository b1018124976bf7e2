"""Voice calls, server side (chat/calls.py): an utterance POSTed whole becomes a turn whose reply
is spoken, against the simulator on a loopback port through the real view, job and consumer."""

import io
import wave
import zipfile

import pytest
from django.test import AsyncClient

from chat.calls import THINKING_OFF, notes, spoken
from chat.models import Attachment, Message
from tests.media_files import make_audio, make_mediarecorder_webm
from tests.test_relay import logged_in, new_conversation, open_page

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_calls_reply_is_spoken_with_thinking_off_and_the_rest_kept():
    stored = {"temperature": 0.3, "enable_thinking": True, "thinking_budget": 50}
    assert spoken(stored) == {
        "temperature": 0.3,
        "modalities": ["text", "audio"],
        "audio": {"voice": "Tina", "format": "wav"},
    }
    assert spoken({"audio": {"voice": "Ethan", "format": "wav"}})["audio"]["voice"] == "Ethan"
    assert stored["enable_thinking"] is True  # the conversation's own settings are untouched


def test_the_panel_says_when_the_call_turns_thinking_off():
    assert notes({"enable_thinking": True}) == [THINKING_OFF]
    assert notes({"temperature": 1}) == []


def utterance(tmp_path, seconds: float = 2.0) -> bytes:
    """What the page sends: 16 kHz mono 16-bit WAV."""
    path = make_audio(tmp_path / "utterance.wav", "wav", "pcm_s16le", seconds, rate=16000)
    return path.read_bytes()


async def post_turn(client: AsyncClient, conversation_id: int, body: bytes, kind="audio/wav"):
    return await client.post(f"/c/{conversation_id}/call/turn/", body, content_type=kind)


async def test_an_utterance_becomes_a_message_and_its_reply_is_spoken(
    upstream_is_simulator, alice, tmp_path
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"enable_thinking": True, "temperature": 0.5}
    await conversation.asave()
    page = await open_page(client, conversation.pk)

    sent = utterance(tmp_path, 2.0)
    response = await post_turn(client, conversation.pk, sent)
    assert response.status_code == 201, response.content
    ids = response.json()
    assert await page.receive_until_final(ids["reply"]) == "complete"

    said = await Message.objects.aget(pk=ids["message"])
    assert said.role == "user" and said.content == ""
    heard = await Attachment.objects.aget(message=said)
    assert (heard.kind, heard.content_type, heard.status) == ("audio", "audio/wav", "ready")
    assert heard.duration == pytest.approx(2.0, abs=0.01)

    reply = await Message.objects.aget(pk=ids["reply"])
    # Asked with audio out and thinking off (the simulator refuses both at once), the rest kept.
    assert reply.request["modalities"] == ["text", "audio"]
    assert "enable_thinking" not in reply.request and reply.request["temperature"] == 0.5
    part = reply.request["messages"][-1]["content"][0]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    # The simulator measured what it received: two seconds.
    assert "I heard 2.0 seconds of audio" in reply.content
    spoken_wav = await Attachment.objects.aget(message=reply)
    with wave.open(io.BytesIO(spoken_wav.file.read())) as wav:
        assert wav.getnframes() > 12000  # half a second of speech, at least
    assert page.audio[reply.pk]  # and the page heard it as it streamed
    await conversation.arefresh_from_db()
    assert conversation.settings["enable_thinking"] is True  # typed messages keep their settings
    # Kept like any message: the export carries the recording as it was said, and the reply's.
    export = await client.get(f"/c/{conversation.pk}/export.zip")
    with zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content))) as z:
        stored = {z.read(name) for name in z.namelist() if name.endswith(".wav")}
    assert sent in stored and len(stored) == 2
    await page.ws.disconnect()


async def test_a_camera_utterance_goes_as_an_mp4_video_with_its_sound(
    upstream_is_simulator, alice, tmp_path
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    recording = make_mediarecorder_webm(tmp_path / "camera.webm", seconds=1.5, video=True)

    response = await post_turn(client, conversation.pk, recording.read_bytes(), "video/webm")
    assert response.status_code == 201, response.content
    ids = response.json()
    assert await page.receive_until_final(ids["reply"]) == "complete"
    seen = await Attachment.objects.aget(message_id=ids["message"])
    assert seen.kind == "video" and seen.sent_content_type == "video/mp4"
    reply = await Message.objects.aget(pk=ids["reply"])
    part = reply.request["messages"][-1]["content"][0]
    assert part["type"] == "video_url" and "video/mp4" in part["video_url"]["url"]
    assert "I heard 1.5 seconds of audio and saw you" in reply.content
    await page.ws.disconnect()


async def test_a_barge_in_stops_the_spoken_reply_and_keeps_what_was_said(
    upstream_is_simulator, alice, tmp_path
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    # A slow model: the reply is still speaking when the person talks over it.
    conversation.settings = {"system_prompt": "[sim:delay=0.1]"}
    await conversation.asave()
    response = await post_turn(client, conversation.pk, utterance(tmp_path, 1.0))
    reply_id = response.json()["reply"]
    await page.receive_until(lambda p: p.audio.get(reply_id))

    stopped = await client.post(f"/c/{conversation.pk}/stop/", headers={"HX-Request": "true"})
    assert stopped.status_code == 204
    assert await page.receive_until_final(reply_id) == "stopped"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "stopped"
    assert await Attachment.objects.filter(message=reply, kind="audio").aexists()
    await page.ws.disconnect()


@pytest.mark.parametrize(
    ("body", "kind", "status", "says"),
    [
        (b"", "audio/wav", 400, "empty"),
        (b"RIFF....", "text/plain", 415, "audio/wav, video/webm or video/mp4"),
        (b"RIFF\x00\x00\x00\x00WAVEnot really", "audio/wav", 422, ""),
        (b"\x00" * 4096, "audio/wav", 422, ""),
    ],
)
async def test_a_recording_it_cannot_take_is_refused_with_a_reason_and_nothing_saved(
    upstream_is_simulator, alice, body, kind, status, says
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    response = await post_turn(client, conversation.pk, body, kind)
    assert response.status_code == status
    assert response.json()["error"]
    assert says in response.json()["error"]
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_an_utterance_over_the_limit_is_refused(alice, tmp_path, settings):
    settings.PLAYGROUND_MAX_CALL_BYTES = 64 * 1024
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    response = await post_turn(client, conversation.pk, utterance(tmp_path, 3.0))
    assert response.status_code == 413
    assert "at most 64 KB" in response.json()["error"]


async def test_only_the_owner_may_call_and_a_visitor_must_log_in(alice, bob, tmp_path):
    conversation = await new_conversation(alice)
    body = utterance(tmp_path, 0.5)
    response = await post_turn(await logged_in(bob), conversation.pk, body)
    assert response.status_code == 404
    response = await post_turn(AsyncClient(), conversation.pk, body)
    assert response.status_code == 403 and "Log in" in response.json()["error"]
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await Attachment.objects.aexists()


async def test_a_turn_needs_a_post_and_a_csrf_token(alice, tmp_path):
    conversation = await new_conversation(alice)
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    response = await post_turn(client, conversation.pk, utterance(tmp_path, 0.5))
    assert response.status_code == 403
    response = await client.get(f"/c/{conversation.pk}/call/turn/")
    assert response.status_code == 405
