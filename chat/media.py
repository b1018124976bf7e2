"""Probe, validate and convert the files people attach, before anything is sent to the API.

Plain functions, no Django models: the upload code runs `prepare()` in a worker thread once the
last chunk has arrived and stores what it returns. Everything is decided from the bytes. The
person's file name is only compared with them, and the browser's content type is never read.

What the API takes (see /work/shared/api/NOTES.md, "Input parts" and "Limits"):
- images: JPEG, PNG, GIF or WEBP, sides over 10 px, aspect ratio at most 200:1;
- audio: `input_audio.format` is only "wav" or "mp3", so everything else is converted to MP3;
- video: MP4, AVI, MKV, MOV, FLV or WMV; anything else, or a codec other than H.264, HEVC or
  MPEG-4 part 2, is converted to MP4 (H.264 + AAC). A video over the byte limit is re-encoded
  smaller instead of refused, as long as its duration is within the limit.

Where "damaged or cut short" is drawn (a file is refused when any of these holds):
- its container cannot be parsed (an MP4 cut before its `moov` box, an Ogg file whose last page
  is missing, an image whose structure ends before its end marker);
- the first frame of its audio or its picture stream cannot be decoded;
- demuxing stops with an error before the duration its header declares, or ends cleanly but
  more than max(0.25 s, 3 %) short of it. Files without a declared duration (MediaRecorder WebM)
  and raw MP3/AAC streams (whose "declared" duration is only a bitrate estimate) are measured
  instead: if they were cut, what is left still plays, and it is what gets sent.

Polyglots: an image must end where its format says it ends (PNG IEND, JPEG EOI after the entropy
data, GIF trailer, the RIFF size of WEBP) with at most TRAILING_TOLERANCE bytes after it, and
its first and last KiB must not contain markup (`<html`, `<script`, `<?php`, `<svg`...). The one
exception is what phones append to JPEGs (more JPEGs: Ultra HDR gain maps, MPF; a motion photo's
MP4): that is cut off and the picture alone is sent as `derived`.
Audio and video are only ever opened with the demuxer their magic bytes name, so FFmpeg never
probes a file into a playlist or image-sequence demuxer that could open other files or URLs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import av.filter
import av.stream
from django.conf import settings
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from PIL import (
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
)

from .attachments import human_bytes, number_text

MB = 1024 * 1024

# content type -> `input_audio.format`: the only two audio formats the API's schema allows.
API_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}

# What a person reads is lazy, so it is said in the language active when a file is refused.
IMAGE_TYPES_TEXT = gettext_lazy("JPEG, PNG, GIF or WEBP")
AUDIO_TYPES_TEXT = gettext_lazy("WAV, MP3, M4A, AAC, FLAC, Ogg or WebM")
VIDEO_TYPES_TEXT = gettext_lazy("MP4, MOV, WebM, MKV, AVI, FLV or WMV")


def _accepted() -> str:
    """What can be attached, in the active language."""
    return _("images (%(images)s), audio (%(audio)s) or video (%(video)s)") % {
        "images": IMAGE_TYPES_TEXT,
        "audio": AUDIO_TYPES_TEXT,
        "video": VIDEO_TYPES_TEXT,
    }


# Bytes allowed after an image's end marker: a few encoders pad with a newline or zeros.
TRAILING_TOLERANCE = 16
# Markup that turns an image into something a browser might run, looked for at both ends.
MARKUP = (b"<html", b"<script", b"<?php", b"<svg", b"<!doctype", b"<body", b"<iframe")
MARKUP_WINDOW = 1024

POSTER_SIDE = 512
POSTER_QUALITY = 85
# The API's image rules (NOTES.md): sides over 10 px, aspect ratio at most 200:1.
MIN_IMAGE_SIDE = 11
MAX_ASPECT = 200
EXIF_ORIENTATION = 0x0112

MP3_BITRATE = {1: 64_000, 2: 128_000}  # per layout: the same quality per channel
AAC_BITRATE = {1: 64_000, 2: 128_000}
# Conversions are capped at 720p: the model samples a few frames a second at about that size.
CONVERT_SHORT_SIDE = 720
# Re-encoding to fit the byte limit: at most 720p, then 480p ("p" = the shorter side).
BUDGET_RUNGS = (720, 480)
BUDGET_SHARE = 0.9  # of the byte limit; the rest is margin for rate control and the container
# Below this many bits per pixel per frame H.264 turns to mush; start at a lower rung instead.
MIN_BITS_PER_PIXEL = 0.05
PROGRESS_INTERVAL = 0.1  # seconds between progress reports
# Call recordings (`prepare(..., quick=True)`) are converted while the person waits for the
# answer: x264's fastest preset at a lower quality, at most 360p (the model samples a few frames
# a second of a face in front of a camera), speech-sized AAC. Measured with bench/call_video.py
# on 640x480 webcam-like VP8: superfast takes 1.17x the time for a 1.09x larger file (veryfast:
# 1.19x the time, 0.58x the bytes); tune=zerolatency changes nothing measurable (with frame
# threads it only drops lookahead ultrafast has none of); a bicubic resize takes 1.04x the time
# for 1.10x the bytes, and AAC's default quantiser search (twoloop) 1.11x the time.
QUICK_SHORT_SIDE = 360
QUICK_PRESET = "ultrafast"
QUICK_TUNE = ""
QUICK_CRF = 28
QUICK_SCALE_FLAGS = "bilinear"
QUICK_AAC_CODER = "fast"
QUICK_AAC_BITRATE = 96_000  # for stereo; a mono recording gets half

# The video codecs and the audio codecs beside them that the API is known to decode in the
# containers it lists; anything else is re-encoded.
API_VIDEO_CODECS = {"h264", "hevc", "mpeg4"}
API_VIDEO_AUDIO_CODECS = {"aac", "mp3"}
API_VIDEO_TYPES = {
    "video/mp4",
    "video/quicktime",
    "video/x-matroska",
    "video/x-msvideo",
    "video/x-flv",
    "video/x-ms-wmv",
}

# The allow-list: (demuxer family, kind) -> content type. Everything else is refused.
# "video/ogg" is listed (though the API does not take it) because it converts to MP4 cleanly.
CONTENT_TYPES: dict[tuple[str, str], str] = {
    ("mp4", "video"): "video/mp4",
    ("mp4", "audio"): "audio/mp4",
    ("quicktime", "video"): "video/quicktime",
    ("quicktime", "audio"): "audio/mp4",
    ("webm", "video"): "video/webm",
    ("webm", "audio"): "audio/webm",
    ("matroska", "video"): "video/x-matroska",
    ("ogg", "audio"): "audio/ogg",
    ("ogg", "video"): "video/ogg",
    ("wav", "audio"): "audio/wav",
    ("mp3", "audio"): "audio/mpeg",
    ("flac", "audio"): "audio/flac",
    ("aac", "audio"): "audio/aac",
    ("avi", "video"): "video/x-msvideo",
    ("flv", "video"): "video/x-flv",
    ("asf", "video"): "video/x-ms-wmv",
}

# How each family is opened: the FFmpeg demuxer named explicitly, never probed.
DEMUXERS = {
    "mp4": "mov",
    "quicktime": "mov",
    "webm": "matroska",
    "matroska": "matroska",
    "ogg": "ogg",
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "aac": "aac",
    "avi": "avi",
    "flv": "flv",
    "asf": "asf",
}

# Raw streams whose header duration is FFmpeg's estimate from the bitrate, not a declaration.
ESTIMATED_DURATION = {"mp3", "aac"}

LABELS = {
    "image/jpeg": gettext_lazy("a JPEG image"),
    "image/png": gettext_lazy("a PNG image"),
    "image/gif": gettext_lazy("a GIF image"),
    "image/webp": gettext_lazy("a WEBP image"),
    "video/mp4": gettext_lazy("an MP4 video"),
    "audio/mp4": gettext_lazy("M4A audio"),
    "video/quicktime": gettext_lazy("a QuickTime (MOV) video"),
    "video/webm": gettext_lazy("a WebM video"),
    "audio/webm": gettext_lazy("WebM audio"),
    "video/x-matroska": gettext_lazy("a Matroska (MKV) video"),
    "audio/ogg": gettext_lazy("Ogg audio"),
    "video/ogg": gettext_lazy("an Ogg video"),
    "audio/wav": gettext_lazy("WAV audio"),
    "audio/mpeg": gettext_lazy("MP3 audio"),
    "audio/flac": gettext_lazy("FLAC audio"),
    "audio/aac": gettext_lazy("AAC audio"),
    "video/x-msvideo": gettext_lazy("an AVI video"),
    "video/x-flv": gettext_lazy("a Flash (FLV) video"),
    "video/x-ms-wmv": gettext_lazy("a Windows Media video"),
}
FAMILY_LABELS = {
    "mp4": gettext_lazy("an MP4 file"),
    "quicktime": gettext_lazy("a QuickTime (MOV) file"),
    "webm": gettext_lazy("a WebM file"),
    "matroska": gettext_lazy("a Matroska (MKV) file"),
    "ogg": gettext_lazy("an Ogg file"),
    "wav": gettext_lazy("a WAV file"),
    "mp3": gettext_lazy("an MP3 file"),
    "flac": gettext_lazy("a FLAC file"),
    "aac": gettext_lazy("an AAC file"),
    "avi": gettext_lazy("an AVI file"),
    "flv": gettext_lazy("a Flash (FLV) file"),
    "asf": gettext_lazy("a Windows Media file"),
}

# What a file name's extension promises. Audio-only files are fine under a video extension (a
# MediaRecorder voice note is saved as .webm), but not the other way round; unknown -> no check.
IMAGE_EXTENSIONS = {
    "jpg", "jpeg", "jpe", "jfif", "png", "apng", "gif", "webp", "bmp", "tif", "tiff", "heic",
    "heif", "avif", "ico", "svg",
}  # fmt: skip
AUDIO_EXTENSIONS = {
    "wav", "wave", "mp3", "m4a", "aac", "flac", "oga", "opus", "weba", "wma", "amr", "aif",
    "aiff", "mka", "caf",
}  # fmt: skip
VIDEO_EXTENSIONS = {
    "mp4", "m4v", "mov", "qt", "webm", "mkv", "avi", "flv", "wmv", "ogv", "ogg", "3gp", "3g2",
    "mpg", "mpeg", "ts", "mts", "m2ts", "asf",
}  # fmt: skip

# Pillow's classes for the four accepted formats, used to read only the header (no bomb check
# there: our own limit is checked first, with a message that names the dimensions).
PILLOW_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
}

HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# Magic numbers of things people attach by mistake, so the refusal can say what the file is.
OTHER_MAGIC: tuple[tuple[bytes, Any], ...] = (
    (b"BM", gettext_lazy("a BMP image")),
    (b"II*\x00", gettext_lazy("a TIFF image")),
    (b"MM\x00*", gettext_lazy("a TIFF image")),
    (b"8BPS", gettext_lazy("a Photoshop image")),
    (b"\xff\x0a", gettext_lazy("a JPEG XL image")),
    (b"\x00\x00\x00\x0cJXL ", gettext_lazy("a JPEG XL image")),
    (b"%PDF", gettext_lazy("a PDF document")),
    (b"PK\x03\x04", gettext_lazy("a ZIP archive or Office document")),
    (b"\x1f\x8b", gettext_lazy("a gzip archive")),
    (b"7z\xbc\xaf\x27\x1c", gettext_lazy("a 7-Zip archive")),
    (b"Rar!", gettext_lazy("a RAR archive")),
    (b"\x7fELF", gettext_lazy("a program")),
    (b"MZ", gettext_lazy("a Windows program")),
    (b"#EXTM3U", gettext_lazy("a playlist")),
    (b"\x00\x00\x01\xba", gettext_lazy("an MPEG program stream")),
    (b"\x00\x00\x01\xb3", gettext_lazy("an MPEG video stream")),
    (b"FORM", gettext_lazy("an AIFF file")),
    (b"#!AMR", gettext_lazy("an AMR recording")),
)


class MediaRefused(Exception):
    """The file cannot be attached. `message` is for the person: what is wrong, what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    """The limits a file is checked against; defaults are the documented ones (see settings)."""

    max_upload_bytes: int = 2048 * MB
    max_image_bytes: int = 10 * MB
    max_image_pixels: int = 50_000_000
    max_audio_bytes: int = 100 * MB
    max_audio_seconds: float = 1200.0
    max_video_bytes: int = 256 * MB
    max_video_seconds: float = 150.0

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_upload_bytes=settings.PLAYGROUND_MAX_UPLOAD_BYTES,
            max_image_bytes=settings.PLAYGROUND_MAX_IMAGE_BYTES,
            max_image_pixels=settings.PLAYGROUND_MAX_IMAGE_PIXELS,
            max_audio_bytes=settings.PLAYGROUND_MAX_AUDIO_BYTES,
            max_audio_seconds=settings.PLAYGROUND_MAX_AUDIO_SECONDS,
            max_video_bytes=settings.PLAYGROUND_MAX_VIDEO_BYTES,
            max_video_seconds=settings.PLAYGROUND_MAX_VIDEO_SECONDS,
        )


@dataclass
class Probe:
    """What the bytes are. `width`/`height` are as displayed (after any rotation flag)."""

    kind: str  # "image" | "audio" | "video"
    content_type: str  # from the allow-list, e.g. "image/png", "audio/webm", "video/mp4"
    container: str  # the FFmpeg demuxer it was read with ("mov", "matroska", "ogg"...) or the
    # Pillow format ("PNG", "JPEG", "GIF", "WEBP")
    codecs: dict[str, str] = field(default_factory=dict)  # {"video": "h264", "audio": "aac"}
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds
    size: int = 0  # bytes
    sha256: str = ""


@dataclass
class Prepared:
    """A probed file plus what to send. `derived` is None when the original is sent as it is;
    `derived_content_type` is always the content type of the file to send (derived or not)."""

    probe: Probe
    derived: Path | None
    derived_content_type: str
    poster: Path | None  # JPEG, at most POSTER_SIDE px on the long side; None for audio


# --- public functions ------------------------------------------------------------------------


def probe(path: Path, name: str = "", limits: Limits | None = None) -> Probe:
    """Identify the file from its bytes and check everything knowable without converting it.

    Refuses (MediaRefused): empty or over the upload limit, unknown or unsupported types, a file
    name whose extension names another kind, polyglot or damaged images, images over the byte or
    pixel limits, damaged or cut-short audio/video, durations over the limits. Byte limits of
    audio and video are left to `prepare`, which can convert a file to fit them.
    """
    return _inspect(Path(path), name, limits or Limits.from_settings(), want_poster=False).probe


def prepare(
    path: Path,
    workdir: Path,
    name: str = "",
    limits: Limits | None = None,
    progress: Callable[[float], None] | None = None,
    quick: bool = False,
) -> Prepared:
    """Probe, check limits, convert what the API would not take, and make a poster.

    `quick` is for a call's recordings, sent as soon as they are converted: a video that must
    be converted becomes a small MP4 (at most QUICK_SHORT_SIDE, QUICK_PRESET, QUICK_CRF) instead
    of the uploads' 720p one. Images, audio and videos sent as they are do not change.

    New files are only written inside `workdir` (created if missing), never over existing ones.
    On refusal (or any other error) everything written is removed and the exception propagates.
    `progress` gets non-decreasing values in [0, 1], at most ~10 a second, ending with 1.0; an
    exception raised by it (to cancel) cleans up the same way.
    Synchronous and CPU-heavy for conversions: run it in a worker thread.
    """
    limits = limits or Limits.from_settings()
    path, workdir = Path(path), Path(workdir)
    report = _Progress(progress)
    created_dir = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    outputs = _Outputs(workdir)
    try:
        inspected = _inspect(path, name, limits, want_poster=True, quick=quick)
        found = inspected.probe
        picture = inspected.picture
        poster = _write_poster(picture, outputs) if picture is not None else None
        derived: Path | None = None
        send_type = found.content_type
        if found.kind == "image" and inspected.image_end is not None:
            derived = _strip_trailer(path, inspected.image_end, found, outputs)
        elif found.kind == "audio":
            derived = _prepare_audio(path, found, limits, outputs, report)
            send_type = "audio/mpeg" if derived else send_type
        elif found.kind == "video":
            derived = _prepare_video(path, found, limits, outputs, report, quick)
            send_type = "video/mp4" if derived else send_type
        report(1.0, force=True)
        return Prepared(found, derived, send_type, poster)
    except BaseException:
        outputs.remove_all()
        if created_dir:
            try:
                workdir.rmdir()
            except OSError:
                pass  # someone else put something there meanwhile; leave it
        raise


def base64_chunks(path: Path, chunk: int = 3 * 256 * 1024) -> Iterator[bytes]:
    """Base64 of the file, piece by piece; the pieces concatenate to one valid encoding.

    `chunk` must be a multiple of 3 so no piece ends in padding. Only one chunk is in memory.
    """
    if chunk <= 0 or chunk % 3:
        raise ValueError("chunk must be a positive multiple of 3")
    with open(path, "rb") as file:
        while True:
            data = file.read(chunk)
            # A short read before the end would put padding mid-stream: top it up.
            while data and len(data) < chunk:
                more = file.read(chunk - len(data))
                if not more:
                    break
                data += more
            if not data:
                return
            yield base64.b64encode(data)


# --- sniffing --------------------------------------------------------------------------------


@dataclass
class _Sniffed:
    family: str  # "image" | an audio/video family from DEMUXERS | "other" | "unknown"
    image_format: str = ""  # Pillow format when family == "image"
    label: str = ""  # what the bytes are, for messages


def _sniff(path: Path) -> _Sniffed:
    with open(path, "rb") as file:
        head = file.read(512)
        if head.startswith(b"ID3") and len(head) >= 10:
            # An ID3v2 tag can sit in front of MP3, AAC or FLAC: look at what follows it.
            tag_size = 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)
            file.seek(tag_size)
            after = file.read(512)
            found = _sniff_head(after)
            if found.family in ("mp3", "aac", "flac"):
                return found
            return _Sniffed("mp3", label=FAMILY_LABELS["mp3"])  # a tag alone: let MP3 decide
    return _sniff_head(head)


def _syncsafe(data: bytes) -> int:
    return (data[0] << 21) | (data[1] << 14) | (data[2] << 7) | data[3]


def _sniff_head(head: bytes) -> _Sniffed:
    def family(name: str) -> _Sniffed:
        return _Sniffed(name, label=FAMILY_LABELS[name])

    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _Sniffed("image", "PNG", LABELS["image/png"])
    if head.startswith(b"\xff\xd8\xff"):
        return _Sniffed("image", "JPEG", LABELS["image/jpeg"])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _Sniffed("image", "GIF", LABELS["image/gif"])
    if head[:4] in (b"RIFF", b"RF64") and len(head) >= 12:
        riff = head[8:12]
        if riff == b"WEBP" and head[:4] == b"RIFF":
            return _Sniffed("image", "WEBP", LABELS["image/webp"])
        if riff == b"WAVE":
            return family("wav")
        if riff == b"AVI ":
            return family("avi")
        return _Sniffed("other", label=_("a RIFF file of an unsupported kind"))
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in HEIF_BRANDS:
            return _Sniffed("other", label=_("a HEIC image"))
        if brand in AVIF_BRANDS:
            return _Sniffed("other", label=_("an AVIF image"))
        return family("quicktime" if brand == b"qt  " else "mp4")
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return family("quicktime")  # QuickTime files from before `ftyp` existed
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header's DocType says whether this Matroska file is the WebM subset.
        return family("webm" if b"\x42\x82\x84webm" in head[:64] else "matroska")
    if head.startswith(b"OggS"):
        return family("ogg")
    if head.startswith(b"fLaC"):
        return family("flac")
    if head.startswith(b"FLV\x01"):
        return family("flv")
    if head.startswith(ASF_GUID):
        return family("asf")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean an ADTS (AAC) header instead.
        return family("aac" if head[1] & 0x06 == 0 else "mp3")
    for magic, label in OTHER_MAGIC:
        if head.startswith(magic):
            return _Sniffed("other", label=label)
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return _Sniffed("other", label=_("an MPEG transport stream"))
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in text:
        return _Sniffed("other", label=_("an SVG image"))
    if text.startswith((b"<!doctype", b"<html")):
        return _Sniffed("other", label=_("an HTML page"))
    return _Sniffed("unknown")


def _check_name(name: str, kind: str, label: str) -> None:
    """Refuse when the person's extension names another kind of file than the bytes are."""
    extension = Path(name).suffix.lower().lstrip(".")
    if extension in IMAGE_EXTENSIONS:
        expected = "image"
        allowed = {"image"}
    elif extension in AUDIO_EXTENSIONS:
        expected = "audio"
        allowed = {"audio"}
    elif extension in VIDEO_EXTENSIONS:
        expected = "video"
        allowed = {"video", "audio"}
    else:
        return
    if kind not in allowed:
        refusals = {
            "image": _("“%(name)s” is not an image: its bytes are %(what)s."),
            "audio": _("“%(name)s” is not an audio file: its bytes are %(what)s."),
            "video": _("“%(name)s” is not a video: its bytes are %(what)s."),
        }
        raise MediaRefused(refusals[expected] % {"name": _shown_name(name), "what": label})


def _shown_name(name: str) -> str:
    shown = name.replace("\\", "/").rsplit("/", 1)[-1]
    return shown if len(shown) <= 60 else shown[:28] + "…" + shown[-28:]


# --- the common path -------------------------------------------------------------------------


@dataclass
class _Inspected:
    probe: Probe
    picture: Image.Image | None = None  # for the poster, already small; only when asked
    image_end: int | None = None  # set when an image is followed by a phone's extra data


def _inspect(
    path: Path, name: str, limits: Limits, want_poster: bool, quick: bool = False
) -> _Inspected:
    size = path.stat().st_size
    if size == 0:
        raise MediaRefused(_("The file is empty. Attach %(accepted)s.") % {"accepted": _accepted()})
    if size > limits.max_upload_bytes:
        shown, limit = _two(human_bytes, size, limits.max_upload_bytes)
        raise MediaRefused(
            _("This file is %(size)s; uploads can be at most %(limit)s.")
            % {"size": shown, "limit": limit}
        )
    sniffed = _sniff(path)
    if sniffed.family == "image":
        return _inspect_image(path, name, sniffed, size, limits, want_poster)
    if sniffed.family in DEMUXERS:
        return _inspect_av(path, name, sniffed, size, limits, want_poster, quick)
    if sniffed.family == "other":
        raise MediaRefused(
            _("This file is %(what)s, which cannot be attached. Attach %(accepted)s.")
            % {"what": sniffed.label, "accepted": _accepted()}
        )
    raise MediaRefused(
        _("This file is not an image, audio or video file that can be read. Attach %(accepted)s.")
        % {"accepted": _accepted()}
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(MB):
            digest.update(block)
    return digest.hexdigest()


# --- images ----------------------------------------------------------------------------------


def _inspect_image(
    path: Path, name: str, sniffed: _Sniffed, size: int, limits: Limits, want_poster: bool
) -> _Inspected:
    fmt = sniffed.image_format
    content_type = "image/" + fmt.lower()
    _check_name(name, "image", sniffed.label)
    if size > limits.max_image_bytes:
        shown, limit = _two(human_bytes, size, limits.max_image_bytes)
        raise MediaRefused(
            _("This image is %(size)s; images can be at most %(limit)s.")
            % {"size": shown, "limit": limit}
        )
    data = path.read_bytes()  # bounded by max_image_bytes
    end = _check_image_structure(data, fmt)

    # The header alone (no pixel data yet): refuse oversized images before decoding anything.
    try:
        header = PILLOW_CLASSES[fmt](io.BytesIO(data))
        width, height = header.size
        header.close()
    except Exception as error:  # Pillow raises many types for malformed headers
        raise MediaRefused(_damaged_image_text(fmt)) from error
    pixel_limit = limits.max_image_pixels
    if Image.MAX_IMAGE_PIXELS:
        # Pillow would warn above its own limit; refuse at the lower of the two instead.
        pixel_limit = min(pixel_limit, Image.MAX_IMAGE_PIXELS)
    if width * height > pixel_limit:
        raise MediaRefused(
            _(
                "This image is %(width)s × %(height)s pixels; at most %(megapixels)s megapixels "
                "are accepted."
            )
            % {"width": width, "height": height, "megapixels": _megapixels(pixel_limit)}
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise MediaRefused(
            _(
                "This image is %(width)s × %(height)s pixels; images must be more than "
                "%(side)s pixels wide and tall."
            )
            % {"width": width, "height": height, "side": MIN_IMAGE_SIDE - 1}
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise MediaRefused(
            _(
                "This image is %(width)s × %(height)s pixels; its longer side can be at most "
                "%(ratio)s times its shorter side."
            )
            % {"width": width, "height": height, "ratio": MAX_ASPECT}
        )

    picture = _decode_image(data[:end], fmt, width, height)
    if picture.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width  # stored on its side; report what a person sees
    found = Probe(
        kind="image",
        content_type=content_type,
        container=fmt,
        codecs={"image": fmt.lower()},
        width=width,
        height=height,
        duration=None,
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return _Inspected(
        found,
        _poster_from_image(picture) if want_poster else None,
        end if end < len(data) else None,
    )


def _decode_image(data: bytes, fmt: str, width: int, height: int) -> Image.Image:
    """verify() checks the structure (PNG CRCs); a fresh load() decodes and catches truncation."""
    with warnings.catch_warnings():
        # A DecompressionBombWarning must stop us, not scroll past in a log. (catch_warnings is
        # process-wide before Python 3.14; it only adds an "error" filter for this one category.)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as checked:
                checked.verify()
            picture = Image.open(io.BytesIO(data), formats=[fmt])
            picture.load()  # the first frame of an animation is enough
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise MediaRefused(
                _("This image is %(width)s × %(height)s pixels, more than can be decoded safely.")
                % {"width": width, "height": height}
            ) from error
        except Exception as error:  # OSError "truncated", SyntaxError, struct.error, ...
            raise MediaRefused(_damaged_image_text(fmt)) from error
    return picture


def _damaged_image_text(fmt: str) -> str:
    return _(
        "The file is damaged or cut short: it starts like a %(format)s image but could not be "
        "decoded. Images can be %(formats)s."
    ) % {"format": fmt, "formats": IMAGE_TYPES_TEXT}


def _megapixels(pixels: int) -> str:
    value = pixels / 1_000_000
    return number_text(value, 0 if value >= 10 or value.is_integer() else 1)


def _check_image_structure(data: bytes, fmt: str) -> int:
    """Refuse markup at either end, a structure that stops early, or another file after it.

    Returns where the image ends. Phones append data to JPEGs that is not a threat and too
    common to refuse: further JPEGs (Ultra HDR gain maps, MPF multi-picture files) and a motion
    photo's MP4. Those are cut off (`prepare` sends the picture alone); anything else after the
    end of an image is refused.
    """
    ends = (data[:MARKUP_WINDOW] + b"\n" + data[-MARKUP_WINDOW:]).lower()
    for marker in MARKUP:
        if marker in ends:
            raise MediaRefused(
                _(
                    "This file contains something besides an image (web page code: "
                    "“%(code)s”), so it cannot be attached. Save the picture again as a plain "
                    "%(formats)s file."
                )
                % {"code": marker.decode(), "formats": IMAGE_TYPES_TEXT}
            )
    end = _walk_image(data, fmt)
    if end is None or end > len(data):
        raise MediaRefused(_damaged_image_text(fmt))
    image_end = end
    if fmt == "JPEG":
        while data.startswith(b"\xff\xd8\xff", end):
            following = _walk_image(data[end:], "JPEG")
            if following is None:
                break
            end += following
        if data[end + 4 : end + 8] == b"ftyp":
            end = len(data)  # a motion photo's video runs to the end of the file
    if len(data) - end > TRAILING_TOLERANCE:
        extra = len(data) - end
        raise MediaRefused(
            ngettext(
                "This file contains something besides an image: %(count)s more byte follows "
                "the end of the %(format)s picture, so it cannot be attached. Save the picture "
                "again as a plain %(formats)s file.",
                "This file contains something besides an image: %(count)s more bytes follow "
                "the end of the %(format)s picture, so it cannot be attached. Save the picture "
                "again as a plain %(formats)s file.",
                extra,
            )
            % {"count": extra, "format": fmt, "formats": IMAGE_TYPES_TEXT}
        )
    return image_end if end > image_end + TRAILING_TOLERANCE else len(data)


def _walk_image(data: bytes, fmt: str) -> int | None:
    walkers = {"PNG": _png_end, "JPEG": _jpeg_end, "GIF": _gif_end, "WEBP": _webp_end}
    try:
        return walkers[fmt](data)
    except (IndexError, struct.error, ValueError):
        return None  # ran off the end of the data: cut short


def _png_end(data: bytes) -> int | None:
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        position += 12 + length
        if kind == b"IEND":
            return position
    return None


def _jpeg_end(data: bytes) -> int | None:
    position = 2  # after SOI
    while position < len(data):
        if data[position] != 0xFF:
            return None  # garbage where a marker should be
        while position < len(data) and data[position] == 0xFF:
            position += 1  # fill bytes
        marker = data[position]
        position += 1
        if marker == 0xD9:  # EOI
            return position
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # markers without a length
        (length,) = struct.unpack_from(">H", data, position)
        position += length
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next real marker
            while True:
                position = data.index(b"\xff", position)
                following = data[position + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    position += 1 if following == 0xFF else 2  # stuffing, restart, or fill
                    continue
                break
    return None


def _gif_end(data: bytes) -> int | None:
    def skip_sub_blocks(position: int) -> int:
        while True:
            length = data[position]
            position += 1
            if length == 0:
                return position
            position += length

    flags = data[10]
    position = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        block = data[position]
        if block == 0x3B:  # trailer
            return position + 1
        if block == 0x21:  # extension: label, then sub-blocks
            position = skip_sub_blocks(position + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, data
            local = data[position + 9]
            position += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0)
            position = skip_sub_blocks(position + 1)
        else:
            return None


def _webp_end(data: bytes) -> int | None:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    return 8 + riff_size + (riff_size & 1)


def _poster_from_image(picture: Image.Image) -> Image.Image:
    picture = ImageOps.exif_transpose(picture) or picture
    picture.thumbnail((POSTER_SIDE, POSTER_SIDE))
    return _flatten(picture)


def _flatten(picture: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency goes onto white, palettes and greys become colour."""
    if picture.mode in ("RGBA", "LA", "PA") or (
        picture.mode == "P" and "transparency" in picture.info
    ):
        picture = picture.convert("RGBA")
        background = Image.new("RGB", picture.size, (255, 255, 255))
        background.paste(picture, mask=picture.getchannel("A"))
        return background
    return picture.convert("RGB")


# --- audio and video: probing ----------------------------------------------------------------


def _open_av(path: Path, family: str) -> av.container.InputContainer:
    # The demuxer is named, never probed, and only plain files may be opened from inside it.
    return av.open(
        os.path.abspath(path),
        format=DEMUXERS[family],
        options={"protocol_whitelist": "file"},
    )


def _pick_streams(container: av.container.InputContainer) -> dict[str, Any]:
    """The first real picture stream (cover art is not video) and the first audio stream."""
    picked: dict[str, Any] = {}
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            picked["video"] = stream
            break
    if container.streams.audio:
        picked["audio"] = container.streams.audio[0]
    return picked


def _codec_name(stream: Any) -> str:
    codec = stream.codec_context.codec
    return codec.canonical_name or codec.name  # "mp3", not the decoder's "mp3float"


@dataclass
class _Scan:
    start: float | None = None
    end: float | None = None
    pending: set[str] = field(default_factory=set)  # kinds with no decoded frame yet
    error: str = ""
    poster: Any = None  # a decoded VideoFrame
    rotation: int = 0


def _inspect_av(
    path: Path,
    name: str,
    sniffed: _Sniffed,
    size: int,
    limits: Limits,
    want_poster: bool,
    quick: bool = False,
) -> _Inspected:
    try:
        container = _open_av(path, sniffed.family)
    except av.FFmpegError as error:
        raise MediaRefused(
            _(
                "The file is damaged or cut short: it starts like %(what)s but its structure "
                "could not be read."
            )
            % {"what": sniffed.label}
        ) from error
    with container:
        streams = _pick_streams(container)
        if not streams:
            raise MediaRefused(
                _("This file (%(what)s) has neither sound nor pictures in it. Attach %(accepted)s.")
                % {"what": sniffed.label, "accepted": _accepted()}
            )
        kind = "video" if "video" in streams else "audio"
        content_type = CONTENT_TYPES.get((sniffed.family, kind))
        if content_type is None:
            if kind == "video":
                text = _(
                    "This file is %(what)s with only video in it, which cannot be attached. "
                    "Video can be %(formats)s."
                )
            else:
                text = _(
                    "This file is %(what)s with only audio in it, which cannot be attached. "
                    "Audio can be %(formats)s."
                )
            accepted = VIDEO_TYPES_TEXT if kind == "video" else AUDIO_TYPES_TEXT
            raise MediaRefused(text % {"what": sniffed.label, "formats": accepted})
        _check_name(name, kind, LABELS[content_type])
        codecs = {kind_: _codec_name(stream) for kind_, stream in streams.items()}
        width = height = None
        if "video" in streams:
            width = streams["video"].codec_context.width or None
            height = streams["video"].codec_context.height or None
            if width and height and width * height > limits.max_image_pixels:
                raise MediaRefused(
                    _(
                        "This video is %(width)s × %(height)s pixels; at most %(megapixels)s "
                        "megapixels per frame are accepted."
                    )
                    % {
                        "width": width,
                        "height": height,
                        "megapixels": _megapixels(limits.max_image_pixels),
                    }
                )
        declared = _declared_duration(container, streams, sniffed.family)
        if declared:
            _check_duration(kind, declared, limits)  # before reading the whole file
        poster_at = None
        if want_poster and "video" in streams:
            poster_at = min(1.0, declared / 2) if declared else 1.0
            if quick:
                # A call's camera is already running when a recording starts: its first frame
                # is as good a still as any, and decoding a second more costs a tenth of the
                # conversion.
                poster_at = 0.0
        scan = _scan(container, streams, poster_at)

    measured = scan.end - scan.start if scan.end is not None and scan.start is not None else None
    _check_complete(scan, declared, measured)
    duration = declared or measured
    if not duration or duration <= 0:
        raise MediaRefused(_("The file is damaged or cut short: its length could not be measured."))
    _check_duration(kind, duration, limits)
    if scan.rotation in (90, 270) and width and height:
        width, height = height, width  # report what a person sees
    found = Probe(
        kind=kind,
        content_type=content_type,
        container=container.format.name,
        codecs=codecs,
        width=width,
        height=height,
        duration=round(duration, 3),
        size=size,
        sha256=_sha256(path),
    )
    picture = _poster_from_frame(scan.poster, scan.rotation) if scan.poster is not None else None
    return _Inspected(found, picture)


def _check_duration(kind: str, duration: float, limits: Limits) -> None:
    max_seconds = limits.max_video_seconds if kind == "video" else limits.max_audio_seconds
    if duration > max_seconds:
        shown, limit = _two(_human_seconds, duration, max_seconds)
        if kind == "video":
            text = _(
                "This video is %(duration)s long; videos can be at most %(limit)s. Shorten it "
                "and try again."
            )
        else:
            text = _(
                "This recording is %(duration)s long; recordings can be at most %(limit)s. "
                "Shorten it and try again."
            )
        raise MediaRefused(text % {"duration": shown, "limit": limit})


def _declared_duration(
    container: av.container.InputContainer, streams: dict[str, Any], family: str
) -> float | None:
    """The duration the header states: the container's, else the longest stream's."""
    if family in ESTIMATED_DURATION:
        return None
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    durations = [
        float(stream.duration * stream.time_base)
        for stream in streams.values()
        if stream.duration and stream.time_base
    ]
    return max(durations) if durations else None


def _scan(
    container: av.container.InputContainer, streams: dict[str, Any], poster_at: float | None
) -> _Scan:
    """Demux every packet (the only way to measure a file whose header has no duration, and to
    notice one that stops early); decode only until each stream has given one frame, and the
    picture stream until the poster time."""
    scan = _Scan(pending=set(streams))
    if "video" in streams:
        streams["video"].thread_type = "AUTO"
    best_poster_time = -1.0
    try:
        for packet in container.demux(list(streams.values())):
            kind = packet.stream.type
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is not None and packet.size:
                begin = float(timestamp * packet.time_base)
                finish = begin + float((packet.duration or 0) * packet.time_base)
                scan.start = begin if scan.start is None else min(scan.start, begin)
                scan.end = finish if scan.end is None else max(scan.end, finish)
            wants_poster = (
                kind == "video" and poster_at is not None and (best_poster_time < poster_at)
            )
            if kind not in scan.pending and not wants_poster:
                continue
            for frame in _decode(packet):
                if kind == "video" and kind in scan.pending:
                    scan.rotation = _frame_rotation(frame)
                scan.pending.discard(kind)
                if kind == "video" and poster_at is not None and best_poster_time < poster_at:
                    scan.poster = frame
                    frame_time = frame.time if frame.time is not None else 0.0
                    best_poster_time = max(frame_time, best_poster_time + 1e-6)
    except av.FFmpegError as error:
        scan.error = str(error)
    return scan


def _decode(packet: av.Packet) -> list[Any]:
    """Frames from one packet; a packet the decoder rejects is skipped, as players do."""
    try:
        return list(packet.decode())
    except av.FFmpegError:
        return []


def _frame_rotation(frame: Any) -> int:
    try:
        rotation = int(round(frame.rotation))
    except Exception:  # no display matrix
        return 0
    return rotation % 360 if rotation % 90 == 0 else 0


def _check_complete(scan: _Scan, declared: float | None, measured: float | None) -> None:
    if scan.pending:
        if scan.pending >= {"audio", "video"}:
            text = _(
                "The file is damaged or cut short: no sound and no picture could be decoded "
                "from it."
            )
        elif "video" in scan.pending:
            text = _("The file is damaged or cut short: no picture could be decoded from it.")
        else:
            text = _("The file is damaged or cut short: no sound could be decoded from it.")
        raise MediaRefused(text)
    if declared:
        tolerance = max(0.25, 0.03 * declared)
        read = measured or 0.0
        if read < declared - tolerance:
            shown, whole = _two(_human_seconds, read, declared)
            raise MediaRefused(
                _(
                    "The file is damaged or cut short: it should last %(duration)s, but only "
                    "%(read)s of it could be read."
                )
                % {"duration": whole, "read": shown}
            )
    elif scan.error:
        raise MediaRefused(
            _("The file is damaged: reading it failed (%(error)s).") % {"error": scan.error}
        )


def _poster_from_frame(frame: Any, rotation: int) -> Image.Image:
    scale = min(1.0, POSTER_SIDE / max(frame.width, frame.height))
    width = max(1, round(frame.width * scale))
    height = max(1, round(frame.height * scale))
    picture = frame.reformat(width=width, height=height, format="rgb24").to_image()
    if rotation:
        # rotation is counter-clockwise, like PIL's ROTATE_* transposes
        picture = picture.transpose(
            {
                90: Image.Transpose.ROTATE_90,
                180: Image.Transpose.ROTATE_180,
                270: Image.Transpose.ROTATE_270,
            }[rotation]
        )
    return picture


# --- audio and video: converting -------------------------------------------------------------


class _Outputs:
    """Files this call writes into workdir, so a refusal can take them all back."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.created: list[Path] = []

    def new(self, stem: str, suffix: str) -> Path:
        for number in range(1000):
            candidate = self.workdir / (
                f"{stem}{suffix}" if not number else f"{stem}-{number}{suffix}"
            )
            try:
                with open(candidate, "xb"):
                    pass  # reserved: never overwrite what someone else put there
            except FileExistsError:
                continue
            self.created.append(candidate)
            return candidate
        raise FileExistsError(f"no free name for {stem}{suffix} in {self.workdir}")

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if path in self.created:
            self.created.remove(path)

    def remove_all(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created.clear()


class _Progress:
    """Passes non-decreasing values to the callback, at most one per PROGRESS_INTERVAL."""

    def __init__(self, callback: Callable[[float], None] | None) -> None:
        self.callback = callback
        self.last_value = -1.0
        self.last_time = 0.0

    def __call__(self, value: float, force: bool = False) -> None:
        if self.callback is None:
            return
        value = min(1.0, max(0.0, value, self.last_value))
        now = time.monotonic()
        if value == self.last_value and not force:
            return
        if not force and now - self.last_time < PROGRESS_INTERVAL:
            return
        if force and value == self.last_value == 1.0:
            return
        self.last_value, self.last_time = value, now
        self.callback(value)

    def span(self, low: float, high: float) -> Callable[[float], None]:
        """A callback for one step that maps its own 0..1 onto low..high."""
        return lambda fraction: self(low + (high - low) * min(1.0, max(0.0, fraction)))


def _strip_trailer(path: Path, end: int, found: Probe, outputs: _Outputs) -> Path:
    """The picture alone, without what a phone appended after it (see _check_image_structure)."""
    derived = outputs.new("image", "." + found.container.lower().replace("jpeg", "jpg"))
    with open(path, "rb") as source:
        derived.write_bytes(source.read(end))
    return derived


def _write_poster(picture: Image.Image, outputs: _Outputs) -> Path:
    poster = outputs.new("poster", ".jpg")
    _flatten(picture).save(poster, format="JPEG", quality=POSTER_QUALITY, optimize=True)
    return poster


def _pick_rate(rate: int, supported: list[int] | None) -> int:
    """The source rate when the encoder supports it, else the nearest higher one it does."""
    if not supported or rate in supported:
        return rate
    higher = [candidate for candidate in supported if candidate >= rate]
    return min(higher) if higher else max(supported)


def _prepare_audio(
    path: Path, found: Probe, limits: Limits, outputs: _Outputs, report: _Progress
) -> Path | None:
    family = _family_of(found)
    codec = found.codecs.get("audio", "")
    as_is = (found.content_type == "audio/wav" and codec == "pcm_s16le") or (
        found.content_type == "audio/mpeg" and codec == "mp3"
    )
    if as_is and found.size <= limits.max_audio_bytes:
        return None
    derived = outputs.new("converted", ".mp3")
    try:
        _encode_mp3(path, family, derived, found.duration or 0.0, report.span(0.0, 1.0))
    except av.FFmpegError as error:
        raise MediaRefused(
            _("The file is damaged: it could not be converted to MP3 (%(error)s).")
            % {"error": error}
        ) from error
    converted = derived.stat().st_size
    if converted > limits.max_audio_bytes:
        shown, limit = _two(human_bytes, converted, limits.max_audio_bytes)
        raise MediaRefused(
            _("Even converted to MP3 this recording is %(size)s; audio can be at most %(limit)s.")
            % {"size": shown, "limit": limit}
        )
    return derived


def _family_of(found: Probe) -> str:
    for (family, _kind), content_type in CONTENT_TYPES.items():
        if content_type == found.content_type:
            return family
    raise ValueError(found.content_type)


def _encode_mp3(
    source: Path, family: str, target: Path, duration: float, progress: Callable[[float], None]
) -> None:
    with (
        _open_av(source, family) as inp,
        av.open(str(target), "w", format="mp3") as out,
    ):
        ain = _pick_streams(inp)["audio"]
        channels = 1 if ain.codec_context.channels == 1 else 2
        rate = _pick_rate(ain.codec_context.sample_rate, av.Codec("libmp3lame", "w").audio_rates)
        aout = out.add_stream("libmp3lame", rate=rate)
        aout.codec_context.layout = "mono" if channels == 1 else "stereo"
        aout.bit_rate = MP3_BITRATE[channels]
        audio = _AudioEncoder(out, aout, _start_time(inp))
        for packet in inp.demux(ain):
            for frame in _decode(packet):
                audio.push(frame)
                if frame.time is not None and duration:
                    progress(frame.time / duration)
        audio.finish()
    progress(1.0)


class _AudioEncoder:
    """Resample to the encoder's format and number the samples from zero.

    Source timestamps can jump or start below zero (MediaRecorder jitter, packets skipped as
    undecodable, Opus pre-skip); counting samples gives the encoder a clean, gap-free timeline.
    PyAV re-chunks the frames to the encoder's frame size itself.
    """

    def __init__(
        self, output: av.container.OutputContainer, stream: Any, origin: float = 0.0
    ) -> None:
        context = stream.codec_context
        self.output, self.stream = output, stream
        # Planar float: what FFmpeg's AAC encoder needs and one of LAME's formats.
        self.resampler = av.AudioResampler(
            format="fltp", layout=context.layout, rate=context.sample_rate
        )
        self.samples = 0
        self.time_base = Fraction(1, context.sample_rate)
        # Where the file's timeline starts: sound that starts after the picture keeps its lead.
        self.origin: float | None = origin

    def push(self, frame: Any | None) -> None:
        if frame is not None and self.origin is not None:
            if frame.time is not None:
                self.samples = max(0, round((frame.time - self.origin) / self.time_base))
            self.origin = None
        for resampled in self.resampler.resample(frame):
            resampled.pts = self.samples
            resampled.time_base = self.time_base
            self.samples += resampled.samples
            self.output.mux(self.stream.encode(resampled))

    def finish(self) -> None:
        self.push(None)
        self.output.mux(self.stream.encode(None))


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    scale = min(1.0, short_side / min(width, height))
    return _even(width * scale), _even(height * scale)


def _video_as_is(found: Probe) -> bool:
    return (
        found.content_type in API_VIDEO_TYPES
        and found.codecs.get("video") in API_VIDEO_CODECS
        and found.codecs.get("audio", "aac") in API_VIDEO_AUDIO_CODECS
    )


@dataclass(frozen=True)
class _Attempt:
    short_side: int
    video_bitrate: int | None  # None: constant quality (CRF)
    audio_bitrate: int  # for stereo; a mono source gets half
    preset: str = "veryfast"  # x264's
    crf: int = 23  # when video_bitrate is None
    tune: str = ""  # x264's --tune, "" for none
    scale_flags: str = "bicubic"  # swscale's, when the picture is resized
    aac_coder: str = ""  # FFmpeg's AAC quantiser search, "" for its default (twoloop)


def _quick_recipe() -> dict[str, Any]:
    """_Attempt's settings for a call's recording (read when called, so a benchmark can vary
    them)."""
    return {
        "preset": QUICK_PRESET,
        "crf": QUICK_CRF,
        "tune": QUICK_TUNE,
        "scale_flags": QUICK_SCALE_FLAGS,
        "aac_coder": QUICK_AAC_CODER,
    }


def _prepare_video(
    path: Path,
    found: Probe,
    limits: Limits,
    outputs: _Outputs,
    report: _Progress,
    quick: bool = False,
) -> Path | None:
    oversize = found.size > limits.max_video_bytes
    if _video_as_is(found) and not oversize:
        return None
    width, height = found.width or 2, found.height or 2
    duration = found.duration or 1.0
    recipe: dict[str, Any] = {}
    short_side, rungs, top_audio = CONVERT_SHORT_SIDE, BUDGET_RUNGS, AAC_BITRATE[2]
    if quick:
        recipe = _quick_recipe()
        short_side, rungs, top_audio = QUICK_SHORT_SIDE, (QUICK_SHORT_SIDE,), QUICK_AAC_BITRATE
    attempts = [] if oversize else [_Attempt(short_side, None, top_audio, **recipe)]
    # The byte budget as a bitrate, shared between audio (at most a tenth) and picture.
    budget = limits.max_video_bytes * BUDGET_SHARE * 8 / duration
    audio_bitrate = int(min(top_audio, max(32_000, budget / 10)))
    video_bitrate = int(max(20_000, budget - audio_bitrate - 8_000))
    seen: set[tuple[int, int]] = set()
    budget_attempts: list[_Attempt] = []
    for rung in rungs:
        dims = _target_size(width, height, rung)
        if dims in seen:
            continue
        seen.add(dims)
        budget_attempts.append(_Attempt(rung, video_bitrate, audio_bitrate, **recipe))
    # Skip rungs where the budget spreads too thin over the pixels; always keep the last one.
    rate = _frame_rate(path, found) if len(budget_attempts) > 1 else 0.0
    while len(budget_attempts) > 1:
        first_w, first_h = _target_size(width, height, budget_attempts[0].short_side)
        if video_bitrate / (first_w * first_h * rate) >= MIN_BITS_PER_PIXEL:
            break
        budget_attempts.pop(0)
    attempts.extend(budget_attempts)

    family = _family_of(found)
    done = 0.0
    for number, attempt in enumerate(attempts):
        # The first attempt nearly always fits; keep a little of the bar for a retry anyway.
        last = number == len(attempts) - 1
        high = 1.0 if last else done + (1.0 - done) * 0.95
        target = outputs.new("converted", ".mp4")
        try:
            _encode_mp4(path, family, target, found, attempt, report.span(done, high))
        except av.FFmpegError as error:
            raise MediaRefused(
                _("The file is damaged: it could not be converted to MP4 (%(error)s).")
                % {"error": error}
            ) from error
        done = high
        if target.stat().st_size <= limits.max_video_bytes:
            return target
        outputs.discard(target)
    shown, limit = _two(human_bytes, found.size, limits.max_video_bytes)
    raise MediaRefused(
        _(
            "This video is %(size)s, and even re-encoded at %(height)sp it does not fit: videos "
            "can be at most %(limit)s. Shorten it and try again."
        )
        % {"size": shown, "height": rungs[-1], "limit": limit}
    )


def _start_time(container: av.container.InputContainer) -> float:
    """When the file's first stream starts, in seconds (MP4 edit lists, Ogg pre-skip)."""
    start = container.start_time
    return start / av.time_base if start and start > 0 else 0.0


def _frame_rate(path: Path, found: Probe) -> float:
    with _open_av(path, _family_of(found)) as container:
        stream = _pick_streams(container)["video"]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    rate = float(rate) if rate else 30.0
    return rate if 0 < rate <= 240 else 30.0


class _Scaler:
    """Rotate (by the display matrix), scale and convert frames to yuv420p with a filter graph,
    rebuilt whenever the decoded size or format changes mid-stream (MediaRecorder does that).
    Frames already upright, yuv420p and of the output's size go through untouched."""

    def __init__(
        self, width: int, height: int, time_base: Fraction, flags: str = "bicubic"
    ) -> None:
        self.width, self.height, self.time_base = width, height, time_base
        self.flags = flags
        self.key: tuple[int, int, str, int] | None = None
        self.graph: av.filter.Graph | None = None

    def frames(self, frame: Any | None) -> list[Any]:
        """Frames out for one frame in; None flushes at the end."""
        if frame is None:
            return self._flush()
        out: list[Any] = []
        key = (frame.width, frame.height, frame.format.name, _frame_rotation(frame))
        if key == (self.width, self.height, "yuv420p", 0):
            return self._flush() + [frame]
        if key != self.key:
            out += self._flush()
            self.graph, self.key = self._build(*key), key
        assert self.graph is not None
        self.graph.push(frame)
        return out + self._pull()

    def _build(self, width: int, height: int, pixel_format: str, rotation: int) -> av.filter.Graph:
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(
                width=width, height=height, format=pixel_format, time_base=self.time_base
            )
        ]
        # Display-matrix rotation is counter-clockwise; transpose names the turn to undo it.
        if rotation == 90:
            nodes.append(graph.add("transpose", "cclock"))
        elif rotation == 270:
            nodes.append(graph.add("transpose", "clock"))
        elif rotation == 180:
            nodes += [graph.add("hflip"), graph.add("vflip")]
        nodes.append(graph.add("scale", f"{self.width}:{self.height}:flags={self.flags}"))
        nodes.append(graph.add("format", "yuv420p"))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        return graph

    def _flush(self) -> list[Any]:
        if self.graph is None:
            return []
        self.graph.push(None)
        out = self._pull()
        self.graph = self.key = None
        return out

    def _pull(self) -> list[Any]:
        assert self.graph is not None
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return out


def _encode_mp4(
    source: Path,
    family: str,
    target: Path,
    found: Probe,
    attempt: _Attempt,
    progress: Callable[[float], None],
) -> None:
    duration = found.duration or 0.0
    with (
        _open_av(source, family) as inp,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        streams = _pick_streams(inp)
        vin = streams["video"]
        vin.thread_type = "AUTO"
        ain = streams.get("audio")
        width, height = _target_size(found.width or 2, found.height or 2, attempt.short_side)
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        # Keep the source's timestamps (variable frame rate recordings stay in sync).
        vout.codec_context.time_base = vin.time_base
        # Frame threads, as the ffmpeg command line has them. PyAV's default, slice threads,
        # splits every frame between x264's threads: a larger file, and a slower one at 720p.
        vout.codec_context.thread_type = "AUTO"
        options = {"preset": attempt.preset}
        if attempt.tune:
            options["tune"] = attempt.tune
        if attempt.video_bitrate is None:
            options["crf"] = str(attempt.crf)
        else:
            vout.bit_rate = attempt.video_bitrate
            # A VBV cap as tight as the average, with a buffer of at most a tenth of the clip:
            # the whole file can then overshoot the budget by at most one buffer's worth.
            buffer_seconds = min(1.0, max(0.2, duration / 10))
            options["maxrate"] = str(attempt.video_bitrate)
            options["bufsize"] = str(int(attempt.video_bitrate * buffer_seconds))
        vout.codec_context.options = options
        audio = None
        if ain is not None:
            channels = 1 if ain.codec_context.channels == 1 else 2
            aout = out.add_stream(
                "aac",
                rate=_pick_rate(ain.codec_context.sample_rate, av.Codec("aac", "w").audio_rates),
            )
            aout.codec_context.layout = "mono" if channels == 1 else "stereo"
            aout.bit_rate = attempt.audio_bitrate // (2 if channels == 1 else 1)
            if attempt.aac_coder:
                aout.codec_context.options = {"aac_coder": attempt.aac_coder}
            audio = _AudioEncoder(out, aout, _start_time(inp))
        scaler = _Scaler(width, height, vin.time_base, attempt.scale_flags)
        last_pts: int | None = None
        # Both streams are moved so the file's timeline starts at zero, keeping them in sync.
        offset = round(_start_time(inp) / vin.time_base)

        def encode(frames: list[Any]) -> None:
            nonlocal last_pts
            for picture in frames:
                # x264 needs strictly increasing timestamps; decoders can repeat or omit one.
                pts = None if picture.pts is None else picture.pts - offset
                if pts is None or (last_pts is not None and pts <= last_pts):
                    pts = 0 if last_pts is None else last_pts + 1
                picture.pts, picture.time_base = pts, vin.time_base
                last_pts = pts
                out.mux(vout.encode(picture))

        selected = [vin] + ([ain] if ain is not None else [])
        for packet in inp.demux(selected):
            for frame in _decode(packet):
                if packet.stream.type == "video":
                    encode(scaler.frames(frame))
                elif audio is not None:
                    audio.push(frame)
                if frame.time is not None and duration:
                    progress(frame.time / duration)
        encode(scaler.frames(None))
        out.mux(vout.encode(None))
        if audio is not None:
            audio.finish()
    progress(1.0)


# --- wording ---------------------------------------------------------------------------------


def _two(formatter: Callable[[float, int], str], value: float, limit: float) -> tuple[str, str]:
    """Both numbers at the first precision where they differ ("256.3 MB" vs "256 MB")."""
    shown = limit_text = ""
    for extra in range(3):
        shown, limit_text = formatter(value, extra), formatter(limit, extra)
        if shown != limit_text:
            break
    return shown, limit_text


def _human_seconds(seconds: float, extra: int = 0) -> str:
    decimals = (0 if seconds >= 10 else 1) + extra
    if seconds > 0 and round(seconds, decimals) == 0:
        decimals = 2 + extra  # "0.03 s", not "0 s"
    total = round(seconds, decimals)
    if total < 60:
        return _("%(seconds)s s") % {"seconds": number_text(total, decimals)}
    minutes = int(total // 60)
    rest = round(total - 60 * minutes, decimals)
    if rest == 0:
        return _("%(minutes)s min") % {"minutes": number_format(minutes)}
    return _("%(minutes)s min %(seconds)s s") % {
        "minutes": number_format(minutes),
        "seconds": number_text(rest, decimals),
    }
