"""Shared fixtures. Keep this import-light: no Django imports at module level."""

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SIMULATOR_START_SECONDS = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """Base URL (with /v1) of the offline simulator, served by daphne on a loopback port."""
    port = _free_port()
    # A file, not a pipe: nobody reads the output while tests run, and a full pipe would block
    # the server.
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "chat.simulator", "--host", "127.0.0.1", "--port", str(port)]
            + ["--delay", "0.005"],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SIMULATOR_START_SECONDS
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        pytest.fail(f"the simulator did not start on port {port}:\n{output.read()}")
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
