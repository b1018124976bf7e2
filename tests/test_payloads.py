import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from chat.branches import path_to as history
from chat.models import Message
from chat.payloads import build_request
from chat.simulator.schema import request_errors

MODEL = "alibaba/qwen3.5-omni-flash"


def msg(pk, role, content, parent=None, status="complete"):
    return Message(pk=pk, role=role, content=content, parent_id=parent, status=status)


def test_a_first_message_becomes_a_schema_valid_streaming_request():
    body = build_request([msg(1, "user", "Hi")], {}, MODEL)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request_errors(body) == []


def test_the_system_prompt_comes_first_and_only_set_fields_are_sent():
    settings = {"system_prompt": "Be brief.", "temperature": 0.2, "top_p": None, "stop": []}
    body = build_request([msg(1, "user", "Hi")], settings, MODEL)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.2
    assert "top_p" not in body and "stop" not in body
    assert request_errors(body) == []


def test_empty_assistant_replies_are_left_out():
    history_ = [msg(1, "user", "Hi"), msg(2, "assistant", "", 1, status="error")]
    body = build_request(history_, {}, MODEL)
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_history_follows_parents_so_a_retried_reply_replaces_the_failed_one():
    messages = [
        msg(1, "user", "Q1"),
        msg(2, "assistant", "partial", 1, status="error"),
        msg(3, "assistant", "A1", 1),
        msg(4, "user", "Q2", 3),
    ]
    path = history(messages, messages[3])
    assert [m.pk for m in path] == [1, 3, 4]
    body = build_request(path, {}, MODEL)
    assert [m["content"] for m in body["messages"]] == ["Q1", "A1", "Q2"]
    assert request_errors(body) == []


def _attachment(tmp_path, kind: str, content_type: str, data: bytes, derived_type: str = ""):
    from chat.models import Attachment

    (tmp_path / "attachments").mkdir(exist_ok=True)
    (tmp_path / "attachments" / f"{kind}.bin").write_bytes(data)
    return Attachment(
        kind=kind,
        file=f"attachments/{kind}.bin",
        content_type=content_type,
        derived_content_type=derived_type,
    )


async def _encoded(body) -> bytes:
    from chat.payloads import encode_body

    return b"".join([piece async for piece in encode_body(body)])


async def test_each_attachment_kind_becomes_the_part_the_api_expects(tmp_path, settings):
    import base64
    import json

    from chat.payloads import body_length, elided

    settings.MEDIA_ROOT = tmp_path
    image = _attachment(tmp_path, "image", "image/png", b"\x89PNG fake image")
    audio = _attachment(tmp_path, "audio", "audio/mpeg", b"ID3 fake mp3")
    video = _attachment(tmp_path, "video", "video/mp4", b"\x00\x00\x00\x18ftypmp42" * 1000)
    body = build_request([msg(1, "user", "What is this?")], {}, MODEL, {1: [image, audio, video]})

    sent = json.loads(await _encoded(body))
    assert request_errors(sent) == []
    parts = sent["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["detail"] == "auto"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(parts[1]["image_url"]["url"].split(",")[1]) == b"\x89PNG fake image"
    assert parts[2]["input_audio"]["format"] == "mp3"
    assert base64.b64decode(parts[2]["input_audio"]["data"].split(",")[1]) == b"ID3 fake mp3"
    video_bytes = base64.b64decode(parts[3]["video_url"]["url"].split(",")[1])
    assert video_bytes == b"\x00\x00\x00\x18ftypmp42" * 1000
    assert len(await _encoded(body)) == body_length(body)
    shown = json.dumps(elided(body))
    assert "base64," in shown and "elided" in shown and "ftyp" not in shown


async def test_an_attachment_without_text_is_sent_alone(tmp_path, settings):
    import json

    settings.MEDIA_ROOT = tmp_path
    audio = _attachment(tmp_path, "audio", "audio/wav", b"RIFF....WAVE")
    body = build_request([msg(1, "user", "")], {}, MODEL, {1: [audio]})
    sent = json.loads(await _encoded(body))
    assert [p["type"] for p in sent["messages"][0]["content"]] == ["input_audio"]
    assert sent["messages"][0]["content"][0]["input_audio"]["format"] == "wav"
    assert request_errors(sent) == []


TEXTS_LIKE_THE_ENCODERS_OWN = [
    "\x00media0\x00",
    "\x00media1\x00",
    "\\u0000media0\\u0000",
    '"\\u0000media0\\u0000"',
    'before "\x00media0\x00" after',
]


async def test_text_that_looks_like_a_media_placeholder_is_sent_as_it_is(tmp_path, settings):
    import base64
    import json

    from chat.payloads import body_length

    settings.MEDIA_ROOT = tmp_path
    image = _attachment(tmp_path, "image", "image/png", b"\x89PNG fake image")
    audio = _attachment(tmp_path, "audio", "audio/wav", b"RIFF....WAVE")
    for text in TEXTS_LIKE_THE_ENCODERS_OWN:
        history = [msg(1, "user", text), msg(2, "assistant", text, 1), msg(3, "user", text, 2)]
        body = build_request(
            history, {"system_prompt": text, "stop": [text]}, MODEL, {1: [image], 3: [audio]}
        )
        data = await _encoded(body)
        assert len(data) == body_length(body), text
        sent = json.loads(data)
        first, reply, last = sent["messages"][1:]
        assert sent["messages"][0]["content"] == text.strip()
        assert sent["stop"] == [text]
        assert first["content"][0] == {"type": "text", "text": text}
        image_url = first["content"][1]["image_url"]["url"]
        assert base64.b64decode(image_url.split(",")[1]) == b"\x89PNG fake image"
        assert reply["content"] == text
        assert last["content"][0]["text"] == text
        audio_data = last["content"][1]["input_audio"]["data"]
        assert base64.b64decode(audio_data.split(",")[1]) == b"RIFF....WAVE"


async def test_text_that_looks_like_a_media_placeholder_is_sent_without_media(tmp_path):
    import json

    from chat.payloads import body_length

    for text in TEXTS_LIKE_THE_ENCODERS_OWN:
        body = build_request([msg(1, "user", text)], {}, MODEL)
        data = await _encoded(body)
        assert len(data) == body_length(body)
        assert json.loads(data)["messages"][0]["content"] == text


@hypothesis.settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.sampled_from(TEXTS_LIKE_THE_ENCODERS_OWN),
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),
    )
)
def test_any_text_beside_media_is_sent_exactly(tmp_path, settings, text):
    import asyncio
    import base64
    import json

    from chat.payloads import body_length

    settings.MEDIA_ROOT = tmp_path
    image = _attachment(tmp_path, "image", "image/png", b"\x89PNG fake image")
    body = build_request(
        [msg(1, "user", text + "."), msg(2, "user", text, 1)], {}, MODEL, {1: [image], 2: [image]}
    )
    data = asyncio.run(_encoded(body))
    assert len(data) == body_length(body)
    first, second = json.loads(data)["messages"]
    assert first["content"][0] == {"type": "text", "text": text + "."}
    if text.strip():
        assert second["content"][0] == {"type": "text", "text": text}
    for message in (first, second):
        url = message["content"][-1]["image_url"]["url"]
        assert base64.b64decode(url.split(",")[1]) == b"\x89PNG fake image"
