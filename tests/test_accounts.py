import pytest
from django.contrib.auth import get_user_model

from chat.models import Conversation, Message
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_fresh_install_leads_the_first_visitor_to_create_the_admin(client):
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/setup/"
    html = response.content.decode()
    for name in ("username", "password1", "password2"):
        assert f'name="{name}"' in html


def test_the_first_account_is_an_admin_and_is_logged_in(client):
    response = client.post(
        "/setup/", {"username": "alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    alice = get_user_model().objects.get(username="alice")
    assert alice.is_superuser and alice.is_staff
    assert client.get("/new/").status_code == 200


def test_setup_shows_what_is_wrong_and_keeps_the_username(client):
    response = client.post(
        "/setup/", {"username": "alice", "password1": PASSWORD, "password2": "different-9x"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="error"' in html
    assert 'value="alice"' in html
    assert not get_user_model().objects.exists()


def test_setup_is_gone_once_an_account_exists(client, django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    response = client.post(
        "/setup/", {"username": "mallory", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    assert not django_user_model.objects.filter(username="mallory").exists()


def test_after_setup_visitors_must_log_in(client, django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert client.get("/new/").status_code == 302
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/new/").status_code == 200


def test_signup_is_closed_by_default(client, django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD)
    assert client.get("/accounts/signup/").status_code == 404


def test_signup_opens_with_the_setting(client, django_user_model, settings):
    settings.PLAYGROUND_SIGNUP = True
    django_user_model.objects.create_user("alice", password=PASSWORD)
    response = client.post(
        "/accounts/signup/", {"username": "bob", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    bob = django_user_model.objects.get(username="bob")
    assert not bob.is_staff


def test_the_home_page_shows_the_latest_conversation(client, django_user_model):
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    Conversation.objects.create(owner=alice, title="Older")
    latest = Conversation.objects.create(owner=alice, title="Latest")
    client.force_login(alice)
    response = client.get("/")
    assert response.headers["Location"] == f"/c/{latest.pk}/"


def test_it_rejects_other_users_conversation(client, django_user_model):
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    conversation = Conversation.objects.create(owner=alice, title="Private")
    message = Message.objects.create(
        conversation=conversation, role="assistant", status="error", content=""
    )
    client.force_login(bob)
    assert client.get(f"/c/{conversation.pk}/").status_code == 404
    assert client.post(f"/c/{conversation.pk}/send/", {"text": "hi"}).status_code == 404
    assert client.post(f"/c/{conversation.pk}/stop/").status_code == 404
    assert client.post(f"/c/{conversation.pk}/m/{message.pk}/retry/").status_code == 404
    assert conversation.messages.count() == 1


def test_an_anonymous_visitor_is_sent_to_log_in(client, django_user_model):
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    conversation = Conversation.objects.create(owner=alice, title="Private")
    response = client.get(f"/c/{conversation.pk}/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/")


def test_the_sidebar_lists_only_my_conversations_newest_first(client, django_user_model):
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    Conversation.objects.create(owner=alice, title="First of alice")
    Conversation.objects.create(owner=bob, title="Bob's secret")
    Conversation.objects.create(owner=alice, title="Second of alice")
    client.force_login(alice)
    html = client.get("/new/").content.decode()
    assert "Bob&#x27;s secret" not in html and "Bob's secret" not in html
    assert html.index("Second of alice") < html.index("First of alice")


def test_log_in_is_throttled_after_repeated_failures(client, django_user_model):
    from django.core.cache import cache

    cache.clear()
    django_user_model.objects.create_user("alice", password=PASSWORD)
    for _ in range(5):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200  # even the right password waits out the window
    assert "Too many failed log-ins" in response.content.decode()
    cache.clear()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
