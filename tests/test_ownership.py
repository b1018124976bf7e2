"""Every route that names someone's object, against its owner, another user and an anonymous
visitor: the owner gets through, the others get 404 (or, anonymous, a log-in page) and never a
403 that would confirm the object exists. The list is checked against the URL conf, so a new
route cannot be added without a line here."""

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import get_resolver

from chat.models import Attachment, Comparison, Conversation, Message, Preset, Share
from playground.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

# Routes that name no one's object (their own tests cover them) or are public by design.
NOT_OWNED = {
    "index",
    "setup",
    "login",
    "logout",
    "signup",
    "new_chat",
    "send_new",
    "compare_new",
    "search",
    "default_settings",
    "save_preset",
    "upload_start",
    "shares",
    "import_conversation",
    "signed_media",
    "shared",
    "share_continue",
    "shared_media",
    "choose_language",
    "js_catalog",
}


def routes():
    def walk(patterns):
        for pattern in patterns:
            if str(pattern.pattern).startswith("admin/"):
                continue  # Django's admin: staff only, guarded by Django itself
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns)
            elif pattern.name:
                yield pattern.name

    return set(walk(get_resolver().url_patterns))


@pytest.fixture
def world(django_user_model, tmp_path):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    conversation = Conversation.objects.create(owner=alice, title="Alice's secret")
    question = Message.objects.create(conversation=conversation, role="user", content="Q")
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="A",
        status="error",
        request={"model": "m", "messages": []},
    )
    comparison = Comparison.objects.create(
        conversation=conversation, prompt=question, columns=[{"label": "m", "settings": {}}]
    )
    answer.comparison, answer.column = comparison, 0
    answer.save()
    conversation.current = answer
    conversation.save()
    attachment = Attachment.objects.create(
        owner=alice,
        conversation=conversation,
        message=question,
        key="a" * 22,
        status="ready",
        kind="image",
        content_type="image/png",
        file="attachments/x/original",
    )
    (tmp_path / "media" / "attachments" / "x").mkdir(parents=True)
    (tmp_path / "media" / "attachments" / "x" / "original").write_bytes(b"\x89PNG")
    preset = Preset.objects.create(owner=alice, name="Mine", settings={"seed": 1})
    share = Share.objects.create(
        owner=alice, conversation=conversation, token="t" * 32, message_ids=[question.pk]
    )
    c, m = conversation.pk, answer.pk
    requests = {
        "conversation": ("get", f"/c/{c}/"),
        "send": ("post", f"/c/{c}/send/"),
        "stop": ("post", f"/c/{c}/stop/"),
        "retry": ("post", f"/c/{c}/m/{m}/retry/"),
        "switch_branch": ("post", f"/c/{c}/m/{m}/switch/"),
        "edit": ("post", f"/c/{c}/m/{question.pk}/edit/"),
        "delete_message": ("post", f"/c/{c}/m/{m}/delete/"),
        "conversation_settings": ("get", f"/c/{c}/settings/"),
        "view_code": ("get", f"/c/{c}/m/{m}/code/"),
        "tool_results": ("post", f"/c/{c}/m/{m}/tool-results/"),
        "rename": ("post", f"/c/{c}/rename/"),
        "pin": ("post", f"/c/{c}/pin/"),
        "delete_conversation": ("post", f"/c/{c}/delete/"),
        "apply_preset": ("post", f"/presets/{preset.pk}/apply/"),
        "default_preset": ("post", f"/presets/{preset.pk}/default/"),
        "delete_preset": ("post", f"/presets/{preset.pk}/delete/"),
        "upload": ("get", f"/uploads/{attachment.key}/"),
        "upload_delete": ("post", f"/uploads/{attachment.key}/delete/"),
        "attachment_media": ("get", f"/media/{attachment.key}/original/"),
        "share_create": ("post", f"/c/{c}/share/"),
        "share_revoke": ("post", f"/shares/{share.pk}/revoke/"),
        "export_markdown": ("get", f"/c/{c}/export.md"),
        "export_zip": ("get", f"/c/{c}/export.zip"),
        "call_turn": ("post", f"/c/{c}/call/turn/"),
        "compare": ("post", f"/c/{c}/compare/"),
        "compare_again": ("get", f"/c/{c}/m/{m}/compare/"),
        "compare_retry": ("post", f"/c/{c}/m/{m}/compare/retry/"),
        "keep": ("post", f"/c/{c}/m/{m}/keep/"),
    }
    return alice, bob, conversation, requests


def test_every_owned_route_is_in_the_matrix(world):
    *_, requests = world
    assert routes() - NOT_OWNED == set(requests)


def test_another_user_gets_404_on_every_owned_route(world):
    alice, bob, conversation, requests = world
    client = Client()
    client.force_login(bob)
    for name, (method, url) in requests.items():
        response = getattr(client, method)(url, {"text": "x", "title": "x", "content": "x"})
        assert response.status_code == 404, (name, response.status_code)
    conversation.refresh_from_db()
    assert conversation.title == "Alice's secret"
    assert conversation.messages.count() == 2


def test_an_anonymous_visitor_never_sees_an_owned_object(world):
    alice, bob, conversation, requests = world
    client = Client()
    for name, (method, url) in requests.items():
        response = getattr(client, method)(url)
        assert response.status_code in (302, 403, 404), (name, response.status_code)
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/accounts/login/"), name
        assert b"secret" not in response.content, name


def test_the_owner_gets_through_the_reading_routes(world):
    alice, bob, conversation, requests = world
    client = Client()
    client.force_login(alice)
    for name in (
        "conversation",
        "conversation_settings",
        "view_code",
        "upload",
        "attachment_media",
        "export_markdown",
        "export_zip",
    ):
        method, url = requests[name]
        assert getattr(client, method)(url).status_code == 200, name


@pytest.mark.parametrize("who", ["bob", "anonymous"])
async def test_the_websocket_refuses_anyone_but_the_owner(world, who):
    from asgiref.sync import sync_to_async

    alice, bob, conversation, _ = world
    headers = [(b"origin", b"http://localhost")]
    if who == "bob":
        client = Client()
        await sync_to_async(client.force_login)(bob)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.pk}/", headers=headers
    )
    connected, _ = await communicator.connect()
    assert not connected
