import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from chat.models import Conversation, Message
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def test_interrupt_streams_marks_left_over_streaming_replies_and_keeps_their_text(
    django_user_model, capsys
):
    alice = django_user_model.objects.create_user("alice")
    conversation = Conversation.objects.create(owner=alice)
    orphan = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="**Half**"
    )
    done = Message.objects.create(conversation=conversation, role="assistant", content="Done")

    call_command("interrupt_streams")

    orphan.refresh_from_db()
    done.refresh_from_db()
    assert orphan.status == "interrupted" and orphan.content == "**Half**"
    assert "<strong>Half</strong>" in orphan.html
    assert orphan.error["kind"] == "interrupted"
    assert done.status == "complete"
    assert "1 interrupted" in capsys.readouterr().out


def test_with_a_lease_only_silent_streams_are_interrupted(django_user_model):
    from datetime import timedelta

    from django.utils import timezone

    alice = django_user_model.objects.create_user("alice")
    conversation = Conversation.objects.create(owner=alice)
    fresh = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        checkpoint_at=timezone.now(),
    )
    stale = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        checkpoint_at=timezone.now() - timedelta(minutes=5),
    )
    call_command("interrupt_streams", "--lease", "30")
    fresh.refresh_from_db()
    stale.refresh_from_db()
    assert fresh.status == "streaming"
    assert stale.status == "interrupted"


# Settings read at start-up, in a process of their own ------------------------------------------

# Variables of the test run's own environment that would change what start-up sees.
START_UP_VARIABLES = (
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "PLAYGROUND_PUBLIC_URL",
    "PLAYGROUND_TRUSTED_PROXIES",
    "PLAYGROUND_HSTS_SECONDS",
    "PLAYGROUND_MEDIA_DELIVERY",
    "DATABASE_URL",
    "REDIS_URL",
)


def environment(tmp_path, **variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in START_UP_VARIABLES}
    env.update(
        PLAYGROUND_DATA_DIR=str(tmp_path / "data"), DJANGO_SETTINGS_MODULE="playground.settings"
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(variables)
    return env


def start_up(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    """Load the settings as a starting process would, printing the ones tests look at."""
    names = [
        "ALLOWED_HOSTS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
        "PLAYGROUND_TRUSTED_PROXIES",
    ]
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(tmp_path, **variables: str) -> dict:
    result = start_up(tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("hosts", ["*", "chat.example.com,*"])
def test_a_wildcard_in_allowed_hosts_stops_start_up_naming_the_variable(tmp_path, hosts):
    result = start_up(tmp_path, DJANGO_ALLOWED_HOSTS=hosts)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_ALLOWED_HOSTS" in result.stderr


def test_the_image_sets_no_wildcard_hosts():
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    assert not [line for line in lines if "ALLOWED_HOSTS=" in line.split("#")[0]]


def entrypoint(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", "scripts/docker-entrypoint", "echo", "the command ran"],
        cwd=REPO_ROOT,
        env=environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_image_refuses_to_start_without_allowed_hosts_and_names_the_variable(tmp_path):
    result = entrypoint(tmp_path)
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr
    assert "the command ran" not in result.stdout
    assert not (tmp_path / "data" / "playground.sqlite3").exists()  # not even migrated

    result = entrypoint(tmp_path, DJANGO_ALLOWED_HOSTS="*")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr
    assert "the command ran" not in result.stdout


def test_the_image_starts_with_explicit_hosts(tmp_path):
    result = entrypoint(tmp_path, DJANGO_ALLOWED_HOSTS="chat.example.com")
    assert result.returncode == 0, result.stderr
    assert "the command ran" in result.stdout


@pytest.mark.parametrize(
    "variables",
    [
        {"PLAYGROUND_PUBLIC_URL": "https://chat.example.com"},
        {"DJANGO_CSRF_TRUSTED_ORIGINS": "http://localhost:8080,https://chat.example.com"},
    ],
)
def test_an_https_origin_makes_cookies_secure_and_turns_hsts_on(tmp_path, variables):
    found = started(tmp_path, **variables)
    assert found["SESSION_COOKIE_SECURE"] is True
    assert found["CSRF_COOKIE_SECURE"] is True
    assert found["SECURE_HSTS_SECONDS"] == 31536000


def test_plain_http_origins_keep_cookies_usable_over_http(tmp_path):
    found = started(tmp_path, DJANGO_CSRF_TRUSTED_ORIGINS="http://localhost:8080")
    assert found["SESSION_COOKIE_SECURE"] is False
    assert found["CSRF_COOKIE_SECURE"] is False
    assert found["SECURE_HSTS_SECONDS"] == 0


def test_hsts_can_be_set_or_turned_off(tmp_path):
    https = {"PLAYGROUND_PUBLIC_URL": "https://chat.example.com"}
    assert started(tmp_path, **https, PLAYGROUND_HSTS_SECONDS="3600")["SECURE_HSTS_SECONDS"] == 3600
    assert started(tmp_path, **https, PLAYGROUND_HSTS_SECONDS="0")["SECURE_HSTS_SECONDS"] == 0
    result = start_up(tmp_path, **https, PLAYGROUND_HSTS_SECONDS="a year")
    assert result.returncode != 0 and "PLAYGROUND_HSTS_SECONDS" in result.stderr


def test_the_forwarded_scheme_is_read_only_with_trusted_proxies(tmp_path):
    assert started(tmp_path)["SECURE_PROXY_SSL_HEADER"] is None
    found = started(tmp_path, PLAYGROUND_TRUSTED_PROXIES="172.28.0.10, 10.1.0.0/16")
    assert found["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert found["PLAYGROUND_TRUSTED_PROXIES"] == ["172.28.0.10/32", "10.1.0.0/16"]


@pytest.mark.parametrize("proxies", ["nginx", "10.0.0.300", "0.0.0.0/0", "::/0"])
def test_a_bad_trusted_proxy_stops_start_up_naming_the_variable(tmp_path, proxies):
    result = start_up(tmp_path, PLAYGROUND_TRUSTED_PROXIES=proxies)
    assert result.returncode != 0
    assert "ImproperlyConfigured: PLAYGROUND_TRUSTED_PROXIES" in result.stderr
