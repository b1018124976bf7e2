"""Export as Markdown and as a zip, and import of the zip: lossless for a branched conversation
with real media, and refusing (leaving nothing behind) whatever is malformed or hostile."""

import hashlib
import html
import io
import json
import re
import secrets
import shutil
import stat
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIRequest

from chat import archive, attachments, files
from chat.models import Attachment, Conversation, Message, attachment_path
from tests.media_files import HTML_PAYLOAD, make_audio, make_image

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SETTINGS = {
    "system_prompt": "Answer briefly.",
    "temperature": 0.7,
    "max_tokens": 300,
    "enable_thinking": True,
    "tools": [TOOL],
    "tool_choice": "auto",
}
KEY = re.compile(r"media/[A-Za-z0-9_-]{22}(?=[-.])")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def attach(message: Message, path: Path) -> Attachment:
    """A file sent with `message`, stored and processed exactly as an upload is."""
    attachment = Attachment(
        owner=message.conversation.owner,
        conversation=message.conversation,
        message=message,
        key=secrets.token_urlsafe(16),
        original_name=path.name,
        status=Attachment.Status.PROCESSING,
    )
    attachment.file.name = attachment_path(attachment, attachments.ORIGINAL_NAME)
    folder = files.working_dir(attachment)
    folder.mkdir(parents=True)
    shutil.copyfile(path, folder / attachments.ORIGINAL_NAME)
    attachment.save()
    attachments.process(attachment.pk)
    attachment.refresh_from_db()
    assert attachment.status == Attachment.Status.READY, attachment.error
    return attachment


def say(conversation, parent, role, seconds, **fields) -> Message:
    return Message.objects.create(
        conversation=conversation, parent=parent, role=role, created_at=at(seconds), **fields
    )


def reply(conversation, parent, seconds, **fields) -> Message:
    """A finished assistant reply with timings and usage, as generation leaves one."""
    defaults = {
        "model": "alibaba/qwen3.5-omni-flash",
        "finish_reason": "stop",
        "started_at": at(seconds),
        "first_token_at": at(seconds + 0.25),
        "finished_at": at(seconds + 1.5),
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
        "cost": {"usd_spent": 0.00042},
        "request": {"model": "alibaba/qwen3.5-omni-flash", "messages": [], "stream": True},
    }
    return say(conversation, parent, Message.Role.ASSISTANT, seconds, **{**defaults, **fields})


@pytest.fixture
def tree(alice, tmp_path) -> dict:
    """A conversation with branches, media, reasoning, a failed reply, tool calls and logprobs.

    question ─┬─ failed (error)
              └─ answer (thinking, logprobs) ─┬─ aside
                                              └─ weather ── calls ── result ── final  <- current
    """
    conversation = Conversation.objects.create(
        owner=alice, title="Weather & a tone", settings=SETTINGS, created_at=T0, pinned=True
    )
    question = say(conversation, None, "user", 1, content="What is in this picture and sound?")
    image = attach(question, make_image(tmp_path / "photo.png", "PNG"))
    sound = attach(question, make_audio(tmp_path / "tone.flac", "flac", "flac", seconds=0.5))
    failed = reply(
        conversation,
        question,
        2,
        status=Message.Status.ERROR,
        content="",
        finish_reason="",
        usage=None,
        cost=None,
        error={
            "kind": "rate_limited",
            "status": 429,
            "message": "Too many requests.",
            "hint": "Wait a little.",
            "retry_after": 3,
        },
    )
    answer = reply(
        conversation,
        question,
        5,
        reasoning="Let me look.\n\nA gradient and a yellow disc.",
        content="A **yellow disc** on a gradient, and a 440 Hz tone.",
        logprobs=[
            {"token": "A", "logprob": -0.01, "top_logprobs": [{"token": "The", "logprob": -4.2}]},
            {"token": " yellow", "logprob": -0.3, "top_logprobs": []},
        ],
    )
    aside = say(conversation, answer, "user", 8, content="Never mind.")
    weather = say(conversation, answer, "user", 10, content="And the weather in Paris?")
    calls = reply(
        conversation,
        weather,
        11,
        content="",
        finish_reason="tool_calls",
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    )
    result = say(
        conversation, calls, "tool", 14, content='{"temperature": 21}', tool_call_id="call_1"
    )
    final = reply(conversation, result, 15, content="It is 21 °C in Paris.\n\n```\ncode\n```")
    conversation.current = final
    conversation.save()
    return {
        "conversation": conversation,
        "image": image,
        "sound": sound,
        "failed": failed,
        "answer": answer,
        "aside": aside,
        "final": final,
    }


def download(client, conversation_id: int, kind: str):
    response = client.get(f"/c/{conversation_id}/export.{kind}")
    assert response.status_code == 200, response.content
    if response.streaming:
        return response, b"".join(response.streaming_content)
    return response, response.content


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as opened:
        return {info.filename: opened.read(info) for info in opened.infolist()}


def document(data: bytes) -> dict:
    return json.loads(zip_members(data)["conversation.json"])


def post_archive(client, data: bytes, htmx: bool = True, name: str = "chat.zip"):
    headers = {"HX-Request": "true"} if htmx else {}
    upload = SimpleUploadedFile(name, data, content_type="application/zip")
    return client.post("/import/", {"archive": upload}, headers=headers)


def without_keys(text: str) -> str:
    return KEY.sub("media/KEY", text)


def comparable(record: dict) -> dict:
    """conversation.json apart from what may differ: the export time and attachment keys."""
    record = json.loads(without_keys(json.dumps(record)))
    record.pop("exported_at")
    return record


# Round trip --------------------------------------------------------------------------------


def test_export_then_import_then_export_gives_the_same_conversation(as_alice, alice, tree):
    original = tree["conversation"]
    _, first = download(as_alice, original.pk, "zip")

    response = post_archive(as_alice, first)

    imported = Conversation.objects.exclude(pk=original.pk).get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/c/{imported.pk}/"
    assert imported.owner == alice
    _, second = download(as_alice, imported.pk, "zip")
    assert comparable(document(second)) == comparable(document(first))
    first_files, second_files = zip_members(first), zip_members(second)
    assert {without_keys(n): d for n, d in first_files.items() if n.startswith("media/")} == {
        without_keys(n): d for n, d in second_files.items() if n.startswith("media/")
    }
    exported_line = re.compile(r"^- Exported: .*$", re.M)
    assert exported_line.sub("", without_keys(second_files["conversation.md"].decode())) == (
        exported_line.sub("", without_keys(first_files["conversation.md"].decode()))
    )


def test_the_imported_tree_keeps_branches_current_path_settings_usage_and_timings(as_alice, tree):
    original = tree["conversation"]
    _, data = download(as_alice, original.pk, "zip")
    post_archive(as_alice, data)
    imported = Conversation.objects.exclude(pk=original.pk).get()

    def shape(conversation):
        messages = list(conversation.messages.order_by("pk"))
        index = {m.pk: n for n, m in enumerate(messages)}
        return [
            (
                index.get(m.parent_id),
                m.role,
                m.content,
                m.reasoning,
                m.status,
                m.usage,
                m.cost,
                m.error,
                m.tool_calls,
                m.tool_call_id,
                m.logprobs,
                m.created_at,
                m.started_at,
                m.first_token_at,
                m.finished_at,
            )
            for m in messages
        ]

    assert shape(imported) == shape(original)
    assert imported.messages.get(pk=imported.current_id).content == tree["final"].content
    assert imported.settings == SETTINGS
    assert imported.title == original.title and imported.created_at == original.created_at
    assert imported.pinned
    question = imported.messages.get(parent=None)
    assert question.children.count() == 2  # the failed reply and its retry: siblings
    final = imported.messages.get(pk=imported.current_id)
    assert "<strong>" not in final.html and "<pre><code>code" in final.html
    answer = imported.messages.get(content=tree["answer"].content)
    assert "<strong>yellow disc</strong>" in answer.html


def test_imported_files_are_new_uploads_of_the_importer_with_the_same_bytes(
    as_alice, alice, tree, settings
):
    original = tree["conversation"]
    _, data = download(as_alice, original.pk, "zip")
    post_archive(as_alice, data)
    imported = Conversation.objects.exclude(pk=original.pk).get()

    for before in (tree["image"], tree["sound"]):
        after = imported.attachments.get(original_name=before.original_name)
        assert after.key != before.key
        assert after.owner == alice and after.status == Attachment.Status.READY
        assert after.message.content == before.message.content
        for field in ("kind", "content_type", "size", "sha256", "width", "height", "codecs"):
            assert getattr(after, field) == getattr(before, field), field
        assert after.duration == pytest.approx(before.duration)
        assert after.derived_content_type == before.derived_content_type
        root = Path(settings.MEDIA_ROOT)
        for variant in ("file", "derived", "poster"):
            old, new = getattr(before, variant), getattr(after, variant)
            assert bool(old) == bool(new), variant
            if old:
                assert new.name.startswith(f"attachments/{alice.pk}/{after.key}/")
                assert (root / new.name).read_bytes() == (root / old.name).read_bytes()
        served = as_alice.get(f"/media/{after.key}/original/")
        assert b"".join(served.streaming_content) == (root / before.file.name).read_bytes()
    assert tree["sound"].derived  # the FLAC was converted: the derived file travelled too
    assert tree["image"].poster


def test_import_without_htmx_redirects_to_the_new_conversation(as_alice, tree, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # the upload spills to a temporary file
    _, data = download(as_alice, tree["conversation"].pk, "zip")
    response = post_archive(as_alice, data, htmx=False)
    imported = Conversation.objects.exclude(pk=tree["conversation"].pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/c/{imported.pk}/"


def test_an_empty_conversation_round_trips(as_alice, alice):
    empty = Conversation.objects.create(owner=alice, title="")
    _, first = download(as_alice, empty.pk, "zip")
    assert post_archive(as_alice, first).status_code == 200
    imported = Conversation.objects.exclude(pk=empty.pk).get()
    assert imported.messages.count() == 0 and imported.current is None
    _, second = download(as_alice, imported.pk, "zip")
    assert comparable(document(second)) == comparable(document(first))


# Export ------------------------------------------------------------------------------------


def test_the_zip_holds_the_documented_json_the_markdown_and_the_media(as_alice, tree):
    response, data = download(as_alice, tree["conversation"].pk, "zip")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    files = zip_members(data)
    record = json.loads(files["conversation.json"])
    assert record["format"] == "omni-playground-conversation" and record["version"] == 1
    messages = record["messages"]
    assert len(messages) == 8  # every branch, not only the one shown
    assert [m["id"] for m in messages] == list(range(1, 9))
    assert record["conversation"]["current"] == messages[-1]["id"]
    assert all("html" not in m for m in messages)
    image = tree["image"]
    photo = next(a for a in record["attachments"] if a["original_name"] == "photo.png")
    assert photo["files"]["original"] == f"media/{image.key}-photo.png"
    assert photo["files"]["poster"] == f"media/{image.key}.poster.jpg"
    assert photo["sha256"] == image.sha256
    assert hashlib.sha256(files[photo["files"]["original"]]).hexdigest() == image.sha256
    # The zip's Markdown links the media beside it.
    markdown = files["conversation.md"].decode()
    assert f"![photo.png](media/{image.key}-photo.png)" in markdown
    assert f"[tone.flac](media/{tree['sound'].key}-tone.flac)" in markdown
    assert "not in this Markdown file" not in markdown


def test_markdown_export_reads_as_the_branch_shown(as_alice, tree):
    response, data = download(as_alice, tree["conversation"].pk, "md")
    text = data.decode()
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="Weather')
    assert text.startswith("# Weather & a tone\n")
    assert "- Created: 2026-03-01 09:00 UTC" in text
    assert "- Model: alibaba/qwen3.5-omni-flash" in text  # the default model: none is set
    assert "temperature: 0.7" in text and "tools: get_weather" in text
    assert "> **System prompt**\n>\n> Answer briefly." in text
    assert "of 8 in all branches" in text
    assert text.count("## You") == 2 and text.count("## Assistant") == 3
    assert "> **Thinking**\n>\n> Let me look.\n>\n> A gradient and a yellow disc." in text
    # The files are not in it: it names them and says where they are, linking nothing.
    assert "](media/" not in text
    assert "Media files are not in this Markdown file: the zip export" in text
    assert "*image: photo.png (in the zip export, not in this file)*" in text
    assert "*audio: tone.flac (in the zip export, not in this file)*" in text
    assert '```json\n[\n  {\n    "id": "call_1"' in text
    assert "## Tool result (`call_1`)" in text
    assert "It is 21 °C in Paris." in text
    assert "120 → 30 tokens" in text
    assert "Never mind." not in text and "Too many requests." not in text  # other branches


def test_the_zip_is_built_in_a_temporary_file_that_goes_once_it_is_sent(
    as_alice, tree, settings, tmp_path
):
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "spool"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()
    response = as_alice.get(f"/c/{tree['conversation'].pk}/export.zip")
    assert len(list(settings.FILE_UPLOAD_TEMP_DIR.iterdir())) == 1
    data = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(data)
    assert list(settings.FILE_UPLOAD_TEMP_DIR.iterdir()) == []
    assert zipfile.is_zipfile(io.BytesIO(data))


@pytest.mark.django_db(transaction=True)
async def test_the_zip_streams_under_asgi_and_its_file_goes_afterwards(
    async_client, alice, tree, settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(attachments, "SERVE_BLOCK_BYTES", 4096)
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "spool"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()
    await async_client.aforce_login(alice)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in async_client.cookies.items())
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/c/{tree['conversation'].pk}/export.zip",
        "raw_path": b"",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
    }
    communicator = ApplicationCommunicator(get_asgi_application(), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=30)
    body, parts = b"", 0
    while True:
        message = await communicator.receive_output(timeout=30)
        body += message.get("body", b"")
        parts += 1
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=30)  # until the handler has closed the response
    assert start["status"] == 200
    assert parts > len(body) // 4096  # read and sent a block at a time
    assert document(body)["conversation"]["title"] == "Weather & a tone"
    assert list(settings.FILE_UPLOAD_TEMP_DIR.iterdir()) == []


def test_a_file_missing_on_disk_is_left_out_of_the_record_as_well_as_the_zip(
    as_alice, tree, settings
):
    sound = tree["sound"]
    (Path(settings.MEDIA_ROOT) / sound.derived.name).unlink()
    _, data = download(as_alice, tree["conversation"].pk, "zip")
    record = sound_record(document(data))
    assert record["files"]["derived"] is None and record["derived_content_type"] == ""
    assert post_archive(as_alice, data).status_code == 200


def test_another_persons_conversation_cannot_be_exported(client, bob, tree):
    client.force_login(bob)
    for kind in ("md", "zip"):
        assert client.get(f"/c/{tree['conversation'].pk}/export.{kind}").status_code == 404


def test_exports_need_a_login(client, tree):
    response = client.get(f"/c/{tree['conversation'].pk}/export.zip")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# Refusals ----------------------------------------------------------------------------------


def stored_files(settings) -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def counts() -> tuple[int, int, int]:
    return Conversation.objects.count(), Message.objects.count(), Attachment.objects.count()


def refused(client, settings, data: bytes, status: int, says: str) -> str:
    """Post `data`; it must be refused with `says`, leaving no row and no file behind."""
    rows, files = counts(), stored_files(settings)
    response = post_archive(client, data)
    text = html.unescape(response.content.decode())
    assert response.status_code == status, text
    assert 'data-testid="error"' in text and "<html" not in text
    assert says in text
    assert counts() == rows
    assert stored_files(settings) == files
    return text


@pytest.fixture
def exported(as_alice, tree) -> bytes:
    return download(as_alice, tree["conversation"].pk, "zip")[1]


def rebuild(data: bytes, change=None, replace=None, extra=()) -> bytes:
    """The archive again, with conversation.json changed by `change(record)`, members replaced
    ({name: bytes, or None to drop}) and extra ZipInfo/bytes pairs appended."""
    replace = dict(replace or {})
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "conversation.json" and change:
                record = json.loads(body)
                change(record)
                body = json.dumps(record).encode()
            if info.filename in replace:
                body = replace.pop(info.filename)
                if body is None:
                    continue
            target.writestr(info.filename, body)
        for name, body in replace.items():
            target.writestr(name, body)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names are what some tests want
            for info, body in extra:
                target.writestr(info, body)
    return out.getvalue()


def sound_record(record: dict) -> dict:
    return next(a for a in record["attachments"] if a["original_name"] == "tone.flac")


def test_a_file_that_is_not_a_zip_is_refused(as_alice, settings, tmp_path):
    refused(as_alice, settings, b"just some text", 400, "This file is not a zip archive.")
    png = make_image(tmp_path / "p.png", "PNG").read_bytes()
    refused(as_alice, settings, png, 400, "not a zip archive")


def test_a_post_without_a_file_is_refused(as_alice):
    response = as_alice.post("/import/", {}, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "Choose a conversation archive" in response.content.decode()


def test_a_refusal_without_htmx_is_a_page_with_the_reason(as_alice):
    response = post_archive(as_alice, b"not a zip", htmx=False)
    page = response.content.decode()
    assert response.status_code == 400
    assert "<html" in page and 'data-testid="error"' in page and "not a zip archive" in page


def test_an_archive_over_the_upload_limit_is_refused_and_says_the_limit(
    as_alice, settings, exported, monkeypatch
):
    settings.PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES = 1000
    text = refused(as_alice, settings, exported, 413, "archives of up to 1000 bytes")
    assert "PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES" in text
    # Refused by Content-Length alone, before the body is parsed.
    monkeypatch.setattr(archive, "FORM_OVERHEAD", 0)
    monkeypatch.setattr(WSGIRequest, "FILES", property(lambda r: pytest.fail("body parsed")))
    refused(as_alice, settings, exported, 413, "archives of up to 1000 bytes")


def test_an_archive_without_conversation_json_is_refused(as_alice, settings, exported):
    data = rebuild(exported, replace={"conversation.json": None})
    refused(as_alice, settings, data, 400, "The archive has no conversation.json")


def test_conversation_json_that_is_not_json_is_refused(as_alice, settings, exported):
    data = rebuild(exported, replace={"conversation.json": b"{nope"})
    refused(as_alice, settings, data, 400, "conversation.json is not valid JSON")
    data = rebuild(exported, replace={"conversation.json": b"[1, 2]"})
    refused(as_alice, settings, data, 400, "conversation.json must hold a JSON object")
    data = rebuild(exported, replace={"conversation.json": b'{"a": NaN}'})
    refused(as_alice, settings, data, 400, "is not valid JSON")


def test_another_version_is_refused_saying_which_version_is_read(as_alice, settings, exported):
    data = rebuild(exported, change=lambda r: r.update(version=2))
    refused(
        as_alice, settings, data, 400, "This archive is version 2; this playground reads version 1."
    )


def test_another_format_is_refused(as_alice, settings, exported):
    data = rebuild(exported, change=lambda r: r.update(format="someone-elses-chat"))
    refused(as_alice, settings, data, 400, "is not an Omni Playground conversation")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: r.update(messages="many"), "messages must be a list"),
        (lambda r: r["messages"][1].update(role="wizard"), "messages[1].role must be one of"),
        (lambda r: r["messages"][0].update(content=5), "messages[0].content must be text"),
        (lambda r: r["messages"][0].pop("created_at"), "messages[0].created_at is missing"),
        (
            lambda r: r["messages"][0].update(created_at="yesterday"),
            "messages[0].created_at must be a time",
        ),
        (
            lambda r: r["messages"][2].update(usage={"prompt_tokens": "many"}),
            "messages[2].usage.prompt_tokens must be a number",
        ),
        (
            lambda r: r["messages"][2].update(tool_calls=[{"id": "x"}]),
            "messages[2].tool_calls[0].function is missing",
        ),
        (
            lambda r: r["messages"][2].update(logprobs=[{"token": "a", "logprob": 900}]),
            "messages[2].logprobs[0].logprob must be a log-probability",
        ),
        (lambda r: r["messages"][0].update(status="streaming"), "messages[0].status"),
        (
            lambda r: r["conversation"]["settings"].update(temperature=9),
            "conversation.settings are not valid: temperature",
        ),
        (
            lambda r: r["conversation"]["settings"].update(secret="x"),
            "would not store: secret",
        ),
        (
            lambda r: r["conversation"]["settings"].update(response_format="json"),
            "conversation.settings",
        ),
        (lambda r: r["conversation"].update(title=7), "conversation.title must be text"),
        (lambda r: r["attachments"][0].update(size=-1), "attachments[0].size must be a whole"),
        (lambda r: r["attachments"][0].update(sha256="abc"), "attachments[0].sha256 must be 64"),
        (lambda r: r["messages"][0].update(content="a\x00b"), "holds a NUL character"),
    ],
)
def test_fields_of_the_wrong_type_or_range_are_refused_by_name(
    as_alice, settings, exported, change, says
):
    refused(as_alice, settings, rebuild(exported, change=change), 400, says)


def test_deep_nesting_is_refused(as_alice, settings, exported):
    deep: dict = {}
    for _ in range(200):
        deep = {"a": deep}
    data = rebuild(exported, change=lambda r: r["messages"][2].update(request=deep))
    refused(as_alice, settings, data, 400, "nests deeper than")


def test_parent_cycles_and_unknown_references_are_refused(as_alice, settings, exported):
    def cycle(record):
        first, second = record["messages"][0], record["messages"][1]
        first["parent"], second["parent"] = second["id"], first["id"]

    refused(as_alice, settings, rebuild(exported, change=cycle), 400, "form a cycle")
    self_parent = rebuild(exported, change=lambda r: r["messages"][3].update(parent=4))
    refused(as_alice, settings, self_parent, 400, "form a cycle (message 4")
    unknown = rebuild(exported, change=lambda r: r["messages"][2].update(parent=99))
    refused(as_alice, settings, unknown, 400, "refers to message 99, which is not in the archive")
    current = rebuild(exported, change=lambda r: r["conversation"].update(current=99))
    refused(as_alice, settings, current, 400, "conversation.current refers to message 99")
    owner = rebuild(exported, change=lambda r: r["attachments"][1].update(message=42))
    refused(as_alice, settings, owner, 400, "attachments[1].message refers to message 42")
    twice = rebuild(exported, change=lambda r: r["messages"][2].update(id=1))
    refused(as_alice, settings, twice, 400, "messages[2].id repeats id 1")


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "/etc/evil", "media\\evil.png", "C:/evil.txt", "media/../../evil", "./x"],
)
def test_member_names_that_leave_the_archive_are_refused(as_alice, settings, exported, name):
    data = rebuild(exported, extra=[(zipfile.ZipInfo(name), b"x")])
    refused(as_alice, settings, data, 400, "Archives may only hold plain relative paths")


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "media\\x", "C:/x", "x.png"])
def test_referenced_paths_that_leave_the_media_folder_are_refused(
    as_alice, settings, exported, path
):
    data = rebuild(exported, change=lambda r: sound_record(r)["files"].update(original=path))
    refused(as_alice, settings, data, 400, "files must be plain paths under media/")


def test_a_symlink_is_refused(as_alice, settings, exported):
    link = zipfile.ZipInfo("media/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = rebuild(exported, extra=[(link, b"/etc/passwd")])
    refused(as_alice, settings, data, 400, "as a symbolic link")


def test_duplicate_names_are_refused(as_alice, settings, exported):
    data = rebuild(exported, extra=[(zipfile.ZipInfo("conversation.json"), b"{}")])
    refused(as_alice, settings, data, 400, "holds “conversation.json” twice")


def test_an_encrypted_member_is_refused(as_alice, settings, exported):
    data = bytearray(exported)
    central = data.index(b"PK\x01\x02")  # the first central directory entry
    data[central + 8] |= 0x1  # general purpose flag: encrypted
    refused(as_alice, settings, bytes(data), 400, "is encrypted")


def test_a_zip_bomb_is_refused_by_its_ratio(as_alice, settings, exported):
    bomb = zipfile.ZipInfo("media/zeros.bin")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    data = rebuild(exported, extra=[(bomb, bytes(8 * 1024 * 1024))])
    refused(as_alice, settings, data, 400, "refused as a zip bomb")


def test_an_archive_unpacking_past_the_limit_is_refused(as_alice, settings, exported):
    settings.PLAYGROUND_MAX_IMPORT_BYTES = 4000
    refused(as_alice, settings, exported, 413, "at most 3.9 KB can be imported")


def test_bytes_are_counted_as_they_are_unpacked():
    budget = archive.Budget(10)
    budget.spend(10)
    with pytest.raises(archive.ArchiveRefused) as caught:
        budget.spend(1)
    assert caught.value.status == 413


def test_too_many_members_are_refused(as_alice, settings, exported, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBERS", 5)
    refused(as_alice, settings, exported, 400, "at most 5 are read")


def test_a_member_whose_header_lies_about_its_size_is_refused(as_alice, settings, exported):
    data = bytearray(exported)
    central = data.index(b"PK\x01\x02")  # conversation.json comes first
    size = int.from_bytes(data[central + 24 : central + 28], "little")
    data[central + 24 : central + 28] = (size // 2).to_bytes(4, "little")
    refused(as_alice, settings, bytes(data), 400, "“conversation.json” is damaged in the archive")


def test_a_referenced_file_missing_from_the_zip_is_refused(as_alice, settings, exported):
    name = sound_record(document(exported))["files"]["derived"]
    data = rebuild(exported, replace={name: None})
    refused(as_alice, settings, data, 400, "which is not in the archive")


def test_a_file_whose_checksum_does_not_match_is_refused(as_alice, settings, exported):
    name = sound_record(document(exported))["files"]["original"]
    changed = bytearray(zip_members(exported)[name])
    changed[-1] ^= 0xFF
    data = rebuild(exported, replace={name: bytes(changed)})
    refused(as_alice, settings, data, 400, "does not match its checksum")
    claimed = rebuild(exported, change=lambda r: sound_record(r).update(sha256="0" * 64))
    refused(as_alice, settings, claimed, 400, "does not match its checksum")


def test_media_whose_bytes_are_not_what_the_record_claims_are_refused(
    as_alice, settings, exported, tmp_path
):
    """Checksums that match do not make a file what it says: its bytes are probed."""
    name = sound_record(document(exported))["files"]["original"]

    def swap(body: bytes):
        def change(record):
            sound_record(record).update(size=len(body), sha256=hashlib.sha256(body).hexdigest())

        return rebuild(exported, change=change, replace={name: body})

    png = make_image(tmp_path / "tone.png", "PNG").read_bytes()
    refused(as_alice, settings, swap(png), 400, "“tone.flac” is not an audio file")
    wav = make_audio(tmp_path / "other.wav", "wav", "pcm_s16le", seconds=2).read_bytes()
    refused(as_alice, settings, swap(wav), 400, "is not what conversation.json says it is")
    refused(as_alice, settings, swap(HTML_PAYLOAD), 400, "This file is an HTML page")


def test_a_derived_file_that_is_not_what_it_claims_is_refused(
    as_alice, settings, exported, tmp_path
):
    name = sound_record(document(exported))["files"]["derived"]
    png = make_image(tmp_path / "x.png", "PNG").read_bytes()
    data = rebuild(exported, replace={name: png})
    refused(as_alice, settings, data, 400, "its kind is image, not audio")


def test_a_file_used_twice_is_refused(as_alice, settings, exported):
    def reuse(record):
        image = record["attachments"][0]["files"]["original"]
        sound_record(record)["files"]["original"] = image

    refused(as_alice, settings, rebuild(exported, change=reuse), 400, "which another file uses")
