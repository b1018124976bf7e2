"""Fake-microphone recordings for tests and benchmarks: espeak-ng speech between silences.

    from tests.speech_files import make_speech_wav, utterance_of
    made = make_speech_wav(path, [("silence", 1.0), ("speech", "Hello there"), ("silence", 2.0)])
    made.segments[0].start, made.segments[0].end   # seconds into the file, measured

Speech comes from espeak-ng (Debian's `espeak-ng` package; `espeak_available()` says whether it
is there), is resampled with PyAV to the file's rate and trimmed to its first and last audible
sample, so a segment's start and end are where the sound is, not where its text was put.
Silence is digital zero. Files are 16-bit mono PCM WAV, the one format Chromium's fake audio
capture reads. Plain functions, no pytest: `bench/` scripts import them too.

Chromium's fake microphone with such a file, as measured on Debian's Chromium 156 (headless, through
Playwright, with tests/browser/conftest.py's flags; tests/browser/test_fake_microphone_browser.py
checks the first three points):

    --use-fake-ui-for-media-stream --use-fake-device-for-media-stream
    --use-file-for-fake-audio-capture=/path/file.wav%noloop     (fake_microphone_args())

- The file starts when getUserMedia opens the capture, not when the browser starts or the page
  loads: its sample at t seconds reaches the track at (getUserMedia resolved) + t, within 5-25 ms
  (FAKE_MIC_DELAY), however long the page waited before asking. It plays whether or not anything
  reads the track: audio before an AudioContext (or a VAD) is connected is lost, so give a file
  a lead silence longer than the page takes from getUserMedia to listening.
- Each new capture starts the file from its beginning: a getUserMedia after the tracks were
  stopped, one from another page, and one in the same page whose audio constraints differ from
  the open track's (e.g. echoCancellation off). A second getUserMedia in the same page with the
  same audio constraints (also {audio, video} for the camera) shares the open capture and its
  timeline; a video-only one leaves the audio alone.
- Without a suffix the file loops with no gap (period = the file's length). With `%noloop` it
  plays once, then the track delivers digital silence for as long as it is open (no `ended`).
- Rates from 8 to 96 kHz (8, 16, 22.05, 24, 44.1, 48, 96 kHz tried) play at the right speed:
  segment boundaries within 25 ms at every rate. The track reports sampleRate 48000; a
  headless AudioContext runs at 44.1 kHz here.
- Processing off ({echoCancellation, noiseSuppression, autoGainControl: false}): the captured
  waveform is the file's (correlation 1.000, same level). All on, as a call asks: the speech is
  changed but not destroyed: correlation with the file 0.65-0.85 per second, level x1.0-1.6
  (automatic gain, largest in the first seconds), boundaries 5-25 ms later, silence ~2e-6 RMS
  instead of 0. Silero VAD v5 (@ricky0123/vad-web 0.0.31, redemptionMs 700) finds every ~5 s
  espeak utterance either way: speech start 55-105 ms after the sound starts, speech end
  0.71-0.83 s after it stops (about 60-90 ms later with processing on), one utterance each.
- getUserMedia needs a secure context: a page served from http://127.0.0.1 is one.
"""

from __future__ import annotations

import array
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

ESPEAK = shutil.which("espeak-ng")
VOICE = "en-us"
SPEED = 175  # espeak-ng's default words per minute
SPEEDS = (80, 450)  # what espeak-ng accepts
# A sample at or below this (about -50 dBFS) counts as silent when trimming speech.
AUDIBLE = 100
# getUserMedia resolved -> the file's first sample in the track, as measured (module docstring).
FAKE_MIC_DELAY = (0.005, 0.025)

# Words for utterances: plain, and with commas only, because a full stop makes espeak pause
# for about 0.3 s and a voice-activity detector may end an utterance at a long pause.
PASSAGE = (
    "the morning was bright and cool, so we walked along the river to the old market, "
    "where the bakers were setting out warm bread, the fishermen were mending their nets, "
    "and a man with a small brown dog was selling apples from a wooden cart, we bought "
    "a bag of them, sat on a bench by the water, watched the boats go slowly past the "
    "bridge, talked about the long summer ahead, the garden we wanted to plant, the friends "
    "we had not seen for years, and the trip to the mountains we kept putting off, then the "
    "bells of the church rang twelve, the clouds came in from the west, and we hurried home "
    "before the rain, laughing at how wet our shoes had become on the way"
).split()
WORDS_PER_SECOND = 3.4  # espeak-ng at its default speed, roughly, for a first guess


@dataclass(frozen=True)
class Segment:
    """One utterance in a file: where its sound starts and ends, in seconds from the start."""

    text: str
    start: float
    end: float
    longest_pause: float  # the longest run of silence inside it, in seconds

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SpeechFile:
    path: Path
    rate: int
    seconds: float
    segments: list[Segment]


def espeak_available() -> bool:
    return ESPEAK is not None


def fake_microphone_args(path: Path, *, loop: bool = False) -> list[str]:
    """Chromium flags for a microphone that plays `path` (once, then silence, unless `loop`),
    allowed without a prompt; the camera is Chromium's test pattern."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={path}{'' if loop else '%noloop'}",
    ]


def synthesize(text: str, *, speed: int = SPEED, voice: str = VOICE) -> tuple[array.array, int]:
    """espeak-ng's speech for `text`: mono s16 samples and their rate (22050 Hz for its voices)."""
    if ESPEAK is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "speech.wav"
        # -w writes a proper header; --stdout leaves the sizes at their streaming maximum.
        subprocess.run(
            [ESPEAK, "-v", voice, "-s", str(speed), "-w", str(out), "--", text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return read_wav(out)


def read_wav(path: Path) -> tuple[array.array, int]:
    """The samples of a 16-bit PCM WAV (channels mixed down to mono) and its rate."""
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * source.getsampwidth()}-bit samples, expected 16")
        rate, channels = source.getframerate(), source.getnchannels()
        samples = _samples(source.readframes(source.getnframes()))
    if channels > 1:
        samples = array.array(
            "h",
            (
                round(sum(samples[i : i + channels]) / channels)
                for i in range(0, len(samples), channels)
            ),
        )
    return samples, rate


def write_wav(path: Path, samples: array.array, rate: int) -> Path:
    """Mono 16-bit PCM WAV."""
    data = samples if sys.byteorder == "little" else _swapped(samples)
    with wave.open(str(path), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(rate)
        output.writeframes(data.tobytes())
    return path


def resample(samples: array.array, rate: int, to_rate: int) -> array.array:
    """Mono s16 samples at `rate` resampled to `to_rate` with PyAV (FFmpeg's swresample)."""
    if rate == to_rate or not samples:
        return array.array("h", samples)
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
    frame.planes[0].update((samples if sys.byteorder == "little" else _swapped(samples)).tobytes())
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out = array.array("h")
    for piece in [*resampler.resample(frame), *resampler.resample(None)]:
        # A plane may be padded past its samples: take exactly samples * 2 bytes.
        out.extend(_samples(bytes(piece.planes[0])[: piece.samples * 2]))
    return out


def audible_span(samples: Sequence[int], threshold: int = AUDIBLE) -> tuple[int, int] | None:
    """Index of the first audible sample and one past the last, or None for silence."""
    first = next((i for i, s in enumerate(samples) if abs(s) > threshold), None)
    if first is None:
        return None
    last = next(i for i in range(len(samples) - 1, -1, -1) if abs(samples[i]) > threshold)
    return first, last + 1


def longest_silence(samples: Sequence[int], rate: int, threshold: int = AUDIBLE) -> float:
    """The longest run of samples at or below `threshold`, in seconds."""
    longest = run = 0
    for sample in samples:
        run = run + 1 if abs(sample) <= threshold else 0
        longest = max(longest, run)
    return longest / rate


def speech_samples(text: str, rate: int, *, speed: int = SPEED, voice: str = VOICE) -> array.array:
    """espeak-ng's speech for `text` at `rate`, trimmed to its audible part."""
    samples, native = synthesize(text, speed=speed, voice=voice)
    samples = resample(samples, native, rate)
    span = audible_span(samples)
    if span is None:
        raise ValueError(f"espeak-ng made no sound for {text!r}")
    return samples[span[0] : span[1]]


def make_speech_wav(
    path: Path,
    segments: Iterable[tuple],
    rate: int = 48000,
    *,
    voice: str = VOICE,
) -> SpeechFile:
    """A WAV of `segments` in order: ("silence", seconds) or ("speech", text[, speed wpm]).

    Returns the file with each speech segment's measured start and end (seconds from the
    file's start: where its first and last audible samples are).
    """
    samples = array.array("h")
    made = []
    for segment in segments:
        kind = segment[0]
        if kind == "silence":
            samples.extend(array.array("h", bytes(2 * round(segment[1] * rate))))
        elif kind == "speech":
            text = segment[1]
            speed = segment[2] if len(segment) > 2 else SPEED
            speech = speech_samples(text, rate, speed=speed, voice=voice)
            start = len(samples)
            samples.extend(speech)
            made.append(
                Segment(text, start / rate, len(samples) / rate, longest_silence(speech, rate))
            )
        else:
            raise ValueError(f"unknown segment kind {kind!r}: use 'silence' or 'speech'")
    write_wav(Path(path), samples, rate)
    return SpeechFile(Path(path), rate, len(samples) / rate, made)


def utterance_of(
    seconds: float, index: int = 0, *, tolerance: float = 0.15, voice: str = VOICE
) -> tuple[str, int]:
    """Text and espeak-ng speed (wpm) whose speech lasts `seconds` (within `tolerance`, as
    measured from its audible part). `index` picks a different stretch of words, so a run of
    utterances do not all say the same thing."""
    count = max(1, round(seconds * WORDS_PER_SECOND))
    start = (index * 7) % len(PASSAGE)
    words = [PASSAGE[(start + n) % len(PASSAGE)] for n in range(count)]
    text = " ".join(words).strip(", ").rstrip(",")
    text = text[0].upper() + text[1:]
    speed = SPEED
    rate = 16000  # enough to measure the length; the caller resamples from espeak's own
    for _ in range(6):
        length = len(speech_samples(text, rate, speed=speed, voice=voice)) / rate
        if abs(length - seconds) <= tolerance:
            return text, speed
        # Speech time goes roughly as 1/speed; pauses do not scale, so step and measure again.
        wanted = round(speed * length / seconds)
        if wanted == speed:
            wanted += 1 if length > seconds else -1
        speed = min(max(wanted, SPEEDS[0]), SPEEDS[1])
    raise ValueError(
        f"could not make {seconds:g} s of speech (last try {length:.2f} s at {speed} wpm)"
    )


def rms(samples: Sequence[int]) -> float:
    """Root mean square of s16 samples, as a fraction of full scale (0 for an empty slice)."""
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768


def _samples(raw: bytes) -> array.array:
    samples = array.array("h", raw)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _swapped(samples: array.array) -> array.array:
    swapped = array.array("h", samples)
    swapped.byteswap()
    return swapped
