"""bench/call.py: its simulator recorder (a real simulator process on loopback, real httpx), and
its reading of a call, from the page's log to the report, on a log made up with known times."""

import base64
import io
import json
import sys
import time
import wave

import httpx
import pytest

from bench.call import (
    CallRecorder,
    analyse,
    choose_origin,
    epoch_ms,
    report,
    with_reply_length,
)
from tests.conftest import running
from tests.processes import REPO_ROOT, free_port

TITLE_PROMPT = "Write a title of 3 to 6 words for a conversation that starts with ..."


def wav_data_url(seconds: float, rate: int = 16000) -> str:
    """A 16 kHz mono WAV of silence, as the app sends a call's utterance upstream."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(2 * round(seconds * rate)))
    return "data:;base64," + base64.b64encode(out.getvalue()).decode()


def call_request(seconds: float = 1.0) -> dict:
    utterance = {"type": "input_audio", "input_audio": {"data": wav_data_url(seconds)}}
    utterance["input_audio"]["format"] = "wav"
    return {
        "model": "alibaba/qwen3.5-omni-flash",
        "stream": True,
        "modalities": ["text", "audio"],
        "audio": {"voice": "Tina", "format": "wav"},
        "messages": [{"role": "user", "content": [utterance]}],
    }


@pytest.fixture(scope="module")
def recorded_simulator():
    port = free_port()
    args = [sys.executable, str(REPO_ROOT / "bench" / "call.py"), "--serve-simulator"]
    with running(args + [str(port), "0.05", "7"], port, {"PYTHONPATH": str(REPO_ROOT)}):
        yield f"http://127.0.0.1:{port}/v1"


def stream(url: str, body: dict) -> list[dict]:
    chunks = []
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                chunks.append(json.loads(line[5:]))
    return chunks


def records(url: str) -> list[dict]:
    return httpx.get(f"{url}/bench/call-records", timeout=10).json()


def test_a_call_reply_gets_its_length_and_its_request_a_wall_clock_stamp(recorded_simulator):
    before = time.time() * 1000
    chunks = stream(recorded_simulator, call_request(seconds=1.5))
    after = time.time() * 1000
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    assert len([d for d in deltas if d.get("content")]) == 7  # [sim:length=7] was added
    assert len([d for d in deltas if d.get("audio")]) == 7
    (record,) = [r for r in records(recorded_simulator) if r["arrived"] >= before]
    assert before <= record["arrived"] <= record["first_audio"] <= record["ended"] <= after
    assert record["title"] is False
    assert record["parts"] == ["input_audio"]
    assert record["audio_seconds"] == pytest.approx(1.5)
    assert "disconnected" not in record


def test_a_title_request_is_recorded_but_left_alone(recorded_simulator):
    before = time.time() * 1000
    body = {
        "model": "alibaba/qwen3.5-omni-flash",
        "stream": True,
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": "Tell me about the river walk"},
        ],
    }
    chunks = stream(recorded_simulator, body)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Tell me about the river"  # the simulator's title, not 7 filler tokens
    (record,) = [r for r in records(recorded_simulator) if r["arrived"] >= before]
    assert record["title"] is True


def test_hanging_up_on_a_reply_is_stamped(recorded_simulator):
    before = time.time() * 1000
    with httpx.stream(
        "POST", f"{recorded_simulator}/chat/completions", json=call_request(), timeout=30
    ) as response:
        lines = response.iter_lines()  # kept: dropping it would close the response now
        next(lines)
        closing = time.time() * 1000  # leaving the block closes the connection
    # 7 tokens 0.05 s apart: the reply was still streaming when the client closed.
    deadline = time.monotonic() + 5
    while True:
        (record,) = [r for r in records(recorded_simulator) if r["arrived"] >= before]
        if "disconnected" in record or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert closing <= record["disconnected"] <= closing + 1000


def test_the_directive_goes_on_the_last_user_message_only():
    body = {
        "messages": [
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
        ]
    }
    changed = with_reply_length(body, 40)
    assert changed["messages"][0]["content"] == "earlier"
    assert changed["messages"][2]["content"][-1] == {"type": "text", "text": "[sim:length=40]"}
    assert body["messages"][2]["content"] == [{"type": "input_audio", "input_audio": {}}]
    assert CallRecorder(0).tokens == 0


def test_sqlite_times_are_read_as_utc():
    assert epoch_ms("1970-01-01 00:00:01.250000") == 1250.0
    assert epoch_ms("1970-01-01T01:00:01+01:00") == 1000.0
    assert epoch_ms(None) is None


# A made-up call: the page's clock runs 12 ms ahead of the wall clock; the file has four
# utterances (4-9, 12-17, 20-25, 28-33 s), the last of which the VAD never ended.
OFFSET = 12.0
OPENED = 1_000_000.0  # page ms: the microphone's getUserMedia resolved, the file's start
SEGMENTS = [(4.0, 9.0), (12.0, 17.0), (20.0, 25.0), (28.0, 33.0)]
A = [60.0, 80.0, 100.0]  # speech-end -> request upstream
B = [20.0, 30.0, 40.0]  # first audio -> audible
SILENT = [50.0, 70.0]  # barge-in -> silent
STOPPED = [150.0, 250.0]  # barge-in -> saved stopped


def made_up_call() -> dict:
    log = [{"type": "ready", "at": OPENED + 500}]
    records, rows = [], {}
    for n, (start, end) in enumerate(SEGMENTS[:3]):
        speech_start, speech_end = OPENED + start * 1000 + 90, OPENED + end * 1000 + 780
        message, reply = 10 + 2 * n, 11 + 2 * n
        heard = speech_end
        if n:  # this utterance barged in on the previous reply
            log.append({"type": "barge-in", "at": speech_start, "message": reply - 2})
            log[-1]["silent"] = speech_start + SILENT[n - 1]
            log.append({"type": "reply-stopped", "at": speech_start + 200, "message": reply - 2})
            rows[reply - 2]["status"] = "stopped"
            rows[reply - 2]["finished_at"] = speech_start - OFFSET + STOPPED[n - 1]
        log += [
            {"type": "speech-start", "at": speech_start},
            {"type": "speech-end", "at": heard, "seconds": 6.5},
            {"type": "sent", "at": heard + 40, "message": message, "reply": reply},
        ]
        wall_end = heard - OFFSET
        records.append({"arrived": wall_end + A[n], "title": False, "audio_seconds": 6.5})
        if n == 0:  # the new conversation's title request, just after
            records.append({"arrived": wall_end + A[n] + 30, "title": True})
        first_audio = heard + 200
        log.append(
            {
                "type": "audio-first",
                "at": first_audio,
                "audible": first_audio + B[n],
                "message": reply,
            }
        )
        rows[message] = {"role": "user", "status": "complete", "created_at": wall_end + 30}
        rows[reply] = {"role": "assistant", "status": "complete", "finished_at": None}
    log.append({"type": "speaking-end", "at": log[-1]["at"] + 7000, "message": 15})
    media = [
        {"audio": True, "video": False, "called": OPENED - 80, "resolved": OPENED},
        # A later capture (the camera, same constraints) shared the file's timeline.
        {"audio": True, "video": True, "called": OPENED + 2400, "resolved": OPENED + 2500},
    ]
    setup = {
        "app": "test",
        "machine": "test machine",
        "loads": ["0.1", "0.2"],
        "gap": 3.0,
        "lead": 4.0,
        "rate": 48000,
        "camera": False,
        "reply": "40 tokens",
        "delay": 0.03,
        "per_turn": True,
    }
    return {
        "setup": setup,
        "segments": SEGMENTS,
        "log": log,
        "media": media,
        "records": records,
        "rows": {str(k): v for k, v in rows.items()},
        "clock_offsets": [OFFSET - 2, OFFSET + 2],
    }


def row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_report_gives_each_measure_from_the_log_and_the_server_times():
    text = report(analyse(made_up_call()))
    assert row(text, "a. speech-end -> request upstream") == [
        "a. speech-end -> request upstream",
        "3",
        "80.0",
        "100.0",
        "60.0-100.0",
        "p50 <= 150",
        "yes",
    ]
    assert row(text, "b. first audio delta -> audible")[1:5] == ["3", "30.0", "40.0", "20.0-40.0"]
    assert row(text, "c. barge-in -> playback silent")[1:] == [
        "2",
        "60.0",
        "70.0",
        "50.0-70.0",
        "p90 <= 100",
        "yes",
    ]
    stopped = row(text, "c. barge-in -> reply saved stopped (server)")
    assert stopped[1:] == ["2", "200.0", "250.0", "150.0-250.0", "p90 <= 300", "yes"]
    assert row(text, "c. barge-in -> page saw reply-stopped (upper bound)")[1:3] == ["2", "200.0"]
    assert row(text, "sound starts (file) -> speech-start")[1:3] == ["3", "90.0"]
    assert row(text, "sound ends (file) -> speech-end")[1:3] == ["3", "780.0"]
    assert row(text, "speech-end -> user message saved (created_at)")[1:3] == ["3", "30.0"]
    assert row(text, "speech-end -> reply audible (the whole wait)")[1:3] == ["3", "230.0"]
    assert "+10.0 ms, +14.0 ms" in text
    assert "utterance 4 (28.0-33.0 s): no speech-end" in text
    assert "audio sent upstream per turn: 6.50-6.50 s" in text


def test_a_slow_turn_is_reported_as_missing_its_target():
    call = made_up_call()
    for record in call["records"]:
        record["arrived"] += 500
    text = report(analyse(call))
    assert row(text, "a. speech-end -> request upstream")[2] == "580.0"
    assert row(text, "a. speech-end -> request upstream")[-1] == "**NO**"


def test_without_barge_ins_their_rows_say_so():
    call = made_up_call()
    call["log"] = [e for e in call["log"] if e["type"] not in ("barge-in", "reply-stopped")]
    text = report(analyse(call))
    assert row(text, "c. barge-in -> playback silent")[1] == "0"
    assert row(text, "c. barge-in -> playback silent")[-1] == "no data"


def test_the_file_starts_with_the_capture_that_fits_the_speech():
    log = [{"type": "speech-start", "at": 10_000 + s * 1000 + 90} for s, _ in SEGMENTS]
    shared = [{"audio": True, "resolved": 10_000}, {"audio": True, "resolved": 12_500}]
    assert choose_origin(shared, log, [s for s, _ in SEGMENTS]) == 10_000
    # Reopened with other constraints: the file started again with the second capture.
    restarted = [{"audio": True, "resolved": 7_500}, {"audio": True, "resolved": 10_000}]
    assert choose_origin(restarted, log, [s for s, _ in SEGMENTS]) == 10_000
    assert choose_origin([{"audio": False, "resolved": 1}], log, [4.0]) is None


def test_a_barge_in_on_a_reply_the_server_had_finished_is_flagged():
    call = made_up_call()
    call["rows"]["11"].update(status="complete", finished_at=OPENED)
    text = report(analyse(call))
    assert row(text, "c. barge-in -> reply saved stopped (server)")[1] == "1"
    assert "utterance 1 (4.0-9.0 s): the next utterance barged in, but the server kept" in text
