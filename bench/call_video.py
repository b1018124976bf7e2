"""Call video benchmark: how long a call's camera recording takes to become the MP4 the API is
sent (`chat.media.prepare(..., quick=True)`), against the ffmpeg command line with the same
settings on the same file.

    .venv/bin/python bench/call_video.py                    # VP8 and VP9, 2/5/10 s, 5 runs, ~4 min
    .venv/bin/python bench/call_video.py --runs 9 --seconds 5 --codecs vp8
    .venv/bin/python bench/call_video.py --no-choices --ffmpeg /opt/ffmpeg/bin/ffmpeg

Method
------
Recordings like a browser's MediaRecorder makes them during a call with the camera on
(`tests.media_files.make_call_recording`): a webcam-like scene (a still room, a head that sways,
a mouth that moves, sensor noise changing every frame), real-time VP8 or VP9 at Chrome's default
2.5 Mbit/s, 640x480 at 30 frames a second by default, with Opus (mono, 48 kHz, a tone)
interleaved as it is recorded, written as a live stream: no duration in the header, so the app
demuxes the whole file to measure it, as it must with a browser's file. Utterances of 2, 5 and
10 s.

For each recording, --runs times each of these, interleaved (quick, encode, ffmpeg, normal,
quick, ...) so that other work on the machine falls on all of them alike, after one warm-up
round that is dropped:

- quick: `media.prepare(path, workdir, name, quick=True)` in this process, whole, as the call's
  endpoint runs it: sniffing, the demux that measures the file, the first-frame poster, the
  SHA-256, and the conversion (x264 QUICK_PRESET at CRF QUICK_CRF, short side at most
  QUICK_SHORT_SIDE, AAC, +faststart);
- encode: the conversion alone (`media._encode_mp4` with the same settings), the like-for-like
  figure against ffmpeg's own transcode time;
- ffmpeg: the command line with the same codec settings, e.g.
  `ffmpeg -nostdin -benchmark -y -i in.webm -c:v libx264 -preset ultrafast -crf 28
  -vf scale=480:360:flags=bilinear -pix_fmt yuv420p -fps_mode passthrough -c:a aac
  -aac_coder fast -b:a 48k -movflags +faststart out.mp4`: the process's wall time (it includes
  starting the program and loading its libraries) and the `rtime` its `-benchmark` prints
  (the transcode alone);
- normal: `media.prepare` without quick, the uploads' conversion (veryfast, CRF 23, at most
  720p, AAC at 64 kbit/s mono with FFmpeg's default quantiser search), for contrast.

Then, on one recording (--choices-clip, the 5 s VP8 by default), the quick conversion with one
setting changed at a time (x264's preset, --tune zerolatency, the resize filter, AAC's quantiser
search), to show what each choice is worth in time and bytes.

Figures: p50 and min-max in ms; "per s" = p50 / the clip's duration (seconds of conversion per
second of video); output sizes; the PyAV/ffmpeg ratios of the p50s; the frames each output
holds (the same work was done). With the machine: CPU model, cores usable, load average before
and after, PyAV's FFmpeg and the ffmpeg program's versions and each one's x264 build. The two
are different builds of FFmpeg and x264 (PyAV's wheels bring their own), so the ratio mixes the
library versions with the per-frame overhead of driving them from Python.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import av  # noqa: E402

from bench.relay import load_average, machine  # noqa: E402
from chat import media  # noqa: E402
from tests.media_files import make_call_recording  # noqa: E402

CODECS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}
LIMITS = media.Limits()  # the documented defaults: no recording here comes near them

# One setting changed at a time from the quick recipe: (label, media.QUICK_* name, value).
CHOICES = [
    ("chosen: " + media.QUICK_PRESET, None, None),
    ("preset superfast", "QUICK_PRESET", "superfast"),
    ("preset veryfast", "QUICK_PRESET", "veryfast"),
    ("tune zerolatency", "QUICK_TUNE", "zerolatency"),
    ("scale bicubic", "QUICK_SCALE_FLAGS", "bicubic"),
    ("AAC twoloop (default)", "QUICK_AAC_CODER", ""),
]


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    size: int = 0
    frames: int = 0
    x264: str = ""

    def p50(self) -> float:
        return statistics.median(self.seconds)

    def cell(self) -> str:
        return f"{self.p50() * 1000:.0f} ({min(self.seconds) * 1000:.0f}-" + (
            f"{max(self.seconds) * 1000:.0f})"
        )


@dataclass
class Clip:
    path: Path
    codec: str
    seconds: float
    width: int
    height: int
    channels: int
    size: int = 0  # bytes
    duration: float = 0.0
    results: dict[str, Timings] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.codec.upper()} {self.width}x{self.height} {self.seconds:g} s"


def x264_core(path: Path) -> str:
    found = re.search(rb"x264 - core (\d+)", path.read_bytes())
    return found.group(1).decode() if found else "?"


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def quick_attempt() -> media._Attempt:
    return media._Attempt(
        media.QUICK_SHORT_SIDE, None, media.QUICK_AAC_BITRATE, **media._quick_recipe()
    )


def ffmpeg_command(program: str, clip: Clip, target: Path) -> list[str]:
    """The command line doing what the quick conversion does, setting for setting."""
    attempt = quick_attempt()
    width, height = media._target_size(clip.width, clip.height, attempt.short_side)
    video = ["-c:v", "libx264", "-preset", attempt.preset, "-crf", str(attempt.crf)]
    if attempt.tune:
        video += ["-tune", attempt.tune]
    audio = ["-c:a", "aac", "-b:a", str(attempt.audio_bitrate // (2 if clip.channels == 1 else 1))]
    if attempt.aac_coder:
        audio += ["-aac_coder", attempt.aac_coder]
    return [
        program,
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-benchmark",
        "-y",
        "-i",
        str(clip.path),
        *video,
        "-vf",
        f"scale={width}:{height}:flags={attempt.scale_flags}",
        "-pix_fmt",
        "yuv420p",
        # The source's timestamps, as the app keeps them (no frames dropped or repeated).
        "-fps_mode",
        "passthrough",
        *audio,
        "-movflags",
        "+faststart",
        str(target),
    ]


def timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


@contextmanager
def quick_setting(name: str | None, value: str | None):
    if name is None:
        yield
        return
    before = getattr(media, name)
    setattr(media, name, value)
    try:
        yield
    finally:
        setattr(media, name, before)


def measure(clip: Clip, runs: int, ffmpeg: str, scratch: Path) -> None:
    clip.size = clip.path.stat().st_size
    found = media.probe(clip.path, clip.path.name, LIMITS)
    clip.duration = found.duration or clip.seconds
    results = {name: Timings() for name in ("quick", "encode", "ffmpeg", "ffmpeg rtime", "normal")}
    outputs: dict[str, Path] = {}

    def prepared(name: str, quick: bool) -> Callable[[], None]:
        def run() -> None:
            folder = scratch / name
            shutil.rmtree(folder, ignore_errors=True)
            result = media.prepare(clip.path, folder, clip.path.name, limits=LIMITS, quick=quick)
            assert result.derived is not None, "nothing was converted"
            outputs[name] = result.derived

        return run

    def encode() -> None:
        target = scratch / "encode.mp4"
        target.unlink(missing_ok=True)
        media._encode_mp4(clip.path, "webm", target, found, quick_attempt(), lambda _: None)
        outputs["encode"] = target

    rtimes: list[float] = []

    def command_line() -> None:
        target = scratch / "ffmpeg.mp4"
        done = subprocess.run(
            ffmpeg_command(ffmpeg, clip, target), capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"ffmpeg failed:\n{done.stderr[-2000:]}")
        rtime = re.search(r"rtime=([\d.]+)s", done.stderr)
        rtimes.append(float(rtime.group(1)) if rtime else float("nan"))
        outputs["ffmpeg"] = target

    steps = {
        "quick": prepared("quick", True),
        "encode": encode,
        "ffmpeg": command_line,
        "normal": prepared("normal", False),
    }
    for round_number in range(runs + 1):
        for name, step in steps.items():
            took = timed(step)
            if round_number:  # the first round warms up
                results[name].seconds.append(took)
    results["ffmpeg rtime"].seconds = rtimes[1:]
    for name in ("quick", "encode", "ffmpeg", "normal"):
        results[name].size = outputs[name].stat().st_size
        results[name].frames = frames_in(outputs[name])
        results[name].x264 = x264_core(outputs[name])
    clip.results = results


def measure_choices(clip: Clip, runs: int, scratch: Path) -> list[tuple[str, Timings]]:
    rows = [(label, Timings()) for label, _, _ in CHOICES]
    for round_number in range(runs + 1):
        for (_, name, value), (_, timings) in zip(CHOICES, rows, strict=True):
            folder = scratch / "choice"
            shutil.rmtree(folder, ignore_errors=True)
            with quick_setting(name, value):
                started = time.perf_counter()
                result = media.prepare(clip.path, folder, clip.path.name, limits=LIMITS, quick=True)
                took = time.perf_counter() - started
            if round_number:
                timings.seconds.append(took)
            assert result.derived is not None
            timings.size = result.derived.stat().st_size
    return rows


def kib(size: int) -> str:
    return f"{size / 1024:.0f}"


def ffmpeg_version(program: str) -> str:
    try:
        first = subprocess.run(
            [program, "-version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "not found"
    return first.removeprefix("ffmpeg version ").split(" Copyright")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (after a warm-up)")
    parser.add_argument("--seconds", default="2,5,10", help="utterance lengths, comma-separated")
    parser.add_argument("--codecs", default="vp8,vp9", help="of: " + ", ".join(CODECS))
    parser.add_argument("--size", default="640x480", help="the camera's frame, WIDTHxHEIGHT")
    parser.add_argument("--rate", type=int, default=30, help="the camera's frames a second")
    parser.add_argument("--ffmpeg", default=shutil.which("ffmpeg") or "ffmpeg")
    parser.add_argument("--choices-clip", default="vp8,5", help="CODEC,SECONDS for the choices")
    parser.add_argument("--no-choices", action="store_true", help="skip the settings table")
    options = parser.parse_args()
    width, height = (int(side) for side in options.size.lower().split("x"))
    lengths = [float(value) for value in options.seconds.split(",")]
    codecs = [value.strip() for value in options.codecs.split(",")]
    if ffmpeg_version(options.ffmpeg) == "not found":
        parser.error(f"no ffmpeg at {options.ffmpeg} (apt-get install -y ffmpeg, or --ffmpeg)")

    load_before = load_average()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="call-video-") as temp:
        scratch = Path(temp)
        clips: list[Clip] = []
        for codec in codecs:
            for seconds in lengths:
                path = scratch / f"{codec}-{seconds:g}s.webm"
                print(f"recording {path.name}...", file=sys.stderr)
                make_call_recording(path, seconds, CODECS[codec], (width, height), options.rate)
                clips.append(Clip(path, codec, seconds, width, height, channels=1))
        for clip in clips:
            print(f"timing {clip.label}...", file=sys.stderr)
            measure(clip, options.runs, options.ffmpeg, scratch)
        choices: list[tuple[str, Timings]] = []
        choice_clip = None
        if not options.no_choices:
            codec, seconds = options.choices_clip.split(",")
            choice_clip = next(
                (c for c in clips if c.codec == codec and c.seconds == float(seconds)), clips[0]
            )
            print(f"timing the settings on {choice_clip.label}...", file=sys.stderr)
            choices = measure_choices(choice_clip, options.runs, scratch)
    load_after = load_average()

    attempt = quick_attempt()
    first = clips[0].results
    print(f"\n## Call video: quick conversion ({options.runs} runs each, after one warm-up)\n")
    print(f"- machine: {machine()}; load average before {load_before}, after {load_after}")
    print(
        f"- PyAV {av.__version__} with FFmpeg {av.ffmpeg_version_info} (x264 core "
        f"{first['quick'].x264}); ffmpeg program {ffmpeg_version(options.ffmpeg)} (x264 core "
        f"{first['ffmpeg'].x264}) at {options.ffmpeg}"
    )
    print(
        f"- quick: x264 {attempt.preset}, CRF {attempt.crf}"
        f"{', tune ' + attempt.tune if attempt.tune else ''}, short side at most "
        f"{attempt.short_side} ({attempt.scale_flags}), AAC {attempt.audio_bitrate // 2000} "
        f"kbit/s mono (coder {attempt.aac_coder or 'default'}), +faststart"
    )
    print(
        f"- recordings: {width}x{height} at {options.rate} fps, real-time VP8/VP9 at 2.5 Mbit/s "
        f"+ Opus mono, live WebM (no duration in the header); took {time.monotonic() - began:.0f} s"
    )
    print(
        "\nTimes in ms, p50 (min-max). per s = p50 / the clip's duration. "
        "PyAV/ffmpeg: quick prepare against the ffmpeg process's wall time, and the conversion "
        "alone against ffmpeg's own transcode time (-benchmark rtime).\n"
    )
    print(
        "| clip | in KiB | quick prepare | per s | encode only | ffmpeg wall | ffmpeg rtime "
        "| prepare / ffmpeg wall | encode / ffmpeg rtime | out KiB PyAV / ffmpeg "
        "| frames PyAV / ffmpeg |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for clip in clips:
        r = clip.results
        print(
            f"| {clip.label} | {kib(clip.size)} | {r['quick'].cell()} | "
            f"{r['quick'].p50() / clip.duration:.3f} | {r['encode'].cell()} | "
            f"{r['ffmpeg'].cell()} | {r['ffmpeg rtime'].cell()} | "
            f"{r['quick'].p50() / r['ffmpeg'].p50():.2f} | "
            f"{r['encode'].p50() / r['ffmpeg rtime'].p50():.2f} | "
            f"{kib(r['quick'].size)} / {kib(r['ffmpeg'].size)} | "
            f"{r['quick'].frames} / {r['ffmpeg'].frames} |"
        )
    print("\nFor contrast, the uploads' conversion of the same files (prepare without quick):\n")
    print("| clip | normal prepare | per s | out KiB | normal / quick time | normal / quick size |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for clip in clips:
        r = clip.results
        print(
            f"| {clip.label} | {r['normal'].cell()} | {r['normal'].p50() / clip.duration:.3f} | "
            f"{kib(r['normal'].size)} | {r['normal'].p50() / r['quick'].p50():.2f} | "
            f"{r['normal'].size / r['quick'].size:.2f} |"
        )
    if choices and choice_clip is not None:
        chosen = choices[0][1]
        print(f"\nOne setting changed at a time, quick prepare of {choice_clip.label}:\n")
        print("| settings | quick prepare | per s | vs chosen | out KiB | size vs chosen |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, timings in choices:
            print(
                f"| {label} | {timings.cell()} | {timings.p50() / choice_clip.duration:.3f} | "
                f"{timings.p50() / chosen.p50():.2f} | {kib(timings.size)} | "
                f"{timings.size / chosen.size:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
