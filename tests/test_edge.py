"""The edge: who the client is behind a proxy, https behind a proxy, and log-in throttling on
every log-in form (per username and address, per username, per address)."""

import http.cookies
import logging
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory

from chat import throttle
from playground.middleware import ClientAddress
from tests.conftest import PASSWORD, REPO_ROOT, running
from tests.processes import free_port

pytestmark = pytest.mark.django_db

PROXY = "172.28.0.10"


@pytest.fixture(autouse=True)
def _no_counts_left(settings):
    """Fresh counters, and a fast password hasher: these tests fail hundreds of log-ins."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        "alice", password=PASSWORD, is_staff=True, is_superuser=True
    )


def seen_by_the_app(settings, trusted: list[str], **meta) -> dict:
    """request.META as the views see it, after ClientAddress."""
    settings.PLAYGROUND_TRUSTED_PROXIES = trusted
    seen = {}

    def view(request):
        seen.update(request.META)

    ClientAddress(view)(RequestFactory().get("/", **meta))
    return seen


def log_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def logged_in(response) -> bool:
    return response.status_code == 302


def from_address(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


# The client's address --------------------------------------------------------------------------


def test_forwarded_headers_from_an_untrusted_peer_are_dropped(settings):
    meta = seen_by_the_app(
        settings,
        [f"{PROXY}/32"],
        REMOTE_ADDR="203.0.113.5",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="evil.example",
    )
    assert meta["REMOTE_ADDR"] == "203.0.113.5"
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"):
        assert header not in meta


def test_with_no_trusted_proxies_nobody_is_believed(settings):
    meta = seen_by_the_app(
        settings, [], REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert meta["REMOTE_ADDR"] == "127.0.0.1" and "HTTP_X_FORWARDED_FOR" not in meta


def test_a_trusted_proxy_gives_the_right_most_address_that_is_not_a_proxy(settings):
    meta = seen_by_the_app(
        settings,
        [f"{PROXY}/32", "10.1.0.0/16"],
        REMOTE_ADDR=PROXY,
        # What the client wrote, then the client as the first proxy saw it, then that proxy.
        HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7, 10.1.2.3",
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert meta["REMOTE_ADDR"] == "198.51.100.7"
    assert meta["HTTP_X_FORWARDED_PROTO"] == "https"


def test_a_trusted_proxy_without_x_forwarded_for_stays_the_address(settings):
    meta = seen_by_the_app(settings, [f"{PROXY}/32"], REMOTE_ADDR=PROXY)
    assert meta["REMOTE_ADDR"] == PROXY
    meta = seen_by_the_app(
        settings, [f"{PROXY}/32"], REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="not an address"
    )
    assert meta["REMOTE_ADDR"] == PROXY


@pytest.fixture
def behind_a_tls_proxy(settings, alice):
    """Settings as an https origin with trusted proxies makes them (see tests/test_startup.py)."""
    settings.PLAYGROUND_TRUSTED_PROXIES = [f"{PROXY}/32"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True


def test_https_through_a_trusted_proxy_gets_hsts(behind_a_tls_proxy):
    response = from_address(PROXY).get(
        "/accounts/login/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"}
    )
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_an_untrusted_peer_saying_https_is_not_treated_as_https(behind_a_tls_proxy):
    response = from_address("203.0.113.5").get(
        "/accounts/login/", headers={"X-Forwarded-Proto": "https"}
    )
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers


# Log-in throttling -----------------------------------------------------------------------------


def test_the_admin_log_in_is_throttled(alice):
    admin = from_address("203.0.113.5")
    for _ in range(12):
        log_in(admin, "alice", "wrong", "/admin/login/")
    response = log_in(admin, "alice", PASSWORD, "/admin/login/")
    assert not logged_in(response)
    assert "Too many failed log-ins" in response.content.decode()
    assert admin.get("/admin/").status_code == 302  # still sent to log in


def test_admin_failures_count_against_the_main_form(alice):
    visitor = from_address("203.0.113.5")
    for _ in range(throttle.PAIR_LIMIT):
        log_in(visitor, "alice", "wrong", "/admin/login/")
    response = log_in(visitor, "alice", PASSWORD)
    assert not logged_in(response)
    assert "Too many failed log-ins" in response.content.decode()


def test_the_admin_still_refuses_accounts_that_are_not_staff(django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    response = log_in(from_address("203.0.113.5"), "carol", PASSWORD, "/admin/login/")
    assert not logged_in(response)


def test_failures_for_other_usernames_do_not_lock_out_the_address(alice):
    # Behind one proxy (or one office's NAT) many people share an address.
    shared = from_address("203.0.113.5")
    for name in ("bob", "carol", "dave", "erin", "frank", "grace"):
        for _ in range(throttle.PAIR_LIMIT):
            log_in(shared, name, "wrong")
    assert logged_in(log_in(shared, "alice", PASSWORD))


def test_one_username_from_one_address_is_locked_and_told_how_long(alice):
    visitor = from_address("203.0.113.5")
    for _ in range(throttle.PAIR_LIMIT):
        assert not logged_in(log_in(visitor, "alice", "wrong"))
    response = log_in(visitor, "alice", PASSWORD)
    assert not logged_in(response)
    html = response.content.decode()
    assert re.search(r"Too many failed log-ins\. Wait 1[45] minutes and try again\.", html)


def test_a_guessed_username_gets_a_short_delay_not_a_lockout(alice, monkeypatch):
    monkeypatch.setattr(throttle, "USERNAME_DELAY", 2)
    for attacker in ("198.51.100.1", "198.51.100.2"):
        for _ in range(throttle.PAIR_LIMIT):
            log_in(from_address(attacker), "alice", "wrong")
    # Alice, at home (an address she never logged in from), waits the short delay at most.
    home = from_address("203.0.113.5")
    response = log_in(home, "alice", PASSWORD)
    if not logged_in(response):
        assert re.search(r"Wait [12] seconds? and try again\.", response.content.decode())
        time.sleep(2.1)
        response = log_in(home, "alice", PASSWORD)
    assert logged_in(response)


def test_the_delay_is_one_try_at_a_time_across_addresses(alice):
    for attacker in ("198.51.100.1", "198.51.100.2"):
        for _ in range(throttle.PAIR_LIMIT):
            log_in(from_address(attacker), "alice", "wrong")
    log_in(from_address("198.51.100.3"), "alice", "wrong")  # the next guess, at once
    response = log_in(from_address("198.51.100.4"), "alice", "wrong2")
    assert re.search(r"Wait \d+ seconds and try again\.", response.content.decode())


def test_an_address_alice_logged_in_from_skips_the_username_delay(alice):
    home = from_address("203.0.113.5")
    assert logged_in(log_in(home, "alice", PASSWORD))
    for attacker in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        for _ in range(throttle.PAIR_LIMIT):
            log_in(from_address(attacker), "alice", "wrong")
    assert logged_in(log_in(from_address("203.0.113.5"), "alice", PASSWORD))


def test_a_log_in_without_a_password_does_not_make_the_address_known(alice):
    sneaky = from_address("203.0.113.7")
    assert not logged_in(log_in(sneaky, "alice", ""))
    for attacker in ("198.51.100.1", "198.51.100.2"):
        for _ in range(throttle.PAIR_LIMIT):
            log_in(from_address(attacker), "alice", "wrong")
    log_in(sneaky, "alice", "wrong")
    response = log_in(sneaky, "alice", "wrong2")
    assert re.search(r"Wait \d+ seconds and try again\.", response.content.decode())


def test_an_address_is_locked_only_after_many_failures(alice):
    prolific = from_address("203.0.113.5")
    for n in range(throttle.ADDRESS_LIMIT):
        log_in(prolific, f"user{n % 40}", "wrong")  # no more than PAIR_LIMIT each
    response = log_in(prolific, "alice", PASSWORD)
    assert not logged_in(response)
    assert "Too many failed log-ins" in response.content.decode()
    assert logged_in(log_in(from_address("203.0.113.6"), "alice", PASSWORD))


def test_behind_a_trusted_proxy_each_client_is_counted_apart(settings, alice):
    settings.PLAYGROUND_TRUSTED_PROXIES = [f"{PROXY}/32"]
    proxy = from_address(PROXY)
    for n in range(throttle.ADDRESS_LIMIT + 1):
        proxy.post(
            "/accounts/login/",
            {"username": f"user{n % 40}", "password": "wrong"},
            headers={"X-Forwarded-For": "198.51.100.9"},
        )
    response = proxy.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.10"},
    )
    assert logged_in(response)


def test_a_made_up_x_forwarded_for_does_not_escape_the_lock(alice):
    visitor = from_address("203.0.113.5")
    for n in range(throttle.PAIR_LIMIT):
        visitor.post(
            "/accounts/login/",
            {"username": "alice", "password": "wrong"},
            headers={"X-Forwarded-For": f"10.0.0.{n}"},
        )
    response = visitor.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "10.0.0.99"},
    )
    assert not logged_in(response)


# The whole chain, as a started server sees it -----------------------------------------------------


def cookies_of(response: httpx.Response) -> dict[str, http.cookies.Morsel]:
    jar = http.cookies.SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return dict(jar)


def test_a_server_with_an_https_origin_behind_a_trusted_proxy(tmp_path):
    """Started with an https public URL and 127.0.0.1 as its trusted proxy: through the proxy,
    https gets HSTS and log-in cookies marked Secure."""
    env = {
        "PLAYGROUND_DATA_DIR": str(tmp_path),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        "PLAYGROUND_PUBLIC_URL": "https://chat.example.com",
        "PLAYGROUND_TRUSTED_PROXIES": "127.0.0.1",
        "PLAYGROUND_MANIFEST_STATIC": "false",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    full = {**os.environ, **env}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO_ROOT, env=full
    ).check_returncode()
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user('alice', password={PASSWORD!r})",
        ],
        cwd=REPO_ROOT,
        env=full,
    ).check_returncode()
    port = free_port()
    args = [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(port)]
    with running([*args, "playground.asgi:application"], port, env=env):
        base = f"http://127.0.0.1:{port}"
        proxied = {
            "Host": "chat.example.com",
            "X-Forwarded-For": "198.51.100.7",
            "X-Forwarded-Proto": "https",
        }
        page = httpx.get(f"{base}/accounts/login/", headers=proxied)
        assert page.status_code == 200
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
        csrf = cookies_of(page)["csrftoken"]
        assert csrf["secure"]
        response = httpx.post(
            f"{base}/accounts/login/",
            headers={
                **proxied,
                "Origin": "https://chat.example.com",
                "Cookie": f"csrftoken={csrf.value}",
            },
            data={
                "username": "alice",
                "password": PASSWORD,
                "csrfmiddlewaretoken": csrf.value,
            },
        )
        assert response.status_code == 302, response.text
        assert cookies_of(response)["sessionid"]["secure"]


# A Host header the site does not answer to -------------------------------------------------------


def test_an_unknown_host_is_refused_without_an_error_in_the_log(client, caplog):
    response = client.get("/accounts/login/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
