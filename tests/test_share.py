"""Share links: snapshots, unguessable tokens, private links, scoped media, revocation, forking."""

import base64
import re
import secrets
import shutil
from pathlib import Path

import pytest
from django.test import Client

from chat import sharing
from chat.models import Attachment, Conversation, Message, Preset, Share
from tests.conftest import PASSWORD
from tests.media_files import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice) -> Conversation:
    """Alice asked about a picture and got an answer; her conversation shows that path."""
    conversation = Conversation.objects.create(
        owner=alice, title="The yellow circle", settings={"temperature": 0.3}
    )
    question = Message.objects.create(
        conversation=conversation, role="user", content="What is in   this\npicture?"
    )
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="A **yellow** circle.",
        html="<p>A <strong>yellow</strong> circle.</p>",
        reasoning="Looking at the colours.",
        usage={"prompt_tokens": 120, "completion_tokens": 7},
    )
    conversation.current = answer
    conversation.save()
    return conversation


def picture(
    owner, message: Message | None, media_root: Path, name: str = "circle.png", poster=False
):
    """A ready image attachment with a real PNG on disk (and a JPEG thumbnail in its work
    folder, when asked), as processing leaves it."""
    key = secrets.token_urlsafe(16)
    folder = Path(media_root) / "attachments" / str(owner.pk) / key
    folder.mkdir(parents=True)
    make_image(folder / "original", "png", size=(64, 48))
    data = (folder / "original").read_bytes()
    if poster:
        (folder / "work").mkdir()
        make_image(folder / "work" / "poster.jpg", "jpg", size=(32, 24))
    return Attachment.objects.create(
        owner=owner,
        conversation=message.conversation if message else None,
        message=message,
        key=key,
        status=Attachment.Status.READY,
        kind=Attachment.Kind.IMAGE,
        original_name=name,
        content_type="image/png",
        size=len(data),
        declared_size=len(data),
        received=len(data),
        width=64,
        height=48,
        file=f"attachments/{owner.pk}/{key}/original",
        poster=f"attachments/{owner.pk}/{key}/work/poster.jpg" if poster else "",
    )


def question_of(conversation: Conversation) -> Message:
    return conversation.messages.get(role="user")


def share_of(client: Client, conversation: Conversation, visibility: str = "anyone") -> Share:
    response = client.post(f"/c/{conversation.pk}/share/", {"visibility": visibility})
    assert response.status_code == 302
    return Share.objects.latest("id")


def media_url(share: Share, attachment: Attachment, variant: str = "sent") -> str:
    return f"/s/{share.token}/media/{attachment.key}/{variant}/"


# Making a link --------------------------------------------------------------------------------


def test_sharing_snapshots_the_path_shown_now(alice_client, conversation):
    share = share_of(alice_client, conversation)
    assert share.message_ids == list(
        conversation.messages.order_by("id").values_list("id", flat=True)
    )
    assert share.owner == conversation.owner
    assert share.title == "The yellow circle"
    assert share.visibility == "anyone"


def test_the_share_dialog_answers_with_the_link_and_a_copy_button(alice_client, conversation):
    response = alice_client.post(
        f"/c/{conversation.pk}/share/", {"visibility": "users"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    share = Share.objects.get()
    html = response.content.decode()
    assert f'data-testid="share-url" href="http://testserver/s/{share.token}/"' in html
    assert 'data-action="copy"' in html
    assert share.visibility == "users"


def test_the_chat_page_has_a_share_button(alice_client, conversation):
    html = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'data-testid="share"' in html
    assert f'hx-post="/c/{conversation.pk}/share/"' in html


def test_tokens_are_long_random_and_url_safe(alice_client, conversation):
    tokens = set()
    for _ in range(20):
        Message.objects.create(conversation=conversation, role="user", content="more")
        conversation.current = None  # the newest message is the end of the path
        conversation.save()
        tokens.add(share_of(alice_client, conversation).token)
    assert len(tokens) == 20
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", token)
        # URL-safe base64 of at least 16 random bytes (128 bits).
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 16
    # Roughly uniform characters: far from anything sequential or guessable.
    alphabet = set("".join(tokens))
    assert len(alphabet) > 40


def test_sharing_the_same_path_again_gives_the_same_link(alice_client, conversation):
    first = share_of(alice_client, conversation)
    assert share_of(alice_client, conversation).pk == first.pk
    assert share_of(alice_client, conversation, "users").pk != first.pk


def test_an_unknown_visibility_is_refused(alice_client, conversation):
    response = alice_client.post(
        f"/c/{conversation.pk}/share/", {"visibility": "world"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert 'data-testid="error"' in response.content.decode()
    assert not Share.objects.exists()


def test_an_empty_conversation_cannot_be_shared(alice_client, alice):
    empty = Conversation.objects.create(owner=alice, title="")
    response = alice_client.post(
        f"/c/{empty.pk}/share/", {"visibility": "anyone"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "nothing to share" in response.content.decode()
    assert not Share.objects.exists()


# The shared page ---------------------------------------------------------------------------------


def test_the_shared_page_shows_the_snapshot_read_only(alice_client, conversation):
    share = share_of(alice_client, conversation)
    failed = Message.objects.create(
        conversation=conversation,
        parent=conversation.current,
        role="assistant",
        status="error",
        error={"kind": "timeout", "message": "The model took too long."},
        request={"model": "m", "messages": []},
    )
    share.message_ids = [*share.message_ids, failed.pk]
    share.save()
    response = Client().get(f"/s/{share.token}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>yellow</strong>" in html
    assert "Looking at the colours." in html
    assert "120 → 7 tokens" in html
    assert "The model took too long." in html
    assert html.count('data-testid="message"') == 3
    for action in ("retry", "view-code", "send", "message-actions", "open-settings"):
        assert f'data-testid="{action}"' not in html
    assert 'name="text"' not in html
    assert 'href="/accounts/login/?next=/s/' in html  # "sign in to continue"


def test_a_message_added_after_sharing_is_not_on_the_page(alice_client, conversation):
    share = share_of(alice_client, conversation)
    later = Message.objects.create(
        conversation=conversation,
        parent=conversation.current,
        role="user",
        content="A secret added later",
    )
    conversation.current = later
    conversation.save()
    html = Client().get(f"/s/{share.token}/").content.decode()
    assert "A secret added later" not in html
    assert "What is in" in html


def test_another_branch_is_not_on_the_page(alice_client, conversation):
    question = question_of(conversation)
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Other branch"
    )
    share = share_of(alice_client, conversation)  # current is still the first answer
    html = Client().get(f"/s/{share.token}/").content.decode()
    assert "Other branch" not in html
    assert "yellow" in html


def test_every_page_view_counts_as_an_open(alice_client, conversation):
    share = share_of(alice_client, conversation)
    visitor = Client()
    for _ in range(3):
        assert visitor.get(f"/s/{share.token}/").status_code == 200
    visitor.head(f"/s/{share.token}/")
    share.refresh_from_db()
    assert share.opened == 3


def test_the_page_carries_meta_tags_for_link_previews(alice_client, conversation, settings):
    attachment = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation)
    response = Client().get(f"/s/{share.token}/")
    html = response.content.decode()
    assert "<title>The yellow circle · Omni Playground</title>" in html
    assert '<meta name="description" content="What is in this picture?">' in html
    assert '<meta property="og:title" content="The yellow circle">' in html
    assert '<meta property="og:description" content="What is in this picture?">' in html
    assert f'<meta property="og:url" content="http://testserver/s/{share.token}/">' in html
    image = f"http://testserver/s/{share.token}/media/{attachment.key}/sent/"
    assert f'<meta property="og:image" content="{image}">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-cache" in response.headers["Cache-Control"]
    # The preview image really is there for a stranger.
    assert Client().get(image).status_code == 200


def test_a_page_without_pictures_has_no_preview_image(alice_client, conversation):
    share = share_of(alice_client, conversation)
    html = Client().get(f"/s/{share.token}/").content.decode()
    assert "og:image" not in html
    assert '<meta name="twitter:card" content="summary">' in html


def test_an_unknown_token_is_not_found(client):
    assert client.get(f"/s/{sharing.new_token()}/").status_code == 404
    assert client.get(f"/s/{sharing.new_token()}/media/abc/sent/").status_code == 404


# Private links --------------------------------------------------------------------------------


def test_a_private_link_sends_anonymous_visitors_to_log_in_and_back(alice_client, conversation):
    share = share_of(alice_client, conversation, "users")
    response = Client().get(f"/s/{share.token}/")
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next=/s/{share.token}/"
    share.refresh_from_db()
    assert share.opened == 0


def test_a_private_link_opens_for_any_signed_in_user(alice_client, bob_client, conversation):
    share = share_of(alice_client, conversation, "users")
    response = bob_client.get(f"/s/{share.token}/")
    assert response.status_code == 200
    assert "yellow" in response.content.decode()


def test_a_private_links_media_are_hidden_from_anonymous_visitors(
    alice_client, bob_client, conversation, settings
):
    attachment = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation, "users")
    assert Client().get(media_url(share, attachment)).status_code == 404
    assert bob_client.get(media_url(share, attachment)).status_code == 200


def test_logging_in_from_a_private_link_comes_back_to_it(alice_client, bob, conversation):
    share = share_of(alice_client, conversation, "users")
    visitor = Client()
    response = visitor.post(
        f"/accounts/login/?next=/s/{share.token}/",
        {"username": "bob", "password": PASSWORD, "next": f"/s/{share.token}/"},
    )
    assert response.status_code == 302
    assert response.url == f"/s/{share.token}/"
    assert visitor.get(response.url).status_code == 200


# Media through the share ------------------------------------------------------------------------


def test_media_of_the_snapshot_are_served_through_the_share(alice_client, conversation, settings):
    attachment = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation)
    html = Client().get(f"/s/{share.token}/").content.decode()
    assert f'src="/s/{share.token}/media/{attachment.key}/sent/"' in html
    assert f'"/media/{attachment.key}/' not in html

    response = Client().get(media_url(share, attachment))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content)
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert body == (Path(settings.MEDIA_ROOT) / attachment.file.name).read_bytes()

    ranged = Client().get(media_url(share, attachment), headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206
    assert b"".join(ranged.streaming_content) == b"\x89PNG"
    # The owner's own URL stays the owner's.
    assert Client().get(f"/media/{attachment.key}/sent/").status_code == 404


def test_media_outside_the_snapshot_are_not_served(alice_client, conversation, alice, settings):
    share = share_of(alice_client, conversation)
    unsent = picture(alice, None, settings.MEDIA_ROOT, "unsent.png")
    elsewhere = Conversation.objects.create(owner=alice, title="Other")
    other = Message.objects.create(conversation=elsewhere, role="user", content="x")
    in_other = picture(alice, other, settings.MEDIA_ROOT, "other.png")
    later = Message.objects.create(
        conversation=conversation, parent=conversation.current, role="user", content="later"
    )
    added_later = picture(alice, later, settings.MEDIA_ROOT, "later.png")
    visitor = Client()
    for attachment in (unsent, in_other, added_later):
        assert visitor.get(media_url(share, attachment)).status_code == 404
    assert visitor.get(f"/s/{share.token}/media/nope/sent/").status_code == 404


# Revoking -----------------------------------------------------------------------------------------


def test_revoking_makes_the_page_and_its_media_404_at_once(alice_client, conversation, settings):
    attachment = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation)
    visitor = Client()
    assert visitor.get(f"/s/{share.token}/").status_code == 200
    assert visitor.get(media_url(share, attachment)).status_code == 200

    response = alice_client.post(f"/shares/{share.pk}/revoke/")
    assert response.status_code == 302
    share.refresh_from_db()
    assert share.revoked_at is not None
    assert visitor.get(f"/s/{share.token}/").status_code == 404
    assert visitor.get(media_url(share, attachment)).status_code == 404
    assert visitor.get(media_url(share, attachment, "original")).status_code == 404
    assert visitor.post(f"/s/{share.token}/continue/").status_code == 404


def test_media_are_revalidated_so_a_revoked_link_stops_at_once(
    alice_client, conversation, settings
):
    attachment = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation)
    response = Client().get(media_url(share, attachment))
    assert response["Cache-Control"] == "private, no-cache"
    again = Client().get(media_url(share, attachment), headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


def test_revoking_over_htmx_answers_the_updated_row(alice_client, conversation):
    share = share_of(alice_client, conversation)
    response = alice_client.post(f"/shares/{share.pk}/revoke/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Revoked" in html and 'data-testid="revoke"' not in html


def test_revoking_needs_a_post(alice_client, conversation):
    share = share_of(alice_client, conversation)
    assert alice_client.get(f"/shares/{share.pk}/revoke/").status_code == 405
    share.refresh_from_db()
    assert share.revoked_at is None


# The "Shared links" page ----------------------------------------------------------------------


def test_the_shared_links_page_lists_the_owners_links(alice_client, conversation):
    share = share_of(alice_client, conversation, "users")
    share.opened = 4
    share.save()
    html = alice_client.get("/shares/").content.decode()
    assert "The yellow circle" in html
    assert "Signed-in users only" in html
    assert "opened 4 times" in html
    assert f"http://testserver/s/{share.token}/" in html
    assert 'data-action="copy"' in html
    assert f'action="/shares/{share.pk}/revoke/"' in html
    assert 'data-testid="confirm-revoke"' in html


def test_the_shared_links_page_needs_an_account(client):
    response = client.get("/shares/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


# Other people ---------------------------------------------------------------------------------


def test_another_user_cannot_share_someone_elses_conversation(bob_client, conversation):
    response = bob_client.post(f"/c/{conversation.pk}/share/", {"visibility": "anyone"})
    assert response.status_code == 404
    assert not Share.objects.exists()


def test_another_user_cannot_revoke_someone_elses_link(alice_client, bob_client, conversation):
    share = share_of(alice_client, conversation)
    assert bob_client.post(f"/shares/{share.pk}/revoke/").status_code == 404
    share.refresh_from_db()
    assert share.revoked_at is None


def test_another_user_cannot_list_someone_elses_links(alice_client, bob_client, conversation):
    share = share_of(alice_client, conversation)
    assert bob_client.get(f"/shares/?conversation={conversation.pk}").status_code == 404
    html = bob_client.get("/shares/").content.decode()
    assert share.token not in html
    assert "The yellow circle" not in html


def test_anonymous_visitors_cannot_share(client, conversation):
    response = client.post(f"/c/{conversation.pk}/share/", {"visibility": "anyone"})
    assert response.status_code == 302
    assert not Share.objects.exists()


# Continuing a shared conversation -------------------------------------------------------------


def test_continuing_copies_messages_and_media_to_the_viewer(
    alice_client, bob_client, bob, conversation, settings
):
    question = question_of(conversation)
    original = picture(conversation.owner, question, settings.MEDIA_ROOT, poster=True)
    share = share_of(alice_client, conversation)
    original_ids = set(conversation.messages.values_list("id", flat=True))

    response = bob_client.post(f"/s/{share.token}/continue/")
    fork = Conversation.objects.get(owner=bob)
    assert response.status_code == 302
    assert response.url == f"/c/{fork.pk}/"
    assert fork.title == "The yellow circle"
    assert fork.settings == {}  # bob's defaults, as a new chat of his would get

    copied = list(fork.messages.order_by("id"))
    assert [(m.role, m.content) for m in copied] == [
        ("user", "What is in   this\npicture?"),
        ("assistant", "A **yellow** circle."),
    ]
    assert copied[0].parent is None and copied[1].parent == copied[0]
    assert copied[1].html == "<p>A <strong>yellow</strong> circle.</p>"
    assert fork.current == copied[1]

    copy = Attachment.objects.get(message=copied[0])
    assert copy.owner == bob and copy.conversation == fork
    assert copy.key != original.key
    copied_file = Path(settings.MEDIA_ROOT) / copy.file.name
    assert copied_file.is_file()
    assert copy.key in copy.file.name and f"/{bob.pk}/" in copy.file.name
    assert copied_file.read_bytes() == (Path(settings.MEDIA_ROOT) / original.file.name).read_bytes()
    assert copy.poster.name == f"attachments/{bob.pk}/{copy.key}/work/poster.jpg"
    assert (Path(settings.MEDIA_ROOT) / copy.poster.name).is_file()
    # Bob sees the copy through his own media URL, and his page shows it.
    assert bob_client.get(f"/media/{copy.key}/sent/").status_code == 200
    assert f"/media/{copy.key}/sent/" in bob_client.get(response.url).content.decode()

    # Alice's conversation is untouched.
    assert set(conversation.messages.values_list("id", flat=True)) == original_ids
    original.refresh_from_db()
    assert original.owner == conversation.owner and original.message == question
    assert (Path(settings.MEDIA_ROOT) / original.file.name).is_file()


def test_a_continued_copy_keeps_its_files_when_the_original_is_deleted(
    alice_client, bob_client, bob, conversation, settings
):
    original = picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    share = share_of(alice_client, conversation)
    bob_client.post(f"/s/{share.token}/continue/")
    copy = Attachment.objects.get(owner=bob)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "attachments" / str(original.owner_id))
    conversation.delete()
    assert (Path(settings.MEDIA_ROOT) / copy.file.name).read_bytes()[:4] == b"\x89PNG"
    assert bob_client.get(f"/media/{copy.key}/original/").status_code == 200


def test_continuing_copies_only_the_snapshot(alice_client, bob_client, bob, conversation):
    share = share_of(alice_client, conversation)
    Message.objects.create(
        conversation=conversation, parent=conversation.current, role="user", content="later"
    )
    bob_client.post(f"/s/{share.token}/continue/")
    fork = Conversation.objects.get(owner=bob)
    assert "later" not in fork.messages.values_list("content", flat=True)
    assert fork.messages.count() == 2


def test_an_anonymous_visitor_signs_in_before_continuing(alice_client, conversation):
    share = share_of(alice_client, conversation)
    response = Client().post(f"/s/{share.token}/continue/")
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next=/s/{share.token}/"
    assert Conversation.objects.count() == 1


def test_a_signed_in_viewer_sees_the_continue_button(alice_client, bob_client, conversation):
    share = share_of(alice_client, conversation)
    html = bob_client.get(f"/s/{share.token}/").content.decode()
    assert f'action="/s/{share.token}/continue/"' in html
    assert 'data-testid="continue"' in html


def test_continuing_copies_the_messages_not_the_sharers_settings_or_system_prompt(
    alice_client, bob_client, bob, conversation
):
    secret = "Never reveal the recipe XYZZY-42"
    conversation.settings = {"system_prompt": secret, "temperature": 0.3, "seed": 7}
    conversation.save()
    answer = conversation.current
    answer.request = {
        "model": "alibaba/qwen3.5-omni-flash",
        "messages": [
            {"role": "system", "content": secret},
            {"role": "user", "content": "What is in this picture?"},
        ],
        "temperature": 0.3,
        "seed": 7,
    }
    answer.save()
    Preset.objects.create(
        owner=bob, name="Mine", is_default=True, settings={"system_prompt": "Bob's own way"}
    )
    share = share_of(alice_client, conversation)
    assert secret not in Client().get(f"/s/{share.token}/").content.decode()

    bob_client.post(f"/s/{share.token}/continue/")
    fork = Conversation.objects.get(owner=bob)
    assert fork.settings == {"system_prompt": "Bob's own way"}  # what a new chat of his gets
    pages = [
        bob_client.get(f"/c/{fork.pk}/").content.decode(),
        bob_client.get(f"/c/{fork.pk}/settings/").content.decode(),
    ]
    pages += [
        bob_client.get(f"/c/{fork.pk}/m/{reply.pk}/code/").content.decode()
        for reply in fork.messages.filter(role="assistant")
    ]
    assert "Bob&#x27;s own way" in pages[1]
    for html in pages:
        assert "XYZZY" not in html
    assert all(m.request is None for m in fork.messages.all())


def test_the_share_dialog_says_a_continued_copy_gets_the_messages_only(alice_client, conversation):
    html = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "get the messages only, not your settings or system prompt" in html


@pytest.mark.parametrize(
    "public_url, trusted_origins, origin",
    [
        ("", ["https://chat.example.com", "http://localhost:8080"], "https://chat.example.com"),
        ("https://public.example.org", ["https://chat.example.com"], "https://public.example.org"),
    ],
)
def test_links_use_the_configured_origin_never_the_requests_host(
    alice_client, conversation, settings, public_url, trusted_origins, origin
):
    # A wildcard, as the image used to allow: any Host header got through.
    settings.ALLOWED_HOSTS = ["*"]
    settings.PLAYGROUND_PUBLIC_URL = public_url
    settings.CSRF_TRUSTED_ORIGINS = trusted_origins
    picture(conversation.owner, question_of(conversation), settings.MEDIA_ROOT)
    evil = {"Host": "evil.example"}
    dialog = alice_client.post(
        f"/c/{conversation.pk}/share/",
        {"visibility": "anyone"},
        headers={"HX-Request": "true", **evil},
    ).content.decode()
    share = Share.objects.get()
    page = Client().get(f"/s/{share.token}/", headers=evil).content.decode()
    listing = alice_client.get("/shares/", headers=evil).content.decode()
    revoked = alice_client.post(
        f"/shares/{share.pk}/revoke/", headers={"HX-Request": "true", **evil}
    ).content.decode()
    link = f"{origin}/s/{share.token}/"
    assert f'data-testid="share-url" href="{link}"' in dialog
    assert f'<meta property="og:url" content="{link}">' in page
    assert f'<meta property="og:image" content="{link}media/' in page
    assert link in listing
    for html in (dialog, page, listing, revoked):
        assert "evil.example" not in html


# Cost ---------------------------------------------------------------------------------------


def test_a_long_shared_conversation_renders_in_a_fixed_number_of_queries(
    alice_client, alice, django_assert_max_num_queries
):
    conversation = Conversation.objects.create(owner=alice, title="Long")
    parent = None
    for i in range(60):
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i}",
            html=f"<p>message {i}</p>",
        )
    share = share_of(alice_client, conversation)
    visitor = Client()
    with django_assert_max_num_queries(8):
        response = visitor.get(f"/s/{share.token}/")
    assert response.content.decode().count('data-testid="message"') == 60
