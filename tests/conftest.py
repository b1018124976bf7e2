"""Shared fixtures. Keep this import-light: no Django imports at module level."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(args: list[str], port: int, env: dict | None = None) -> Iterator[None]:
    """Run a server process until the block ends; fail with its output if it never listens."""
    # A file, not a pipe: nobody reads the output while tests run, and a full pipe would block.
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        pytest.fail(f"{args[:3]} did not start on port {port}:\n{output.read()}")
                    time.sleep(0.05)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """Base URL (with /v1) of the offline simulator, served by daphne on a loopback port."""
    port = free_port()
    args = [sys.executable, "-m", "chat.simulator", "--host", "127.0.0.1", "--port", str(port)]
    with running(args + ["--delay", "0.005"], port):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(autouse=True)
def _static_from_source(settings):
    """Static files from the source folders: no `collectstatic` needed, no stale copy used."""
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploaded and generated files go to a folder of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test starts with an empty in-memory channel layer (queues belong to one loop)."""
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()
