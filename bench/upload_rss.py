"""Upload memory benchmark: how much a 1 GB video upload raises the server's resident memory.

    .venv/bin/python bench/upload_rss.py [--size-mib 1024] [--chunk-mib 8] [--time-limit 900]
                                         [--skip-processing]

Quality bar (docs/DESIGN.md): uploading a 1 GB video raises the server's resident memory by at
most 64 MB. Daphne keeps each request body in memory, so the app takes files in chunks
(chat/attachments.py); this measures that path end to end.

Method
------
- The app as `scripts/serve` runs it: `manage.py migrate` on a fresh SQLite data dir, then one
  daphne process on a loopback port, the offline simulator as upstream. A user is made with
  `manage.py shell -c`; this process logs in with httpx (log-in form, CSRF cookie) like a browser.
- The file is a real video, made here in a few seconds: 2 s of 1280x720 noise at 30 frames/s,
  encoded once with libx264 (ultrafast, qp 10: noise barely compresses, so frames are big), then
  those packets are muxed again and again, timestamps shifted, into one MP4 until it reaches the
  size asked for (1 GiB by default). Every frame decodes; it is one long H.264 video with no audio.
- Warm-up: a small real MP4 (the same recipe, 320x240, 1 s) is uploaded and processed first, so
  the code paths and libraries the upload touches are loaded before the baseline is taken.
- The server's RSS is read from /proc/<pid>/status (VmRSS) every 50 ms by a thread. Before each
  phase the kernel's peak counter is reset (`echo 5 > /proc/<pid>/clear_refs`), and VmHWM after
  the phase gives the exact peak, even between samples.
- Upload: POST /uploads/, then PUT chunks of --chunk-mib (8 MiB default, the server's
  PLAYGROUND_UPLOAD_CHUNK_BYTES is set to match) one after another on one keep-alive connection.
  Baseline = median VmRSS over the second before the upload starts.
- Processing (the server probes the file and, as it is larger than PLAYGROUND_MAX_VIDEO_BYTES,
  re-encodes it smaller in a worker thread) is measured separately and reported with its outcome;
  --skip-processing deletes the upload once it is in instead of waiting.

Everything runs on 127.0.0.1, is bounded by --time-limit, and is removed on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.processes import free_port, stop  # noqa: E402

MIB = 1024 * 1024
PASSWORD = "correct-horse-battery-9"
TARGET_BYTES = 64 * 1000 * 1000  # "64 MB", read strictly


class Deadline(Exception):
    pass


def check(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise Deadline(f"time limit reached while {what}")


# The video -------------------------------------------------------------------------------------


def encode_unit(path: Path, width: int, height: int, frames: int, rate: int = 30) -> None:
    """`frames` of noise as H.264 in MP4 (no B-frames, one key frame at the start)."""
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "qp": "10", "bf": "0"}
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(os.urandom(plane.buffer_size))
            frame.pts, frame.time_base = index, Fraction(1, rate)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)


def make_video(path: Path, target: int, width: int, height: int, unit_frames: int) -> dict:
    """A real MP4 of at least `target` bytes: one encoded unit muxed again and again."""
    unit = path.with_name("unit.mp4")
    encode_unit(unit, width, height, unit_frames)
    written, repeats, end = 0, 0, 0
    with av.open(str(unit)) as first:
        template = first.streams.video[0]
        time_base = template.time_base
        span = max(p.pts + (p.duration or 0) for p in first.demux(template) if p.size)
    with av.open(str(unit)) as first, av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream_from_template(first.streams.video[0])
        while written < target:
            with av.open(str(unit)) as source:  # fresh packets: muxing consumes them
                for packet in source.demux(source.streams.video[0]):
                    if not packet.size:
                        continue
                    packet.pts += repeats * span
                    packet.dts += repeats * span
                    end = packet.pts + (packet.duration or 0)
                    packet.stream = stream
                    output.mux(packet)
                    written += packet.size
            repeats += 1
    unit.unlink()
    return {"repeats": repeats, "seconds": float(end * time_base), "size": path.stat().st_size}


# The server ------------------------------------------------------------------------------------


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """VmRSS of one process every `interval` seconds, with monotonic time stamps."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append((time.monotonic(), rss_kib(self.pid)))
            except (OSError, RuntimeError):
                return
            self.stopped.wait(self.interval)

    def between(self, start: float, end: float) -> list[int]:
        return [kib for at, kib in self.samples if start <= at <= end]


def start_server(
    data_dir: Path, chunk_bytes: int, log, app: str = "playground.asgi:application"
) -> tuple[subprocess.Popen, str, dict]:
    env = {
        **os.environ,
        "PLAYGROUND_DATA_DIR": str(data_dir),
        "PLAYGROUND_MANIFEST_STATIC": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PLAYGROUND_API_KEY": "",
        "PLAYGROUND_API_BASE": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "PLAYGROUND_UPLOAD_CHUNK_BYTES": str(chunk_bytes),
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user('bench', password={PASSWORD!r})"
    )
    subprocess.run([*manage, "shell", "-v", "0", "-c", code], cwd=REPO, env=env, check=True)
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [*args, app],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/accounts/login/", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start; see its log") from None
            time.sleep(0.1)
    return process, url, env


def log_in(client: httpx.Client) -> str:
    client.get("/accounts/login/").raise_for_status()
    response = client.post(
        "/accounts/login/",
        data={
            "username": "bench",
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    if response.status_code != 302:
        raise RuntimeError(f"log-in failed: {response.status_code}")
    return client.cookies["csrftoken"]  # rotated at log-in


# Uploading -------------------------------------------------------------------------------------


def upload(client: httpx.Client, token: str, path: Path, chunk: int, deadline: float) -> dict:
    size = path.stat().st_size
    started = client.post(
        "/uploads/",
        data={"name": path.name, "size": str(size), "type": "video/mp4"},
        headers={"X-CSRFToken": token},
    )
    started.raise_for_status()
    info = started.json()
    assert info["chunk_size"] == chunk, info
    offset, answer = 0, {}
    with open(path, "rb") as source:
        while offset < size:
            check(deadline, "uploading")
            data = source.read(chunk)
            response = client.put(
                info["upload_url"],
                content=data,
                headers={
                    "X-CSRFToken": token,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/octet-stream",
                },
            )
            if response.status_code != 200:
                raise RuntimeError(f"chunk at {offset}: {response.status_code} {response.text}")
            answer = response.json()
            offset = answer["received"]
            source.seek(offset)
    return {**info, **answer}


def wait_processed(client: httpx.Client, url: str, deadline: float) -> dict:
    while True:
        status = client.get(url).json()
        if status["status"] != "processing" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


# Main ------------------------------------------------------------------------------------------


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def interrupted(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big file")
    parser.add_argument("--chunk-mib", type=float, default=8, help="bytes per PUT")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for everything")
    parser.add_argument("--skip-processing", action="store_true", help="do not wait for it")
    options = parser.parse_args()
    deadline = time.monotonic() + options.time_limit
    chunk = int(options.chunk_mib * MIB)
    rows: list[tuple[str, str]] = []
    verdict = 1
    signal.signal(signal.SIGTERM, interrupted)  # like Ctrl-C: the finally blocks clean up

    with tempfile.TemporaryDirectory(prefix="upload-rss-") as temp:
        temp_dir = Path(temp)
        data_dir, work = temp_dir / "data", temp_dir / "files"
        data_dir.mkdir()
        work.mkdir()
        print("making the videos...", file=sys.stderr)
        made = time.monotonic()
        small = work / "warm-up.mp4"
        make_video(small, 1, 320, 240, 30)
        big = work / "big-video.mp4"
        facts = make_video(big, options.size_mib * MIB, 1280, 720, 60)
        made = time.monotonic() - made
        log_path = temp_dir / "daphne.log"
        process = None
        with open(log_path, "w") as log:
            try:
                print("starting daphne...", file=sys.stderr)
                process, url, _ = start_server(data_dir, chunk, log)
                pid = process.pid
                sampler = Sampler(pid)
                sampler.start()
                idle = rss_kib(pid)
                with httpx.Client(base_url=url, timeout=120) as client:
                    token = log_in(client)
                    print("warming up...", file=sys.stderr)
                    warm = upload(client, token, small, chunk, deadline)
                    warm = wait_processed(client, warm["upload_url"], deadline)
                    time.sleep(1.0)
                    before = time.monotonic()
                    time.sleep(1.0)
                    baseline = statistics.median(sampler.between(before, time.monotonic()))
                    can_reset = reset_peak(pid)
                    print(f"uploading {facts['size']:,} bytes...", file=sys.stderr)
                    began = time.monotonic()
                    answer = upload(client, token, big, chunk, deadline)
                    took = time.monotonic() - began
                    ended = time.monotonic()
                    upload_hwm = rss_kib(pid, "VmHWM") if can_reset else None
                    upload_peak = max(sampler.between(began, ended))
                    after_upload = rss_kib(pid)

                    rows += [
                        (
                            "big file",
                            f"{big.name}: {facts['size']:,} bytes ({mib(facts['size'] / 1024)})",
                        ),
                        (
                            "  what it is",
                            f"real H.264 MP4, 1280x720 noise, 30 fps, {facts['seconds']:.1f} s, no "
                            f"audio: 60 encoded frames muxed {facts['repeats']} times (made in "
                            f"{made:.1f} s)",
                        ),
                        ("chunk size", f"{chunk:,} bytes"),
                        ("server RSS, idle after start", mib(idle)),
                        ("warm-up upload (small real MP4)", warm["status"]),
                        ("baseline RSS (median, 1 s before upload)", mib(baseline)),
                        ("peak RSS during upload (50 ms samples)", mib(upload_peak)),
                        (
                            "peak RSS during upload (kernel VmHWM)",
                            mib(upload_hwm) if upload_hwm else "n/a (clear_refs refused)",
                        ),
                    ]
                    peak = max(upload_peak, upload_hwm or 0)
                    rise_bytes = (peak - baseline) * 1024
                    verdict = 0 if rise_bytes <= TARGET_BYTES else 1
                    rows += [
                        (
                            "peak - baseline",
                            f"{mib(peak - baseline)} = {rise_bytes / 1e6:.1f} MB "
                            f"(target <= 64 MB): {'PASS' if verdict == 0 else 'FAIL'}",
                        ),
                        ("RSS right after the last chunk", mib(after_upload)),
                        ("upload time", f"{took:.1f} s ({-(-facts['size'] // chunk)} PUTs)"),
                        ("throughput", f"{facts['size'] / MIB / took:.0f} MiB/s"),
                        ("upload status after last chunk", answer["status"]),
                    ]
                    if options.skip_processing:
                        client.delete(answer["upload_url"], headers={"X-CSRFToken": token})
                        rows.append(("processing", "skipped (--skip-processing)"))
                    else:
                        print("waiting for processing...", file=sys.stderr)
                        reset_peak(pid)
                        began = time.monotonic()
                        status = wait_processed(client, answer["upload_url"], deadline)
                        took = time.monotonic() - began
                        hwm = rss_kib(pid, "VmHWM") if can_reset else None
                        sampled = max(sampler.between(began, time.monotonic()) or [0])
                        outcome = status["status"]
                        if status.get("error"):
                            outcome += f": {status['error']}"
                        if outcome == "processing":
                            outcome += " (still, at the time limit)"
                        rows += [
                            ("processing outcome", outcome),
                            ("processing time", f"{took:.1f} s"),
                            (
                                "peak RSS during processing",
                                f"{mib(max(sampled, hwm or 0))} "
                                f"(+{mib(max(sampled, hwm or 0) - baseline)} over baseline)",
                            ),
                        ]
                    rows.append(("RSS at the end", mib(rss_kib(pid))))
                sampler.stopped.set()
            except Deadline as exc:
                rows.append(("stopped", str(exc)))
            finally:
                if process is not None:
                    stop(process)
        if verdict and rows and rows[-1][0] == "stopped":
            print(log_path.read_text()[-3000:], file=sys.stderr)

    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
