"""Scaled out for real: two daphne app processes over one PostgreSQL database and one Redis,
with the offline simulator on a port of its own as their upstream, configured as in production
(connection pool, Redis channel layer, shared data dir), with a short lease.

What one process starts, the other shows and controls: a reply sent through A streams to a page
connected to B; Stop sent to B stops the job running in A, also after long silences on Redis;
when a process dies mid-stream, B's sweeper settles the reply as `interrupted` within the lease
and B's page sees it; a file uploaded through A (one chunk through B) is served by B. Replies go
on after PostgreSQL dropped every connection, and each process stays within its pool.

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL; README, "Test it"): skipped without them,
except in CI, where a skip fails the run. The processes get a database of their own, created
and dropped here, and Redis channel names under a prefix of their own.
"""

import asyncio
import contextlib
import io
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import PASSWORD, REPO_ROOT, START_SECONDS, running
from tests.processes import free_port, manage, scratch_database, stop
from tests.test_relay import Page

pytestmark = pytest.mark.services

LEASE_SECONDS = 3.0
CHECKPOINT_SECONDS = 0.5
UPLOAD_CHUNK_BYTES = 4096
POOL_SIZE = 4
TEST_CONNECTION = "playground-tests"  # application_name of the test's own queries


class App:
    """One daphne process of the app, its output kept in a log file."""

    def __init__(self, name: str, env: dict, log_dir: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        args = [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(self.port)]
        with open(self.log, "w") as output:
            self.process = subprocess.Popen(
                args + ["playground.asgi:application"],
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"app {name} did not start:\n{self.log.read_text()}")
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop(self.process)


class Cluster:
    def __init__(self, env: dict, database_url: str, log_dir: Path, ids: dict):
        self.env = env
        self.database_url = database_url
        self.log_dir = log_dir
        self.conversations = ids["conversations"]
        self.apps: list[App] = []

    def start(self, name: str, env: dict | None = None) -> App:
        app = App(name, {**self.env, **(env or {})}, self.log_dir)
        self.apps.append(app)
        return app

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg

        # Named, so counting the app processes' connections can leave the test's own out.
        with psycopg.connect(
            self.database_url, autocommit=True, application_name=TEST_CONNECTION
        ) as connection:
            return connection.execute(sql, params).fetchall()

    def message(self, message_id: int) -> tuple[str, str]:
        [(status, content)] = self.query(
            "SELECT status, content FROM chat_message WHERE id = %s", message_id
        )
        return status, content

    def last_reply(self, conversation_id: int) -> int:
        [(message_id,)] = self.query(
            "SELECT max(id) FROM chat_message WHERE conversation_id = %s AND role = 'assistant'",
            conversation_id,
        )
        return message_id

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text()[-6000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


@pytest.fixture(scope="module")
def cluster(services) -> Iterator[Cluster]:
    prefix = f"playground-scaled-{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(
            scratch_database(services["database_url"], "playground_scaled")
        )
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log_dir = data_dir / "logs"
        log_dir.mkdir()
        simulator_port = free_port()  # the upstream: the offline simulator, on its own
        simulator = [sys.executable, "-m", "chat.simulator", "--host", "127.0.0.1"]
        simulator += ["--port", str(simulator_port), "--delay", "0.02"]
        stack.enter_context(running(simulator, simulator_port))
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": services["redis_url"],
            "PLAYGROUND_REDIS_PREFIX": prefix,
            "PLAYGROUND_DATA_DIR": str(data_dir),  # shared by every process: the media
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),  # the same for every process
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_DEBUG": "false",
            "PLAYGROUND_MANIFEST_STATIC": "false",
            "PLAYGROUND_API_BASE": f"http://127.0.0.1:{simulator_port}/v1",
            "PLAYGROUND_API_KEY": "",
            "PLAYGROUND_LEASE_SECONDS": str(LEASE_SECONDS),
            "PLAYGROUND_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS),
            "PLAYGROUND_UPLOAD_CHUNK_BYTES": str(UPLOAD_CHUNK_BYTES),
            "PLAYGROUND_DB_POOL_SIZE": str(POOL_SIZE),
            "ASGI_THREADS": "4",
        }
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        created = manage(
            env,
            "shell",
            "-c",
            "import json; from django.contrib.auth import get_user_model; "
            "from chat.models import Conversation; "
            f"alice = get_user_model().objects.create_user('alice', password={PASSWORD!r}); "
            "print(json.dumps({'conversations': [Conversation.objects.create(owner=alice, "
            "title=f'Scaled {i}').pk for i in range(8)]}))",
        )
        ids = json.loads(created.strip().splitlines()[-1])
        cluster = Cluster(env, database_url, log_dir, ids)
        stack.callback(lambda: [app.stop() for app in cluster.apps])
        cluster.a = cluster.start("a")
        cluster.b = cluster.start("b")
        yield cluster


@pytest.fixture(autouse=True)
def _app_logs_on_failure(request):
    """A failing test shows what the app processes logged."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "cluster" in request.fixturenames:
        print(request.getfixturevalue("cluster").logs())


class Socket:
    """A real WebSocket (the `websockets` library), shaped like Channels' communicator so the
    relay tests' Page can read its frames."""

    def __init__(self, connection):
        self.connection = connection

    async def receive_from(self, timeout: float) -> str:
        return await asyncio.wait_for(self.connection.recv(), timeout)

    async def send_json_to(self, data: dict) -> None:
        await self.connection.send(json.dumps(data))

    async def disconnect(self) -> None:
        await self.connection.close()


class Browser:
    """One person's cookies (the session works on every process), over plain HTTP."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    @classmethod
    @contextlib.asynccontextmanager
    async def logged_in(cls, app: App):
        async with httpx.AsyncClient(timeout=20) as client:
            form = await client.get(f"{app.url}/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
            assert token, form.text[:500]
            response = await client.post(
                f"{app.url}/accounts/login/",
                data={
                    "username": "alice",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": token.group(1),
                },
            )
            assert response.status_code == 302, response.text[:500]
            assert client.cookies.get("sessionid")
            yield cls(client)

    def headers(self) -> dict:
        return {"X-CSRFToken": self.client.cookies.get("csrftoken"), "HX-Request": "true"}

    async def send(self, app: App, conversation_id: int, text: str) -> None:
        response = await self.client.post(
            f"{app.url}/c/{conversation_id}/send/", data={"text": text}, headers=self.headers()
        )
        assert response.status_code == 200, response.text[:500]

    @contextlib.asynccontextmanager
    async def page(self, app: App, conversation_id: int):
        """The conversation's WebSocket on `app`, synced from the start."""
        from websockets.asyncio.client import connect

        async with connect(
            f"ws://127.0.0.1:{app.port}/ws/conversations/{conversation_id}/",
            origin=app.url,
            additional_headers={"Cookie": f"sessionid={self.client.cookies.get('sessionid')}"},
            open_timeout=10,
            max_size=None,
        ) as connection:
            page = Page(Socket(connection))
            await page.ws.send_json_to({"action": "sync", "after": 0, "streaming": []})
            yield page


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_reply_sent_through_one_process_streams_to_a_page_on_the_other(cluster):
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[0]
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        async with alice.page(b, conversation) as page:
            await alice.send(a, conversation, "Hello from A [sim:length=80]")
            reply = cluster.last_reply(conversation)
            assert await page.receive_until_final(reply, timeout=30) == "complete"

    status, content = cluster.message(reply)
    assert status == "complete"
    assert "simulator" in content
    assert page.text[reply] == content  # every delta crossed from A to B, in order, no gap
    assert page.inserted[-2:] == [reply - 1, reply]  # B was told about both new messages
    assert page.frames > 3  # streamed, not just the final message


async def test_a_comparison_sent_to_one_process_streams_every_column_to_the_other(cluster):
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[7]
    columns = [{"model": ""}, {"model": "alibaba/qwen3.5-omni-plus", "temperature": "0.2"}]
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        async with alice.page(b, conversation) as watcher, alice.page(a, conversation) as sender:
            await sender.ws.send_json_to(
                {"action": "compare", "text": "Both [sim:length=60]", "columns": columns}
            )
            await sender.receive_until(lambda p: p.answers, timeout=20)
            assert sender.answers[0] == {"type": "sent"}
            replies = [
                pk
                for (pk,) in cluster.query(
                    "SELECT id FROM chat_message WHERE conversation_id = %s AND role = "
                    "'assistant' ORDER BY comparison_id, \"column\"",
                    conversation,
                )
            ]
            assert len(replies) == 2
            for reply in replies:
                assert await watcher.receive_until_final(reply, timeout=30) == "complete"

    for reply in replies:
        status, content = cluster.message(reply)
        assert status == "complete"
        assert watcher.text[reply] == content  # each column crossed from A to B whole


async def test_stop_sent_to_one_process_stops_the_job_running_in_the_other(cluster):
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[1]
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        async with alice.page(b, conversation) as page:
            await alice.send(a, conversation, "Long one [sim:delay=0.05] [sim:length=400]")
            reply = cluster.last_reply(conversation)
            await page.receive_until(lambda p: len(p.text.get(reply, "")) > 20, timeout=20)
            await page.ws.send_json_to({"action": "stop"})
            assert await page.receive_until_final(reply, timeout=10) == "stopped"

    status, content = cluster.message(reply)
    assert status == "stopped"
    assert content and page.text[reply] == content
    assert content.count(" ") < 300  # it stopped well before its 400 tokens


async def test_pages_and_jobs_outlast_redis_read_timeouts(cluster):
    """redis-py gives up on a read after 5 s by default: a page idle for longer, and a job
    streaming for longer, must still get their frames and their Stop through the layer."""
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[4]
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        async with alice.page(b, conversation) as page:
            await asyncio.sleep(6.5)  # nothing for the page to receive
            await alice.send(a, conversation, "Long one [sim:delay=0.05] [sim:length=400]")
            reply = cluster.last_reply(conversation)
            await page.receive_until(lambda p: p.text.get(reply), timeout=10)
            await asyncio.sleep(6.5)  # nothing for the job's control channel either
            await page.ws.send_json_to({"action": "stop"})
            assert await page.receive_until_final(reply, timeout=10) == "stopped"
    status, content = cluster.message(reply)
    assert status == "stopped" and content.count(" ") < 380


async def test_a_process_killed_mid_stream_leaves_an_interrupted_reply_the_other_announces(
    cluster,
):
    victim, b, conversation = cluster.start("victim"), cluster.b, cluster.conversations[2]
    async with asyncio.timeout(60), Browser.logged_in(victim) as alice:
        async with alice.page(b, conversation) as page:  # B's sweeper runs from now on
            await alice.send(victim, conversation, "Doomed [sim:delay=0.05] [sim:length=600]")
            reply = cluster.last_reply(conversation)
            # Text reached B, and the victim has checkpointed some of it.
            await page.receive_until(lambda p: len(p.text.get(reply, "")) > 30, timeout=20)
            await wait_for(lambda: cluster.message(reply)[1], 10, "a checkpoint")
            victim.kill()
            killed_at = time.monotonic()
            status = await page.receive_until_final(reply, timeout=LEASE_SECONDS * 4)
            settled_after = time.monotonic() - killed_at

    assert status == "interrupted"
    # The row went stale one lease after its last checkpoint; B sweeps every half lease.
    assert settled_after <= CHECKPOINT_SECONDS + LEASE_SECONDS * 1.5 + 2
    status, content = cluster.message(reply)
    assert status == "interrupted"
    assert content  # the partial text is kept...
    shown = page.text[reply]
    assert shown.startswith(content) or content.startswith(shown)  # ...and is what streamed
    assert content.count(" ") < 550


async def test_a_process_stopped_mid_stream_settles_its_reply_before_it_goes(cluster):
    """SIGTERM (a deploy, `docker stop`): the reply ends `interrupted` at once, with its text,
    and the page on the other process sees it, without waiting a lease for a sweeper."""
    leaving, b, conversation = cluster.start("leaving"), cluster.b, cluster.conversations[6]
    async with asyncio.timeout(60), Browser.logged_in(leaving) as alice:
        async with alice.page(b, conversation) as page:
            await alice.send(leaving, conversation, "Cut short [sim:delay=0.05] [sim:length=600]")
            reply = cluster.last_reply(conversation)
            await page.receive_until(lambda p: len(p.text.get(reply, "")) > 30, timeout=20)
            leaving.process.terminate()
            asked_at = time.monotonic()
            status = await page.receive_until_final(reply, timeout=LEASE_SECONDS * 4)
            settled_after = time.monotonic() - asked_at
            assert leaving.process.wait(timeout=10) == 0

    assert status == "interrupted"
    # A sweeper could not have done it yet: the last checkpoint is not a lease old.
    assert settled_after < LEASE_SECONDS - CHECKPOINT_SECONDS
    status, content = cluster.message(reply)
    assert status == "interrupted"
    assert content and page.text[reply].startswith(content)  # the text that streamed, kept
    [(error,)] = cluster.query("SELECT error FROM chat_message WHERE id = %s", reply)
    assert "stopped while this reply was streaming" in json.dumps(error)


def _noise_png(width: int = 80, height: int = 60) -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (width, height), random.Random(7).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def upload(alice: Browser, data: bytes, through: Callable[[int], App]) -> str:
    """Send a file in chunks, chunk i through `through(i)`; answers its upload URL."""
    started = await alice.client.post(
        f"{through(0).url}/uploads/",
        data={"name": "noise.png", "size": str(len(data)), "type": "image/png"},
        headers=alice.headers(),
    )
    assert started.status_code == 201, started.text
    upload_url = started.json()["upload_url"]
    for index, offset in enumerate(range(0, len(data), UPLOAD_CHUNK_BYTES)):
        response = await alice.client.put(
            f"{through(index).url}{upload_url}",
            content=data[offset : offset + UPLOAD_CHUNK_BYTES],
            headers={**alice.headers(), "Upload-Offset": str(offset)},
        )
        assert response.status_code == 200, response.text
    assert response.json()["status"] == "processing"
    return upload_url


async def processed(alice: Browser, app: App, upload_url: str) -> dict:
    """The upload's status, asked of `app` until it is no longer processing."""
    deadline = time.monotonic() + 30
    while True:
        state = (await alice.client.get(f"{app.url}{upload_url}")).json()
        if state["status"] in ("ready", "failed"):
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)


async def test_a_file_uploaded_through_one_process_is_served_by_the_other(cluster):
    a, b = cluster.a, cluster.b
    data = _noise_png()
    assert len(data) > 3 * UPLOAD_CHUNK_BYTES
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        # One chunk goes through B (as a load balancer may send it); the last through A.
        upload_url = await upload(alice, data, lambda index: b if index == 1 else a)
        state = await processed(alice, b, upload_url)
        assert state["status"] == "ready", state
        assert (state["kind"], state["width"], state["height"]) == ("image", 80, 60)

        original = await alice.client.get(f"{b.url}/media/{state['key']}/original/")
        assert original.status_code == 200
        assert original.content == data
        assert original.headers["Content-Type"] == "image/png"
        sent = await alice.client.get(f"{b.url}{state['sent_url']}")
        assert sent.status_code == 200 and sent.content


async def test_with_an_s3_store_no_media_folder_is_shared(cluster, s3_bucket, tmp_path):
    """Processes C and D keep files in an S3-compatible store and each has a data dir of its
    own: a file uploaded through C is served by D (a signed link to the store), and deleted
    through D, it is gone from the store."""
    store = {
        "PLAYGROUND_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
        "PLAYGROUND_STORAGE_OPTIONS": json.dumps(s3_bucket.storage_options),
    }
    c = cluster.start("c", {**store, "PLAYGROUND_DATA_DIR": str(tmp_path / "c")})
    d = cluster.start("d", {**store, "PLAYGROUND_DATA_DIR": str(tmp_path / "d")})
    data = _noise_png(96, 64)
    async with asyncio.timeout(60), Browser.logged_in(c) as alice:
        upload_url = await upload(alice, data, lambda index: c)
        state = await processed(alice, d, upload_url)
        assert state["status"] == "ready", state
        key = state["key"]
        assert s3_bucket.read(f"attachments/{_user_id(cluster)}/{key}/original") == data
        # No working copy left on either process (C drops its own right after saying ready).
        await wait_for(lambda: not list(tmp_path.rglob(key)), 10, "the working copy to go")

        shown = await alice.client.get(f"{d.url}/media/{key}/original/")
        assert shown.status_code == 302, shown.text
        assert shown.headers["Location"].startswith(f"{s3_bucket.endpoint}/{s3_bucket.name}/")
        fetched = await alice.client.get(shown.headers["Location"])
        assert fetched.status_code == 200
        assert fetched.content == data
        assert fetched.headers["Content-Type"] == "image/png"

        deleted = await alice.client.delete(f"{d.url}{upload_url}", headers=alice.headers())
        assert deleted.status_code == 204
        assert s3_bucket.keys() == []


def _user_id(cluster: Cluster) -> int:
    [(user_id,)] = cluster.query("SELECT id FROM auth_user WHERE username = 'alice'")
    return user_id


async def test_replies_go_on_after_the_database_dropped_every_connection(cluster):
    """PostgreSQL restarted, failed over or cut idle sessions: the apps' persistent connections
    are dead, and the next reply must still stream and be saved."""
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[3]
    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        async with alice.page(b, conversation) as page:
            await alice.send(a, conversation, "Before [sim:length=20]")
            first = cluster.last_reply(conversation)
            assert await page.receive_until_final(first, timeout=20) == "complete"

        name = urlsplit(cluster.database_url).path.lstrip("/")
        cluster.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            name,
        )
        async with alice.page(b, conversation) as page:
            await alice.send(a, conversation, "After [sim:length=40]")
            second = cluster.last_reply(conversation)
            assert second != first
            assert await page.receive_until_final(second, timeout=20) == "complete"
    status, content = cluster.message(second)
    assert status == "complete" and page.text[second] == content


async def test_each_process_holds_no_more_connections_than_its_pool(cluster):
    """However many requests and streams run at once, a process borrows from a pool of
    PLAYGROUND_DB_POOL_SIZE connections: the sum stays within what PostgreSQL allows."""
    a, b, conversation = cluster.a, cluster.b, cluster.conversations[5]
    name = urlsplit(cluster.database_url).path.lstrip("/")
    live = [app for app in cluster.apps if app.process.poll() is None]
    limit = len(live) * POOL_SIZE
    # A process killed by an earlier test may still have backends PostgreSQL has not noticed
    # are gone; end every idle one (live pools check and replace theirs) so only live ones count.
    cluster.query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND state = 'idle' AND application_name <> %s",
        name,
        TEST_CONNECTION,
    )
    most = 0
    sampling = True

    def sample() -> None:
        nonlocal most
        while sampling:
            [(count,)] = cluster.query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name <> %s",
                name,
                TEST_CONNECTION,
            )
            most = max(most, count)
            time.sleep(0.01)

    async with asyncio.timeout(60), Browser.logged_in(a) as alice:
        sampler = asyncio.create_task(asyncio.to_thread(sample))
        try:
            async with alice.page(b, conversation) as page:
                await alice.send(a, conversation, "Busy [sim:length=60] [sim:delay=0.01]")
                reply = cluster.last_reply(conversation)
                pages = [
                    alice.client.get(f"{app.url}/c/{conversation}/")
                    for _ in range(30)
                    for app in (a, b)
                ]
                answers = await asyncio.gather(*pages)
                assert {answer.status_code for answer in answers} == {200}
                assert await page.receive_until_final(reply, timeout=20) == "complete"
        finally:
            sampling = False
            await sampler
    assert 0 < most <= limit


@pytest.mark.django_db
async def test_this_run_uses_postgresql_and_redis(services):
    """The suite around this file ran on the services too, not on the embedded defaults."""
    from channels.layers import get_channel_layer
    from django.db import connection

    assert connection.vendor == "postgresql"
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = get_channel_layer()
    assert isinstance(layer, RedisPubSubChannelLayer)
    channel = await layer.new_channel()
    await layer.group_add("scaled-check", channel)
    await layer.group_send("scaled-check", {"type": "check", "n": 1})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "check", "n": 1}
    await layer.group_discard("scaled-check", channel)


@pytest.mark.django_db
async def test_publishes_go_out_side_by_side_and_each_sender_keeps_its_order(services):
    """Many jobs publishing at once are not queued behind one another's round trips to Redis
    (chat.layers), more of them than the connection pool holds are not refused, and each job's
    frames still arrive in the order it sent them."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    senders, frames = 150, 10  # more senders than redis-py's pool has connections (100)
    channels = []
    for n in range(senders):
        channel = await layer.new_channel()
        await layer.group_add(f"order-{n}", channel)
        channels.append(channel)

    async def send(n: int) -> None:
        for i in range(frames):
            await layer.group_send(f"order-{n}", {"type": "frame", "i": i})

    async def receive(channel: str) -> list[int]:
        return [(await layer.receive(channel))["i"] for _ in range(frames)]

    receiving = [asyncio.create_task(receive(channel)) for channel in channels]
    await asyncio.gather(*(send(n) for n in range(senders)))
    received = await asyncio.wait_for(asyncio.gather(*receiving), 10)
    assert received == [list(range(frames))] * senders
    # Publishes waiting on one another would have used one connection: those beside each
    # shard's subscriber connection.
    publishing, most = 0, 0
    for shard in layer._get_layer()._shards:
        most += shard.publishes_at_once
        if shard._redis is not None:
            pool = shard._redis.connection_pool
            opened = {*pool._available_connections, *pool._in_use_connections}
            publishing += len(opened - {shard._pubsub.connection})
    assert 1 < publishing <= most
    for n, channel in enumerate(channels):
        await layer.group_discard(f"order-{n}", channel)
