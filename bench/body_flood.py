"""Body flood benchmark: huge request bodies against the server, while another user streams.

    .venv/bin/python bench/body_flood.py [--clients 20] [--body-mib 1024] [--rounds 3]
                                         [--seconds 10] [--runs 1] [--app-dir PATH]

Quality bar (DESIGN.md): twenty concurrent 1 GiB request bodies (anonymous or logged in) raise
the server's RSS by at most 64 MB, refused before they are read, while another user's stream
keeps its relay p99.

Method
------
- As bench/relay.py: the offline simulator with its emit-timestamp hook, `manage.py migrate` on
  a fresh SQLite data dir, one daphne app process pointed at the simulator. Two users: `bench`,
  who streams, and `flood`, whose session the logged-in flood clients use. `--app-dir` serves
  another checkout of the app (migrated and started from there) against the same simulator.
- The streaming user: a logged-in page with its WebSocket open sends replies one after another
  over that socket (`--tokens` tokens, `--delay` s apart), from the baseline to the end of the
  last flood phase. Each frame's relay overhead (simulator emit -> frame received) belongs to
  the phase in which its delta was emitted. Direct, for the ratios: the baseline's requests
  again, byte for byte but for the marker, straight to the simulator one after another, read
  with httpx-sse (relay.py's measure_direct).
- Phases, `--seconds` each: baseline (the stream alone); flood with a declared Content-Length;
  flood with chunked transfer encoding (no length; `--no-chunked` skips it). A flood phase is
  `--rounds` rounds spread over it, each `--clients` concurrent POSTs: half anonymous to
  /accounts/login/ (a form), half logged in to /import/ (session cookie and CSRF token, a
  multipart archive), each declaring `--body-mib`. The flood clients run in a process of their
  own (so their sending does not delay this process's reading of the stream) on raw asyncio
  streams: the headers, then body bytes as fast as the socket takes them until the server
  answers or closes (or the whole body is sent); each records the time to the answer, its
  status, and the body bytes the socket had taken by then.
- The app's RSS: VmRSS from /proc/<pid>/status every `--sample-ms` ms by a thread
  (bench/upload_rss.py's sampler), across all phases. Baseline = median over the second before
  the first flood; before each flood phase the kernel's peak counter is reset (clear_refs) and
  VmHWM after it gives the exact peak. Rise = peak - baseline, against 64 MB (10^6 bytes).
- A memory guard: if the app's RSS passes `--rss-guard-mib` the app is killed and the run is
  reported as it stood (for code that buffers whole bodies).

Everything runs on 127.0.0.1, each run is bounded by --time-limit, and every process and temp
dir started here is removed on exit. `--runs K` repeats the whole run K times (fresh processes
and data each time) and adds the spread (min-max) of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
HOST = "127.0.0.1"
FLOOD_USER = "flood"
BOUNDARY = "body-flood-boundary"
FILL = memoryview(b"a" * MIB)  # body bytes: one MiB sent again and again
# What a client may have pushed before it reads an answer the server sent after the headers:
# loopback socket buffers (a few MiB each way) and the 16 MiB the server reads and drops while
# its answer goes out. A body read by the server would be its whole declared size.
UNREAD_BYTES = 32 * MIB


# ---------------------------------------------------------------------------------------------
# The flood clients: `body_flood.py --flood-worker` (started by the benchmark, fed on stdin)


async def shoot(port: int, shot: dict, deadline: float) -> dict:
    """One POST: headers, then the body as fast as the socket takes it, until an answer."""
    head, prefix, suffix = (shot[k].encode("latin-1") for k in ("head", "prefix", "suffix"))
    declared, chunked = shot["declared"], shot["chunked"]
    result = {
        "route": shot["route"],
        "chunked": chunked,
        "started": time.monotonic(),
        "answered": None,
        "status": None,
        "outcome": "",
        "sent_at_answer": None,
        "sent": 0,
    }
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        result["outcome"] = f"connect failed: {exc}"
        result["ended"] = time.monotonic()
        return result

    async def pump() -> None:
        writer.write(head)
        sent, body_end = 0, declared - len(suffix)
        pieces = [memoryview(prefix)]
        while sent < declared:
            if not pieces:
                if sent < body_end:
                    pieces.append(FILL[: min(len(FILL), body_end - sent)])
                else:
                    pieces.append(memoryview(suffix))
            piece = pieces.pop(0)
            if chunked:
                writer.write(b"%x\r\n" % len(piece))
                writer.write(piece)
                writer.write(b"\r\n")
            else:
                writer.write(piece)
            await writer.drain()  # taken by the socket (less asyncio's 64 KiB high-water mark)
            sent += len(piece)
            result["sent"] = sent
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def answer() -> None:
        line = await reader.readline()
        result["answered"] = time.monotonic()
        result["sent_at_answer"] = result["sent"]
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            result["status"] = int(parts[1])
        else:
            result["outcome"] = "closed without an answer" if not line else f"bad: {line[:60]!r}"

    sending = asyncio.create_task(pump())
    waiting = asyncio.create_task(answer())
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            while not waiting.done():
                await asyncio.wait({sending, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if sending.done() and sending.exception() is not None and not waiting.done():
                    # The server stopped taking bytes: an answer may still be on its way.
                    await asyncio.wait({waiting}, timeout=2)
                    break
        if waiting.done() and waiting.exception() is not None and not result["outcome"]:
            result["outcome"] = f"{type(waiting.exception()).__name__}"
        elif not waiting.done():
            result["outcome"] = f"reset while sending ({type(sending.exception()).__name__})"
    except TimeoutError:
        result["outcome"] = (
            "no answer by the phase's end, whole body sent"
            if result["sent"] >= declared
            else "still sending at the phase's end"
        )
    finally:
        for task in (sending, waiting):
            task.cancel()
        await asyncio.gather(sending, waiting, return_exceptions=True)
        writer.transport.abort()
    result["ended"] = time.monotonic()
    return result


async def flood(spec: dict) -> list[dict]:
    """Each client sends its POST `rounds` times, the rounds spread over `seconds`; a client
    whose request is still going when a round is due starts that round late. Nothing runs past
    the phase's end: a request still sending then is cut."""
    began = time.monotonic()
    rounds, seconds = spec["rounds"], spec["seconds"]
    end = min(spec["deadline"], began + seconds)

    async def client(shot: dict) -> list[dict]:
        done = []
        for round_ in range(rounds):
            await asyncio.sleep(max(0.0, began + round_ * seconds / rounds - time.monotonic()))
            if time.monotonic() >= end:
                break
            done.append({**await shoot(spec["port"], shot, end), "round": round_})
        return done

    results = await asyncio.gather(*(client(shot) for shot in spec["shots"]))
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    return [result for done in results for result in done]


def flood_worker() -> int:
    """One JSON spec a line on stdin -> one JSON line of results on stdout, until EOF."""
    for line in sys.stdin:
        results = asyncio.run(flood(json.loads(line)))
        print(json.dumps(results), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Setting up: processes, users, sessions

from bench.relay import (  # noqa: E402
    PASSWORD,
    PREPARE_DATABASE,
    USERNAME,
    Browser,
    CpuMeter,
    LoopLag,
    Page,
    Processes,
    Servers,
    app_environment,
    check_stream,
    cpu_seconds,
    csrf_from,
    fetch_records,
    load_average,
    machine,
    measure_direct,
    percentile,
    ratio,
    settle,
    verdict,
)
from bench.upload_rss import TARGET_BYTES, Sampler, reset_peak, rss_kib  # noqa: E402
from tests.processes import free_port  # noqa: E402

PREPARE_FLOOD = """
from django.conf import settings
get_user_model().objects.create_user({flooder!r}, password={password!r})
print("SETTINGS", json.dumps({{
    name: getattr(settings, name, None)
    for name in ("PLAYGROUND_MAX_BODY_BYTES", "PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES",
                 "PLAYGROUND_UPLOAD_CHUNK_BYTES", "DATA_UPLOAD_MAX_MEMORY_SIZE")
}}))
"""


def prepare(env: dict, app_dir: Path) -> tuple[int, dict]:
    """Migrate with the app's own code, make both users and the streaming conversation;
    return its id and the app's body settings."""
    manage = [sys.executable, "manage.py"]
    run = {"cwd": app_dir, "env": env, "check": True, "timeout": 120}
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], **run)
    code = PREPARE_DATABASE.format(username=USERNAME, password=PASSWORD, count=1)
    code += PREPARE_FLOOD.format(flooder=FLOOD_USER, password=PASSWORD)
    done = subprocess.run([*manage, "shell", "-c", code], capture_output=True, text=True, **run)
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return json.loads(found["CONVERSATIONS"])[0], json.loads(found["SETTINGS"])


async def flood_session(url: str) -> tuple[str, str]:
    """The flood user logged in: (Cookie header, CSRF token)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        page = await client.get("/accounts/login/")
        data = {"username": FLOOD_USER, "password": PASSWORD}
        await client.post(
            "/accounts/login/", data={**data, "csrfmiddlewaretoken": csrf_from(page.text)}
        )
        if "sessionid" not in client.cookies:
            raise RuntimeError("the flood user could not log in")
        token = client.cookies["csrftoken"]  # rotated at log-in
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        # The session really reaches the import view (not a log-in redirect, not a CSRF 403).
        probe = await client.post("/import/", headers={"X-CSRFToken": token}, files={})
        if probe.status_code in (302, 403):
            raise RuntimeError(f"POST /import/ as the flood user: HTTP {probe.status_code}")
    return cookie, token


def flood_shots(port: int, clients: int, body: int, chunked: bool, session: tuple) -> list[dict]:
    """Half the clients (the odd one too) anonymous at the log-in form, half logged in at the
    archive import."""
    cookie, token = session
    common = f"Host: {HOST}:{port}\r\nUser-Agent: body-flood\r\n"
    length = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {body}\r\n"
    login = {
        "route": "/accounts/login/ (anonymous)",
        "head": f"POST /accounts/login/ HTTP/1.1\r\n{common}"
        f"Content-Type: application/x-www-form-urlencoded\r\n{length}\r\n",
        "prefix": f"username={FLOOD_USER}&password=",
        "suffix": "",
    }
    archive = {
        "route": "/import/ (logged in)",
        "head": f"POST /import/ HTTP/1.1\r\n{common}Cookie: {cookie}\r\nX-CSRFToken: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length}\r\n",
        "prefix": f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; '
        f'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n',
        "suffix": f"\r\n--{BOUNDARY}--\r\n",
    }
    anonymous = clients - clients // 2
    shots = [login] * anonymous + [archive] * (clients // 2)
    return [{**shot, "declared": body, "chunked": chunked} for shot in shots]


def route_limit(route: str, settings: dict) -> int | None:
    if route.startswith("/import/"):
        limit = settings.get("PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES")
        return limit + 64 * 1024 if limit else None
    return settings.get("PLAYGROUND_MAX_BODY_BYTES")


# ---------------------------------------------------------------------------------------------
# The streaming user


@dataclass
class Reply:
    marker: str
    sent_phase: str
    first: int  # index of the page's first frame after the send
    last: int = 0  # one past its last frame
    finished: bool = False


class Stream:
    """One page that sends a reply, waits for it to finish, and sends the next, until told."""

    def __init__(self, page: Page, tokens: int, delay: float) -> None:
        self.page, self.tokens, self.delay = page, tokens, delay
        self.replies: list[Reply] = []
        self.phase = "w"  # the marker letter of the current phase
        self.stopping = asyncio.Event()
        self.error = ""

    def finished(self, reply: Reply) -> bool:
        """The reply's assistant message got its final (outerHTML, with a status) frame."""
        from bench.relay import ASSISTANT_INSERT, FINAL

        assistant = None
        for _at, frame in self.page.frames[reply.first :]:
            if assistant is None:
                found = ASSISTANT_INSERT.search(frame)
                assistant = found.group(1) if found else None
                continue
            if any(message == assistant for message, _status in FINAL.findall(frame)):
                return True
        return False

    async def run(self) -> None:
        numbers = Counter()
        budget = self.tokens * self.delay * 3 + 10
        try:
            while not self.stopping.is_set():
                phase = self.phase
                marker = f"bench-{phase}-{numbers[phase]:03d}"
                numbers[phase] += 1
                reply = Reply(marker, phase, len(self.page.frames))
                self.replies.append(reply)
                await self.page.send(
                    f"{marker} [sim:length={self.tokens}] [sim:delay={self.delay:g}]"
                )
                with contextlib.suppress(TimeoutError):
                    await self.page.wait_until(lambda r=reply: self.finished(r), budget)
                reply.last = len(self.page.frames)
                reply.finished = self.finished(reply)
                if not reply.finished:
                    break
        except Exception as exc:  # the app went away (memory guard) or refused a send
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


# ---------------------------------------------------------------------------------------------
# One run


@dataclass
class Phase:
    name: str
    letter: str
    began: float = 0.0
    ended: float = 0.0
    shots: list[dict] = field(default_factory=list)
    rss_before_kib: float | None = None
    peak_kib: float | None = None  # max(VmHWM after clear_refs, sampled max)
    sampled_peak_kib: float | None = None
    hwm_kib: float | None = None
    cpu: dict = field(default_factory=dict)
    open_seconds: float = 0.0  # time during which at least one flood request was open
    open_cpu: float = float("nan")  # the app's CPU over that time, share of one core
    open_machine: float = float("nan")  # all cores' CPU over that time, share of one core
    lag_ms: list[float] = field(default_factory=list)


def machine_busy() -> float:
    """Seconds all cores together have spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class GuardedSampler(Sampler):
    """bench/upload_rss.py's VmRSS sampler, which also kills the app once it passes
    `guard_kib` (for code that buffers whole bodies)."""

    def __init__(self, pid: int, interval: float, guard_kib: int) -> None:
        super().__init__(pid, interval)
        self.guard_kib = guard_kib
        self.tripped: tuple[float, int] | None = None
        self.cpu: list[tuple[float, float]] = []  # (time, CPU seconds used so far)
        self.machine: list[tuple[float, float]] = []  # (time, all cores' busy seconds so far)

    def cpu_share(self, spans: list[tuple[float, float]], machine: bool = False) -> float:
        """The app's CPU (or the whole machine's) over these spans, as a share of one core."""
        used = wall = 0.0
        for start, end in spans:
            series = self.machine if machine else self.cpu
            inside = [(at, cpu) for at, cpu in series if start <= at <= end]
            if len(inside) >= 2:
                used += inside[-1][1] - inside[0][1]
                wall += inside[-1][0] - inside[0][0]
        return used / wall if wall > 0 else float("nan")

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                sample = (time.monotonic(), rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self.samples.append(sample)
            self.cpu.append((sample[0], cpu_seconds(self.pid)))
            self.machine.append((sample[0], machine_busy()))
            if sample[1] > self.guard_kib:
                self.tripped = sample
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                return
            self.stopped.wait(self.interval)


async def run_phases(
    args,
    env: dict,
    app_pid: int,
    sim_pid: int,
    url: str,
    sim_url: str,
    conversation: int,
    limits: dict,
    deadline: float,
) -> dict:
    port = int(url.rsplit(":", 1)[1])
    servers = Servers(url, url, sim_url, {"app": app_pid, "simulator": sim_pid})
    guard = GuardedSampler(app_pid, args.sample_ms / 1000, args.rss_guard_mib * 1024)
    guard.start()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--flood-worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    browser = Browser(url, url)
    page = Page(conversation)
    result: dict = {"phases": [], "load_before": load_average(), "aborted": ""}
    try:
        await browser.log_in()
        session = await flood_session(url)
        await page.open(browser)
        stream = Stream(page, args.tokens, args.delay)
        # Warm-up: one short reply through the whole path before anything is timed.
        await page.send("bench-w-000 [sim:length=5] [sim:delay=0]")
        await page.wait_until(lambda: page.finals >= 1, 30)
        await settle(servers.pids)
        result["idle_kib"] = rss_kib(app_pid)
        streaming = asyncio.create_task(stream.run())
        # Kept for the last reply to finish and for the direct pass (the baseline's replies).
        reply_seconds = args.tokens * args.delay + 0.5
        reserve = args.seconds + 2 * reply_seconds + 10
        phases = [Phase("baseline", "b")]
        phases.append(Phase("flood, Content-Length", "f"))
        if not args.no_chunked:
            phases.append(Phase("flood, chunked", "c"))
        for phase in phases:
            if (
                time.monotonic() + args.seconds > deadline - reserve
                or guard.tripped
                or stream.error
            ):
                result["aborted"] = result["aborted"] or f"not run: {phase.name} (time limit)"
                break
            stream.phase = phase.letter
            cpu, lag = CpuMeter({**servers.pids, "flood clients": worker.pid}), LoopLag()
            lag_probe = asyncio.create_task(lag.run())
            if phase.letter != "b":
                before = guard.between(time.monotonic() - 1.0, time.monotonic())
                phase.rss_before_kib = statistics.median(before) if before else None
                can_reset = reset_peak(app_pid)
            cpu.start()
            phase.began = time.monotonic()
            if phase.letter == "b":
                await asyncio.sleep(args.seconds)
            else:
                spec = {
                    "port": port,
                    "rounds": args.rounds,
                    "seconds": args.seconds,
                    "deadline": deadline - reserve,
                    "shots": flood_shots(
                        port, args.clients, args.body_mib * MIB, phase.letter == "c", session
                    ),
                }
                worker.stdin.write(json.dumps(spec).encode() + b"\n")
                await worker.stdin.drain()
                line = await worker.stdout.readline()
                phase.shots = json.loads(line) if line else []
            phase.ended = time.monotonic()
            phase.cpu = cpu.stop()
            lag_probe.cancel()
            phase.lag_ms = [x * 1000 for x in lag.lags]
            if phase.letter != "b":
                with contextlib.suppress(OSError, RuntimeError):
                    phase.hwm_kib = rss_kib(app_pid, "VmHWM") if can_reset else None
                sampled = guard.between(phase.began, phase.ended)
                phase.sampled_peak_kib = max(sampled) if sampled else None
                phase.peak_kib = max(phase.hwm_kib or 0, phase.sampled_peak_kib or 0) or None
                spans = open_spans(phase.shots)
                phase.open_seconds = sum(end - start for start, end in spans)
                phase.open_cpu = guard.cpu_share(spans)
                phase.open_machine = guard.cpu_share(spans, machine=True)
            result["phases"].append(phase)
            if guard.tripped:
                result["aborted"] = (
                    f"memory guard: the app's RSS reached {guard.tripped[1] / 1024:,.0f} MiB "
                    f"(> {args.rss_guard_mib:,} MiB) during {phase.name}; the app was killed"
                )
                break
        stream.stopping.set()
        await asyncio.wait({streaming}, timeout=args.tokens * args.delay * 3 + 10)
        streaming.cancel()
        result["stream_error"] = stream.error
        with contextlib.suppress(OSError, RuntimeError):
            result["end_kib"] = rss_kib(app_pid)
        result["samples"] = list(guard.samples)
        # Analysis: every reply's frames against the simulator's emits.
        records = {r["marker"]: r for r in await fetch_records(sim_url, "bench-")}
        result["checks"] = [
            (
                reply,
                check_stream(
                    SimpleNamespace(frames=page.frames[reply.first : reply.last]),
                    records[reply.marker],
                ),
            )
            for reply in stream.replies
            if reply.marker in records and reply.last
        ]
        result["unanswered"] = sum(r.marker not in records for r in stream.replies)
        baseline_replies = [r for r in stream.replies if r.sent_phase == "b"]
        if baseline_replies and time.monotonic() < deadline:
            span = len(baseline_replies) * (args.tokens * args.delay + 0.5)
            result["direct"] = await measure_direct(
                servers, "b", "d", span, min(deadline, time.monotonic() + span + 15)
            )
    finally:
        guard.stopped.set()
        await page.close()
        await browser.close()
        if worker.returncode is None:
            worker.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wait(), 5)
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    result["load_after"] = load_average()
    result["limits"] = limits
    return result


def one_run(args, number: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="body-flood-"))
    began = time.monotonic()
    deadline = began + args.time_limit
    try:
        with Processes(workdir) as processes:
            from bench import relay

            sim_port = free_port()
            sim_url = f"http://{HOST}:{sim_port}/v1"
            env = app_environment(workdir / "data", sim_url)
            env.update(item.split("=", 1) for item in args.app_env)
            print(f"run {number}: starting the simulator and the app ...", file=sys.stderr)
            simulator = processes.start(
                "simulator",
                [
                    sys.executable,
                    relay.__file__,
                    "--serve-simulator",
                    str(sim_port),
                    str(args.delay),
                ],
                sim_port,
                {**os.environ, "PYTHONPATH": str(REPO)},
            )
            conversation, limits = prepare(env, args.app_dir)
            daphne = str(Path(sys.executable).with_name("daphne"))
            port = free_port()
            # `env -C` runs daphne in the app's checkout (daphne imports the app from its cwd)
            # and execs it: the pid is daphne's own, for RSS and CPU.
            app = processes.start(
                "app",
                [
                    "env",
                    "-C",
                    str(args.app_dir),
                    daphne,
                    "-b",
                    HOST,
                    "-p",
                    str(port),
                    "playground.asgi:application",
                ],
                port,
                env,
            )
            try:
                result = asyncio.run(
                    asyncio.wait_for(
                        run_phases(
                            args,
                            env,
                            app.pid,
                            simulator.pid,
                            f"http://{HOST}:{port}",
                            sim_url,
                            conversation,
                            limits,
                            deadline,
                        ),
                        args.time_limit + 30,
                    )
                )
            except Exception:
                print(processes.logs(), file=sys.stderr)
                raise
            result["log_tail"] = (workdir / "app.log").read_text()[-1500:]
        result["seconds"] = time.monotonic() - began
        return result
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Figures and the report


def mb(kib: float) -> str:
    """KiB as MB (10^6 bytes), the unit of the bar."""
    return f"{kib * 1024 / 1e6:,.1f}"


def mib(count: float) -> str:
    return f"{count / MIB:,.1f}"


def frames_in(checks: list, start: float, end: float) -> list[float]:
    """Relay overheads (ms) of the frames whose newest delta was emitted in [start, end)."""
    return [
        (received - emitted) * 1000
        for _reply, check in checks
        for emitted, received, _deltas in check.timings
        if start <= emitted < end
    ]


def open_spans(shots: list[dict]) -> list[tuple[float, float]]:
    """The spans of time during which at least one flood request was open."""
    merged: list[list[float]] = []
    for start, end in sorted((s["started"], s["ended"]) for s in shots):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def summarise(result: dict, args) -> dict:
    """The run's figures, by name (the same names in every run, for the spread)."""
    figures: dict[str, float] = {}
    phases: list[Phase] = result["phases"]
    checks = result["checks"]
    direct = result.get("direct")
    direct_ms = direct.overheads_ms if direct else []
    figures["direct p50"] = percentile(direct_ms, 0.5)
    figures["direct p99"] = percentile(direct_ms, 0.99)
    floods = [p for p in phases if p.letter != "b"]
    baseline_kib = floods[0].rss_before_kib if floods else None
    for phase in phases:
        values = frames_in(checks, phase.began, phase.ended)
        figures[f"{phase.name}: relay p50"] = percentile(values, 0.5)
        figures[f"{phase.name}: relay p99"] = percentile(values, 0.99)
        figures[f"{phase.name}: app CPU"] = phase.cpu.get("app", float("nan")) * 100
        if phase.letter == "b":
            continue
        spans = open_spans(phase.shots)
        busy = [value for start, end in spans for value in frames_in(checks, start, end)]
        figures[f"{phase.name}: relay p99 while requests open"] = percentile(busy, 0.99)
        figures[f"{phase.name}: app CPU while requests open"] = phase.open_cpu * 100
        if baseline_kib and phase.peak_kib:
            figures[f"{phase.name}: RSS rise MB"] = (phase.peak_kib - baseline_kib) * 1024 / 1e6
        answered = [s["answered"] - s["started"] for s in phase.shots if s["answered"]]
        figures[f"{phase.name}: answer max ms"] = max(answered, default=float("nan")) * 1000
        sent = [s["sent_at_answer"] for s in phase.shots if s["sent_at_answer"] is not None]
        figures[f"{phase.name}: sent before answer max MiB"] = max(sent, default=0) / MIB
    if baseline_kib:
        figures["baseline RSS MB"] = baseline_kib * 1024 / 1e6
    return figures


def shot_rows(phase: Phase, limits: dict, clients: dict[str, int]) -> list[str]:
    rows = []
    by_route: dict[str, list[dict]] = {}
    for shot in phase.shots:
        by_route.setdefault(shot["route"], []).append(shot)
    for route, shots in by_route.items():
        outcomes = Counter(str(s["status"]) if s["status"] else s["outcome"] for s in shots)
        answered = [(s["answered"] - s["started"]) * 1000 for s in shots if s["answered"]]
        sent = [s["sent_at_answer"] for s in shots if s["sent_at_answer"] is not None]
        limit = route_limit(route, limits)
        rows.append(
            f"| {phase.name} | {route} | {clients[route]} | {len(shots)} "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items()))} "
            f"| {percentile(answered, 0.5):,.1f} / {max(answered, default=float('nan')):,.1f} "
            f"| {mib(statistics.median(sent)) if sent else ''} / {mib(max(sent, default=0))} "
            f"| {mib(max(s['sent'] for s in shots))} | {mib(limit) if limit else 'none'} |"
        )
    return rows


def refused_unread(shot: dict) -> bool:
    """A 413 that came before the client had pushed more than socket buffers hold."""
    return shot["status"] == 413 and (shot["sent_at_answer"] or 0) <= UNREAD_BYTES


def refused_at_limit(shot: dict, limits: dict) -> bool:
    """A 411 (a route that takes large bodies wants their length first) or a 413 once past
    the route's limit, or still under the limit when the phase ended (a body that size is the
    route's to take)."""
    limit = (route_limit(shot["route"], limits) or 0) + UNREAD_BYTES
    if shot["status"] == 411:
        return (shot["sent_at_answer"] or 0) <= UNREAD_BYTES
    if shot["status"] == 413:
        return (shot["sent_at_answer"] or 0) <= limit
    return shot["outcome"] == "still sending at the phase's end" and shot["sent"] <= limit


def report(args, result: dict, number: int) -> tuple[str, dict]:
    phases: list[Phase] = result["phases"]
    checks = result["checks"]
    limits = result["limits"]
    figures = summarise(result, args)
    floods = [p for p in phases if p.letter != "b"]
    baseline_kib = floods[0].rss_before_kib if floods else None
    direct = result.get("direct")
    direct_ms = direct.overheads_ms if direct else []
    d50, d99 = percentile(direct_ms, 0.5), percentile(direct_ms, 0.99)
    where = "this checkout" if args.app_dir == REPO else f"`{args.app_dir}`"
    commit = subprocess.run(
        ["git", "-C", str(args.app_dir), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    ).stdout.strip()[:90]
    limit_text = ", ".join(
        f"{name} = {value:,}" if value is not None else f"{name} unset"
        for name, value in limits.items()
    )
    title = "## Body flood benchmark" + (f", run {number} of {args.runs}" if args.runs > 1 else "")
    lines = [
        title,
        "",
        f"Command: `.venv/bin/python {shlex.join(['bench/body_flood.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {machine()}; Python {sys.version.split()[0]}; load average before the run "
        f"{result['load_before']}, after {result['load_after']}.",
        f"App: {where} ({commit}); one daphne process, SQLite, in-memory channel layer. "
        f"Its body settings: {limit_text}.",
        f"Flood: {args.clients} clients at once ({args.clients - args.clients // 2} anonymous "
        f"POST /accounts/login/, {args.clients // 2} logged in POST /import/), each declaring "
        f"{args.body_mib:,} MiB, {args.rounds} rounds spread over each {args.seconds:g} s flood "
        f"phase, from a process of their own. Streaming user: one page, replies of "
        f"{args.tokens} tokens {args.delay:g} s apart, one after another through every phase. "
        f"RSS sampled every {args.sample_ms:g} ms; peaks from VmHWM after clear_refs. "
        "Times in ms; MB = 10^6 bytes, MiB = 2^20.",
        "",
    ]
    if result["aborted"]:
        lines += [f"**Run cut short**: {result['aborted']}.", ""]

    # Memory
    lines += [
        "| server memory | RSS | rise over baseline | target | met |",
        "| --- | ---: | ---: | --- | --- |",
        f"| idle after warm-up | {mb(result['idle_kib'])} MB | | | |",
        f"| baseline (median, 1 s before the first flood) "
        f"| {mb(baseline_kib) + ' MB' if baseline_kib else ''} | | | |",
    ]
    memory_ok = bool(floods) and not result["aborted"].startswith("memory")
    for phase in floods:
        if phase.peak_kib is None or not baseline_kib:
            memory_ok = False
            lines.append(f"| peak during {phase.name} | n/a | | <= 64 MB | {verdict(False)} |")
            continue
        rise = (phase.peak_kib - baseline_kib) * 1024
        ok = rise <= TARGET_BYTES
        memory_ok &= ok
        how = (
            "VmHWM"
            if phase.hwm_kib and phase.hwm_kib >= (phase.sampled_peak_kib or 0)
            else ("sampled")
        )
        lines.append(
            f"| peak during {phase.name} ({how}) | {mb(phase.peak_kib)} MB "
            f"| {rise / 1e6:+,.1f} MB | <= 64 MB | {verdict(ok)} |"
        )
    if "end_kib" in result:
        lines.append(f"| at the end | {mb(result['end_kib'])} MB | | | |")

    # The flood requests
    lines += [
        "",
        "| phase | route | clients | requests | answers | time to answer p50 / max "
        "| body sent before the answer, median / max MiB | most sent by one request, MiB "
        "| route's limit, MiB |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    clients = Counter(s["route"] for s in flood_shots(0, args.clients, 0, False, ("", "")))
    for phase in floods:
        lines += shot_rows(phase, limits, clients)
    declared = [s for p in floods if p.letter == "f" for s in p.shots]
    chunked = [s for p in floods if p.letter == "c" for s in p.shots]
    refused_ok = bool(declared) and all(refused_unread(s) for s in declared)
    chunked_ok = all(refused_at_limit(s, limits) for s in chunked)

    # The streaming user's relay
    lines += [
        "",
        "Relay overhead for the streaming user (simulator emit -> frame received), by the phase "
        "in which each delta was emitted; direct = the baseline's requests straight to the "
        "simulator, one after another, after the phases.",
        "",
        "| phase | frames | p50 | p99 | max | p50/direct | p99/direct | p99/baseline p99 "
        "| replies sent, whole | app CPU | flood clients' CPU | client loop lag p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base_values = frames_in(checks, phases[0].began, phases[0].ended) if phases else []
    b99 = percentile(base_values, 0.99)
    stream_kept: dict[str, bool] = {}
    open_notes: list[str] = []
    for phase in phases:
        values = frames_in(checks, phase.began, phase.ended)
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        sent = [(r, c) for r, c in checks if r.sent_phase == phase.letter]
        whole = sum(c.text_equal and c.final_status == "complete" for _r, c in sent)
        lines.append(
            f"| {phase.name} | {len(values)} | {p50:.2f} | {p99:.2f} "
            f"| {max(values, default=float('nan')):.2f} | {ratio(p50, d50)} | {ratio(p99, d99)} "
            f"| {ratio(p99, b99) if phase.letter != 'b' else ''} | {whole}/{len(sent)} "
            f"| {phase.cpu.get('app', float('nan')):.0%} "
            f"| {phase.cpu.get('flood clients', float('nan')):.0%} "
            f"| {percentile(phase.lag_ms, 0.99):.2f} |"
        )
        if phase.letter == "b":
            continue
        stream_kept[phase.name] = p99 <= max(1.5 * b99, 3 * d99)
        spans = open_spans(phase.shots)
        busy = [value for start, end in spans for value in frames_in(checks, start, end)]
        if busy:
            q50, q99 = percentile(busy, 0.5), percentile(busy, 0.99)
            lines.append(
                f"| - of which while flood requests were open ({phase.open_seconds:.1f} s) "
                f"| {len(busy)} | {q50:.2f} | {q99:.2f} | {max(busy):.2f} | {ratio(q50, d50)} "
                f"| {ratio(q99, d99)} | {ratio(q99, b99)} | | {phase.open_cpu:.0%} | | |"
            )
            open_notes.append(
                f"{phase.name}: {phase.open_machine:.0%} of one core "
                f"({phase.open_machine / (os.cpu_count() or 1):.0%} of the machine)"
            )
    lines.append(
        f"| direct (baseline's requests) | {len(direct_ms)} | {d50:.2f} | {d99:.2f} "
        f"| {max(direct_ms, default=float('nan')):.2f} | | | | | | | |"
    )
    stream_ok = bool(floods) and not result.get("stream_error") and all(stream_kept.values())
    if open_notes:
        lines += [
            "",
            "The whole machine's CPU (every process, this client and the flood's too) while "
            "flood requests were open: " + "; ".join(open_notes) + ".",
        ]
    all_whole = bool(checks) and all(
        c.text_equal and c.final_status == "complete" for _r, c in checks
    )
    if result.get("stream_error"):
        lines += ["", f"The stream stopped: {result['stream_error']}."]
    if result["unanswered"]:
        lines += ["", f"{result['unanswered']} reply request(s) never reached the simulator."]

    # Verdicts
    lines += [
        "",
        "| bar (DESIGN.md) | figure | met |",
        "| --- | --- | --- |",
        "| RSS rises by at most 64 MB | "
        + ", ".join(
            f"{(p.peak_kib - baseline_kib) * 1024 / 1e6:+,.1f} MB ({p.name})"
            for p in floods
            if p.peak_kib and baseline_kib
        )
        + f" | {verdict(memory_ok)} |",
        "| refused before they are read (declared length: every answer a 413, before the "
        f"client had sent {UNREAD_BYTES // MIB} MiB) | {sum(map(refused_unread, declared))}"
        f"/{len(declared)} | {verdict(refused_ok)} |",
        *(
            [
                "| (chunked: a 411 before it is read, a 413 once past the route's limit, or still "
                "under it at the "
                f"phase's end) | {sum(refused_at_limit(s, limits) for s in chunked)}"
                f"/{len(chunked)} | {verdict(chunked_ok)} |"
            ]
            if chunked
            else []
        ),
        *(
            f"| another user's stream keeps its relay p99 during the {p.name} (within 1.5x "
            "the baseline's, or within the relay bar's 3x direct) | "
            f"{percentile(frames_in(checks, p.began, p.ended), 0.99):.2f} ms vs baseline "
            f"{b99:.2f}, direct {d99:.2f} | {verdict(stream_kept[p.name])} |"
            for p in floods
        ),
        f"| every reply's text arrived whole | {sum(c.text_equal for _r, c in checks)}"
        f"/{len(checks)} equal to the simulator's, "
        f"{sum(c.final_status == 'complete' for _r, c in checks)} complete "
        f"| {verdict(all_whole)} |",
        "",
        f"Run time: {result['seconds']:.1f} s.",
    ]
    figures["met"] = float(memory_ok and refused_ok and chunked_ok and stream_ok and all_whole)
    return "\n".join(lines), figures


def spread(all_figures: list[dict]) -> str:
    names = list(dict.fromkeys(name for figures in all_figures for name in figures))
    lines = [
        f"## Body flood benchmark: spread over {len(all_figures)} runs",
        "",
        "| figure | min | max | runs |",
        "| --- | ---: | ---: | --- |",
    ]
    for name in names:
        values = [f[name] for f in all_figures if name in f and f[name] == f[name]]
        if not values:
            continue
        shown = ", ".join(f"{v:,.2f}" for v in values)
        label = "all bars met (1 = yes)" if name == "met" else name
        lines.append(f"| {label} | {min(values):,.2f} | {max(values):,.2f} | {shown} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent flood clients (20)")
    parser.add_argument("--body-mib", type=int, default=1024, help="declared body, MiB (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="flood rounds per phase (3)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per phase (10)")
    parser.add_argument("--no-chunked", action="store_true", help="skip the chunked phase")
    parser.add_argument("--tokens", type=int, default=80, help="tokens per reply (80)")
    parser.add_argument("--delay", type=float, default=0.06, help="seconds per token (0.06)")
    parser.add_argument("--sample-ms", type=float, default=25, help="RSS sampling period (25)")
    parser.add_argument(
        "--rss-guard-mib",
        type=int,
        default=4096,
        help="kill the app and stop the run if its RSS passes this (4096)",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole run K times (1)")
    parser.add_argument(
        "--time-limit", type=float, default=120, help="seconds per run, at most (120)"
    )
    parser.add_argument(
        "--app-dir",
        type=lambda p: Path(p).resolve(),
        default=REPO,
        help="serve the app from this checkout (migrated and started there; default: this one)",
    )
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the app (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, data)")
    parser.add_argument("--flood-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.body_mib < 1 or args.rounds < 1 or args.runs < 1:
        parser.error("--clients, --body-mib, --rounds and --runs must be at least 1")
    if not (args.app_dir / "manage.py").is_file():
        parser.error(f"--app-dir {args.app_dir}: no manage.py there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flood_worker:
        return flood_worker()

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    all_figures, met = [], True
    try:
        for number in range(1, args.runs + 1):
            text, figures = report(args, one_run(args, number), number)
            print(text + "\n", flush=True)
            all_figures.append(figures)
            met &= figures["met"] == 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    if args.runs > 1:
        print(spread(all_figures))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
