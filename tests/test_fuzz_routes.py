"""Every form route of chat/urls.py, fed wrong values (wrong types as text, huge numbers, empty,
NUL, lone surrogates, very long and deeply nested text, repeated keys), as the owner, as another
person and logged out: never a 500, never an unhandled exception, nothing logged at ERROR.

Bodies are written by hand, urlencoded from UTF-8 with lone surrogates passed through as their
raw bytes (%ED%A0%80), which a browser would never send but anyone can.
"""

import io
import json
import logging
import secrets
import zipfile
from dataclasses import dataclass, field
from urllib.parse import quote

import hypothesis
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import AsyncClient, Client
from django.urls import URLPattern
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from chat import generation
from chat.archive import FORMAT, VERSION
from chat.models import Attachment, Conversation, Message, Preset, Share
from chat.settings_form import SettingsForm

FUZZ = hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # each run explores afresh: nothing kept between runs or machines
)

NUMBERS = [
    "",
    "abc",
    "1.5",
    "-1",
    "0",
    "1e309",
    "NaN",
    "9" * 30,
    "9" * 5000,
    "0x10",
    " 1 ",
    "1_000",
    "\x00",
    "\ud800",
    "@conversation",
    "@other_conversation",
]
JSONS = [
    "[" * 5000,
    '{"a":' * 3000,
    "[" * 70 + "]" * 70,
    '[{"name": "f", "description": "\\u0000"}]',
    '[{"name": "f", "description": "\\ud800"}]',
    '[{"name": "f", "parameters": {"type": "object", "default": NaN}}]',
    '[{"name": "f", "parameters": {"type": "object", "default": 1e999}}]',
    '[{"name": "f", "parameters": {"type": 3}}]',
    '[{"name": "f"}, {"name": "f"}]',
    '{"name": "a", "schema": {"type": "object"}}',
    '{"name": "a\\u0000", "schema": {"type": "object"}}',
    "[1]",
    "{}",
    "abc",
    "9" * 5000,
]
CHOICES = [
    "",
    "json_schema",
    "json_object",
    "auto",
    "required",
    "f",
    "Tina",
    "true",
    "false",
    "on",
    "anyone",
    "users",
    "abc",
    "\x00",
]
TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00media0\x00",
    "\\u0000media0\\u0000",
    "\ud800",
    "a\udfffb",
    "\ufeff",
    "\u202e",
    "🙂",
    "e\u0301",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "x" * 100_001,
    "@upload",
    "@other_upload",
]
NUMBER_KEYS = {
    "temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty",
    "thinking_budget", "top_logprobs", "size", "conversation",
}  # fmt: skip
JSON_KEYS = {"tools", "json_schema"}
CHOICE_KEYS = {
    "model", "response_format", "voice", "tool_choice", "visibility", "parallel_tool_calls",
    "enable_thinking", "logprobs", "audio_output", "download",
}  # fmt: skip
# What each key takes when it is right: the base every example starts from.
VALID = {
    "temperature": "0.5",
    "seed": "7",
    "conversation": "@conversation",
    "system_prompt": "Be brief.",
    "tools": '[{"name": "f"}]',
    "tool_choice": "auto",
    "preset_name": "Careful",
    "text": "Hello",
    "content": "Hello again",
    "keep": "@upload",
    "attachments": "@upload",
    "result_call_a": "42",
    "title": "A title",
    "q": "Hi",
    "size": "100",
    "name": "a.png",
    "visibility": "anyone",
    "username": "carol",
    "password": "correct-horse-battery-9",
    "password1": "correct-horse-battery-9",
    "password2": "correct-horse-battery-9",
}


def wrong_for(key: str) -> st.SearchStrategy[str]:
    if key in NUMBER_KEYS:
        known = NUMBERS
    elif key in JSON_KEYS:
        known = JSONS
    elif key in CHOICE_KEYS:
        known = CHOICES
    else:
        known = TEXTS
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known),  # twice: the known trouble comes up more than any text
        st.text(max_size=20),
        st.integers().map(str),
        st.floats().map(str),
    )


SETTINGS_KEYS = list(SettingsForm.base_fields)  # every field of the settings panel
# Where settings fields were trouble: text parsed as JSON, and free text.
SETTINGS_FOCUS = ["tools", "json_schema", "system_prompt", "stop", "voice", "tool_choice"]


# Compare's composer: the message and two columns' fields (chat/compare.py).
COLUMN_KEYS = [
    "text",
    "columns-TOTAL_FORMS",
    "columns-INITIAL_FORMS",
    *(f"columns-{n}-{name}" for n in (0, 1) for name in ("model", "preset", "temperature")),
    "columns-1-thinking",
    "columns-1-max_tokens",
    "columns-1-audio",
]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    keys: list[str] = field(default_factory=list)
    kwargs: tuple[str, ...] = ()
    sends: bool = False  # may start a reply: fuzzed where jobs can run (transaction=True)
    focus: tuple[str, ...] = ()  # the keys given wrong values most often (default: `keys`)


ROUTES = {
    "index": Route(("GET",)),
    "choose_language": Route(("GET", "POST"), ["language", "next"]),
    "js_catalog": Route(("GET",), [], ("language",)),
    "setup": Route(("GET", "POST"), ["username", "password1", "password2"]),
    "login": Route(("GET", "POST"), ["username", "password", "next"]),
    "logout": Route(("POST",), ["next"]),
    "signup": Route(("GET", "POST"), ["username", "password1", "password2"]),
    "new_chat": Route(("GET",)),
    "send_new": Route(("POST",), ["text", "attachments"], sends=True),
    "conversation": Route(("GET",), [], ("conversation_id",)),
    "send": Route(("POST",), ["text", "attachments"], ("conversation_id",), sends=True),
    "stop": Route(("POST",), [], ("conversation_id",)),
    "retry": Route(("POST",), [], ("conversation_id", "message_id"), sends=True),
    "switch_branch": Route(("POST",), [], ("conversation_id", "message_id")),
    "edit": Route(("GET", "POST"), ["content", "keep"], ("conversation_id", "message_id"), True),
    "delete_message": Route(("POST",), [], ("conversation_id", "message_id")),
    "conversation_settings": Route(
        ("GET", "POST"), SETTINGS_KEYS, ("conversation_id",), focus=SETTINGS_FOCUS
    ),
    "view_code": Route(("GET",), [], ("conversation_id", "message_id")),
    "tool_results": Route(
        ("POST",), ["result_call_a", "result_"], ("conversation_id", "message_id"), sends=True
    ),
    "search": Route(("GET",), ["q"]),
    "rename": Route(("POST",), ["title"], ("conversation_id",)),
    "pin": Route(("POST",), [], ("conversation_id",)),
    "delete_conversation": Route(("POST",), [], ("conversation_id",)),
    "default_settings": Route(("GET", "POST"), SETTINGS_KEYS, focus=SETTINGS_FOCUS),
    "save_preset": Route(
        ("POST",),
        [*SETTINGS_KEYS, "conversation", "preset_name"],
        focus=("conversation", "preset_name"),
    ),
    "apply_preset": Route(
        ("POST",), [*SETTINGS_KEYS, "conversation"], ("preset_id",), focus=("conversation",)
    ),
    "default_preset": Route(
        ("POST",), [*SETTINGS_KEYS, "conversation"], ("preset_id",), focus=("conversation",)
    ),
    "delete_preset": Route(
        ("POST",), [*SETTINGS_KEYS, "conversation"], ("preset_id",), focus=("conversation",)
    ),
    "upload_start": Route(("POST",), ["size", "name"]),
    "upload": Route(("GET", "PUT", "DELETE", "POST"), [], ("key",)),
    "upload_delete": Route(("POST",), [], ("key",)),
    "signed_media": Route(("GET",), ["download"], ("token",)),
    "attachment_media": Route(("GET",), ["download"], ("key", "variant")),
    "share_create": Route(("POST",), ["visibility"], ("conversation_id",)),
    "shares": Route(("GET",), ["conversation"]),
    "share_revoke": Route(("POST",), [], ("share_id",)),
    "shared": Route(("GET",), [], ("token",)),
    "share_continue": Route(("POST",), [], ("token",)),
    "shared_media": Route(("GET",), [], ("token", "key", "variant")),
    "export_markdown": Route(("GET",), [], ("conversation_id",)),
    "export_zip": Route(("GET",), [], ("conversation_id",)),
    "import_conversation": Route(("POST",), ["archive"]),
    "call_turn": Route(("POST",), ["text"], ("conversation_id",), sends=True),
    "compare_new": Route(("POST",), COLUMN_KEYS, sends=True),
    "compare": Route(("POST",), COLUMN_KEYS, ("conversation_id",), sends=True),
    "compare_again": Route(
        ("GET", "POST"), COLUMN_KEYS, ("conversation_id", "message_id"), sends=True
    ),
    "compare_retry": Route(("POST",), [], ("conversation_id", "message_id"), sends=True),
    "keep": Route(("POST",), [], ("conversation_id", "message_id")),
}


def chat_patterns() -> dict[str, URLPattern]:
    """The app's routes, by name (chat/urls.py is included at the site's root)."""
    from chat.urls import urlpatterns

    return {pattern.name: pattern for pattern in urlpatterns}


def test_every_route_of_the_app_is_fuzzed():
    assert set(chat_patterns()) == set(ROUTES)


@dataclass
class World:
    """One example's objects: alice's (the owner's) and bob's (another person's)."""

    alice: object
    bob: object
    ids: dict[str, list[str]]
    names: dict[str, str]


def make_world(alice, bob) -> World:
    mine = Conversation.objects.create(owner=alice, title="Mine")
    question = Message.objects.create(conversation=mine, role="user", content="Hi")
    answer = Message.objects.create(
        conversation=mine, parent=question, role="assistant", content="Hello", status="complete"
    )
    calls = [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    asking = Message.objects.create(
        conversation=mine, parent=answer, role="assistant", status="complete", tool_calls=calls
    )
    orphan = Message.objects.create(
        conversation=mine, role="assistant", content="Imported", status="complete"
    )
    Conversation.objects.filter(pk=mine.pk).update(current=asking)
    theirs = Conversation.objects.create(owner=bob, title="Theirs")
    their_message = Message.objects.create(conversation=theirs, role="user", content="Bob's")
    unique = secrets.token_hex(4)  # worlds pile up where examples are not rolled back
    preset = Preset.objects.create(owner=alice, name=f"Mine {unique}", settings={"seed": 3})
    their_preset = Preset.objects.create(owner=bob, name=f"Theirs {unique}", settings={"seed": 4})
    share = Share.objects.create(owner=alice, conversation=mine, token=secrets.token_urlsafe())
    their_share = Share.objects.create(
        owner=bob, conversation=theirs, token=secrets.token_urlsafe()
    )
    upload = Attachment.objects.create(
        owner=alice, key=secrets.token_urlsafe(12), declared_size=10**6
    )
    their_upload = Attachment.objects.create(
        owner=bob, key=secrets.token_urlsafe(12), declared_size=10**6
    )
    far = ["0", "999999", str(2**31), str(2**63), "9" * 30]
    ids = {
        "conversation_id": [str(mine.pk), str(theirs.pk), *far],
        "message_id": [str(m.pk) for m in (question, answer, asking, orphan, their_message)] + far,
        "preset_id": [str(preset.pk), str(their_preset.pk), *far],
        "share_id": [str(share.pk), str(their_share.pk), *far],
        "key": [upload.key, their_upload.key, "nope", "a" * 200],
        "variant": ["original", "sent", "thumb", "poster", "nope"],
        "token": [share.token, their_share.token, "nope", "x" * 300],
        "language": ["en", "zh-hans", "ar", "ZH-HANS", "xx", "x" * 300],
    }
    names = {
        "@conversation": str(mine.pk),
        "@other_conversation": str(theirs.pk),
        "@preset": str(preset.pk),
        "@upload": upload.key,
        "@other_upload": their_upload.key,
        "@call": "call_a",
    }
    return World(alice, bob, ids, names)


@dataclass
class Request:
    route: str
    method: str
    picks: dict[str, int]
    fields: list[tuple[str, str]]
    who: str
    htmx: bool
    archive: bytes = b""


def requests_for(routes: list[str]) -> st.SearchStrategy[Request]:
    @st.composite
    def build(draw):
        name = draw(st.sampled_from(routes))
        route = ROUTES[name]
        keys = [*route.keys, "junk"]
        fields = [
            (key, VALID.get(key, "1")) for key in route.keys if key in VALID and draw(st.booleans())
        ]
        wrong = st.one_of(st.sampled_from(list(route.focus) or keys), st.sampled_from(keys))
        for key in draw(st.lists(wrong, min_size=1, max_size=3)):
            fields.append((key, draw(wrong_for(key))))  # the last of a repeated key counts
        fields = draw(st.permutations(fields)) if draw(st.booleans()) else fields
        picks = {kwarg: draw(st.integers(0, 7)) for kwarg in route.kwargs}
        archive = b""
        if name == "import_conversation":
            archive = draw(archives)
        return Request(
            route=name,
            method=draw(st.sampled_from(route.methods)),
            picks=picks,
            fields=fields,
            who=draw(st.sampled_from(["owner", "owner", "other", "nobody"])),
            htmx=draw(st.booleans()),
            archive=archive,
        )

    return build()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.sampled_from(NUMBERS + JSONS + CHOICES + TEXTS),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["messages", "title", "settings", "current", "id", "parent", "role"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
archives = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(NUMBERS + JSONS + CHOICES + TEXTS).map(
        lambda text: _zip({"conversation.json": text.encode(errors="surrogatepass")})
    ),
    documents.map(
        lambda extra: _zip(
            {
                "conversation.json": json.dumps(
                    {"format": FORMAT, "version": VERSION, "conversation": extra, "messages": extra}
                ).encode()
            }
        )
    ),
)


def encoded(pairs: list[tuple[str, str]]) -> str:
    """application/x-www-form-urlencoded, lone surrogates as the raw bytes they would be."""
    return "&".join(
        f"{quote(k.encode(errors='surrogatepass'))}={quote(v.encode(errors='surrogatepass'))}"
        for k, v in pairs
    )


def prepared(request: Request, world: World) -> tuple[str, list[tuple[str, str]]]:
    route = chat_patterns()[request.route]
    path = "/" + str(route.pattern)
    for kwarg, pick in request.picks.items():
        choices = world.ids[kwarg]
        path = path.replace(f"<{_converter(route, kwarg)}:{kwarg}>", choices[pick % len(choices)])
    fields = [(key, world.names.get(value, value)) for key, value in request.fields]
    return path, fields


def _converter(route: URLPattern, kwarg: str) -> str:
    text = str(route.pattern)
    start = text.index(f":{kwarg}>")
    return text[text.rindex("<", 0, start) + 1 : start]


def call(client, request: Request, path: str, fields: list[tuple[str, str]]):
    headers = {"HX-Request": "true"} if request.htmx else {}
    body = encoded(fields)
    if request.route == "import_conversation" and request.method == "POST":
        data = {"archive": SimpleUploadedFile("chat.zip", request.archive)}
        for key, value in fields:
            if key != "archive" and "\x00" not in value:
                # One field of these bytes (bytes alone the test client sends byte by byte,
                # one field each).
                data[key] = [value.encode(errors="surrogatepass")]
        return client.post(path, data, headers=headers)
    if request.method == "GET":
        return client.get(f"{path}?{body}" if body else path, headers=headers)
    if request.method == "PUT":
        offset = fields[0][1] if fields else "0"
        return client.generic(
            "PUT",
            path,
            fields[-1][1].encode(errors="surrogatepass") if fields else b"",
            content_type="application/offset+octet-stream",
            headers={**headers, "Upload-Offset": offset},
        )
    return client.generic(
        request.method,
        path,
        body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def errors():
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def check(response, request: Request, errors: Errors):
    assert response.status_code < 500, (request, response.content[:500])
    assert not errors.records, [errors.format(r) for r in errors.records]


QUIET_ROUTES = [name for name, route in ROUTES.items() if not route.sends]
SENDING_ROUTES = [name for name, route in ROUTES.items() if route.sends]


@pytest.fixture
def world(alice, bob) -> World:
    return make_world(alice, bob)


@pytest.fixture
def clients(alice, bob) -> dict[str, Client]:
    found = {who: Client(raise_request_exception=True) for who in ("owner", "other", "nobody")}
    found["owner"].force_login(alice)
    found["other"].force_login(bob)
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("route", QUIET_ROUTES)
@FUZZ
@given(data=st.data())
def test_no_route_fails_on_wrong_values(world, clients, errors, route, data):
    attempt = data.draw(requests_for([route]))
    errors.records.clear()
    path, fields = prepared(attempt, world)
    with transaction.atomic():  # each example starts from the same objects
        response = call(clients[attempt.who], attempt, path, fields)
        transaction.set_rollback(True)
    check(response, attempt, errors)


@pytest.fixture
def async_clients(alice, bob) -> dict[str, AsyncClient]:
    found = {who: AsyncClient(raise_request_exception=True) for who in ("owner", "other", "nobody")}
    found["owner"].force_login(alice)
    found["other"].force_login(bob)
    return found


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", SENDING_ROUTES)
@hypothesis.settings(FUZZ, max_examples=20)
@given(data=st.data())
async def test_no_sending_route_fails_on_wrong_values(
    upstream_is_simulator, world, async_clients, errors, route, data
):
    attempt = data.draw(requests_for([route]))
    errors.records.clear()
    path, fields = prepared(attempt, world)
    try:
        response = await call(async_clients[attempt.who], attempt, path, fields)
    finally:
        # A reply that started is stopped, saved and announced before the next example.
        await generation.interrupt_running()
    check(response, attempt, errors)


@pytest.mark.django_db
def test_a_url_too_long_to_log_in_with_is_refused_without_an_error_logged(client, errors):
    response = client.get("/search/", {"q": "x" * 20_000})
    assert response.status_code == 400
    assert not errors.records


@pytest.mark.django_db
def test_an_attachment_key_with_a_nul_is_refused_beside_the_composer(alice_client):
    response = alice_client.post(
        "/new/send/", {"text": "Hi", "attachments": "a\x00b"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "An attachment is no longer available" in response.content.decode()
    assert not Conversation.objects.exists()
