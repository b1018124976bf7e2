"""Finding and keeping conversations: date groups, search, rename, pin, delete."""

from datetime import UTC, date, datetime, timedelta

import pytest

from chat.conversations import group_by_date, snippet
from chat.models import Attachment, Conversation, Message

pytestmark = pytest.mark.django_db


def at(days_ago: int) -> datetime:
    return datetime(2026, 11, 25, 12, tzinfo=UTC) - timedelta(days=days_ago)


def test_conversations_are_grouped_by_date_with_pinned_first():
    items = [
        Conversation(title="pinned old", updated_at=at(40), pinned=True),
        Conversation(title="today", updated_at=at(0)),
        Conversation(title="yesterday", updated_at=at(1)),
        Conversation(title="this week", updated_at=at(6)),
        Conversation(title="older", updated_at=at(30)),
    ]
    groups = group_by_date(items, date(2026, 11, 25))
    assert [(g.label, [c.title for c in g.conversations]) for g in groups] == [
        ("Pinned", ["pinned old"]),
        ("Today", ["today"]),
        ("Yesterday", ["yesterday"]),
        ("Previous 7 days", ["this week"]),
        ("Older", ["older"]),
    ]


def test_a_snippet_shows_the_match_in_its_context():
    text = "word " * 40 + "the needle is here " + "word " * 40
    before, match, after = snippet(text, "NEEDLE")
    assert match == "needle"
    assert before.startswith("…") and before.endswith("the ")
    assert after.startswith(" is here") and after.endswith("…")


@pytest.fixture
def alice(django_user_model, client):
    user = django_user_model.objects.create_user("alice")
    client.force_login(user)
    return user


def test_search_finds_titles_and_message_text_of_my_conversations_only(
    client, alice, django_user_model
):
    mine = Conversation.objects.create(owner=alice, title="Trip planning")
    Message.objects.create(conversation=mine, role="user", content="What about the fjords?")
    other = Conversation.objects.create(owner=alice, title="Recipes")
    Message.objects.create(conversation=other, role="assistant", content="Fjords are far")
    bob = django_user_model.objects.create_user("bob")
    theirs = Conversation.objects.create(owner=bob, title="Fjords secret")

    html = client.get("/search/", {"q": "fjords"}, headers={"HX-Request": "true"}).content.decode()
    assert html.count('data-testid="search-hit"') == 2
    assert "<mark>fjords</mark>" in html and "<mark>Fjords</mark>" in html
    assert "secret" not in html and f"/c/{theirs.pk}/" not in html
    assert "Nothing matches" in client.get("/search/", {"q": "zebra"}).content.decode()


def test_a_conversation_can_be_renamed_and_an_empty_title_is_refused(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Old")
    response = client.post(f"/c/{conversation.pk}/rename/", {"title": "  New   name "})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "New name"
    response = client.post(f"/c/{conversation.pk}/rename/", {"title": " "})
    assert response.status_code == 422
    conversation.refresh_from_db()
    assert conversation.title == "New name"


def test_pinning_puts_a_conversation_first(client, alice):
    older = Conversation.objects.create(owner=alice, title="Older one", updated_at=at(20))
    Conversation.objects.create(owner=alice, title="Newer one")
    client.post(f"/c/{older.pk}/pin/")
    html = client.get("/new/").content.decode()
    assert html.index("Pinned") < html.index("Older one") < html.index("Newer one")


def test_deleting_a_conversation_takes_its_media_files_too(client, alice, settings):
    from chat.files import working_dir

    conversation = Conversation.objects.create(owner=alice, title="Gone soon")
    message = Message.objects.create(conversation=conversation, role="user", content="x")
    attachment = Attachment.objects.create(
        owner=alice, conversation=conversation, message=message, key="d" * 22, status="ready"
    )
    folder = working_dir(attachment)
    folder.mkdir(parents=True)
    (folder / "original").write_bytes(b"data")
    response = client.post(f"/c/{conversation.pk}/delete/")
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Attachment.objects.filter(pk=attachment.pk).exists()
    assert not folder.exists()


def test_another_user_cannot_rename_pin_or_delete(client, alice, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    theirs = Conversation.objects.create(owner=bob, title="Bob's")
    for action in ("rename", "pin", "delete"):
        assert client.post(f"/c/{theirs.pk}/{action}/", {"title": "x"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Bob's" and not theirs.pinned


def test_a_title_with_a_nul_is_refused_in_place(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Old")
    response = client.post(
        f"/c/{conversation.pk}/rename/", {"title": "a\x00b"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Old"


def test_a_search_with_a_nul_says_why_it_finds_nothing(client, alice):
    Conversation.objects.create(owner=alice, title="a b")
    response = client.get("/search/", {"q": "a\x00b"}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "Null characters are not allowed." in html
    assert 'id="conversation-list"' in html  # it takes the list's place


def test_a_snippet_keeps_the_spaces_around_the_match():
    before, match, after = snippet("the quick brown fox jumps over", "fox")
    assert before + match + after == "the quick brown fox jumps over"
    assert before.endswith(" ") and after.startswith(" ")


def test_a_snippet_keeps_no_space_inside_a_word():
    before, match, after = snippet("a brownfoxjumps b", "fox")
    assert (before, match, after) == ("a brown", "fox", "jumps b")
