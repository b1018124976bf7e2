"""tests/speech_files.py: the fake-microphone files hold their speech where they say, read back
with PyAV (FFmpeg's WAV demuxer and decoder, not the module's own reader)."""

import array
import sys

import av
import pytest

from tests.speech_files import (
    espeak_available,
    fake_microphone_args,
    make_speech_wav,
    rms,
    utterance_of,
)

pytestmark = pytest.mark.skipif(
    not espeak_available(),
    reason="espeak-ng is not installed (Debian: apt-get install espeak-ng), so no speech to make",
)

HELLO = "Hello there, how are you today?"
WEATHER = "The weather is lovely, let us walk along the river"


def decoded(path) -> tuple[array.array, int, float]:
    """The file as FFmpeg sees it: mono s16 samples, rate, and the stream's duration."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        assert stream.codec_context.channels == 1
        duration = float(stream.duration * stream.time_base)
        samples = array.array("h")
        for frame in container.decode(stream):
            assert frame.format.name == "s16"
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples, rate, duration


def window(samples, rate, start: float, end: float):
    return samples[round(start * rate) : round(end * rate)]


@pytest.fixture(scope="module")
def two_utterances(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    segments = [
        ("silence", 1.0),
        ("speech", HELLO),
        ("silence", 2.0),
        ("speech", WEATHER, 220),
        ("silence", 1.5),
    ]
    return make_speech_wav(path, segments, rate=48000)


def test_the_file_lasts_its_silences_and_its_measured_speech(two_utterances):
    samples, rate, duration = decoded(two_utterances.path)
    hello, weather = two_utterances.segments
    assert rate == two_utterances.rate == 48000
    assert len(samples) == round(two_utterances.seconds * rate)
    assert duration == pytest.approx(two_utterances.seconds, abs=0.001)
    assert two_utterances.seconds == pytest.approx(
        1.0 + hello.seconds + 2.0 + weather.seconds + 1.5, abs=0.001
    )
    # Speech trimmed to its sound starts right after each silence.
    assert hello.start == pytest.approx(1.0, abs=0.001)
    assert weather.start == pytest.approx(hello.end + 2.0, abs=0.001)
    assert [s.text for s in two_utterances.segments] == [HELLO, WEATHER]


def test_silence_is_silent_and_speech_is_not(two_utterances):
    samples, rate, _ = decoded(two_utterances.path)
    hello, weather = two_utterances.segments
    silences = [(0, hello.start), (hello.end, weather.start), (weather.end, two_utterances.seconds)]
    for start, end in silences:
        assert rms(window(samples, rate, start, end)) == 0
    for segment in (hello, weather):
        assert rms(window(samples, rate, segment.start, segment.end)) > 0.03
        # The boundaries are the sound's own: loud just inside them.
        assert rms(window(samples, rate, segment.start, segment.start + 0.05)) > 0.001
        assert rms(window(samples, rate, segment.end - 0.05, segment.end)) > 0.001


def test_a_faster_speed_says_the_same_words_in_less_time(two_utterances, tmp_path):
    weather = two_utterances.segments[1]  # said at 220 words a minute
    slow = make_speech_wav(tmp_path / "slow.wav", [("speech", WEATHER, 120)]).segments[0]
    assert slow.seconds > weather.seconds * 1.4


@pytest.mark.parametrize("rate", [16000, 22050, 24000])
def test_other_rates_hold_the_same_speech(tmp_path, two_utterances, rate):
    segments = [("silence", 0.5), ("speech", HELLO), ("silence", 0.5)]
    made = make_speech_wav(tmp_path / f"{rate}.wav", segments, rate=rate)
    samples, read_rate, duration = decoded(made.path)
    assert read_rate == rate
    assert duration == pytest.approx(made.seconds, abs=0.001)
    (hello,) = made.segments
    assert hello.seconds == pytest.approx(two_utterances.segments[0].seconds, abs=0.02)
    assert rms(window(samples, rate, 0, hello.start)) == 0
    assert rms(window(samples, rate, hello.start, hello.end)) > 0.03


def test_an_utterance_of_five_seconds_lasts_five_seconds(tmp_path):
    texts = set()
    for index in range(3):
        text, speed = utterance_of(5.0, index)
        made = make_speech_wav(tmp_path / f"u{index}.wav", [("speech", text, speed)], rate=16000)
        (utterance,) = made.segments
        assert utterance.seconds == pytest.approx(5.0, abs=0.15)
        # A voice-activity detector that ends speech after 0.7 s of quiet keeps it whole.
        assert utterance.longest_pause < 0.5
        texts.add(text)
    assert len(texts) == 3


def test_an_unknown_segment_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown segment kind 'noise'"):
        make_speech_wav(tmp_path / "x.wav", [("noise", 1.0)])


def test_the_fake_microphone_plays_once_unless_asked_to_loop(tmp_path):
    path = tmp_path / "mic.wav"
    once = fake_microphone_args(path)
    assert f"--use-file-for-fake-audio-capture={path}%noloop" in once
    assert "--use-fake-device-for-media-stream" in once
    assert f"--use-file-for-fake-audio-capture={path}" in fake_microphone_args(path, loop=True)
