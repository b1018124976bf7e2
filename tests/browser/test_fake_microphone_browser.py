"""Chromium's fake microphone plays a tests/speech_files.py recording when and as the browser
tests and bench/call.py expect: from the moment getUserMedia opens it, with each utterance where
the file has it, and silence after the end with `%noloop` (or the file again without it).

No app: a page served from a loopback http.server (getUserMedia wants a secure context, and
http://127.0.0.1 is one) measures the level of every 10 ms of the track in an AudioWorklet.
"""

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.speech_files import espeak_available, fake_microphone_args, make_speech_wav

pytestmark = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed (Debian: apt-get install espeak-ng), so no speech to play",
)

TOLERANCE = 0.15  # seconds: how far from the file's own times an utterance may arrive
LOUD = 0.003  # RMS: a 10 ms window above this holds sound (speech averages ~0.07)
JOIN = 0.3  # seconds: quieter windows shorter than this are gaps between words
# What a call asks for.
CALL_AUDIO = {"echoCancellation": True, "noiseSuppression": True, "autoGainControl": True}
NO_PROCESSING = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}

PAGE = """<!doctype html><meta charset=utf-8><title>microphone</title>
<button id=start>Start</button><script src=page.js></script>
"""

# The page: on Start, getUserMedia with window.constraints, then the level of every 10 ms of
# the track as [epoch ms of its first sample, RMS], in window.mic.levels.
PAGE_JS = """
const now = () => performance.timeOrigin + performance.now();
window.mic = {levels: []};
document.getElementById("start").addEventListener("click", async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: window.constraints});
  window.mic.opened = now();
  const context = new AudioContext();
  await context.audioWorklet.addModule("level.js");
  const node = new AudioWorkletNode(context, "level");
  const mute = context.createGain();
  mute.gain.value = 0;
  context.createMediaStreamSource(stream).connect(node);
  node.connect(mute);
  mute.connect(context.destination);
  node.port.onmessage = (event) => {
    // The window's context time, on the epoch clock: now, less how far the context has moved on.
    const at = now() - (context.currentTime - event.data.time) * 1000;
    window.mic.levels.push([at, event.data.rms]);
  };
});
"""

LEVEL_JS = """
registerProcessor("level", class extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 100);
    this.sum = 0;
    this.count = 0;
  }
  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (!samples) return true;
    for (let i = 0; i < samples.length; i++) {
      if (this.count === 0) this.start = currentTime + i / sampleRate;
      this.sum += samples[i] * samples[i];
      if (++this.count === this.size) {
        this.port.postMessage({time: this.start, rms: Math.sqrt(this.sum / this.count)});
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
});
"""


@pytest.fixture(scope="module")
def page_url(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("microphone-page")
    (root / "index.html").write_text(PAGE)
    (root / "page.js").write_text(PAGE_JS)
    (root / "level.js").write_text(LEVEL_JS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/index.html"
    server.shutdown()
    server.server_close()


def capture(chromium, page_url: str, path: Path, constraints: dict, seconds: float, **flags):
    """Open the page in a Chromium whose microphone plays `path`, start the capture after a
    second, and return (the moment getUserMedia resolved, [[epoch ms, RMS], ...]) once
    `seconds` of the track are measured."""
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake_microphone_args(path, **flags)]
    )
    try:
        page = browser.new_page()
        page.goto(page_url)
        page.evaluate("constraints => { window.constraints = constraints; }", constraints)
        page.wait_for_timeout(1000)  # the file must not have started with the browser
        page.click("#start")
        page.wait_for_function(
            "s => window.mic.opened && window.mic.levels.length"
            " && window.mic.levels.at(-1)[0] >= window.mic.opened + s * 1000",
            arg=seconds,
            timeout=(seconds + 15) * 1000,
        )
        mic = page.evaluate("window.mic")
    finally:
        browser.close()
    return mic["opened"], mic["levels"]


def sounds(opened: float, levels: list, after: float = 0) -> list[tuple[float, float]]:
    """Stretches of sound, as (start, end) seconds since getUserMedia resolved."""
    spans: list[list[float]] = []
    for at, level in levels:
        t = (at - opened) / 1000
        if level <= LOUD or t < after:
            continue
        if spans and t - spans[-1][1] < JOIN:
            spans[-1][1] = t + 0.01
        else:
            spans.append([t, t + 0.01])
    return [(start, end) for start, end in spans]


def assert_heard(heard: list[tuple[float, float]], segments, offset: float = 0) -> None:
    assert len(heard) == len(segments), f"heard {heard}, the file has {segments}"
    for (start, end), segment in zip(heard, segments, strict=True):
        assert start == pytest.approx(segment.start + offset, abs=TOLERANCE), (heard, segments)
        assert end == pytest.approx(segment.end + offset, abs=TOLERANCE), (heard, segments)


def test_each_utterance_arrives_when_the_file_has_it_then_silence(chromium, page_url, tmp_path):
    made = make_speech_wav(
        tmp_path / "mic.wav",
        [
            ("silence", 1.0),
            ("speech", "Hello there, how are you today?"),
            ("silence", 1.2),
            ("speech", "The weather is lovely, let us walk along the river"),
            ("silence", 1.0),
        ],
        rate=48000,
    )
    listened = made.seconds + 1.5
    opened, levels = capture(chromium, page_url, made.path, CALL_AUDIO, listened)
    # Counted from getUserMedia, not from the browser's start a second earlier.
    assert_heard(sounds(opened, levels), made.segments)
    after_the_end = [level for at, level in levels if (at - opened) / 1000 > made.seconds + 0.2]
    assert after_the_end, "nothing measured after the file's end"
    assert max(after_the_end) < 1e-4  # %noloop: silence, not the file again


def test_without_noloop_the_file_plays_again_from_its_start(chromium, page_url, tmp_path):
    made = make_speech_wav(
        tmp_path / "loop.wav",
        [("silence", 0.8), ("speech", "Testing the microphone once more"), ("silence", 1.0)],
        rate=16000,  # another rate than the capture's 48 kHz
    )
    opened, levels = capture(
        chromium, page_url, made.path, NO_PROCESSING, 2 * made.seconds + 0.5, loop=True
    )
    heard = sounds(opened, levels)
    assert_heard(heard[:1], made.segments)
    assert_heard(heard[1:2], made.segments, offset=made.seconds)
