"""Errors a person meets (an unknown address, a revoked link, a refusal, a failure) are pages of
the site with a way back, not the framework's bare text."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import path

from chat.models import Conversation, Message
from playground.urls import urlpatterns as site_patterns

pytestmark = pytest.mark.django_db


def refuse(request):
    raise PermissionDenied


def fail(request):
    raise RuntimeError("a bug")


urlpatterns = [path("test-refused/", refuse), path("test-failed/", fail), *site_patterns]


def styled(response) -> str:
    html = response.content.decode()
    assert "<!doctype html>" in html.lower()
    assert "chat/app.css" in html  # the site's own look
    return html


def test_an_unknown_address_is_a_styled_404_with_a_way_back_to_the_chats(alice_client):
    response = alice_client.get("/no/such/page/")
    assert response.status_code == 404
    html = styled(response)
    assert 'data-testid="error-page"' in html
    assert "Back to your chats" in html and 'href="/"' in html


def test_a_revoked_share_link_is_a_styled_404_that_offers_to_log_in(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, title="Hello")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Conversation.objects.filter(pk=conversation.pk).update(current=question)
    response = alice_client.post(
        f"/c/{conversation.pk}/share/", {"visibility": "anyone"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    share = conversation.shares.get()
    alice_client.post(f"/shares/{share.pk}/revoke/")
    visitor = Client()
    response = visitor.get(f"/s/{share.token}/")
    assert response.status_code == 404
    html = styled(response)
    assert "This link was revoked or never existed" in html or "not found" in html.lower()
    assert 'href="/accounts/login/' in html


@pytest.mark.urls("tests.test_error_pages")
def test_a_refusal_is_a_styled_403(alice_client):
    response = alice_client.get("/test-refused/")
    assert response.status_code == 403
    html = styled(response)
    assert 'data-testid="error-page"' in html and 'href="/"' in html


@pytest.mark.urls("tests.test_error_pages")
def test_a_failure_is_a_styled_500_that_needs_nothing_from_the_request(alice):
    client = Client(raise_request_exception=False)
    response = client.get("/test-failed/")
    assert response.status_code == 500
    html = styled(response)
    assert 'data-testid="error-page"' in html and 'href="/"' in html
