"""chat.media: probing, refusing and converting real files made on the spot (tests/media_files)."""

from __future__ import annotations

import base64
import hashlib
import math
import os
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from chat import media
from chat.media import (
    API_AUDIO_FORMATS,
    Limits,
    MediaRefused,
    Prepared,
    base64_chunks,
    prepare,
    probe,
)
from tests.media_files import (
    make_audio,
    make_audio_with_cover,
    make_image,
    make_mediarecorder_webm,
    make_pixel_bomb,
    make_polyglot_png,
    make_random,
    make_video,
    truncate,
)

LIMITS = Limits()  # the documented defaults; tests that need small limits use replace()
IMAGE_LIST = "JPEG, PNG, GIF or WEBP"
AUDIO_LIST = "WAV, MP3, M4A, AAC, FLAC, Ogg or WebM"
VIDEO_LIST = "MP4, MOV, WebM, MKV, AVI, FLV or WMV"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An existing folder holding someone else's file, which must survive every call."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "keep.txt").write_text("not ours")
    return folder


def prepared(path: Path, workdir: Path, name: str = "", limits: Limits = LIMITS) -> Prepared:
    return prepare(path, workdir, name or path.name, limits=limits)


def streams_of(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {
            stream.type: stream.codec_context.codec.canonical_name for stream in container.streams
        }


def skip_id3(data: bytes) -> bytes:
    if data.startswith(b"ID3"):
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        return data[10 + size :]
    return data


def assert_mp3(path: Path) -> None:
    frames = skip_id3(path.read_bytes())
    assert frames[0] == 0xFF and frames[1] & 0xE0 == 0xE0, "no MPEG audio frame sync"
    assert (frames[1] >> 1) & 3 == 1, "not layer III"


def assert_mp4(path: Path) -> None:
    assert path.read_bytes()[4:8] == b"ftyp"
    assert streams_of(path)["video"] == "h264"


# --- probing what is accepted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_each_accepted_image_format_probes_as_an_image(tmp_path, fmt, content_type):
    path = make_image(tmp_path / f"picture.{fmt.lower()}", fmt, size=(64, 48))
    found = probe(path, path.name, LIMITS)
    assert (found.kind, found.content_type, found.container) == ("image", content_type, fmt)
    assert (found.width, found.height, found.duration) == (64, 48, None)
    assert found.size == path.stat().st_size
    assert found.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("container", "codec", "content_type", "codec_name"),
    [
        ("wav", "pcm_s16le", "audio/wav", "pcm_s16le"),
        ("mp3", "libmp3lame", "audio/mpeg", "mp3"),
        ("webm", "libopus", "audio/webm", "opus"),
        ("ogg", "libopus", "audio/ogg", "opus"),
        ("ogg", "vorbis", "audio/ogg", "vorbis"),
        ("m4a", "aac", "audio/mp4", "aac"),
        ("flac", "flac", "audio/flac", "flac"),
        ("aac", "aac", "audio/aac", "aac"),
    ],
)
def test_each_accepted_audio_format_probes_with_codec_and_duration(
    tmp_path, container, codec, content_type, codec_name
):
    path = make_audio(tmp_path / f"tone.{container}", container, codec, seconds=1.0)
    found = probe(path, path.name, LIMITS)
    assert (found.kind, found.content_type, found.codecs) == (
        "audio",
        content_type,
        {"audio": codec_name},
    )
    assert found.duration == pytest.approx(1.0, abs=0.2)
    assert (found.width, found.height) == (None, None)


@pytest.mark.parametrize(
    ("container", "vcodec", "acodec", "content_type", "codecs"),
    [
        ("mp4", "libx264", "aac", "video/mp4", {"video": "h264", "audio": "aac"}),
        ("mp4", "libx265", "aac", "video/mp4", {"video": "hevc", "audio": "aac"}),
        ("webm", "libvpx", "libopus", "video/webm", {"video": "vp8", "audio": "opus"}),
        ("webm", "libvpx-vp9", "libopus", "video/webm", {"video": "vp9", "audio": "opus"}),
        ("mov", "libx264", "aac", "video/quicktime", {"video": "h264", "audio": "aac"}),
        ("mkv", "libx264", "libopus", "video/x-matroska", {"video": "h264", "audio": "opus"}),
        ("avi", "mpeg4", "libmp3lame", "video/x-msvideo", {"video": "mpeg4", "audio": "mp3"}),
    ],
)
def test_each_accepted_video_format_probes_with_codecs_size_and_duration(
    tmp_path, container, vcodec, acodec, content_type, codecs
):
    path = make_video(tmp_path / f"clip.{container}", container, vcodec, acodec, size=(64, 48))
    found = probe(path, path.name, LIMITS)
    assert (found.kind, found.content_type, found.codecs) == ("video", content_type, codecs)
    assert (found.width, found.height) == (64, 48)
    assert found.duration == pytest.approx(1.0, abs=0.2)


def test_a_webm_with_only_sound_is_audio_not_video(tmp_path):
    path = make_audio(tmp_path / "voice.webm", "webm", "libopus")
    found = probe(path, "voice.webm", LIMITS)
    assert (found.kind, found.content_type) == ("audio", "audio/webm")


@pytest.mark.parametrize("video", [False, True])
def test_a_mediarecorder_webm_without_header_duration_is_measured_by_demuxing(tmp_path, video):
    path = make_mediarecorder_webm(tmp_path / "recording.webm", seconds=1.5, video=video)
    with av.open(str(path)) as container:
        assert container.duration is None
    found = probe(path, "recording.webm", LIMITS)
    assert found.kind == ("video" if video else "audio")
    assert found.duration == pytest.approx(1.5, abs=0.2)


def test_an_mp3_with_cover_art_is_audio_and_sent_as_it_is(tmp_path, workdir):
    path = make_audio_with_cover(tmp_path / "song.mp3")
    with av.open(str(path)) as container:
        assert [stream.type for stream in container.streams] == ["audio", "video"]
    result = prepared(path, workdir)
    assert (result.probe.kind, result.probe.codecs) == ("audio", {"audio": "mp3"})
    assert result.derived is None and result.poster is None


def test_the_file_name_is_only_compared_so_unknown_or_missing_extensions_are_fine(tmp_path):
    path = make_image(tmp_path / "upload", "PNG")
    assert probe(path, "", LIMITS).content_type == "image/png"
    assert probe(path, "scan.bin", LIMITS).content_type == "image/png"
    voice = make_audio(tmp_path / "voice", "m4a", "aac")
    assert probe(voice, "voice-note.mp4", LIMITS).kind == "audio"  # video names may hold audio


def test_an_image_stored_on_its_side_reports_the_size_a_person_sees(tmp_path):
    path = make_image(tmp_path / "upright.jpg", "JPEG", size=(64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.open(path).save(path, exif=exif)
    found = probe(path, "upright.jpg", LIMITS)
    assert (found.width, found.height) == (48, 64)


# --- what prepare sends ----------------------------------------------------------------------


@pytest.mark.parametrize(("container", "codec"), [("wav", "pcm_s16le"), ("mp3", "libmp3lame")])
def test_wav_and_mp3_are_sent_as_they_are(tmp_path, workdir, container, codec):
    path = make_audio(tmp_path / f"tone.{container}", container, codec)
    result = prepared(path, workdir)
    assert result.derived is None and result.poster is None
    assert result.derived_content_type == result.probe.content_type
    assert result.derived_content_type in API_AUDIO_FORMATS
    assert sorted(os.listdir(workdir)) == ["keep.txt"]


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("webm", "libopus", 48000),
        ("ogg", "libopus", 48000),
        ("ogg", "vorbis", 44100),
        ("m4a", "aac", 44100),
        ("flac", "flac", 44100),
        ("aac", "aac", 44100),
    ],
)
def test_other_audio_is_converted_to_mp3_at_its_own_sample_rate(
    tmp_path, workdir, container, codec, rate
):
    path = make_audio(tmp_path / f"tone.{container}", container, codec, seconds=1.0, rate=44100)
    result = prepared(path, workdir)
    assert result.derived is not None and result.derived.parent == workdir
    assert result.derived_content_type == "audio/mpeg"
    assert API_AUDIO_FORMATS[result.derived_content_type] == "mp3"
    assert_mp3(result.derived)
    with av.open(str(result.derived)) as converted:
        stream = converted.streams.audio[0]
        assert stream.codec_context.codec.canonical_name == "mp3"
        assert stream.codec_context.sample_rate == rate
        assert converted.duration / 1e6 == pytest.approx(1.0, abs=0.2)


def test_a_wav_over_the_audio_byte_limit_is_converted_instead_of_refused(tmp_path, workdir):
    path = make_audio(tmp_path / "long.wav", "wav", "pcm_s16le", seconds=1.0)  # ~88 KB
    result = prepared(path, workdir, limits=replace(LIMITS, max_audio_bytes=40_000))
    assert result.derived is not None
    assert result.derived.stat().st_size <= 40_000
    assert result.derived_content_type == "audio/mpeg"


def test_the_mediarecorder_webm_becomes_an_mp3_of_the_same_length(tmp_path, workdir):
    path = make_mediarecorder_webm(tmp_path / "recording.webm", seconds=1.5)
    result = prepared(path, workdir)
    assert result.derived is not None
    assert_mp3(result.derived)
    with av.open(str(result.derived)) as converted:
        assert converted.duration / 1e6 == pytest.approx(1.5, abs=0.2)


@pytest.mark.parametrize(
    ("container", "vcodec", "acodec"),
    [
        ("mp4", "libx264", "aac"),
        ("mp4", "libx265", "aac"),
        ("mov", "libx264", "aac"),
        ("avi", "mpeg4", "libmp3lame"),
    ],
)
def test_videos_the_api_takes_are_sent_as_they_are_with_a_poster(
    tmp_path, workdir, container, vcodec, acodec
):
    path = make_video(tmp_path / f"clip.{container}", container, vcodec, acodec)
    result = prepared(path, workdir)
    assert result.derived is None
    assert result.derived_content_type == result.probe.content_type
    assert result.poster is not None and result.poster.parent == workdir
    with Image.open(result.poster) as poster:
        assert (poster.format, poster.size) == ("JPEG", (64, 48))


@pytest.mark.parametrize(
    ("container", "vcodec", "acodec"),
    [
        ("webm", "libvpx", "libopus"),
        ("webm", "libvpx-vp9", "libopus"),
        ("mkv", "libx264", "libopus"),  # a container the API takes, audio it may not
        ("ogg", "libvpx", "libopus"),
    ],
)
def test_other_videos_are_converted_to_h264_and_aac_in_mp4(
    tmp_path, workdir, container, vcodec, acodec
):
    path = make_video(tmp_path / f"clip.{container}", container, vcodec, acodec, seconds=1.0)
    result = prepared(path, workdir)
    assert result.derived is not None and result.derived_content_type == "video/mp4"
    assert_mp4(result.derived)
    assert streams_of(result.derived) == {"video": "h264", "audio": "aac"}
    with av.open(str(result.derived)) as converted:
        assert converted.duration / 1e6 == pytest.approx(1.0, abs=0.2)
        stream = converted.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert stream.codec_context.pix_fmt == "yuv420p"


def test_a_mediarecorder_video_with_sound_converts_to_mp4(tmp_path, workdir):
    path = make_mediarecorder_webm(tmp_path / "screen.webm", seconds=1.0, video=True)
    result = prepared(path, workdir)
    assert result.derived is not None
    assert streams_of(result.derived) == {"video": "h264", "audio": "aac"}


def test_odd_dimensions_become_even_for_h264(tmp_path, workdir):
    path = make_video(tmp_path / "odd.webm", "webm", "libvpx", size=(65, 49))
    result = prepared(path, workdir)
    assert result.derived is not None
    with av.open(str(result.derived)) as converted:
        context = converted.streams.video[0].codec_context
        assert context.width % 2 == 0 and context.height % 2 == 0
        assert abs(context.width - 65) <= 1 and abs(context.height - 49) <= 1


def test_a_video_over_the_byte_limit_is_downscaled_until_it_fits(tmp_path, workdir):
    path = make_video(tmp_path / "big.mp4", "mp4", "libx264", "aac", seconds=2, size=(1280, 720))
    limit = path.stat().st_size // 2
    result = prepared(path, workdir, limits=replace(LIMITS, max_video_bytes=limit))
    assert result.derived is not None and result.derived.stat().st_size <= limit
    assert_mp4(result.derived)
    with av.open(str(result.derived)) as converted:
        context = converted.streams.video[0].codec_context
        assert (context.width, context.height) == (854, 480)
        assert converted.duration / 1e6 == pytest.approx(2.0, abs=0.2)
    assert sorted(os.listdir(workdir)) == sorted(["keep.txt", "poster.jpg", result.derived.name])


def test_a_video_that_does_not_fit_even_at_480p_is_refused_and_cleaned_up(tmp_path, workdir):
    path = make_video(tmp_path / "big.mp4", "mp4", "libx264", "aac", seconds=2, size=(1280, 720))
    with pytest.raises(MediaRefused) as refused:
        prepared(path, workdir, limits=replace(LIMITS, max_video_bytes=5_000))
    assert "480p" in refused.value.message and "at most 4.9 KB" in refused.value.message
    assert os.listdir(workdir) == ["keep.txt"]


def test_a_rotated_phone_video_is_turned_upright_when_converted(tmp_path, workdir):
    # Left half white, stored landscape with a "turn 90° counter-clockwise" display matrix.
    path = tmp_path / "phone.mp4"
    picture = Image.new("RGB", (96, 64))
    picture.paste((255, 255, 255), (0, 0, 48, 64))
    with av.open(str(path), "w") as output:
        stream = output.add_stream("mjpeg", rate=10)  # a codec the API is not sent: converts
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p"
        stream.set_display_rotation(90)
        for index in range(10):
            frame = av.VideoFrame.from_image(picture).reformat(format="yuvj420p")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    result = prepared(path, workdir)
    assert (result.probe.width, result.probe.height) == (64, 96)
    assert result.derived is not None and result.poster is not None
    with av.open(str(result.derived)) as converted:
        frame = next(converted.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (64, 96, 0)
        upright = frame.to_image().convert("L")
    with Image.open(result.poster) as poster:
        poster_grey = poster.convert("L")
    for image in (upright, poster_grey):
        assert image.size == (64, 96)
        assert image.getpixel((32, 10)) < 40 and image.getpixel((32, 85)) > 215  # white below


def test_progress_rises_to_exactly_one_during_a_conversion(tmp_path, workdir, monkeypatch):
    monkeypatch.setattr(media, "PROGRESS_INTERVAL", 0.0)  # every report, not ~10 a second
    path = make_video(tmp_path / "clip.webm", "webm", "libvpx", "libopus", seconds=2)
    values: list[float] = []
    prepare(path, workdir, "clip.webm", limits=LIMITS, progress=values.append)
    assert len(values) > 5
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] == 1.0 and all(0.0 <= value <= 1.0 for value in values)


def test_progress_is_reported_at_most_about_ten_times_a_second(tmp_path, workdir):
    path = make_video(tmp_path / "clip.webm", "webm", "libvpx", "libopus", seconds=3)
    values: list[float] = []
    started = time.monotonic()
    prepare(path, workdir, "clip.webm", limits=LIMITS, progress=values.append)
    elapsed = time.monotonic() - started
    assert values[-1] == 1.0
    assert len(values) <= elapsed / media.PROGRESS_INTERVAL + 2  # plus the first and the last


def test_an_image_poster_is_a_jpeg_at_most_512_pixels_on_the_long_side(tmp_path, workdir):
    path = make_image(tmp_path / "wide.png", "PNG", size=(1200, 800))
    result = prepared(path, workdir)
    assert result.derived is None and result.derived_content_type == "image/png"
    assert result.poster is not None
    with Image.open(result.poster) as poster:
        assert (poster.format, poster.size) == ("JPEG", (512, 341))


def test_new_files_never_overwrite_what_is_already_in_workdir(tmp_path, workdir):
    (workdir / "converted.mp3").write_bytes(b"earlier")
    path = make_audio(tmp_path / "tone.flac", "flac", "flac")
    result = prepared(path, workdir)
    assert result.derived is not None and result.derived.name != "converted.mp3"
    assert (workdir / "converted.mp3").read_bytes() == b"earlier"


def test_a_missing_workdir_is_created_and_removed_again_on_refusal(tmp_path):
    workdir = tmp_path / "new" / "folder"
    with pytest.raises(MediaRefused):
        prepare(make_random(tmp_path / "noise.bin"), workdir, "noise.bin", limits=LIMITS)
    assert not workdir.exists()
    result = prepare(make_image(tmp_path / "a.png", "PNG"), workdir, "a.png", limits=LIMITS)
    assert result.poster is not None and result.poster.parent == workdir


# --- phone JPEGs with extra data after the picture -------------------------------------------


def test_a_jpeg_followed_by_a_gain_map_jpeg_is_sent_without_it(tmp_path, workdir):
    main = make_image(tmp_path / "main.jpg", "JPEG", size=(64, 48)).read_bytes()
    gain_map = make_image(tmp_path / "gain.jpg", "JPEG", size=(32, 24)).read_bytes()
    path = tmp_path / "PXL_ultra_hdr.jpg"
    path.write_bytes(main + gain_map)
    result = prepared(path, workdir)
    assert (result.probe.width, result.probe.height) == (64, 48)
    assert result.derived is not None and result.derived.read_bytes() == main
    assert result.derived_content_type == "image/jpeg"


def test_a_motion_photo_is_sent_as_its_still_picture(tmp_path, workdir):
    main = make_image(tmp_path / "main.jpg", "JPEG").read_bytes()
    clip = make_video(tmp_path / "clip.mp4", "mp4", "libx264").read_bytes()
    path = tmp_path / "PXL_motion.MP.jpg"
    path.write_bytes(main + clip)
    result = prepared(path, workdir)
    assert result.probe.kind == "image"
    assert result.derived is not None and result.derived.read_bytes() == main


# --- refusals --------------------------------------------------------------------------------


def _png_as_mp4(folder: Path) -> Path:
    return make_image(folder / "clip.mp4", "PNG")


def _mp4_as_png(folder: Path) -> Path:
    return make_video(folder / "photo.png", "mp4", "libx264")


def _mp4_as_mp3(folder: Path) -> Path:
    return make_video(folder / "song.mp3", "mp4", "libx264", "aac")


def _cut(maker, fraction: float):
    def make(folder: Path) -> Path:
        return truncate(maker(folder), fraction)

    return make


def _jpeg_with_html_comment(folder: Path) -> Path:
    path = make_image(folder / "comment.jpg", "JPEG")
    Image.open(path).save(path, comment=b"<script>alert(1)</script>")
    return path


def _jpeg_with_junk(folder: Path) -> Path:
    path = make_image(folder / "junk.jpg", "JPEG")
    with open(path, "ab") as file:
        file.write(os.urandom(200))
    return path


def _fake_heic(folder: Path) -> Path:
    path = folder / "IMG_0001.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    return path


def _playlist(folder: Path) -> Path:
    # FFmpeg would follow this to other files or URLs if it were ever allowed to probe it.
    path = folder / "list.m3u8"
    path.write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n")
    return path


REFUSALS = {
    "zero bytes": (lambda f: (f / "empty.png").write_bytes(b"") or f / "empty.png",
                   LIMITS, ["The file is empty", IMAGE_LIST, AUDIO_LIST, VIDEO_LIST]),
    "random bytes": (lambda f: make_random(f / "noise.mp4"), LIMITS,
                     ["not an image, audio or video file", IMAGE_LIST, VIDEO_LIST]),
    "png named .mp4": (_png_as_mp4, LIMITS,
                       ["“clip.mp4” is not a video: its bytes are a PNG image."]),
    "mp4 named .png": (_mp4_as_png, LIMITS,
                       ["“photo.png” is not an image: its bytes are an MP4 video."]),
    "video named .mp3": (_mp4_as_mp3, LIMITS,
                         ["“song.mp3” is not an audio file: its bytes are an MP4 video."]),
    "html after a png": (lambda f: make_polyglot_png(f / "cat.png"), LIMITS,
                         ["contains something besides an image", IMAGE_LIST]),
    "script in a jpeg comment": (_jpeg_with_html_comment, LIMITS,
                                 ["contains something besides an image", "<script"]),
    "junk after a jpeg": (_jpeg_with_junk, LIMITS,
                          ["contains something besides an image", "200 more bytes", IMAGE_LIST]),
    "pixel bomb": (lambda f: make_pixel_bomb(f / "bomb.png"), LIMITS,
                   ["30000 × 30000 pixels", "at most 50 megapixels"]),
    "image over the byte limit": (lambda f: make_image(f / "big.png", "PNG", (200, 200)),
                                  replace(LIMITS, max_image_bytes=1024),
                                  ["This image is", "images can be at most 1 KB"]),
    "tiny image": (lambda f: make_image(f / "dot.png", "PNG", (8, 8)), LIMITS,
                   ["8 × 8 pixels", "more than 10 pixels"]),
    "very thin image": (lambda f: make_image(f / "line.png", "PNG", (2400, 11)), LIMITS,
                        ["2400 × 11", "at most 200 times"]),
    "bmp": (lambda f: make_image(f / "old.bmp", "BMP"), LIMITS, ["a BMP image", IMAGE_LIST]),
    "heic": (_fake_heic, LIMITS, ["a HEIC image", IMAGE_LIST]),
    "hls playlist": (_playlist, LIMITS, ["a playlist", VIDEO_LIST]),
    "audio-only matroska": (lambda f: make_audio(f / "a.mka", "mkv", "libopus"), LIMITS,
                            ["Matroska (MKV) file with only audio", AUDIO_LIST]),
    "truncated png": (_cut(lambda f: make_image(f / "a.png", "PNG"), 0.6), LIMITS,
                      ["damaged or cut short", IMAGE_LIST]),
    "truncated jpeg": (_cut(lambda f: make_image(f / "a.jpg", "JPEG"), 0.6), LIMITS,
                       ["damaged or cut short", IMAGE_LIST]),
    "truncated gif": (_cut(lambda f: make_image(f / "a.gif", "GIF"), 0.6), LIMITS,
                      ["damaged or cut short", IMAGE_LIST]),
    "truncated webp": (_cut(lambda f: make_image(f / "a.webp", "WEBP"), 0.6), LIMITS,
                       ["damaged or cut short", IMAGE_LIST]),
    "mp4 cut in half": (_cut(lambda f: make_video(f / "a.mp4", "mp4", "libx264", "aac"), 0.5),
                        LIMITS, ["damaged or cut short", "MP4"]),
    "m4a cut in half": (_cut(lambda f: make_audio(f / "a.m4a", "m4a", "aac"), 0.5), LIMITS,
                        ["damaged or cut short"]),
    "ogg cut in half": (_cut(lambda f: make_audio(f / "a.ogg", "ogg", "libopus"), 0.5), LIMITS,
                        ["damaged or cut short", "Ogg"]),
    "flac cut in half": (_cut(lambda f: make_audio(f / "a.flac", "flac", "flac"), 0.5), LIMITS,
                         ["damaged or cut short", "should last 1 s, but only"]),
    "webm cut in half": (
        _cut(lambda f: make_video(f / "a.webm", "webm", "libvpx", "libopus"), 0.5), LIMITS,
        ["damaged or cut short", "should last 1 s, but only 0.5 s"]),
    "mkv cut before its first picture": (
        _cut(lambda f: make_video(f / "a.mkv", "mkv", "libx264", "libopus"), 0.1), LIMITS,
        ["damaged or cut short", "no picture could be decoded"]),
    "recording cut inside its header": (
        _cut(lambda f: make_mediarecorder_webm(f / "rec.webm"), 0.02), LIMITS,
        ["damaged or cut short"]),
    "video too long": (lambda f: make_video(f / "long.mp4", "mp4", "libx264", seconds=2.0),
                       replace(LIMITS, max_video_seconds=1.5),
                       ["This video is 2 s long; videos can be at most 1.5 s."]),
    "audio too long": (lambda f: make_audio(f / "long.wav", "wav", "pcm_s16le", seconds=2.0),
                       replace(LIMITS, max_audio_seconds=1.0),
                       ["This recording is 2 s long; recordings can be at most 1 s."]),
    "converted audio still too big": (lambda f: make_audio(f / "a.flac", "flac", "flac"),
                                      replace(LIMITS, max_audio_bytes=2000),
                                      ["converted to MP3", "audio can be at most"]),
    "upload too big": (lambda f: make_image(f / "a.png", "PNG"),
                       replace(LIMITS, max_upload_bytes=100),
                       ["This file is", "uploads can be at most 100 bytes"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_input_is_refused_with_the_problem_and_what_is_allowed(tmp_path, workdir, case):
    make, limits, expected = REFUSALS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    path = make(folder)
    with pytest.raises(MediaRefused) as refused:
        prepare(path, workdir, path.name, limits=limits)
    for fragment in expected:
        assert fragment in refused.value.message
    assert str(refused.value) == refused.value.message
    assert os.listdir(workdir) == ["keep.txt"], "a refusal left files behind"


def test_a_cut_recording_without_a_header_duration_is_accepted_for_what_remains(tmp_path):
    # MediaRecorder files are cut by nature (the tab closed): what decodes is what was said.
    path = truncate(make_mediarecorder_webm(tmp_path / "rec.webm", seconds=2.0), 0.5)
    found = probe(path, "rec.webm", LIMITS)
    assert found.kind == "audio" and 0.5 < found.duration < 1.5


def test_probe_refuses_like_prepare_without_writing_anything(tmp_path):
    path = make_polyglot_png(tmp_path / "cat.png")
    with pytest.raises(MediaRefused, match="something besides an image"):
        probe(path, "cat.png", LIMITS)
    assert sorted(os.listdir(tmp_path)) == ["cat.png"]


# --- base64 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 3 * 1024 * 1024 + 1])
def test_base64_chunks_join_to_exactly_the_base64_of_the_file(tmp_path, size):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(size))
    chunk = 3 * 256 * 1024
    pieces = list(base64_chunks(path, chunk))
    assert b"".join(pieces) == base64.b64encode(path.read_bytes())
    # Read a chunk at a time: one piece per chunk, none bigger than one chunk's encoding.
    assert len(pieces) == math.ceil(size / chunk)
    assert all(len(piece) <= chunk // 3 * 4 for piece in pieces)


def test_base64_chunks_read_the_file_one_chunk_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3000))
    reads: list[int] = []

    class Tracked:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def read(self, size=-1):
            reads.append(size)
            return self.file.read(size)

    monkeypatch.setattr(media, "open", lambda *a, **k: Tracked(open(*a, **k)), raising=False)
    pieces = base64_chunks(path, chunk=300)
    assert next(pieces) == base64.b64encode(path.read_bytes()[:300])
    assert reads == [300]  # nothing read ahead
    assert len(list(pieces)) == 9
    assert reads and all(0 < size <= 300 for size in reads)


def test_base64_chunks_need_a_multiple_of_three(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abcd")
    with pytest.raises(ValueError):
        list(base64_chunks(path, chunk=4))


# --- settings --------------------------------------------------------------------------------


def test_limits_come_from_the_django_settings(settings):
    settings.PLAYGROUND_MAX_VIDEO_SECONDS = 42
    limits = Limits.from_settings()
    assert limits.max_video_seconds == 42
    assert limits.max_image_bytes == settings.PLAYGROUND_MAX_IMAGE_BYTES
    assert API_AUDIO_FORMATS == {"audio/wav": "wav", "audio/mpeg": "mp3"}


def test_the_scaler_keeps_its_output_size_when_the_input_size_changes_midway():
    scaler = media._Scaler(64, 48, Fraction(1, 1000))
    frames = []
    for index, (width, height) in enumerate([(64, 48), (64, 48), (32, 24), (128, 96)]):
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.pts, frame.time_base = index * 100, Fraction(1, 1000)
        frames += scaler.frames(frame)
    frames += scaler.frames(None)
    assert [(frame.width, frame.height) for frame in frames] == [(64, 48)] * 4
    assert [frame.pts for frame in frames] == [0, 100, 200, 300]
