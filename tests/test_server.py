"""playground/server.py: daphne on the event loop PLAYGROUND_EVENT_LOOP names."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from playground.server import choose_event_loop
from tests.processes import free_port, manage, stop

REPO = Path(__file__).resolve().parent.parent

# What daphne's reactor runs on, as the server module starts it (a fresh interpreter: daphne
# makes its loop once, when daphne.server is first imported).
PROBE = """
import os, sys
from playground.server import choose_event_loop
print(choose_event_loop(os.environ.get("PLAYGROUND_EVENT_LOOP")))
import daphne.server
print(type(daphne.server.twisted_loop).__module__)
"""


def loop_of(name: str | None) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    if name is not None:
        env["PLAYGROUND_EVENT_LOOP"] = name
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_daphne_runs_on_uvloop_by_default():
    assert loop_of(None) == ["uvloop", "uvloop"]


def test_asyncio_s_own_loop_can_be_chosen():
    assert loop_of("asyncio") == ["asyncio", "asyncio.unix_events"]


def test_an_unknown_loop_is_refused_with_its_name():
    with pytest.raises(SystemExit, match="'trio'"):
        choose_event_loop("trio")


def test_the_server_answers_on_uvloop(tmp_path):
    """The module starts a real server: a page answers over it."""
    env = {"PLAYGROUND_DATA_DIR": str(tmp_path), "PLAYGROUND_MANIFEST_STATIC": "false"}
    manage(env, "migrate", "--noinput", "-v", "0")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(port)]
        + ["playground.asgi:application"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5, follow_redirects=True)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert response.status_code == 200 and b'name="password' in response.content
    finally:
        stop(server)
