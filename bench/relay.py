"""Relay benchmark: how much the app adds between the upstream and the page.

    .venv/bin/python bench/relay.py [--streams 1,100] [--tokens 80] [--delay 0.06] [--ttft-runs 20]
    .venv/bin/python bench/relay.py --processes 2 --redis redis://127.0.0.1:6379/14 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --streams 1,100,500

Method
------
Three processes on loopback (four with two app processes), all started here and stopped on exit
(or Ctrl-C):

- the offline simulator (`chat.simulator.create_app`) served by daphne, built with an `on_emit`
  hook that records `time.monotonic()` right after each content delta is handed to the server,
  keyed by completion id and the number of content characters sent so far. A thin ASGI wrapper
  also keeps each completion's request body and response bytes, and serves all of it at
  `GET /bench/records` when the runs are over;
- the app: `manage.py migrate` on a fresh data dir, then one daphne process pointed at the
  simulator with `PLAYGROUND_API_BASE`: SQLite and the in-memory channel layer by default.
  Scaled out (`--processes 2 --redis URL`): two daphne processes, A and B, sharing the data dir,
  the database and a Redis channel layer, as in README "Scaling out". Their channel names get
  a prefix of their own (`PLAYGROUND_REDIS_PREFIX`); with `--database-url` (a
  PostgreSQL server) they share a scratch database `bench_<random>` created, migrated and
  dropped here, else one SQLite file;
- this process, acting as the browser: it logs in, opens each conversation's WebSocket (session
  cookie, Origin header, `{"action": "sync"}`), then sends the message over that socket
  (`{"action": "send"}`), as a chat page does while its socket is open. With two processes the
  relay runs POST every message to A (as the composer's form does without a socket) while its
  page is connected to B, so the job runs in A and every frame reaches the page through Redis.

Each user message starts with a marker (`bench-...`) that the simulator sees in the request body,
so every page is matched to the completion that answered it, whatever the order of arrival.

1. Relay overhead per frame. Every WebSocket frame is stamped with `time.monotonic()` when the
   client gets it; CLOCK_MONOTONIC is system-wide on Linux, so the stamps compare with the
   simulator's. The frame's appended text (a delta's `t`) brings the page's copy to an offset;
   overhead = frame time - emit time of the delta that reached that offset, i.e. the newest delta
   the frame carries. The per-token delay (default 0.06 s) is longer than the app's frame
   interval (PLAYGROUND_FRAME_INTERVAL, 0.05 s), so coalescing should not make a delta wait;
   frames that still carry more than one delta are counted and shown. Concurrent streams start
   spread over --ramp seconds; the report also gives the figures for the steady window alone
   (every stream running, none starting or finishing), i.e. relaying without start-up work.
   Direct, for comparison: right after each run, the same request bodies (new markers) go straight
   to the simulator, as many at once over the same ramp, read by httpx-sse clients in this
   process; each delta's arrival - its emit time is the floor any relay starts from (loopback,
   an HTTP hop, SSE parsing, this client's event loop). Each figure is also shown as app/direct.
2. Time to first token. Through the app: the message sent over a page's WebSocket -> first text
   frame on the page's WebSocket (with two processes: sent from a page on A, watched on B).
   Directly: the same request body the app sent for that run, POSTed by httpx to the same
   simulator on a warm connection, read with httpx-sse -> first content delta. Both with
   `[sim:delay=0]` (`--ttft-delay` sets another: a model that takes that long to its first
   token, as real ones do), runs interleaved, a few warm-up runs dropped. The simulator's
   arrival and emit times split each path into legs: to the upstream, inside it, and back to
   the client.
3. Correctness, from the same frames: the text each page rebuilds must equal the simulator's
   reply for its completion. A frame whose text is not what the reply holds at the page's offset
   counts as reordered; characters the page never got count as lost. A run is bounded in time
   (--time-limit for all of them): pages still waiting at its end keep what they got, so an
   overloaded run is reported (frames per second delivered, lateness, lost and reordered text)
   rather than failing. "Concurrent streams held" is the largest run whose every page got exactly
   the simulator's reply.
4. Sends, per run: messages taken, answered busy (and tried again as the page does, after the
   server's Retry-After), given up on, refused (422) and errored (a server error, no answer).
   Pages connect OPEN_BATCH at a time before any message is sent.

Beside the figures: CPU used by each process, and this client's own event-loop lag (a 5 ms
sleep's lateness): when the client lags, the machine is busy and the figures include it.
Everything is bounded in time (--time-limit); only 127.0.0.1 is used. `--asgi` serves another
ASGI app in place of the project's.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import html
import json
import os
import re
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.processes import free_port, scratch_database, stop  # noqa: E402

HOST = "127.0.0.1"
USERNAME = "bench"
PASSWORD = "relay-bench-Pa55word"
START_SECONDS = 30
MARKER = re.compile(r"bench-[a-z0-9-]+")

# Frames as the page gets them (see chat/consumers.py and templates/chat/chat.html#message).
REPLACE = re.compile(
    r'<span id="message-(\d+)-(text|reasoning)" hx-swap-oob="innerHTML">(.*?)</span>', re.S
)
ASSISTANT_INSERT = re.compile(r'<article id="message-(\d+)"[^>]*data-role="assistant"', re.S)
FINAL = re.compile(
    r'<article id="message-(\d+)"[^>]*data-status="(\w+)"[^>]*hx-swap-oob="outerHTML"', re.S
)
DELTA_HINT = '{"d":'  # a delta frame (chat/frames.py): a JSON line, then any blocks' HTML
FINAL_HINT = 'hx-swap-oob="outerHTML"'
ANSWER_HINT = ('{"type": "sent"', '{"type": "refused"', '{"type": "busy"')
# Pages connect this many at a time: 500 handshakes at once overflow the listen backlog.
OPEN_BATCH = 50
# A send answered "busy" is tried again as the page does (static/chat/chat.js): after the
# server's Retry-After, doubling, at most BUSY_WAIT_CAP seconds, BUSY_TRIES tries in all.
BUSY_TRIES = 5
BUSY_WAIT_CAP = 8.0


# ---------------------------------------------------------------------------------------------
# The simulator process: `relay.py --serve-simulator PORT DELAY` (started by the benchmark)


class EmitRecorder:
    """Wraps the simulator app: emit times per completion, request bodies, response bytes."""

    def __init__(self) -> None:
        self.emits: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.requests: dict[str, bytes] = {}
        self.responses: dict[str, list[bytes]] = defaultdict(list)
        self.clients: dict[str, list[Any]] = {}
        self.arrived: dict[str, float] = {}  # when the request reached the simulator

    def on_emit(self, completion_id: str, offset: int, at: float) -> None:
        self.emits[completion_id].append((offset, at))

    def wrap(self, app):
        async def recorded(scope, receive, send):
            if scope["type"] == "http" and scope["path"].endswith("/bench/records"):
                await self.send_records(scope, send)
                return
            if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
                await app(scope, receive, send)
                return
            arrived = time.monotonic()
            body: list[bytes] = []
            completion_id = None

            async def tapped_receive():
                message = await receive()
                if message["type"] == "http.request":
                    body.append(message.get("body", b""))
                return message

            async def tapped_send(message):
                nonlocal completion_id
                if message["type"] == "http.response.start":
                    completion_id = dict(message["headers"]).get(b"x-request-id", b"").decode()
                    if completion_id:
                        self.requests[completion_id] = b"".join(body)
                        self.clients[completion_id] = list(scope.get("client") or [])
                        self.arrived[completion_id] = arrived
                elif completion_id and message["type"] == "http.response.body":
                    self.responses[completion_id].append(message.get("body", b""))
                await send(message)

            await app(scope, tapped_receive, tapped_send)

        return recorded

    async def send_records(self, scope, send) -> None:
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
        )
        prefix = query.get("prefix", "")
        records = []
        for completion_id, raw in self.requests.items():
            request = json.loads(raw)
            marker = MARKER.search(last_user_text(request))
            if not marker or not marker.group(0).startswith(prefix):
                continue
            records.append(
                {
                    "id": completion_id,
                    "marker": marker.group(0),
                    "client": self.clients.get(completion_id),
                    "arrived": self.arrived.get(completion_id),
                    "request": raw.decode(),
                    "emits": self.emits.get(completion_id, []),
                    "content": sse_content(b"".join(self.responses.get(completion_id, []))),
                }
            )
        data = json.dumps(records).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def last_user_text(request: dict) -> str:
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def sse_content(raw: bytes) -> str:
    """The content text of choice 0 in a recorded event stream."""
    parts = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        for choice in json.loads(data).get("choices") or []:
            if choice.get("index", 0) == 0:
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def serve_simulator(port: int, delay: float) -> None:
    """Run the simulator, with the recording hook, on daphne (blocks until terminated)."""
    from daphne.endpoints import build_endpoint_description_strings

    from chat.simulator.__main__ import SimulatorServer  # imports daphne.server first
    from chat.simulator.app import create_app

    recorder = EmitRecorder()
    server = SimulatorServer(
        application=recorder.wrap(create_app(delay=delay, on_emit=recorder.on_emit)),
        endpoints=build_endpoint_description_strings(host=HOST, port=port),
        server_name="relay-bench-simulator",
    )
    server.run()


# ---------------------------------------------------------------------------------------------
# Starting and stopping the processes


class Processes:
    """The servers this benchmark started; all stopped (by pid) when the block ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen, Path]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for _name, process, _log in reversed(self.running):
            if process.poll() is None:
                process.terminate()
        for _name, process, _log in reversed(self.running):
            stop(process)

    def start(
        self, name: str, args: list[str], port: int, env: dict, cwd: Path = REPO
    ) -> subprocess.Popen:
        """Start a server (in `cwd`: a checkout of the app) and wait until it listens on `port`."""
        log = self.workdir / f"{name}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        self.running.append((name, process, log))
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                return process
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log.read_text()[-3000:]
                    raise RuntimeError(f"{name} did not start:\n{output}") from None
                time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{log.read_text()[-2000:]}" for name, _p, log in self.running
        )


def app_environment(data_dir: Path, simulator_url: str) -> dict:
    """The embedded default (SQLite, in-memory channel layer), upstream = our simulator.

    Every process gets the same secret key, as README "Scaling out" asks.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "PLAYGROUND_API_KEY", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        PLAYGROUND_DATA_DIR=str(data_dir),
        PLAYGROUND_API_BASE=simulator_url,
        PLAYGROUND_MANIFEST_STATIC="false",
        DJANGO_ALLOWED_HOSTS=f"{HOST},localhost",
        DJANGO_DEBUG="false",
        PLAYGROUND_LOG_LEVEL="WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
    )
    return env


def redis_prefix(redis_url: str) -> str:
    """A channel-name prefix no one else uses (the pub/sub layer stores no keys to delete)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.ping()  # fail before starting anything when Redis is not there
    finally:
        client.close()
    return f"relay-bench-{secrets.token_hex(6)}"


PREPARE_DATABASE = """
import json
from django.contrib.auth import get_user_model
from chat.models import Conversation
user = get_user_model().objects.create_user({username!r}, password={password!r})
made = Conversation.objects.bulk_create(
    Conversation(owner=user, title=f"relay bench {{n}}") for n in range({count})
)
print("CONVERSATIONS", json.dumps([c.pk for c in made]))
"""


def prepare_database(env: dict, conversations: int) -> list[int]:
    """`manage.py migrate`, then one user and empty conversations to stream into."""
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        manage + ["migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, timeout=120
    )
    code = PREPARE_DATABASE.format(username=USERNAME, password=PASSWORD, count=conversations)
    done = subprocess.run(
        manage + ["shell", "-c", code],
        cwd=REPO,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    found = next(line for line in done.stdout.splitlines() if line.startswith("CONVERSATIONS "))
    return json.loads(found.split(" ", 1)[1])


# ---------------------------------------------------------------------------------------------
# The browser side: a logged-in HTTP session and one WebSocket page per conversation


class Browser:
    """One logged-in person: session cookie and CSRF token, as the chat page has them.

    Requests go to `send_url`, pages connect to `page_url`: with two processes, A and B.
    """

    def __init__(self, send_url: str, page_url: str) -> None:
        import httpx

        self.page_url = page_url
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        self.http = httpx.AsyncClient(base_url=send_url, limits=limits, timeout=60)
        self.csrf = ""

    async def log_in(self) -> None:
        page = await self.http.get("/accounts/login/")
        token = csrf_from(page.text)
        response = await self.http.post(
            "/accounts/login/",
            data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        if "sessionid" not in self.http.cookies:
            raise RuntimeError(f"log-in failed: HTTP {response.status_code}")
        # The CSRF token rotates at log-in: take it from a page, as the composer form would.
        self.csrf = csrf_from((await self.http.get("/new/")).text)

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    async def send(self, conversation_id: int, text: str) -> tuple[str, float]:
        """POST the composer form once: ("sent" | "busy" | "refused", Retry-After seconds);
        RuntimeError for anything else (a server error)."""
        response = await self.http.post(
            f"/c/{conversation_id}/send/",
            data={"text": text, "csrfmiddlewaretoken": self.csrf},
            headers={"HX-Request": "true", "X-CSRFToken": self.csrf},
        )
        if response.status_code == 200:
            return "sent", 0.0
        if response.status_code == 503:
            return "busy", float(response.headers.get("Retry-After", "1"))
        if response.status_code == 422:
            return "refused", 0.0
        raise RuntimeError(f"send failed: HTTP {response.status_code} {response.text[:300]}")

    async def close(self) -> None:
        await self.http.aclose()


def csrf_from(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not found:
        raise RuntimeError("no CSRF token on the page")
    return found.group(1)


class Page:
    """One open chat page: its WebSocket, and every frame it got with the time it got it.

    The read loop only stamps and stores; parsing happens after the run, so the client adds as
    little as possible to the times it measures.
    """

    def __init__(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.frames: list[tuple[float, str]] = []
        self.first_text_at: float | None = None
        self.finals = 0
        self.changed = asyncio.Event()
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.answer: asyncio.Future | None = None  # to a message sent over this socket

    async def open(self, browser: Browser, url: str = "") -> None:
        """Connect to `url` (default: the browser's page_url)."""
        from websockets.asyncio.client import connect

        url = url or browser.page_url
        self.ws = await connect(
            f"{url.replace('http://', 'ws://')}/ws/conversations/{self.conversation_id}/",
            origin=url,
            additional_headers={"Cookie": browser.cookie_header()},
            compression=None,
            max_queue=None,
        )
        await self.ws.send(json.dumps({"action": "sync", "after": 0}))
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for frame in self.ws:
            now = time.monotonic()
            self.frames.append((now, frame))
            if self.first_text_at is None and frame.startswith(DELTA_HINT) and '"t":' in frame:
                self.first_text_at = now
            if FINAL_HINT in frame:
                self.finals += 1
            if frame.startswith(ANSWER_HINT) and self.answer and not self.answer.done():
                self.answer.set_result(json.loads(frame))
            self.changed.set()

    async def send_once(self, text: str) -> tuple[str, float]:
        """Send a message over this page's socket, as the composer does, and wait for the
        answer: ("sent" | "busy" | "refused", retry_after seconds)."""
        self.answer = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"action": "send", "text": text}))
        answer = await asyncio.wait_for(self.answer, 60)
        return answer["type"], float(answer.get("retry_after", 0))

    async def send(self, text: str) -> None:
        """Send, and return once the app has taken it."""
        outcome, _ = await self.send_once(text)
        if outcome != "sent":
            raise RuntimeError(f"send {outcome}")

    async def wait_until(self, condition, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Analysis: match frames to emits, rebuild the text, check it


class Emits:
    """One completion as the simulator sent it: its reply, and when each delta left."""

    def __init__(self, record: dict) -> None:
        self.content: str = record["content"]
        self.offsets = [offset for offset, _at in record["emits"]]  # characters sent so far
        self.times = {offset: at for offset, at in record["emits"]}


@dataclass
class StreamCheck:
    # One per matched text frame: (emit time of its newest delta, receive time, deltas in it).
    timings: list[tuple[float, float, int]] = field(default_factory=list)
    frames: int = 0
    multi_delta_frames: int = 0
    unmatched_frames: int = 0  # frame offset equal to no emitted delta's offset
    reordered_frames: int = 0
    lost_chars: int = 0
    text_equal: bool = False
    final_status: str = ""

    @property
    def overheads(self) -> list[float]:
        return [received - emitted for emitted, received, _deltas in self.timings]

    def add(self, emits: Emits, start: int, piece: str, received_at: float) -> None:
        """A frame (or direct event) that appends `piece` to the copy at offset `start`."""
        if emits.content[start : start + len(piece)] != piece:
            self.reordered_frames += 1
        self.frames += 1
        end = start + len(piece)
        emitted_at = emits.times.get(end)
        if emitted_at is None:
            self.unmatched_frames += 1
            return
        deltas = bisect.bisect_right(emits.offsets, end) - bisect.bisect_right(emits.offsets, start)
        self.timings.append((emitted_at, received_at, deltas))
        self.multi_delta_frames += deltas > 1

    def finish(self, emits: Emits, text: str) -> None:
        self.text_equal = text == emits.content
        self.lost_chars = max(0, len(emits.content) - len(text))


def check_stream(page: Page, record: dict) -> StreamCheck:
    """Rebuild the page's text of the assistant message and time each frame against emits."""
    result, emits = StreamCheck(), Emits(record)
    assistant = None
    text = ""
    for received_at, frame in page.frames:
        if assistant is None:
            inserted = ASSISTANT_INSERT.search(frame)
            if inserted:
                assistant = inserted.group(1)
            continue
        for message_id, status in FINAL.findall(frame):
            if message_id == assistant:
                result.final_status = status
        for message_id, part, body in REPLACE.findall(frame):
            if message_id == assistant and part == "text":
                text = html.unescape(body)
        piece = ""
        if frame.startswith(DELTA_HINT):
            delta = json.loads(frame.partition("\n")[0])
            if str(delta["d"]) == assistant:
                piece = delta.get("t", "")
        if piece:
            result.add(emits, len(text), piece, received_at)
            text += piece
    result.finish(emits, text)
    return result


@dataclass
class DirectStream:
    """One request straight to the simulator: each content delta with the time it arrived."""

    pieces: list[tuple[float, str]] = field(default_factory=list)
    done: bool = False  # [DONE] arrived
    error: str = ""


def check_direct(stream: DirectStream, record: dict) -> StreamCheck:
    result, emits, text = StreamCheck(), Emits(record), ""
    for received_at, piece in stream.pieces:
        result.add(emits, len(text), piece, received_at)
        text += piece
    result.finish(emits, text)
    result.final_status = "complete" if stream.done else stream.error or "cut short"
    return result


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------------------------------
# The measurements


@dataclass
class Servers:
    send_url: str  # where messages are POSTed: the app process, or A of two
    page_url: str  # where the pages' WebSockets connect: the same process, or B
    simulator_url: str
    pids: dict[str, int]  # name -> pid, for CPU accounting


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each process between start() and stop(), as a share of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "this client": os.getpid()}

    def start(self) -> None:
        self.began = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.began
        return {
            name: (cpu_seconds(pid) - self.before[name]) / wall for name, pid in self.pids.items()
        }


class LoopLag:
    """How late this process's own event loop wakes up: if it lags, the client is the limit."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            due = time.monotonic() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(time.monotonic() - due)


async def settle(pids: dict[str, int], quiet: float = 0.05, window: float = 0.25) -> None:
    """Wait (at most 10 s) until each process uses less than `quiet` of a core over `window`."""
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        before = {pid: cpu_seconds(pid) for pid in pids.values()}
        await asyncio.sleep(window)
        if all((cpu_seconds(pid) - used) / window < quiet for pid, used in before.items()):
            return


@dataclass
class SendTally:
    """How the app answered a run's messages: each is tried until taken, refused, errored or
    given up on after BUSY_TRIES busy answers."""

    taken: int = 0
    taken_after_busy: int = 0  # of `taken`: answered busy first, taken on a later try
    busy_answers: int = 0  # every busy answer (a message may get several)
    gave_up: int = 0  # busy BUSY_TRIES times
    refused: int = 0  # 422: the app found the message wrong
    errored: int = 0  # a server error or no answer
    waits_ms: list[float] = field(default_factory=list)  # first try -> taken

    @property
    def sends(self) -> int:
        return self.taken + self.gave_up + self.refused + self.errored


@dataclass
class RelayRun:
    streams: int
    checks: list[StreamCheck]
    missing_records: int  # streams whose request never reached the simulator
    upstream_connections: int
    seconds: float
    cpu: dict[str, float]
    client_lag_ms: list[float]
    errors: list[str] = field(default_factory=list)  # sends (or direct requests) that failed
    unfinished: int = 0  # streams still going when the run's time was up
    direct: RelayRun | None = None  # the same requests straight to the simulator
    sends: SendTally | None = None  # how the app answered the run's messages

    @property
    def overheads_ms(self) -> list[float]:
        return [o * 1000 for c in self.checks for o in c.overheads]

    def cpu_per_frame_ms(self) -> float:
        """CPU per text frame delivered: the app's processes' through the app; directly, this
        client's per delta read (the floor of reading the stream at all)."""
        frames = sum(c.frames for c in self.checks)
        used = [v for k, v in self.cpu.items() if k.startswith("app")]
        if self.direct is None:  # this is the direct pass
            used = [self.cpu["this client"]]
        return sum(used) * self.seconds * 1000 / frames if frames else float("nan")

    def frames_per_second(self) -> float:
        """Text frames delivered per second, first delta emitted -> last frame received."""
        timed = [c.timings for c in self.checks if c.timings]
        if not timed:
            return 0.0
        window = max(t[-1][1] for t in timed) - min(t[0][0] for t in timed)
        return sum(c.frames for c in self.checks) / window if window > 0 else 0.0

    def held(self) -> bool:
        """Every stream's page got exactly the simulator's reply: nothing lost or reordered."""
        return not self.missing_records and all(c.text_equal for c in self.checks)

    def steady_overheads_ms(self) -> list[float]:
        """Frames whose delta was emitted while every stream was running: no stream starting
        (no POST, no job start-up) or finishing, only relaying."""
        timed = [c.timings for c in self.checks if c.timings]
        if len(timed) < 2:
            return []
        begin = max(t[0][0] for t in timed)
        end = min(t[-1][0] for t in timed)
        return [
            (received - emitted) * 1000
            for t in timed
            for emitted, received, _deltas in t
            if begin <= emitted <= end
        ]


async def fetch_records(simulator_url: str, prefix: str) -> list[dict]:
    """What the simulator recorded for the completions whose marker starts with `prefix`."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{simulator_url}/bench/records", params={"prefix": prefix})
        response.raise_for_status()
    return response.json()


def connections_used(records: list[dict]) -> int:
    """Distinct client (address, port) pairs: how many TCP connections carried the requests."""
    return len({tuple(r["client"] or ()) for r in records})


async def until(deadline: float, *waits) -> None:
    """Await them all, or stop waiting at `deadline` (time.monotonic()): what came counts."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await asyncio.gather(*waits)


def failures(outcomes: list) -> list[str]:
    return [
        f"{type(e).__name__}: {e}".splitlines()[0] for e in outcomes if isinstance(e, Exception)
    ]


async def measure_relay(
    browser: Browser,
    servers: Servers,
    conversations: list[int],
    tokens: int,
    delay: float,
    ramp: float,
    label: str,
    deadline: float,
) -> RelayRun:
    """Stream `len(conversations)` replies at once, each watched by its own open page; pages
    still waiting at `deadline` keep what they got."""
    streams = len(conversations)
    pages = [Page(cid) for cid in conversations]
    for at in range(0, streams, OPEN_BATCH):
        await asyncio.gather(*(page.open(browser) for page in pages[at : at + OPEN_BATCH]))
    # Opening a page is set-up, not relaying: let the app finish the pages' syncs first.
    await settle(servers.pids)
    prefix = f"bench-{label}-"
    markers = [f"{prefix}{n:03d}" for n in range(streams)]

    tally = SendTally()

    async def send(n: int) -> None:
        await asyncio.sleep(ramp * n / streams)  # spread the starts: random-ish phases
        text = f"{markers[n]} [sim:length={tokens}] [sim:delay={delay:g}]"
        await send_message(browser, servers, pages[n], text, tally)

    cpu, lag = CpuMeter(servers.pids), LoopLag()
    cpu.start()
    lag_probe = asyncio.create_task(lag.run())
    started = time.monotonic()
    try:
        sent = await asyncio.gather(*(send(n) for n in range(streams)), return_exceptions=True)
        finished = [page.wait_until(lambda p=page: p.finals >= 1, None) for page in pages]
        await until(deadline, *finished)
    finally:
        lag_probe.cancel()
    seconds = time.monotonic() - started
    cpu_share = cpu.stop()
    records = {r["marker"]: r for r in await fetch_records(servers.simulator_url, prefix)}
    checks, missing = [], 0
    for page, marker in zip(pages, markers, strict=True):
        if marker not in records:
            missing += 1
            continue
        checks.append(check_stream(page, records[marker]))
    await asyncio.gather(*(page.close() for page in pages))
    return RelayRun(
        streams,
        checks,
        missing,
        connections_used(list(records.values())),
        seconds,
        cpu_share,
        [lag * 1000 for lag in lag.lags],
        failures(sent),
        sum(not page.finals for page in pages),
        sends=tally,
    )


async def measure_direct(
    servers: Servers, app_label: str, label: str, ramp: float, deadline: float
) -> RelayRun:
    """The app run's requests again, byte for byte but for the marker, straight to the
    simulator: as many at once, over the same ramp, each read by httpx-sse."""
    import httpx
    from httpx_sse import aconnect_sse

    sent = sorted(
        await fetch_records(servers.simulator_url, f"bench-{app_label}-"),
        key=lambda r: r["marker"],
    )
    streams = len(sent)
    prefix = f"bench-{label}-"  # as long as the app run's, so the bodies are the same size
    markers = [f"{prefix}{n:03d}" for n in range(streams)]
    results = [DirectStream() for _ in sent]
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    client = httpx.AsyncClient(base_url=servers.simulator_url, limits=limits, timeout=60)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    async def stream(n: int) -> None:
        await asyncio.sleep(ramp * n / streams)
        body = sent[n]["request"].replace(sent[n]["marker"], markers[n])
        result = results[n]
        try:
            async with aconnect_sse(
                client, "POST", "/chat/completions", content=body, headers=headers
            ) as source:
                async for event in source.aiter_sse():
                    received_at = time.monotonic()
                    if event.data == "[DONE]":
                        result.done = True
                        continue
                    for choice in json.loads(event.data).get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if choice.get("index", 0) == 0 and piece:
                            result.pieces.append((received_at, piece))
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:200]

    cpu, lag = CpuMeter(servers.pids), LoopLag()
    cpu.start()
    lag_probe = asyncio.create_task(lag.run())
    started = time.monotonic()
    try:
        await until(deadline, *(stream(n) for n in range(streams)))
    finally:
        lag_probe.cancel()
        await client.aclose()
    seconds = time.monotonic() - started
    cpu_share = cpu.stop()
    records = {r["marker"]: r for r in await fetch_records(servers.simulator_url, prefix)}
    checks = [
        check_direct(result, records[marker])
        for result, marker in zip(results, markers, strict=True)
        if marker in records
    ]
    return RelayRun(
        streams,
        checks,
        streams - len(checks),
        connections_used(list(records.values())),
        seconds,
        cpu_share,
        [lag * 1000 for lag in lag.lags],
        [r.error for r in results if r.error],
        sum(not r.done and not r.error for r in results),
    )


@dataclass
class TtftRun:
    app_ms: list[float]
    direct_ms: list[float]
    # Where the app's time goes: POST sent -> request at the upstream -> first token emitted
    # -> first frame received; and the same legs for the direct request.
    app_legs_ms: list[tuple[float, float, float]]
    direct_legs_ms: list[tuple[float, float, float]]
    taken_ms: list[float]  # message taken (answer to the send), through the app (for reference)
    upstream_connections: int
    runs: int


async def send_message(
    browser: Browser, servers: Servers, page: Page, text: str, tally: SendTally
) -> None:
    """Over the page's socket; with two processes, POSTed to A (the page is on B). A busy
    answer is tried again as the page does; every outcome is counted in `tally`."""
    began = time.monotonic()
    for attempt in range(BUSY_TRIES):
        try:
            if servers.send_url == servers.page_url:
                outcome, retry_after = await page.send_once(text)
            else:
                outcome, retry_after = await browser.send(page.conversation_id, text)
        except Exception:
            tally.errored += 1
            raise
        if outcome == "sent":
            tally.taken += 1
            tally.taken_after_busy += attempt > 0
            tally.waits_ms.append((time.monotonic() - began) * 1000)
            return
        if outcome == "refused":
            tally.refused += 1
            raise RuntimeError("send refused")
        tally.busy_answers += 1
        if attempt < BUSY_TRIES - 1:
            await asyncio.sleep(min(BUSY_WAIT_CAP, max(retry_after, 2.0**attempt)))
    tally.gave_up += 1
    raise RuntimeError(f"send busy {BUSY_TRIES} times")


def first_emit(record: dict) -> float:
    return min(at for offset, at in record["emits"] if offset > 0)


async def measure_ttft(
    browser: Browser, servers: Servers, conversations: list[int], warmup: int, delay: float = 0
) -> TtftRun:
    """Interleaved: one reply through the app, then its request body straight to the upstream."""
    import httpx
    from httpx_sse import aconnect_sse

    result = TtftRun([], [], [], [], [], 0, 0)
    direct = httpx.AsyncClient(base_url=servers.simulator_url, timeout=30)
    try:
        for n, conversation_id in enumerate(conversations):
            marker = f"bench-tapp-{n:03d}"  # through the app; "tdir" when direct
            page = sender = Page(conversation_id)
            await page.open(browser)
            if servers.send_url != servers.page_url:  # sent from a page on A, watched on B
                sender = Page(conversation_id)
                await sender.open(browser, servers.send_url)
            await asyncio.sleep(0.05)  # let the sync settle: nothing else in flight
            sent_at = time.monotonic()
            await sender.send(f"{marker} [sim:length=8] [sim:delay={delay:g}]")
            answered_at = time.monotonic()
            await page.wait_until(lambda p=page: p.finals >= 1, timeout=30)
            await page.close()
            if sender is not page:
                await sender.close()
            (via_app,) = await fetch_records(servers.simulator_url, marker)

            # Same body, byte for byte, with a marker of its own (same length).
            direct_marker = marker.replace("tapp", "tdir")
            body = via_app["request"].replace(marker, direct_marker)
            first_at = None
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            posted_at = time.monotonic()
            async with aconnect_sse(
                direct, "POST", "/chat/completions", content=body, headers=headers
            ) as source:
                async for event in source.aiter_sse():
                    if first_at is None and event.data != "[DONE]":
                        choices = json.loads(event.data).get("choices") or []
                        if choices and (choices[0].get("delta") or {}).get("content"):
                            first_at = time.monotonic()
                    # read to the end, so the connection goes back to the pool
            (straight,) = await fetch_records(servers.simulator_url, direct_marker)
            if n < warmup:
                continue
            result.app_ms.append((page.first_text_at - sent_at) * 1000)
            result.direct_ms.append((first_at - posted_at) * 1000)
            result.taken_ms.append((answered_at - sent_at) * 1000)
            for legs, start, record, end in (
                (result.app_legs_ms, sent_at, via_app, page.first_text_at),
                (result.direct_legs_ms, posted_at, straight, first_at),
            ):
                arrived, emitted = record["arrived"], first_emit(record)
                legs.append(
                    ((arrived - start) * 1000, (emitted - arrived) * 1000, (end - emitted) * 1000)
                )
    finally:
        await direct.aclose()
    records = await fetch_records(servers.simulator_url, "bench-tapp-")
    result.upstream_connections, result.runs = connections_used(records), len(records)
    return result


async def measure(args, servers: Servers, conversations: list[int], deadline: float) -> dict:
    browser = Browser(servers.send_url, servers.page_url)
    results: dict[str, Any] = {"relay": [], "skipped": [], "load_before": load_average()}
    try:
        await browser.log_in()
        unused = list(conversations)

        def take(count: int) -> list[int]:
            taken, unused[:count] = unused[:count], []
            return taken

        # Warm the app up (templates, upstream client, first WebSocket) before timing anything.
        warm = min(deadline, time.monotonic() + 30)
        await measure_relay(browser, servers, take(2), 5, 0.0, 0.0, "warmup", warm)
        for streams in args.streams:
            ramp = args.ramp if streams > 1 else 0.0
            budget = ramp + args.tokens * args.delay * 3 + 30  # per pass: app, then direct
            if deadline - time.monotonic() < 15:
                results["skipped"].append(streams)
                continue
            print(f"  relay, {streams} stream(s) ...", file=sys.stderr, flush=True)
            run = await measure_relay(
                browser,
                servers,
                take(streams),
                args.tokens,
                args.delay,
                ramp,
                f"app{streams}",
                min(deadline, time.monotonic() + budget),
            )
            print(f"  direct, {streams} stream(s) ...", file=sys.stderr, flush=True)
            run.direct = await measure_direct(
                servers,
                f"app{streams}",
                f"dir{streams}",
                ramp,
                min(deadline, time.monotonic() + budget),
            )
            results["relay"].append(run)
            if len(results["relay"]) == 1 and args.ttft_runs:  # while the machine is quiet
                print("  time to first token ...", file=sys.stderr, flush=True)
                results["ttft"] = await measure_ttft(
                    browser,
                    servers,
                    take(args.ttft_runs + args.warmup),
                    args.warmup,
                    args.ttft_delay,
                )
    finally:
        await browser.close()
    return results


# ---------------------------------------------------------------------------------------------
# Report


def dump_timings(results: dict, path: str) -> None:
    """One JSON line per matched frame, times relative to the run's first emit."""
    with open(path, "w") as out:
        for run in results["relay"]:
            start = min((t[0] for c in run.checks for t in c.timings), default=0.0)
            for stream, check in enumerate(run.checks):
                for emitted, received, deltas in check.timings:
                    row = {
                        "streams": run.streams,
                        "stream": stream,
                        "emitted_s": round(emitted - start, 6),
                        "emitted_at": emitted,  # time.monotonic(), comparable across processes
                        "overhead_ms": round((received - emitted) * 1000, 3),
                        "deltas": deltas,
                    }
                    out.write(json.dumps(row) + "\n")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {usable} cores usable (os.cpu_count() = {os.cpu_count()})"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def ms(value: float) -> str:
    return f"{value:.2f}"


def ratio(value: float, base: float) -> str:
    """value / base, as the app's figure against the same work done directly."""
    if not base > 0 or value != value:  # no base, or NaN
        return ""
    return f"{value / base:.1f}x"


def latency_row(
    measure: str,
    processes: int,
    streams: int,
    values: list[float],
    direct: list[float],
    target: str = "",
    ok: bool | None = None,
) -> str:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
    return (
        f"| {measure} | {processes} | {streams} | {len(values)} | {ms(p50)} | {ms(p99)} "
        f"| {ms(max(values, default=float('nan')))} | {ms(d50)} | {ms(d99)} "
        f"| {ratio(p50, d50)} | {ratio(p99, d99)} | {target} "
        f"| {verdict(ok) if ok is not None else ''} |"
    )


def setup_text(args) -> str:
    if args.processes == 1:
        processes = "One app process"
    else:
        processes = (
            f"{args.processes} app processes (each message POSTed to A, its page's WebSocket "
            "on B, so every frame crosses Redis)"
        )
    layer = f"Redis channel layer ({args.redis})" if args.redis else "in-memory channel layer"
    if args.database_url:
        database = "PostgreSQL (scratch database, pool per process)"
    else:
        database = "SQLite" + (" (one file for both)" if args.processes > 1 else "")
    return f"{processes}; {layer}; {database}."


def report(args, results: dict, frame_interval: str, elapsed: float) -> str:
    if args.delay >= float(frame_interval):
        coalescing = "the delay is longer, so coalescing should add no waiting"
    else:
        coalescing = (
            "the delay is SHORTER: frames coalesce deltas and the overhead includes waiting"
        )
    runs: list[RelayRun] = results["relay"]
    procs = args.processes
    lines = [
        "## Relay benchmark",
        "",
        f"Command: `.venv/bin/python {shlex.join(['bench/relay.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {machine()}; Python {sys.version.split()[0]}; load average before the run "
        f"{results['load_before']}, after {load_average()}.",
        setup_text(args),
        f"Simulator per-token delay {args.delay:g} s, {args.tokens} tokens per reply; app frame "
        f"interval {frame_interval} s ({coalescing}). "
        f"Concurrent streams started over {args.ramp:g} s. Times in ms.",
        "Direct: the same requests sent straight to the simulator right after each run, as many "
        "at once over the same ramp, read by httpx-sse in this client: delta arrival - emit "
        "(for time to first token, POST -> first delta). app/direct = the app's figure divided "
        "by the direct one.",
        "",
        "| measure | processes | streams | samples | p50 | p99 | max | direct p50 | direct p99 "
        "| app/direct p50 | app/direct p99 | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for run in runs:
        values = run.overheads_ms
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        target, ok = "", None
        if procs == 1 and run.streams == 1:  # DESIGN.md's bars are for one process
            target, ok = "p50 <= 2 ms", p50 <= 2
        elif procs == 1 and run.streams == 100:
            target, ok = "p99 <= 15 ms", p99 <= 15
        direct = run.direct.overheads_ms if run.direct else []
        lines.append(
            latency_row("relay overhead per frame", procs, run.streams, values, direct, target, ok)
        )
        steady = run.steady_overheads_ms()
        if steady:
            lines.append(
                latency_row(
                    f"- of which steady (all {run.streams} streaming, none starting)",
                    procs,
                    run.streams,
                    steady,
                    run.direct.steady_overheads_ms() if run.direct else [],
                )
            )
    ttft = results.get("ttft")
    if ttft:
        app, direct = statistics.median(ttft.app_ms), statistics.median(ttft.direct_ms)
        paired = [a - d for a, d in zip(ttft.app_ms, ttft.direct_ms, strict=True)]
        lines += [
            latency_row("time to first token", procs, 1, ttft.app_ms, ttft.direct_ms),
            f"| TTFT difference (p50 app - p50 direct) | {procs} | 1 | | {ms(app - direct)} "
            f"| | | | | | | <= 10 ms | {verdict(app - direct <= 10)} |",
            f"| TTFT difference, run by run | {procs} | 1 | {len(paired)} "
            f"| {ms(statistics.median(paired))} | {ms(percentile(paired, 0.99))} "
            f"| {ms(max(paired))} | | | | | | |",
            "",
            "Time to first token, leg by leg (p50, ms):",
            "",
            "| leg | through the app | direct |",
            "| --- | ---: | ---: |",
        ]
        names = (
            "request sent -> request reaches the simulator",
            "simulator: request -> first token emitted",
            "first token emitted -> received by the client",
        )
        for leg, name in enumerate(names):
            via_app = statistics.median(legs[leg] for legs in ttft.app_legs_ms)
            straight = statistics.median(legs[leg] for legs in ttft.direct_legs_ms)
            lines.append(f"| {name} | {ms(via_app)} | {ms(straight)} |")
        lines.append(
            f"| (message taken: send answered, for reference) "
            f"| {ms(statistics.median(ttft.taken_ms))} | |"
        )
        lines += [
            "",
            f"The app's {ttft.runs} time-to-first-token requests reached the simulator over "
            f"{ttft.upstream_connections} TCP connection(s) (the direct client reuses one).",
        ]

    lines += [
        "",
        "Throughput: text frames delivered to the pages per second (first delta emitted -> last "
        "frame received) against content deltas received directly; lateness = relay overhead.",
        "",
        "| measure | processes | streams | text frames | frames/s delivered | direct deltas/s "
        "| app/direct | frames > 100 ms late | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]

    def throughput_row(measure: str, run: RelayRun, target: str = "", ok=None) -> str:
        frames = sum(c.frames for c in run.checks)
        rate = run.frames_per_second()
        direct = run.direct.frames_per_second() if run.direct else float("nan")
        late = sum(o > 100 for o in run.overheads_ms)
        share = f" ({late / len(run.overheads_ms):.0%})" if late else ""
        return (
            f"| {measure} | {procs} | {run.streams} | {frames} | {rate:.0f} | {direct:.0f} "
            f"| {ratio(rate, direct)} | {late}{share} | {target} "
            f"| {verdict(ok) if ok is not None else ''} |"
        )

    for run in runs:
        lines.append(throughput_row("frames delivered", run))
    held = [run for run in runs if run.held()]
    best = max(held, key=lambda run: run.streams, default=None)
    bar = "200 streams (DESIGN.md)"
    tried_bar = any(run.streams >= 200 for run in runs)
    ok = (best is not None and best.streams >= 200) if tried_bar else None
    if best is not None:
        lines.append(
            throughput_row(
                "**concurrent streams held** (largest run, no lost or reordered text)",
                best,
                bar if tried_bar else "",
                ok,
            )
        )
    else:
        lines.append(
            f"| **concurrent streams held** | {procs} | none | | | | | | "
            f"{bar if tried_bar else ''} | {verdict(False) if tried_bar else ''} |"
        )

    lines += [
        "",
        "Correctness, from the same frames:",
        "",
        "| processes | streams | text frames | frames with >1 delta | frames matching no delta "
        "| pages equal to the reply | lost chars | reordered frames | final status complete "
        "| direct: equal to the reply |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        checks = run.checks
        direct_equal = (
            f"{sum(c.text_equal for c in run.direct.checks)}/{run.direct.streams}"
            if run.direct
            else ""
        )
        lines.append(
            f"| {procs} | {run.streams} | {sum(c.frames for c in checks)} "
            f"| {sum(c.multi_delta_frames for c in checks)} "
            f"| {sum(c.unmatched_frames for c in checks)} "
            f"| {sum(c.text_equal for c in checks)}/{run.streams} "
            f"| {sum(c.lost_chars for c in checks)} | {sum(c.reordered_frames for c in checks)} "
            f"| {sum(c.final_status == 'complete' for c in checks)}/{run.streams} "
            f"| {direct_equal} |"
        )
    lines += [
        "",
        "Sends: how the app answered each run's messages (a busy answer is tried again as the "
        f"page does, up to {BUSY_TRIES} tries; wait = first try -> taken, ms):",
        "",
        "| processes | streams | sends | taken | taken after busy | busy answers | gave up busy "
        "| refused (422) | errored | wait p50 | wait p99 | wait max |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        t = run.sends or SendTally()
        lines.append(
            f"| {procs} | {run.streams} | {t.sends} | {t.taken} | {t.taken_after_busy} "
            f"| {t.busy_answers} | {t.gave_up} | {t.refused} | {t.errored} "
            f"| {ms(percentile(t.waits_ms, 0.5))} | {ms(percentile(t.waits_ms, 0.99))} "
            f"| {ms(max(t.waits_ms, default=float('nan')))} |"
        )
    for run in runs:
        for name, part in (("app", run), ("direct", run.direct)):
            if part and part.missing_records:
                lines.append(
                    f"\n{part.missing_records} of the {part.streams}-stream {name} run's "
                    "requests never reached the simulator."
                )
            if part and part.errors:
                lines.append(
                    f"\n{len(part.errors)} {name} request(s) failed in the {part.streams}-stream "
                    f"run, e.g. `{part.errors[0]}`."
                )
            if part and part.unfinished:
                lines.append(
                    f"\nThe {part.streams}-stream {name} run was cut short after "
                    f"{part.seconds:.0f} s: {part.unfinished} stream(s) had not finished."
                )

    lines += [
        "",
        "Load during each run (CPU as a share of one core; the client's own event-loop lag "
        "shows whether the client kept up):",
        "",
        "| processes | streams | pass | wall s | app CPU | simulator CPU | client CPU "
        "| CPU ms per text frame | client loop lag p99 / max ms | upstream connections |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lagging = set()
    for run in runs:
        for name, part in (("app", run), ("direct", run.direct)):
            if part is None:
                continue
            cpu = part.cpu
            apps = " + ".join(f"{cpu[key]:.0%}" for key in cpu if key.startswith("app"))
            lag_p99 = percentile(part.client_lag_ms, 0.99)
            if lag_p99 > 5:
                lagging.add(part.streams)
            lines.append(
                f"| {procs} | {part.streams} | {name} | {part.seconds:.1f} | {apps} "
                f"| {cpu['simulator']:.0%} | {cpu['this client']:.0%} "
                f"| {ms(part.cpu_per_frame_ms())} | {ms(lag_p99)} / "
                f"{ms(max(part.client_lag_ms, default=float('nan')))} "
                f"| {part.upstream_connections} |"
            )
    if procs > 1:
        lines += ["", "App CPU: process A (runs the jobs) + process B (holds the pages)."]
    if lagging:
        lines += [
            "",
            f"Note: the client's own event loop lagged (p99 > 5 ms) in the {sorted(lagging)}-"
            "stream run(s): the machine was busy or the client overloaded, and those figures "
            "include the client's delays.",
        ]
    if results["skipped"]:
        lines += ["", f"Not run, out of time (--time-limit): {results['skipped']} streams."]
    lines += ["", f"Whole run: {elapsed:.1f} s."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--streams",
        default="1,100",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        help="comma-separated concurrent stream counts (default 1,100)",
    )
    parser.add_argument("--tokens", type=int, default=80, help="tokens per reply (default 80)")
    parser.add_argument("--delay", type=float, default=0.06, help="seconds per token (0.06)")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to start all streams")
    parser.add_argument("--ttft-runs", type=int, default=20, help="timed TTFT runs (20)")
    parser.add_argument("--warmup", type=int, default=3, help="TTFT warm-up runs dropped (3)")
    parser.add_argument(
        "--ttft-delay",
        type=float,
        default=0.0,
        help="the simulator's wait before each token in the TTFT runs (0: at once)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=140,
        help="seconds for all the runs (140); a run still going at the end is cut short",
    )
    parser.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=1,
        help="app processes (1); with 2, messages are sent to A and pages connect to B",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="channel layer on this Redis (keys under a prefix of their own, deleted at exit), "
        "e.g. redis://127.0.0.1:6379/14; needed for --processes 2",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/postgres: the app "
        "gets a scratch database bench_<random> there, dropped at exit (default: SQLite)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the app processes (repeatable), e.g. "
        "PLAYGROUND_CHECKPOINT_SECONDS=1000",
    )
    parser.add_argument("--dump", metavar="FILE", help="write every frame's timing as JSON lines")
    parser.add_argument(
        "--asgi",
        default="playground.asgi:application",
        help="the app daphne serves (for what-if experiments; default %(default)s)",
    )
    parser.add_argument(
        "--serve-simulator", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if not 1 <= args.tokens <= 100_000:
        parser.error("--tokens must be 1 to 100000")
    if args.processes > 1 and not args.redis:
        parser.error("--processes 2 needs --redis: the processes share the channel layer")
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgresql:// URL")
    return args


def run_benchmark(args: argparse.Namespace) -> int:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        # Unwound in reverse: the servers stop first, then the Redis keys and database go.
        with contextlib.ExitStack() as stack:
            sim_port = free_port()
            simulator_url = f"http://{HOST}:{sim_port}/v1"
            env = app_environment(workdir / "data", simulator_url)
            if args.database_url:
                env["DATABASE_URL"] = stack.enter_context(
                    scratch_database(args.database_url, "bench")
                )
            if args.redis:
                env["REDIS_URL"] = args.redis
                env["PLAYGROUND_REDIS_PREFIX"] = redis_prefix(args.redis)
            env.update(item.split("=", 1) for item in args.app_env)
            processes = stack.enter_context(Processes(workdir))
            print("starting the simulator and the app ...", file=sys.stderr, flush=True)
            simulator = processes.start(
                "simulator",
                [sys.executable, __file__, "--serve-simulator", str(sim_port), str(args.delay)],
                sim_port,
                {**os.environ, "PYTHONPATH": str(REPO)},
            )
            needed = 2 + sum(args.streams) + args.ttft_runs + args.warmup
            conversations = prepare_database(env, needed)  # migrated once, before any app starts
            server = [sys.executable, "-m", "playground.server"]  # daphne, on its event loop
            names = ["app"] if args.processes == 1 else ["app A", "app B"]
            pids, urls = {"simulator": simulator.pid}, []
            for name in names:
                port = free_port()
                app = processes.start(
                    name.replace(" ", "-"),
                    [*server, "-b", HOST, "-p", str(port), args.asgi],
                    port,
                    env,
                )
                pids[name] = app.pid
                urls.append(f"http://{HOST}:{port}")
            servers = Servers(urls[0], urls[-1], simulator_url, pids)
            deadline = time.monotonic() + args.time_limit
            try:
                results = asyncio.run(
                    asyncio.wait_for(  # a last resort: each run stops waiting at the deadline
                        measure(args, servers, conversations, deadline), args.time_limit + 30
                    )
                )
            except Exception:
                print(processes.logs(), file=sys.stderr)
                raise
        frame_interval = env.get("PLAYGROUND_FRAME_INTERVAL", "0.05")
        if args.dump:
            dump_timings(results, args.dump)
        print(report(args, results, frame_interval, time.monotonic() - began))
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_simulator:
        serve_simulator(int(args.serve_simulator[0]), float(args.serve_simulator[1]))
        return 0

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return run_benchmark(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
