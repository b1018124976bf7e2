"""Django's middleware on the async path (playground/middleware.py): the hooks run on the event
loop, and what they guard still holds: CSRF, sessions saved on log-in, static files."""

import threading

import pytest
from django.middleware.security import SecurityMiddleware
from django.test import AsyncClient

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_hooks_run_on_the_event_loop_thread(monkeypatch, alice):
    # (alice: with an account there, the log-in page shows instead of the first-run set-up)
    seen = []
    original = SecurityMiddleware.process_request

    def spy(self, request):
        seen.append(threading.current_thread())
        return original(self, request)

    monkeypatch.setattr(SecurityMiddleware, "process_request", spy)
    response = await AsyncClient().get("/accounts/login/")
    assert response.status_code == 200
    assert seen == [threading.current_thread()]  # not a worker thread


async def test_a_post_without_the_csrf_token_is_refused(alice, upstream_is_simulator):
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    response = await client.post("/new/send/", {"text": "hello"})
    assert response.status_code == 403

    await client.get("/", follow=True)  # the chat page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = await client.post(
        "/new/send/", {"text": "hello [sim:length=2]"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 302  # sent: on to the new conversation


async def test_logging_in_saves_the_session(bob):
    client = AsyncClient()
    response = await client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    response = await client.get("/shares/")
    assert response.status_code == 200  # the saved session is found again


async def test_static_files_are_served_on_the_async_path(settings):
    settings.WHITENOISE_USE_FINDERS = True  # from the source folders: no collectstatic here
    response = await AsyncClient().get("/static/chat/chat.js")
    assert response.status_code == 200
    assert (
        b"".join(response.streaming_content)
        == (settings.BASE_DIR / "static/chat/chat.js").read_bytes()
    )
