"""Real media files for tests, made on the spot with PyAV and Pillow.

Everything here is small (tiny frames, a second or two) so a test can make what it needs in a few
tens of milliseconds. Nothing is checked in: the bytes come from the same encoders the app uses.
"""

from __future__ import annotations

import io
import math
import os
import random
import struct
import zlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.stream
from PIL import Image, ImageChops, ImageDraw

# PyAV container format names for the file kinds tests ask for by their everyday name.
MUXERS = {"m4a": "ipod", "aac": "adts", "mkv": "matroska", "mov": "mov", "mp4": "mp4"}

# The sample formats each encoder takes; the tone is resampled to the first one listed.
ENCODER_FORMATS = {
    "pcm_s16le": "s16",
    "libmp3lame": "fltp",
    "mp3": "fltp",
    "libopus": "s16",
    "opus": "s16",
    "vorbis": "fltp",
    "aac": "fltp",
    "flac": "s16",
}

HTML_PAYLOAD = b"<html><body><script>alert('hi')</script></body></html>\n"


def make_image(path: Path, fmt: str, size: tuple[int, int] = (64, 48)) -> Path:
    """A picture with a gradient and a shape (not one flat colour, so encoders have work to do)."""
    width, height = size
    # Two gradients and a constant, built by Pillow itself (fast even for large sizes).
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (across, down, Image.new("L", size, 128)))
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(250, 250, 20)
    )
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt == "GIF":
        image = image.convert("P")
    image.save(path, format=fmt)
    return path


def _tone(seconds: float, rate: int, channels: int) -> av.AudioFrame:
    """A 440 Hz sine as one interleaved s16 frame."""
    count = max(1, round(seconds * rate))
    samples = bytearray()
    for i in range(count):
        value = int(12000 * math.sin(2 * math.pi * 440 * i / rate))
        samples += struct.pack("<h", value) * channels
    frame = av.AudioFrame(format="s16", layout="mono" if channels == 1 else "stereo", samples=count)
    frame.planes[0].update(bytes(samples))
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    return frame


def _encode_audio(
    output: av.container.OutputContainer,
    stream: av.AudioStream,
    seconds: float,
    rate: int,
    channels: int,
) -> None:
    tone = _tone(seconds, rate, channels)
    resampler = av.AudioResampler(
        format=ENCODER_FORMATS.get(stream.codec_context.name, "fltp"),
        layout=stream.codec_context.layout,
        rate=stream.codec_context.sample_rate,
    )
    # The resampler re-chunks nothing; the encoder's own FIFO splits into its frame size.
    for frame in [*resampler.resample(tone), *resampler.resample(None)]:
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode(None):
        output.mux(packet)


def _add_audio_stream(
    output: av.container.OutputContainer, codec: str, rate: int, channels: int
) -> av.AudioStream:
    if codec in ("libopus", "opus"):
        codec, rate = "libopus", 48000  # Opus only runs at 48 kHz
    stream = output.add_stream(codec, rate=rate)
    stream.codec_context.layout = "mono" if channels == 1 else "stereo"
    if codec == "vorbis":
        # FFmpeg's own Vorbis encoder is marked experimental and wants two channels.
        stream.codec_context.options = {"strict": "experimental"}
        stream.codec_context.layout = "stereo"
    return stream


def make_audio(
    path: Path,
    container: str,
    codec: str,
    seconds: float = 1.0,
    rate: int = 44100,
    channels: int = 1,
    options: dict[str, str] | None = None,
) -> Path:
    """A sine tone in `container` ("wav", "mp3", "webm", "ogg", "m4a", "flac", "aac"...)."""
    with av.open(
        str(path), "w", format=MUXERS.get(container, container), options=options or {}
    ) as output:
        stream = _add_audio_stream(output, codec, rate, channels)
        _encode_audio(
            output, stream, seconds, stream.codec_context.sample_rate, stream.codec_context.channels
        )
    return path


def make_audio_with_cover(path: Path, seconds: float = 1.0) -> Path:
    """An MP3 carrying cover art: a picture stream marked as an attached picture, not video."""
    with av.open(str(path), "w", format="mp3") as output:
        audio = _add_audio_stream(output, "libmp3lame", 44100, 1)
        cover = output.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        frame = av.VideoFrame.from_image(Image.new("RGB", (64, 64), (200, 10, 10)))
        frame = frame.reformat(format="yuvj420p")
        frame.pts, frame.time_base = 0, Fraction(1, 1)
        picture = cover.encode(frame) + cover.encode(None)
        _encode_audio(output, audio, seconds, 44100, 1)
        output.mux(picture)
    return path


def _picture(index: int, width: int, height: int, noise: bool) -> av.VideoFrame:
    """A yuv420p frame: a box that moves with `index`, or pure noise (hard to compress)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for number, plane in enumerate(frame.planes):
        plane_width = width if number == 0 else (width + 1) // 2
        plane_height = height if number == 0 else (height + 1) // 2
        if noise:
            rows = [os.urandom(plane_width) for _ in range(plane_height)]
        else:
            base = (40 + 3 * index) % 256 if number == 0 else 128
            rows = []
            for y in range(plane_height):
                row = bytearray([base]) * plane_width
                box_x = (index * 3) % max(plane_width, 1)
                if number == 0 and abs(y - plane_height // 2) < plane_height // 4:
                    row[box_x : box_x + plane_width // 4] = b"\xeb" * len(
                        row[box_x : box_x + plane_width // 4]
                    )
                rows.append(bytes(row))
        # Planes may be padded: write row by row at the plane's line size.
        data = bytearray(plane.line_size * plane_height)
        for y, row in enumerate(rows):
            data[y * plane.line_size : y * plane.line_size + plane_width] = row
        plane.update(bytes(data))
    return frame


def _fill(
    output: av.container.OutputContainer,
    vcodec: str,
    acodec: str | None,
    seconds: float,
    size: tuple[int, int],
    rate: int,
    noise: bool,
    rotation: int = 0,
) -> None:
    """Add the streams (all before the first packet: the header lists them) and encode."""
    width, height = size
    video = output.add_stream(vcodec, rate=rate)
    video.width, video.height = width, height
    video.pix_fmt = "yuv420p"
    if rotation:
        video.set_display_rotation(rotation)  # a phone held upright: a display-matrix flag
    if vcodec == "libx264":
        video.codec_context.options = {"preset": "ultrafast"}
    elif vcodec == "libx265":
        video.codec_context.options = {"preset": "ultrafast", "x265-params": "log-level=none"}
    elif vcodec in ("libvpx", "libvpx-vp9"):
        video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
    audio = _add_audio_stream(output, acodec, 48000, 1) if acodec else None
    for index in range(max(1, round(seconds * rate))):
        frame = _picture(index, width, height, noise)
        frame.pts = index
        frame.time_base = Fraction(1, rate)
        for packet in video.encode(frame):
            output.mux(packet)
    for packet in video.encode(None):
        output.mux(packet)
    if audio is not None:
        _encode_audio(
            output, audio, seconds, audio.codec_context.sample_rate, audio.codec_context.channels
        )


def make_video(
    path: Path,
    container: str,
    vcodec: str,
    acodec: str | None = None,
    seconds: float = 1.0,
    size: tuple[int, int] = (64, 48),
    rate: int = 10,
    noise: bool = False,
    options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """A clip of `seconds` at `rate` frames/s, with a tone when `acodec` is given.

    `rotation` (degrees counter-clockwise) is stored as a display matrix, as phones do.
    """
    with av.open(
        str(path), "w", format=MUXERS.get(container, container), options=options or {}
    ) as output:
        _fill(output, vcodec, acodec, seconds, size, rate, noise, rotation)
    return path


class _Unseekable(io.RawIOBase):
    """A write-only file the muxer cannot seek in, like a browser's MediaRecorder stream."""

    def __init__(self, target: io.BufferedWriter) -> None:
        self.target = target

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:  # type: ignore[override]
        return self.target.write(data)


def make_mediarecorder_webm(path: Path, seconds: float = 1.0, video: bool = False) -> Path:
    """Opus (and VP8 when `video`) in WebM written as a live stream: no duration in the header.

    MediaRecorder writes its WebM while recording, so it never goes back to fill in the Segment
    duration or cues. The Matroska muxer does the same when the output is not seekable and
    `live` is set.
    """
    with open(path, "wb") as raw:
        with av.open(_Unseekable(raw), "w", format="webm", options={"live": "1"}) as output:
            if video:
                _fill(output, "libvpx", "libopus", seconds, (64, 48), 10, noise=False)
            else:
                audio = _add_audio_stream(output, "libopus", 48000, 1)
                _encode_audio(output, audio, seconds, 48000, 1)
    with av.open(str(path)) as check:
        assert check.duration is None, "the WebM header still carries a duration"
    return path


def _camera_scenes(width: int, height: int, rate: int, noise: float) -> Iterator[Image.Image]:
    """Frames like a webcam's: a still room (shelves, a wall in light and shade), a head that
    sways and a mouth that opens and shuts, and sensor noise that changes every frame."""
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    room = Image.merge("RGB", (across, down, Image.new("L", (width, height), 110)))
    shelves = ImageDraw.Draw(room)
    for book in range(12):
        left = book * width // 12
        colour = ((book * 53) % 256, (book * 91) % 256, (book * 37) % 256)
        shelves.rectangle((left, height // 10, left + width // 14, height // 3), fill=colour)
    # Sensor noise around 128, added with an offset of -128; a few fields cycled is enough.
    grains = [
        Image.merge("RGB", [Image.effect_noise((width, height), noise)] * 3) for _ in range(7)
    ]
    index = 0
    while True:
        seconds = index / rate
        frame = room.copy()
        draw = ImageDraw.Draw(frame)
        x = width / 2 + width / 12 * math.sin(2 * math.pi * 0.4 * seconds)
        y = height * 0.55 + height / 40 * math.sin(2 * math.pi * 0.7 * seconds)
        radius = height * 0.28
        draw.ellipse(
            (x - radius * 0.8, y - radius, x + radius * 0.8, y + radius), fill=(224, 172, 140)
        )
        mouth = radius * 0.12 * (1 + math.sin(2 * math.pi * 3 * seconds))
        draw.ellipse(
            (
                x - radius * 0.3,
                y + radius * 0.4 - mouth,
                x + radius * 0.3,
                y + radius * 0.4 + mouth,
            ),
            fill=(90, 30, 30),
        )
        yield ImageChops.add(frame, grains[index % len(grains)], 1.0, -128) if noise else frame
        index += 1


def make_call_recording(
    path: Path,
    seconds: float = 3.0,
    vcodec: str = "libvpx",
    size: tuple[int, int] = (640, 480),
    rate: int = 15,
    sound: bool = True,
    noise: float = 3.0,
) -> Path:
    """What a browser's MediaRecorder sends during a call with the camera on: VP8 (or
    `vcodec`, e.g. "libvpx-vp9") at a webcam's size and rate, real-time encoded at Chrome's
    default 2.5 Mbit/s, with Opus (a 440 Hz tone, mono, 48 kHz) interleaved as it is recorded,
    written as a live stream (no duration in the header). `sound=False`: a camera alone.
    """
    width, height = size
    with open(path, "wb") as raw:
        with av.open(_Unseekable(raw), "w", format="webm", options={"live": "1"}) as output:
            video = output.add_stream(vcodec, rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.bit_rate = 2_500_000
            video.codec_context.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
            }
            audio = _add_audio_stream(output, "libopus", 48000, 1) if sound else None
            pcm = bytes(_tone(seconds, 48000, 1).planes[0]) if sound else b""
            resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
            chunk = 960  # 20 ms, an Opus frame
            samples = round(seconds * 48000)
            sent = 0
            scenes = _camera_scenes(width, height, rate, noise)
            for index in range(max(1, round(seconds * rate))):
                frame = av.VideoFrame.from_image(next(scenes)).reformat(format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, rate)
                output.mux(video.encode(frame))
                # The sound recorded while this frame was shown, as a recorder interleaves it.
                until = min(samples, (index + 1) * 48000 // rate)
                while audio is not None and sent < until:
                    count = min(chunk, until - sent)
                    piece = av.AudioFrame(format="s16", layout="mono", samples=count)
                    piece.planes[0].update(pcm[2 * sent : 2 * (sent + count)])
                    piece.sample_rate, piece.pts = 48000, sent
                    piece.time_base = Fraction(1, 48000)
                    for resampled in resampler.resample(piece):
                        output.mux(audio.encode(resampled))
                    sent += count
            output.mux(video.encode(None))
            if audio is not None:
                output.mux(audio.encode(None))
    return path


def truncate(path: Path, fraction: float) -> Path:
    """Cut the file to its first `fraction` of bytes, as an interrupted upload would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_polyglot_png(path: Path) -> Path:
    """A valid PNG with an HTML document appended after its IEND chunk."""
    make_image(path, "PNG")
    with open(path, "ab") as file:
        file.write(HTML_PAYLOAD)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_pixel_bomb(path: Path, side: int = 30000) -> Path:
    """A valid 1-bit PNG of side × side pixels, all black: huge when decoded, ~100 KB on disk.

    The rows are compressed one at a time, so making it needs no more memory than one row.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "none" + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
    return path


def make_random(path: Path, size: int = 4096) -> Path:
    """Bytes of no media format: random, but the same in every run (seeded by the name and
    size). From os.urandom, a run now and then began with an MP3 frame's sync bits."""
    path.write_bytes(random.Random(f"{path.name}:{size}").randbytes(size))
    return path
