"""Voice-call benchmark in a real browser: end of speech to the request upstream, first audio to
audible, and barge-in to silence, with a fake microphone playing espeak-ng speech.

    .venv/bin/python bench/call.py [--utterances 12] [--seconds 5] [--gap 3] [--reply-tokens 40]
    .venv/bin/python bench/call.py --camera          # the same with Chromium's fake camera on
    .venv/bin/python bench/call.py --from-dump run.json   # the report again from a --dump

Method
------
A recording is made first (tests/speech_files.py): --lead seconds of silence, then --utterances
espeak-ng utterances of about --seconds each (their sound measured in the file), each followed by
--gap seconds of silence, the last by enough for its reply to finish. Chromium plays it as its
microphone (`--use-file-for-fake-audio-capture=FILE%noloop`): the file starts when the page's
getUserMedia opens the capture (see tests/speech_files.py), and a script added to every document
stamps each getUserMedia call and its resolution, so the page's clock says where the file is.

Started here on loopback and stopped on exit (or Ctrl-C), as bench/first_token.py does: the
offline simulator, wrapped by a recorder, and one app process (fresh SQLite data dir, in-memory
channel layer, DEBUG off) from this checkout or `--app-dir`. The recorder stamps each completion
request with the wall clock (time.time()) once its whole body has been read, the first response
chunk carrying audio, and the moment the app hung up (a stopped reply). Because a call's user
message is a recording with no text, the recorder gives each call reply its length by adding a
`[sim:length=N]` text part to the request the simulator reads (--reply-tokens; 0 leaves the
simulator's own answer): the simulator speaks a tone per token (about 0.17 s each), so N tokens
last a known time and the next utterance, --gap seconds after the last, starts while the reply
still plays. The simulator's per-token delay (--delay, 0.15 s) makes the reply stream about as
long as it speaks, as a model's speech does, so that a barge-in also finds it still streaming on
the server (a reply already complete there cannot be stopped: the report says so).

Chromium logs in, opens a new conversation's page (`/c/<id>/`), clicks `[data-testid=call]`
(with --camera, `[data-testid=call-camera]` first) and reads `window.playgroundCall.log` every
--poll seconds. Each log entry's `at` is the page's epoch clock (performance.timeOrigin +
performance.now()); its difference from the machine's wall clock is measured at the start and
the end (the round trip of a page.evaluate, best of several) and taken off, so page times compare
with the simulator's and the database's. Turns are matched to the file's utterances by time,
replies by their ids (`sent` -> `reply`), upstream requests by arrival after the turn's
speech-end, and the reply's server-side end (`finished_at`, status `stopped`) is read from the
app's SQLite file after the run.

Figures, over the turns (p50, p90, min-max):
  a. speech-end (the page's VAD ended the utterance) -> the completion request arrived at the
     simulator; target p50 <= 150 ms for a 5 s utterance;
  b. audio-first: first audio frame of the reply received -> its first sample audible; <= 50 ms;
  c. barge-in: speech detected while the reply plays -> playback silent (<= 100 ms); and -> the
     reply saved `stopped` by the server (<= 300 ms), with the page's `reply-stopped` beside it
     as an upper bound;
and where the time goes: the VAD's own wait (the file's end of sound -> speech-end), the POST,
the server saving the user's message, upstream -> first audio on the page, and the whole wait
from speech-end to the reply audible. Targets b and c are judged at p90, a at p50 as DESIGN.md
states it. `--dump FILE` writes everything read (log, stamps, records, rows) as JSON, and
`--from-dump FILE` prints the report again from one without starting anything.

The run fails with what the page logged (not a hang) when the page has no call button, never
logs `ready`, is ready after the first utterance has started, or an utterance is never ended,
sent or answered within --turn-timeout.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.first_token import PASSWORD, USERNAME, code_of, log_in, server_command  # noqa: E402
from bench.relay import HOST, Processes, app_environment, load_average, machine  # noqa: E402
from bench.relay import percentile as nearest_rank  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.processes import free_port  # noqa: E402

# The system prompt of the app's title requests (chat/titles.py): not a call's reply.
TITLE_PROMPT_START = "Write a title of 3 to 6 words"
LOG = "window.playgroundCall && Array.isArray(window.playgroundCall.log)"

# Added to every document before its own scripts: each getUserMedia, when it was called and
# when it resolved (page epoch ms), so the bench knows where the fake microphone's file is.
MEDIA_STAMPS = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const media = navigator.mediaDevices;
  window.benchMedia = [];
  if (!media || !media.getUserMedia) return;
  const original = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => {
    const entry = {
      called: now(),
      audio: Boolean(constraints && constraints.audio),
      video: Boolean(constraints && constraints.video),
      constraints: JSON.stringify(constraints),
    };
    window.benchMedia.push(entry);
    try {
      const stream = await original(constraints);
      entry.resolved = now();
      return stream;
    } catch (error) {
      entry.failed = String(error);
      throw error;
    }
  };
})();
"""


class CallBenchError(RuntimeError):
    """The run could not be measured: what was expected, and what the page had logged."""


# ---------------------------------------------------------------------------------------------
# The simulator process: `call.py --serve-simulator PORT DELAY TOKENS` (started by the benchmark)


def is_title_request(request: dict) -> bool:
    messages = request.get("messages") or []
    first = messages[0] if messages else {}
    content = first.get("content")
    text = content if isinstance(content, str) else ""
    if isinstance(content, list):
        text = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return first.get("role") == "system" and text.startswith(TITLE_PROMPT_START)


def with_reply_length(request: dict, tokens: int) -> dict:
    """The request with `[sim:length=tokens]` added to its last user message. Pure."""
    messages = [dict(m) for m in request.get("messages") or []]
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        directive = f"[sim:length={tokens}]"
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [*content, {"type": "text", "text": directive}]
        else:
            message["content"] = f"{content or ''} {directive}".strip()
        break
    return {**request, "messages": messages}


def sent_media(request: dict) -> dict:
    """What the last user message carried: its part types, and a WAV's length in seconds."""
    found: dict[str, Any] = {"parts": [], "audio_seconds": None}
    for message in reversed(request.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            found["parts"].append(part.get("type"))
            audio = part.get("input_audio") or {}
            if audio.get("data"):
                found["audio_seconds"] = wav_seconds(audio["data"])
        break
    return found


def wav_seconds(data: str) -> float | None:
    """The length of base64 WAV data (a data: URL or bare base64), or None if it is not WAV."""
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=False)
        with wave.open(io.BytesIO(raw)) as source:
            return source.getnframes() / source.getframerate()
    except (binascii.Error, wave.Error, EOFError, ValueError):
        return None


class CallRecorder:
    """Wraps the simulator app: for each completion request, wall-clock ms of its arrival (the
    whole body read), of the first response chunk with audio, of the end of the response and of
    the client hanging up; the request itself; and call replies lengthened to `tokens`."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.records: list[dict[str, Any]] = []

    def wrap(self, app):
        async def recorded(scope, receive, send):
            if scope["type"] == "http" and scope["path"].endswith("/bench/call-records"):
                await self.send_records(send)
                return
            if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
                await app(scope, receive, send)
                return
            parts = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            record: dict[str, Any] = {"arrived": time.time() * 1000, "raw": b"".join(parts)}
            self.records.append(record)
            body = record["raw"]
            try:
                request = json.loads(body)
            except ValueError:
                request = None
            record["title"] = isinstance(request, dict) and is_title_request(request)
            if isinstance(request, dict) and self.tokens and not record["title"]:
                body = json.dumps(with_reply_length(request, self.tokens)).encode()
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                message = await receive()
                if message["type"] == "http.disconnect" and "ended" not in record:
                    # The client hung up mid-reply (a server also says so after the end).
                    record.setdefault("disconnected", time.time() * 1000)
                return message

            async def tapped_send(message):
                if message["type"] == "http.response.start":
                    record["status"] = message["status"]
                elif message["type"] == "http.response.body":
                    if "first_audio" not in record and b'"audio"' in message.get("body", b""):
                        record["first_audio"] = time.time() * 1000
                    if not message.get("more_body"):
                        record["ended"] = time.time() * 1000
                await send(message)

            await app(scope, replay, tapped_send)

        return recorded

    async def send_records(self, send) -> None:
        out = []
        for record in self.records:
            try:
                request = json.loads(record["raw"])
            except ValueError:
                request = {}
            public = {k: v for k, v in record.items() if k != "raw"}
            out.append({**public, **sent_media(request), "bytes": len(record["raw"])})
        data = json.dumps(out).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def serve_simulator(port: int, delay: float, tokens: int) -> None:
    """Run the simulator, wrapped by the recorder, on daphne (blocks until terminated)."""
    from daphne.endpoints import build_endpoint_description_strings

    from chat.simulator.__main__ import SimulatorServer  # imports daphne.server first
    from chat.simulator.app import create_app

    server = SimulatorServer(
        application=CallRecorder(tokens).wrap(create_app(delay=delay)),
        endpoints=build_endpoint_description_strings(host=HOST, port=port),
        server_name="call-bench-simulator",
    )
    server.run()


def reply_seconds(tokens: int) -> float:
    """How long the simulator speaks a reply of `tokens` filler tokens."""
    from chat.simulator.audio import pcm_seconds, token_pcm
    from chat.simulator.reply import filler_tokens

    return sum(pcm_seconds(token_pcm(token)) for token in filler_tokens(tokens))


# ---------------------------------------------------------------------------------------------
# The recording


def schedule(utterances: int, seconds: float, gap: float, lead: float, tail: float) -> list[tuple]:
    """The segments of the microphone's file (tests/speech_files.make_speech_wav). Pure but for
    choosing each utterance's text and speed, which runs espeak-ng."""
    from tests.speech_files import utterance_of

    segments: list[tuple] = [("silence", lead)]
    for index in range(utterances):
        text, speed = utterance_of(seconds, index)
        segments += [("speech", text, speed), ("silence", gap if index + 1 < utterances else tail)]
    return segments


# ---------------------------------------------------------------------------------------------
# Reading a run: pure functions from what was read to turns, figures and the report


@dataclass
class Turn:
    index: int
    file_start: float  # seconds into the file: the utterance's sound
    file_end: float
    speech_start: dict | None = None
    speech_end: dict | None = None
    splits: int = 0  # extra speech-ends inside the utterance (the VAD cut it)
    sent: dict | None = None
    upstream: dict | None = None  # the simulator's record of the reply's request
    audio_first: dict | None = None
    speaking_end: dict | None = None
    barge_in: dict | None = None
    reply_stopped: dict | None = None
    reply_row: dict | None = None  # the reply's row: status, finished_at (epoch ms)
    user_row: dict | None = None  # the user's message: created_at (epoch ms)


def on_wall_clock(entries: list[dict], offset: float) -> list[dict]:
    """Page entries with their times (`at`, `audible`, `silent`) moved to the wall clock,
    `offset` being page clock - wall clock in ms. Pure."""
    moved = []
    for entry in entries:
        entry = dict(entry)
        for key in ("at", "audible", "silent", "called", "resolved"):
            if isinstance(entry.get(key), (int, float)):
                entry[key] = entry[key] - offset
        moved.append(entry)
    return moved


def choose_origin(media: list[dict], log: list[dict], starts: Sequence[float]) -> float | None:
    """The moment the file started (page ms): the resolution of the audio getUserMedia whose
    timeline best fits the page's speech-starts (a capture opened later with other constraints
    starts the file again; one with the same constraints shares it). Pure."""
    candidates = [m["resolved"] for m in media if m.get("audio") and m.get("resolved")]
    if not candidates:
        return None
    detected = [e["at"] for e in log if e.get("type") == "speech-start"]
    if not detected or not starts:
        return candidates[0]

    def misfit(origin: float) -> float:
        errors = [min(abs(d - (origin + s * 1000)) for d in detected) for s in starts]
        return statistics.median(errors)

    return min(candidates, key=misfit)


def first(entries: list[dict], kind: str, **match: Any) -> dict | None:
    return next(
        (
            e
            for e in entries
            if e.get("type") == kind and all(e.get(k) == v for k, v in match.items())
        ),
        None,
    )


def build_turns(
    log: list[dict],
    segments: list[tuple[float, float]],
    origin: float,
    records: list[dict],
    rows: dict[int, dict],
) -> list[Turn]:
    """One turn per utterance of the file, everything on one clock (wall ms). Pure."""
    turns = [Turn(n, start, end) for n, (start, end) in enumerate(segments)]
    at = [origin + start * 1000 for start, _ in segments] + [float("inf")]
    for n, turn in enumerate(turns):
        window = (at[n] - 300, at[n + 1] - 300)
        starts = [
            e
            for e in log
            if e.get("type") == "speech-start"
            and window[0] <= e["at"] <= origin + turn.file_end * 1000
        ]
        ends = [e for e in log if e.get("type") == "speech-end" and at[n] < e["at"] < window[1]]
        turn.speech_start = starts[0] if starts else None
        turn.speech_end = ends[-1] if ends else None
        turn.splits = max(0, len(ends) - 1)
    ended = [t.speech_end["at"] if t.speech_end else None for t in turns]
    calls = [r for r in records if not r.get("title")]
    for n, turn in enumerate(turns):
        if not turn.speech_end:
            continue
        since = turn.speech_end["at"]
        until = next((e for e in ended[n + 1 :] if e is not None), float("inf"))
        turn.sent = next(
            (e for e in log if e.get("type") == "sent" and since <= e["at"] < until), None
        )
        # 50 ms of slack: the page's clock is corrected to the wall clock only to a few ms.
        turn.upstream = next((r for r in calls if since - 50 <= r["arrived"] < until), None)
        if not turn.sent:
            continue
        reply = turn.sent.get("reply")
        turn.audio_first = first(log, "audio-first", message=reply)
        turn.speaking_end = first(log, "speaking-end", message=reply)
        turn.barge_in = first(log, "barge-in", message=reply)
        turn.reply_stopped = first(log, "reply-stopped", message=reply)
        turn.reply_row = rows.get(reply)
        turn.user_row = rows.get(turn.sent.get("message"))
    return turns


# key: (label, target ms or None, the percentile the target is judged at)
MEASURES = {
    "a": ("a. speech-end -> request upstream", 150.0, 0.5),
    "b": ("b. first audio delta -> audible", 50.0, 0.9),
    "c1": ("c. barge-in -> playback silent", 100.0, 0.9),
    "c2": ("c. barge-in -> reply saved stopped (server)", 300.0, 0.9),
    "c2page": ("c. barge-in -> page saw reply-stopped (upper bound)", None, 0.9),
    "vad_onset": ("sound starts (file) -> speech-start", None, 0.5),
    "vad_wait": ("sound ends (file) -> speech-end", None, 0.5),
    "post": ("speech-end -> POST answered (`sent`)", None, 0.5),
    "saved": ("speech-end -> user message saved (created_at)", None, 0.5),
    "to_upstream": ("user message saved -> request upstream", None, 0.5),
    "upstream_audio": ("request upstream -> first audio at the page", None, 0.5),
    "reply_audible": ("speech-end -> reply audible (the whole wait)", None, 0.5),
    "hang_up": ("barge-in -> the app hung up on the upstream", None, 0.5),
}


def figures(turns: list[Turn], origin: float) -> dict[str, list[float]]:
    """Each measure's values in ms, over the turns that have it. Pure."""
    out: dict[str, list[float]] = {key: [] for key in MEASURES}

    def add(key: str, later: float | None, earlier: float | None) -> None:
        if later is not None and earlier is not None:
            out[key].append(later - earlier)

    for t in turns:
        end = t.speech_end["at"] if t.speech_end else None
        arrived = t.upstream["arrived"] if t.upstream else None
        barge = t.barge_in["at"] if t.barge_in else None
        add("a", arrived, end)
        if t.audio_first:
            add("b", t.audio_first.get("audible"), t.audio_first["at"])
            add("upstream_audio", t.audio_first["at"], arrived)
            add("reply_audible", t.audio_first.get("audible"), end)
        if t.barge_in:
            add("c1", t.barge_in.get("silent"), barge)
        row = t.reply_row or {}
        if row.get("status") == "stopped":
            add("c2", row.get("finished_at"), barge)
        add("c2page", t.reply_stopped["at"] if t.reply_stopped else None, barge)
        add(
            "vad_onset",
            t.speech_start["at"] if t.speech_start else None,
            origin + t.file_start * 1000,
        )
        add("vad_wait", end, origin + t.file_end * 1000)
        add("post", t.sent["at"] if t.sent else None, end)
        created = (t.user_row or {}).get("created_at")
        add("saved", created, end)
        add("to_upstream", arrived, created)
        add("hang_up", (t.upstream or {}).get("disconnected") if t.barge_in else None, barge)
    return out


def summary(values: list[float]) -> tuple[float, float, float, float]:
    """(p50, p90, min, max) in ms: the median, and nearest-rank p90 as bench/relay.py gives."""
    return statistics.median(values), nearest_rank(values, 0.9), min(values), max(values)


def problems(turns: list[Turn]) -> list[str]:
    """What did not happen as the run expected, per turn. Pure."""
    found = []
    for t in turns:
        label = f"utterance {t.index + 1} ({t.file_start:.1f}-{t.file_end:.1f} s)"
        if not t.speech_end:
            found.append(f"{label}: no speech-end")
            continue
        if t.splits:
            found.append(f"{label}: the VAD ended it {t.splits + 1} times")
        if not t.sent:
            found.append(f"{label}: no `sent` after its speech-end")
        elif not t.audio_first:
            found.append(f"{label}: its reply {t.sent.get('reply')} never played")
        if not t.upstream:
            found.append(f"{label}: no completion request reached the simulator")
        status = (t.reply_row or {}).get("status")
        if t.barge_in and status != "stopped":
            found.append(
                f"{label}: the next utterance barged in, but the server kept its reply as "
                f"{status or 'unknown'} (it had finished streaming: raise --delay or "
                "--reply-tokens)"
            )
    return found


def ms(value: float) -> str:
    return f"{value:.1f}"


def report(dump: dict) -> str:
    """The Markdown report of a run (what `--dump` writes). Pure."""
    setup = dump["setup"]
    turns = [Turn(**t) for t in dump["turns"]]
    found = figures(turns, dump["origin"])
    seconds = [end - start for start, end in dump["segments"]]
    offsets = dump.get("clock_offsets") or []
    lines = [
        "## Voice call: end of speech to the request upstream, first audio, barge-in",
        "",
        f"- app: {setup['app']}",
        f"- machine: {setup['machine']}; load average before {setup['loads'][0]}, "
        f"after {setup['loads'][1]}",
        f"- microphone: {len(seconds)} espeak-ng utterances of {min(seconds):.2f}-"
        f"{max(seconds):.2f} s, {setup['gap']:g} s apart, after {setup['lead']:g} s of silence, "
        f"{setup['rate']} Hz; camera: {'on' if setup['camera'] else 'off'}",
        f"- replies: {setup['reply']}; simulator per-token delay {setup['delay']:g} s",
        "- page clock - wall clock: "
        + (", ".join(f"{o:+.1f} ms" for o in offsets) if offsets else "not measured")
        + " (start, end; taken off page times)",
        "",
        "| measure | turns | p50 ms | p90 ms | min-max ms | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for key, (label, target, judged) in MEASURES.items():
        values = found[key]
        if not values:
            lines.append(f"| {label} | 0 | | | | {target_text(target, judged)} | no data |")
            continue
        p50, p90, low, high = summary(values)
        met = ""
        if target is not None:
            met = "yes" if (p50 if judged == 0.5 else p90) <= target else "**NO**"
        lines.append(
            f"| {label} | {len(values)} | {ms(p50)} | {ms(p90)} | {ms(low)}-{ms(high)} "
            f"| {target_text(target, judged)} | {met} |"
        )
    lines += [
        "",
        "Page times are the page's own log (`window.playgroundCall.log`); request upstream is the "
        "simulator's wall-clock stamp once the request's body was read; reply saved stopped is "
        "the reply's `finished_at` in the app's database. The rows below the targets say where "
        "the time goes.",
    ]
    lines[6:6] = [f"- {note}" for note in dump.get("notes", [])]
    issues = problems(turns)
    if issues:
        lines += ["", "Not as expected:", ""] + [f"- {issue}" for issue in issues]
    if setup.get("per_turn"):
        lines += ["", *turn_table(turns, dump["origin"])]
    return "\n".join(lines)


def target_text(target: float | None, judged: float) -> str:
    if target is None:
        return ""
    return f"p{round(judged * 100)} <= {target:g}"


def turn_table(turns: list[Turn], origin: float) -> list[str]:
    lines = [
        "| turn | sound in the file s | VAD wait ms | a ms | b ms | barge-in -> silent ms "
        "| barge-in -> saved stopped ms | reply |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for t in turns:
        cell = {k: (ms(v[0]) if v else "") for k, v in figures([t], origin).items()}
        status = (t.reply_row or {}).get("status", "")
        lines.append(
            f"| {t.index + 1} | {t.file_start:.2f}-{t.file_end:.2f} | {cell['vad_wait']} "
            f"| {cell['a']} | {cell['b']} | {cell['c1']} | {cell['c2']} | {status} |"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Running it


def prepare(env: dict, app_dir: Path) -> int:
    """`manage.py migrate` on the fresh data dir, the person who logs in, and an empty
    conversation of theirs: its id."""
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        manage + ["migrate", "--noinput", "-v", "0"], cwd=app_dir, env=env, check=True, timeout=120
    )
    code = (
        "from django.contrib.auth import get_user_model; from chat.models import Conversation; "
        f"user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r}); "
        "print('CONVERSATION', Conversation.objects.create(owner=user, title='Call bench').pk)"
    )
    done = subprocess.run(
        manage + ["shell", "-c", code],
        cwd=app_dir,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("CONVERSATION "))
    return int(line.split()[1])


def epoch_ms(value: str | None) -> float | None:
    """A datetime as Django keeps it in SQLite (UTC, naive ISO text) in epoch ms."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def message_rows(database: Path, ids: list[int]) -> dict[int, dict]:
    """The messages' status, created_at and finished_at (epoch ms), read from the app's file."""
    if not ids:
        return {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        marks = ",".join("?" * len(ids))
        rows = connection.execute(
            "SELECT id, role, status, created_at, finished_at FROM chat_message "
            f"WHERE id IN ({marks})",
            ids,
        ).fetchall()
    return {
        pk: {
            "role": role,
            "status": status,
            "created_at": epoch_ms(created),
            "finished_at": epoch_ms(finished),
        }
        for pk, role, status, created, finished in rows
    }


def clock_offset(page) -> float:
    """Page epoch clock - wall clock, in ms: the sample with the shortest round trip of ten."""
    samples = []
    for _ in range(10):
        before = time.time() * 1000
        page_now = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        samples.append((after - before, page_now - (before + after) / 2))
    return min(samples)[1]


class CallPage:
    """The page's call log and getUserMedia stamps, read as they grow."""

    def __init__(self, page, poll: float) -> None:
        self.page = page
        self.poll = poll
        self.log: list[dict] = []
        self.media: list[dict] = []
        self.console: list[str] = []
        page.on(
            "console",
            lambda m: self.console.append(m.text) if m.type in ("error", "warning") else None,
        )
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def read(self) -> None:
        new = self.page.evaluate(
            f"n => ({LOG}) ? JSON.parse(JSON.stringify(window.playgroundCall.log.slice(n))) : null",
            len(self.log),
        )
        self.log.extend(new or [])
        self.media = self.page.evaluate("JSON.parse(JSON.stringify(window.benchMedia || []))")
        errors = [e for e in new or [] if e.get("type") == "error"]
        if errors:
            raise CallBenchError(self.explain(f"the page logged an error: {errors[0].get('text')}"))

    def has(self, kind: str) -> dict | None:
        return first(self.log, kind)

    def wait_for(self, what: str, condition, deadline: float) -> None:
        while True:
            self.read()
            if condition():
                return
            if time.monotonic() > deadline:
                raise CallBenchError(self.explain(f"timed out waiting for {what}"))
            time.sleep(self.poll)

    def state(self) -> str:
        panel = self.page.locator("[data-testid=call-panel]")
        try:
            if panel.count():
                return (
                    f"call-panel data-call-state={panel.first.get_attribute('data-call-state')!r}"
                )
        except Exception as exc:  # the page is gone or navigating: say so, do not hide the cause
            return f"call panel unreadable ({exc})"
        return "no [data-testid=call-panel] on the page"

    def explain(self, what: str) -> str:
        opened = next((m.get("resolved") for m in self.media if m.get("resolved")), None)
        base = opened or (self.log[0]["at"] if self.log else 0)
        lines = [what, f"  {self.state()}", f"  getUserMedia calls: {json.dumps(self.media)}"]
        lines.append(
            f"  call log ({len(self.log)} entries; times in s since the microphone opened):"
        )
        for entry in self.log[-40:]:
            rest = {k: v for k, v in entry.items() if k not in ("type", "at")}
            lines.append(
                f"    {(entry.get('at', 0) - base) / 1000:8.3f} {entry.get('type')} {rest}"
            )
        if self.console:
            lines.append("  console: " + " | ".join(self.console[-10:]))
        return "\n".join(lines)


def run_call(args, page, made, turn_timeout: float) -> CallPage:
    """Start the call and follow it to the last reply: the page's log, or CallBenchError."""
    call = CallPage(page, args.poll)
    button = page.locator("[data-testid=call]")
    try:
        button.wait_for(state="visible", timeout=15_000)
    except Exception:
        raise CallBenchError(
            call.explain(f"no visible [data-testid=call] on {page.url}: is the call UI there?")
        ) from None
    camera = page.locator("[data-testid=call-camera]")
    if args.camera and not camera.count():
        raise CallBenchError(
            call.explain(f"--camera, but no [data-testid=call-camera] on {page.url}")
        )
    camera_first = args.camera and camera.first.is_visible()
    if camera_first:
        camera.first.click()
    button.click()
    deadline = time.monotonic() + args.ready_timeout
    call.wait_for(f"`ready` within {args.ready_timeout:g} s", lambda: call.has("ready"), deadline)
    if args.camera and not camera_first:
        try:
            camera.first.click(timeout=10_000)
        except Exception as exc:
            raise CallBenchError(call.explain(f"could not turn the camera on: {exc}")) from None
    opened = [m["resolved"] for m in call.media if m.get("audio") and m.get("resolved")]
    if not opened:
        raise CallBenchError(call.explain("`ready` but no getUserMedia with audio resolved"))
    first_sound = made.segments[0].start
    ready_after = (call.has("ready")["at"] - opened[0]) / 1000
    if ready_after > first_sound - 0.3:
        raise CallBenchError(
            call.explain(
                f"the page was ready {ready_after:.2f} s after opening the microphone, but the "
                f"first utterance starts {first_sound:.2f} s into the file: give --lead more"
            )
        )

    def origin() -> float:  # lenient: a later capture may have started the file again
        return max(m["resolved"] for m in call.media if m.get("audio") and m.get("resolved"))

    def page_now() -> float:
        return page.evaluate("performance.timeOrigin + performance.now()")

    for n, segment in enumerate(made.segments):
        label = (
            f"utterance {n + 1} of {len(made.segments)} ({segment.start:.1f}-{segment.end:.1f} s)"
        )

        def ended(segment=segment):
            return any(
                e.get("type") == "speech-end" and e["at"] > origin() + segment.start * 1000
                for e in call.log
            )

        # The VAD ends an utterance about 0.8 s after its sound; 4 s is plenty.
        until = deadline_at(origin() + (segment.end + 4.0) * 1000, page_now)
        call.wait_for(f"the VAD to end {label}", ended, until)
        end = [e for e in call.log if e.get("type") == "speech-end"][-1]["at"]
        limit = time.monotonic() + turn_timeout
        call.wait_for(
            f"`sent` for {label}",
            lambda end=end: any(e.get("type") == "sent" and e["at"] >= end for e in call.log),
            limit,
        )
    # The last reply: played to its end (or stopped) before the call ends.
    last = [e for e in call.log if e.get("type") == "sent"][-1]
    reply = last.get("reply")
    limit = time.monotonic() + turn_timeout + args.reply_seconds
    call.wait_for(
        f"the last reply ({reply}) to play and finish",
        lambda: (
            first(call.log, "speaking-end", message=reply)
            or first(call.log, "reply-stopped", message=reply)
        ),
        limit,
    )
    time.sleep(1.0)  # the database's final save of that reply
    call.read()
    end_button = page.locator("[data-testid=call-end]")
    if end_button.count():
        end_button.first.click()
    return call


def deadline_at(page_ms: float, page_now) -> float:
    """A monotonic deadline a little after the page's clock reaches `page_ms`."""
    return time.monotonic() + max(0.0, (page_ms - page_now()) / 1000) + 5.0


def measure(args, made, app_url: str, simulator_url: str, conversation: int, database: Path):
    import httpx
    from playwright.sync_api import sync_playwright

    from tests.speech_files import fake_microphone_args

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, *fake_microphone_args(made.path)],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(30_000)
            context.add_init_script(MEDIA_STAMPS)
            page = context.new_page()
            log_in(page, app_url)
            page.goto(f"{app_url}/c/{conversation}/")
            offsets = [clock_offset(page)]
            call = run_call(args, page, made, args.turn_timeout)
            offsets.append(clock_offset(page))
        finally:
            browser.close()
    records = httpx.get(f"{simulator_url}/bench/call-records", timeout=30).json()
    ids = [e[k] for e in call.log if e.get("type") == "sent" for k in ("message", "reply")]
    rows = message_rows(database, [i for i in ids if isinstance(i, int)])
    return call, records, rows, offsets


def analyse(raw: dict) -> dict:
    """From what a run read (page log and stamps, records, rows, clock offsets) to the dump the
    report is printed from. Pure."""
    offset = statistics.mean(raw["clock_offsets"]) if raw["clock_offsets"] else 0.0
    log = on_wall_clock(raw["log"], offset)
    media = on_wall_clock(raw["media"], offset)
    segments = [tuple(s) for s in raw["segments"]]
    origin = choose_origin(media, log, [start for start, _ in segments])
    notes = []
    if origin is None:
        notes.append("no getUserMedia stamp: turns matched from the first speech-start instead")
        first_start = first(log, "speech-start")
        origin = (first_start["at"] if first_start else 0) - segments[0][0] * 1000
    rows = {int(k): v for k, v in raw["rows"].items()}
    turns = build_turns(log, segments, origin, raw["records"], rows)
    sent_seconds = [r["audio_seconds"] for r in raw["records"] if r.get("audio_seconds")]
    if sent_seconds:
        notes.append(
            "audio sent upstream per turn: "
            f"{min(sent_seconds):.2f}-{max(sent_seconds):.2f} s (WAV length)"
        )
    return {
        "setup": raw["setup"],
        "segments": segments,
        "origin": origin,
        "clock_offsets": raw["clock_offsets"],
        "turns": [asdict(t) for t in turns],
        "notes": notes,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=12, help="turns (default 12)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each utterance's length")
    parser.add_argument(
        "--gap",
        type=float,
        default=3.0,
        help="silence after each utterance (default 3 s: the "
        "next one starts while the reply plays, a barge-in)",
    )
    parser.add_argument("--lead", type=float, default=4.0, help="silence before the first")
    parser.add_argument("--rate", type=int, default=48000, help="the file's sample rate")
    parser.add_argument(
        "--reply-tokens",
        type=int,
        default=40,
        help="tokens in each call reply (default 40, ~7 s of speech; 0: the simulator's own)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.15,
        help="simulator per-token delay (default 0.15 s: a reply streams for about as long as "
        "it speaks, ~0.17 s a token, so a barge-in finds it still streaming)",
    )
    parser.add_argument("--camera", action="store_true", help="turn Chromium's fake camera on")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to `ready`")
    parser.add_argument(
        "--turn-timeout", type=float, default=15.0, help="seconds for a turn's next step"
    )
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between log reads")
    parser.add_argument("--per-turn", action="store_true", help="add a table of every turn")
    parser.add_argument("--app-dir", type=Path, default=REPO, help="the checkout the app runs")
    parser.add_argument("--dump", type=Path, help="write what was read as JSON")
    parser.add_argument("--from-dump", type=Path, help="print the report of a --dump, run nothing")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    parser.add_argument(
        "--serve-simulator", nargs=3, metavar=("PORT", "DELAY", "TOKENS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.utterances < 1 or args.seconds <= 0 or args.gap <= 0 or args.lead < 0:
        parser.error("--utterances, --seconds and --gap must be positive, --lead not negative")
    return args


def run(args: argparse.Namespace) -> int:
    from tests.speech_files import espeak_available, make_speech_wav

    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    if not espeak_available():
        print("no espeak-ng (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    app_dir = args.app_dir.resolve()
    args.reply_seconds = reply_seconds(args.reply_tokens) if args.reply_tokens else 10.0
    workdir = Path(tempfile.mkdtemp(prefix="call-bench-"))
    try:
        print("making the recording ...", file=sys.stderr, flush=True)
        tail = max(args.gap, args.reply_seconds + 3.0)
        made = make_speech_wav(
            workdir / "microphone.wav",
            schedule(args.utterances, args.seconds, args.gap, args.lead, tail),
            rate=args.rate,
        )
        with Processes(workdir) as processes:
            sim_port, app_port = free_port(), free_port()
            simulator_url = f"http://{HOST}:{sim_port}/v1"
            print(
                f"starting the simulator and the app; the call lasts {made.seconds:.0f} s ...",
                file=sys.stderr,
                flush=True,
            )
            processes.start(
                "simulator",
                [sys.executable, str(REPO / "bench" / "call.py"), "--serve-simulator"]
                + [str(sim_port), str(args.delay), str(args.reply_tokens)],
                sim_port,
                {**os.environ, "PYTHONPATH": str(REPO)},
            )
            env = app_environment(workdir / "data", simulator_url)
            conversation = prepare(env, app_dir)
            processes.start(
                "app",
                [*server_command(app_dir), "-b", HOST, "-p", str(app_port)]
                + ["playground.asgi:application"],
                app_port,
                env,
                cwd=app_dir,
            )
            before = load_average()
            try:
                call, records, rows, offsets = measure(
                    args,
                    made,
                    f"http://{HOST}:{app_port}",
                    simulator_url,
                    conversation,
                    workdir / "data" / "playground.sqlite3",
                )
            except CallBenchError as error:
                print(f"call bench failed: {error}", file=sys.stderr)
                print(processes.logs(), file=sys.stderr)
                return 1
            except Exception:
                print(processes.logs(), file=sys.stderr)
                raise
            after = load_average()
        reply = (
            f"{args.reply_tokens} tokens (~{args.reply_seconds:.1f} s of speech)"
            if args.reply_tokens
            else "the simulator's own answer"
        )
        raw = {
            "setup": {
                "app": code_of(app_dir),
                "machine": machine(),
                "loads": [before, after],
                "gap": args.gap,
                "lead": args.lead,
                "rate": args.rate,
                "camera": args.camera,
                "reply": reply,
                "delay": args.delay,
                "per_turn": args.per_turn,
            },
            "segments": [(s.start, s.end) for s in made.segments],
            "log": call.log,
            "media": call.media,
            "records": records,
            "rows": rows,
            "clock_offsets": offsets,
        }
        dump = analyse(raw)
        if args.dump:
            args.dump.write_text(json.dumps({**dump, "raw": raw}, indent=1))
        print(report(dump))
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_simulator:
        port, delay, tokens = args.serve_simulator
        serve_simulator(int(port), float(delay), int(tokens))
        return 0
    if args.from_dump:
        saved = json.loads(args.from_dump.read_text())
        print(report(analyse(saved["raw"]) if "raw" in saved else saved))
        return 0

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
