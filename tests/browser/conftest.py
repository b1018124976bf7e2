"""A real app server (daphne, the offline simulator as upstream) and a real Chromium."""

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, REPO_ROOT, S3Bucket, running
from tests.processes import free_port, manage

CHROMIUM = os.environ.get("PLAYGROUND_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = REPO_ROOT / "test-results"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.browser)


class LiveServer:
    def __init__(self, url: str, env: dict):
        self.url = url
        self.env = env

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def create_user(self, username: str, admin: bool = False) -> None:
        code = (
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={PASSWORD!r}, "
            f"is_staff={admin}, is_superuser={admin})"
        )
        self.manage("shell", "-c", code)


@contextlib.contextmanager
def live_app(extra_env: dict | None = None) -> Iterator[LiveServer]:
    """The app as `scripts/serve` runs it, on a loopback port, with a fresh data dir."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)")
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "PLAYGROUND_DATA_DIR": data_dir,
            "PLAYGROUND_MANIFEST_STATIC": "false",
            "PLAYGROUND_SIMULATOR_DELAY": "0.02",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Empty means unset: the built-in simulator answers, on SQLite and in memory.
            "PLAYGROUND_API_KEY": "",
            "PLAYGROUND_API_BASE": "",
            "DATABASE_URL": "",
            "REDIS_URL": "",
            **(extra_env or {}),
        }
        server = LiveServer(f"http://127.0.0.1:{port}", env)
        server.manage("migrate", "--noinput", "--verbosity", "0")
        args = [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(port)]
        with running(args + ["playground.asgi:application"], port, env):
            yield server


@pytest.fixture(scope="session")
def app_server() -> Iterator[LiveServer]:
    with live_app() as server:
        yield server


@pytest.fixture(scope="session")
def s3_app_server(s3_server) -> Iterator[tuple[LiveServer, "S3Bucket"]]:
    """The app keeping its files in an S3-compatible store (moto's, on a loopback port)."""
    bucket = S3Bucket(s3_server)
    store = {
        "PLAYGROUND_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
        "PLAYGROUND_STORAGE_OPTIONS": json.dumps(bucket.storage_options),
    }
    with live_app(store) as server:
        yield server, bucket


@pytest.fixture
def fresh_server() -> Iterator[LiveServer]:
    """A server nobody has used yet: no accounts."""
    with live_app() as server:
        yield server


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(chromium):
    contexts = []

    def make(**options):
        context = chromium.new_context(**options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def log_in(page, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
