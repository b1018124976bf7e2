"""chat.media.prepare(..., quick=True): a call's camera recordings, converted while the person
waits for the answer. Real WebM made here as a browser's MediaRecorder makes it (live, no
duration in the header, VP8 or VP9 with Opus), converted for real."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from chat import media
from chat.media import Limits, MediaRefused, Prepared, prepare
from tests.media_files import make_audio, make_call_recording, make_video

LIMITS = Limits()
RATE = 15  # frames a second of the recordings here
ONE_FRAME = 1 / RATE
AAC_FRAME = 1024 / 48000  # seconds in one AAC frame at 48 kHz
TONE_SECONDS = 3.0


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """3 s at 640x480 and 15 frames a second: VP8 and VP9 with Opus, and VP8 alone."""
    folder = tmp_path_factory.mktemp("recordings")
    return {
        "vp8": make_call_recording(folder / "vp8.webm", TONE_SECONDS, "libvpx", rate=RATE),
        "vp9": make_call_recording(folder / "vp9.webm", TONE_SECONDS, "libvpx-vp9", rate=RATE),
        "silent": make_call_recording(
            folder / "silent.webm", TONE_SECONDS, "libvpx", rate=RATE, sound=False
        ),
    }


def quick(path: Path, workdir: Path, limits: Limits = LIMITS) -> Prepared:
    return prepare(path, workdir, path.name, limits=limits, quick=True)


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, position = [], 0
    while position + 8 <= len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        boxes.append(data[position + 4 : position + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[position + 8 : position + 16], "big")
        if size < 8:
            break
        position += size
    return boxes


def x264_options(path: Path) -> str:
    """The settings x264 writes into its first frame (an SEI message)."""
    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]*)", path.read_bytes())
    assert found, "no x264 settings in the file"
    return found.group(1).decode("ascii", "replace")


def decoded(path: Path, kind: str) -> tuple[int, float, Any]:
    """How many frames (video) or samples (audio) decode, and where the last one ends."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        count, end, first = 0, 0.0, None
        for frame in container.decode(stream):
            first = first or frame
            if kind == "video":
                count += 1
                end = max(end, frame.time + 1 / float(stream.average_rate))
            else:
                count += frame.samples
                end = max(end, frame.time + frame.samples / frame.sample_rate)
        return count, end, first


@pytest.mark.parametrize("source", ["vp8", "vp9"])
def test_a_call_recording_becomes_a_small_h264_aac_mp4_of_the_same_length(
    recordings, tmp_path, source
):
    path = recordings[source]
    result = quick(path, tmp_path / "quick")
    assert result.derived is not None and result.derived_content_type == "video/mp4"
    assert result.probe.codecs == {"video": source, "audio": "opus"}
    output = result.derived
    boxes = top_level_boxes(output)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat"), "not faststart: moov after the media"

    with av.open(str(output)) as converted:
        codecs = {s.type: s.codec_context.codec.canonical_name for s in converted.streams}
        assert codecs == {"video": "h264", "audio": "aac"}
        video = converted.streams.video[0].codec_context
        assert (video.width, video.height) == (480, 360)  # 4:3 kept, short side 360
        assert converted.streams.audio[0].codec_context.channels == 1  # mono, as recorded
        assert abs(converted.duration / av.time_base - result.probe.duration) <= ONE_FRAME

    frames, video_end, _ = decoded(output, "video")
    assert frames == round(TONE_SECONDS * RATE)
    assert abs(video_end - TONE_SECONDS) <= ONE_FRAME
    samples, audio_end, first = decoded(output, "audio")
    assert first.time == pytest.approx(0.0, abs=AAC_FRAME)  # starts with the picture
    assert abs(samples / 48000 - TONE_SECONDS) <= AAC_FRAME
    assert abs(audio_end - TONE_SECONDS) <= AAC_FRAME

    options = x264_options(output)
    assert "crf=28.0" in options and "cabac=0" in options  # ultrafast turns CABAC off
    assert "sliced_threads=0" in options  # frame threads, as the ffmpeg command line uses
    assert result.poster is not None
    with Image.open(result.poster) as poster:
        assert (poster.format, poster.size) == ("JPEG", (512, 384))

    normal = prepare(path, tmp_path / "normal", path.name, limits=LIMITS)
    assert normal.derived is not None
    assert "crf=23.0" in x264_options(normal.derived)
    assert output.stat().st_size < normal.derived.stat().st_size


def test_a_recording_without_sound_still_converts(recordings, tmp_path):
    result = quick(recordings["silent"], tmp_path)
    assert result.derived is not None and result.derived_content_type == "video/mp4"
    with av.open(str(result.derived)) as converted:
        assert [stream.type for stream in converted.streams] == ["video"]
        video = converted.streams.video[0].codec_context
        assert (video.codec.canonical_name, video.width, video.height) == ("h264", 480, 360)
        assert abs(converted.duration / av.time_base - result.probe.duration) <= ONE_FRAME
    frames, end, _ = decoded(result.derived, "video")
    assert frames == round(TONE_SECONDS * RATE) and abs(end - TONE_SECONDS) <= ONE_FRAME


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((320, 240), (320, 240)),  # smaller than the cap: never scaled up
        ((640, 360), (640, 360)),  # already at the cap: frames go to x264 as decoded
        ((480, 640), (360, 480)),  # a phone held upright
    ],
)
def test_a_recording_is_brought_down_to_360_on_its_short_side_and_never_up(
    tmp_path, size, expected
):
    path = make_call_recording(tmp_path / "camera.webm", 1.0, size=size, rate=RATE)
    result = quick(path, tmp_path / "work")
    assert result.derived is not None
    with av.open(str(result.derived)) as converted:
        video = converted.streams.video[0].codec_context
        assert (video.width, video.height) == expected
    frames, _, _ = decoded(result.derived, "video")
    assert frames == RATE


def test_audio_only_and_api_ready_recordings_are_prepared_as_without_quick(tmp_path):
    wav = make_audio(tmp_path / "voice.wav", "wav", "pcm_s16le")
    result = quick(wav, tmp_path / "wav")
    assert (result.derived, result.derived_content_type) == (None, "audio/wav")

    opus = make_audio(tmp_path / "voice.webm", "webm", "libopus")
    converted = quick(opus, tmp_path / "opus")
    assert converted.derived is not None and converted.derived_content_type == "audio/mpeg"
    assert (
        converted.derived.read_bytes()
        == prepare(opus, tmp_path / "opus-normal", "voice.webm", limits=LIMITS).derived.read_bytes()
    )

    # What Safari records (H.264 and AAC in MP4) is what the API takes: sent as it is.
    mp4 = make_video(tmp_path / "safari.mp4", "mp4", "libx264", "aac")
    assert quick(mp4, tmp_path / "mp4").derived is None


def test_a_recording_over_the_byte_limit_is_fitted_at_360_or_refused_naming_360(
    recordings, tmp_path
):
    path = recordings["vp8"]
    fits = quick(path, tmp_path / "fits", replace(LIMITS, max_video_bytes=path.stat().st_size // 2))
    assert fits.derived is not None
    assert fits.derived.stat().st_size <= path.stat().st_size // 2
    assert "rc=crf" not in x264_options(fits.derived)  # a bitrate, from the byte budget
    with av.open(str(fits.derived)) as converted:
        assert converted.streams.video[0].codec_context.height == 360

    with pytest.raises(MediaRefused, match="even re-encoded at 360p it does not fit"):
        quick(path, tmp_path / "refused", replace(LIMITS, max_video_bytes=2_000))


def test_the_scaler_hands_on_frames_that_need_no_work_and_converts_the_rest():
    scaler = media._Scaler(64, 48, Fraction(1, 1000))
    ready = av.VideoFrame(64, 48, "yuv420p")
    ready.pts, ready.time_base = 0, Fraction(1, 1000)
    assert scaler.frames(ready)[0] is ready  # not copied through a filter graph
    larger = av.VideoFrame(128, 96, "yuv420p")
    full_range = av.VideoFrame(64, 48, "yuvj420p")
    for index, frame in enumerate((larger, full_range), start=1):
        frame.pts, frame.time_base = index * 100, Fraction(1, 1000)
    out = scaler.frames(larger) + scaler.frames(full_range) + scaler.frames(None)
    assert [(f.width, f.height, f.format.name, f.pts) for f in out] == [
        (64, 48, "yuv420p", 100),
        (64, 48, "yuv420p", 200),
    ]
    assert all(frame is not larger and frame is not full_range for frame in out)
