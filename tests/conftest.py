"""Shared fixtures. Keep this import-light: no Django imports at module level."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.processes import free_port, stop

REPO_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30
SERVICES_HOWTO = (
    "run with DATABASE_URL=postgres://... and REDIS_URL=redis://..., e.g. "
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test "
    "REDIS_URL=redis://127.0.0.1:6379/15 scripts/test (README, Test it)"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "services: needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL); skipped when they are "
        "not configured or do not answer, except in CI (CI=true), where a skip is a failure",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI the service-backed tests must run: a skip of one of them fails the run."""
    report = yield
    setattr(item, f"report_{report.when}", report)  # for fixtures that explain failures
    if report.skipped and in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        # scripts/test installs espeak-ng: in CI a call's tests must not go quietly unrun.
        if item.get_closest_marker("services") or "espeak-ng" in str(reason):
            report.outcome = "failed"
            report.longrepr = f"CI=true and a test that must run was skipped: {reason}"
    return report


@contextlib.contextmanager
def running(args: list[str], port: int, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """Run a server process until the block ends; fail with its output if it never listens."""
    # A file, not a pipe: nobody reads the output while tests run, and a full pipe would block.
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        pytest.fail(f"{args[:3]} did not start on port {port}:\n{output.read()}")
                    time.sleep(0.05)
            yield process
        finally:
            stop(process)


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """Base URL (with /v1) of the offline simulator, served by daphne on a loopback port."""
    port = free_port()
    args = [sys.executable, "-m", "chat.simulator", "--host", "127.0.0.1", "--port", str(port)]
    with running(args + ["--delay", "0.005"], port):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def upstream_is_simulator(settings, simulator_url):
    """The app talks to the simulator on its loopback port: the real client, parser and relay."""
    settings.PLAYGROUND_USE_SIMULATOR = False
    settings.PLAYGROUND_API_BASE = simulator_url
    settings.PLAYGROUND_API_KEY = ""
    settings.PLAYGROUND_CHECKPOINT_SECONDS = 0.2
    return simulator_url


PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint of an S3-compatible server (moto's) on a loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3Bucket:
    """A bucket of one test's own on the S3 server, and boto3 to look into it without the app."""

    KEYS = {"access_key": "playground", "secret_key": "s3cret-kept", "region_name": "us-east-1"}

    def __init__(self, endpoint: str):
        import boto3

        self.endpoint = endpoint
        self.name = f"playground-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=self.KEYS["access_key"],
            aws_secret_access_key=self.KEYS["secret_key"],
            region_name=self.KEYS["region_name"],
        )
        self.client.create_bucket(Bucket=self.name)

    @property
    def storage_options(self) -> dict:
        """PLAYGROUND_STORAGE_OPTIONS (as a dict) for django-storages' S3Storage."""
        return {"bucket_name": self.name, "endpoint_url": self.endpoint, **self.KEYS}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def keys(self, prefix: str = "attachments/") -> list[str]:
        found = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for item in found.get("Contents", []))


@pytest.fixture
def s3_bucket(s3_server) -> S3Bucket:
    return S3Bucket(s3_server)


@pytest.fixture
def alice(django_user_model):
    """A user who can log in with PASSWORD (async tests get her too: they run with
    `transaction=True`, so she is committed before the test's own threads look)."""
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


def _logged_in(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    """A test client of its own, logged in as alice."""
    return _logged_in(alice)


@pytest.fixture
def bob_client(bob):
    return _logged_in(bob)


@pytest.fixture(autouse=True)
def _static_from_source(settings):
    """Static files from the source folders: no `collectstatic` needed, no stale copy used."""
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploaded and generated files go to a folder of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_channel_layer(_redis_of_this_run):
    """Each test starts with an empty channel layer: a new in-memory one (its queues belong to
    one event loop), or, with REDIS_URL, a new Redis layer (its connections are per loop)."""
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def _redis_of_this_run():
    """With REDIS_URL: the channel layer's names get a prefix of this run's own, so runs sharing
    a Redis never hear each other (the pub/sub layer stores no keys: nothing to remove)."""
    from django.conf import settings

    if getattr(settings, "REDIS_URL", ""):
        prefix = f"playground-test-{uuid.uuid4().hex[:12]}"
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = prefix


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """In-process tests use plain PostgreSQL connections, not the pool the settings ask for.

    Django's test client and Channels' communicator stop threads from closing their connections
    while they run (so a test's transaction survives), which with a pool means connections never
    given back, and soon none to lend. The pool is what real processes use: tests/test_scaled.py
    runs it there."""
    from django.conf import settings

    for database in settings.DATABASES.values():
        database.get("OPTIONS", {}).pop("pool", None)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """Before the test database is dropped, let go of connections still held by the dead worker
    threads of finished event loops (a connection is part of a reference cycle, so only the
    garbage collector closes it); PostgreSQL refuses to drop a database that is in use."""
    yield
    import gc

    gc.collect()


@pytest.fixture(autouse=True)
def _no_connection_left_in_asgiref_thread():
    """Async ORM calls made outside a request run in asgiref's one process-wide thread, whose
    database connection would outlive the test (and keep PostgreSQL from dropping the test
    database at the end): close it after each test."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """PostgreSQL and Redis as DATABASE_URL and REDIS_URL name them, after checking both answer.

    Skips (with how to run them) when they are not configured or do not answer; tests using this
    should be marked `services`, so that in CI the skip fails the run instead."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    redis_url = os.environ.get("REDIS_URL", "").strip()
    if not database_url.startswith(("postgres://", "postgresql://")):
        pytest.skip(
            f"needs PostgreSQL and Redis: DATABASE_URL is not postgres://; {SERVICES_HOWTO}"
        )
    if not redis_url.startswith(("redis://", "rediss://")):
        pytest.skip(f"needs PostgreSQL and Redis: REDIS_URL is not redis://; {SERVICES_HOWTO}")
    import psycopg
    import redis

    try:
        with psycopg.connect(database_url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        where = urlsplit(database_url)
        pytest.skip(f"PostgreSQL at {where.hostname}:{where.port or 5432} does not answer: {exc}")
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        where = urlsplit(redis_url)
        pytest.skip(f"Redis at {where.hostname}:{where.port or 6379} does not answer: {exc}")
    return {"database_url": database_url, "redis_url": redis_url}
