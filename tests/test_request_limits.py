"""Request bodies too large for their route are refused by the server before they are read:
a real daphne process, spoken to over raw sockets (an HTTP client would send the body first)."""

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT, running
from tests.processes import free_port

CHUNK_BYTES = 64 * 1024
IMPORT_BYTES = 3 * 1024 * 1024  # more than other routes take
CALL_BYTES = 4 * 1024 * 1024  # a call's utterance, sent whole
GIB = 1024**3


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """The app under daphne on a loopback port, with small chunk and import limits."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "PLAYGROUND_DATA_DIR": data_dir,
            "PLAYGROUND_MANIFEST_STATIC": "false",
            "PLAYGROUND_UPLOAD_CHUNK_BYTES": str(CHUNK_BYTES),
            "PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES": str(IMPORT_BYTES),
            "PLAYGROUND_MAX_CALL_BYTES": str(CALL_BYTES),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": "",
            "REDIS_URL": "",
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        port = free_port()
        args = [sys.executable, "-m", "playground.server", "-b", "127.0.0.1", "-p", str(port)]
        with running(args + ["playground.asgi:application"], port, env):
            yield port


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def answer(sock: socket.socket, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes, or what came within `timeout`."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            block = sock.recv(65536)
            if not block:
                break
            data += block
            if b"\r\n\r\n" in data and _complete(data):
                break
    except TimeoutError:
        pass
    return data


def _complete(data: bytes) -> bool:
    headers, _, body = data.partition(b"\r\n\r\n")
    for line in headers.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1])


def ask(port: int, request: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request + body)
        return answer(sock)


def test_a_declared_body_past_the_limit_is_refused_before_a_byte_of_it_is_sent(server):
    request = head(
        "POST",
        "/accounts/login/",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {GIB}",
    )
    started = time.monotonic()
    reply = ask(server, request)
    assert status(reply) == 413
    assert time.monotonic() - started < 2
    assert b"Connection: close" in reply
    assert b"at most 2.5 MB" in reply


def test_a_refused_body_gets_no_100_continue(server):
    request = head(
        "POST",
        "/accounts/login/",
        f"Content-Length: {GIB}",
        "Expect: 100-continue",
    )
    reply = ask(server, request)
    assert status(reply) == 413
    assert b"100 Continue" not in reply


def test_a_body_within_the_limit_waits_for_its_100_continue_and_reaches_the_app(server):
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(
            head(
                "POST",
                "/accounts/login/",
                "Content-Type: application/x-www-form-urlencoded",
                "Content-Length: 11",
                "Expect: 100-continue",
            )
        )
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"username=a&")
        reply = answer(sock)
    assert status(reply) == 403  # the app's CSRF check: the request got through to Django


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    limit = int(2.5 * 1024 * 1024)
    piece = b"x" * (256 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    reply = b""
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(head("POST", "/accounts/login/", "Transfer-Encoding: chunked"))
        while sent < 64 * 1024 * 1024 and not reply:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                reply = answer(sock)
            elif writable:
                try:
                    sock.sendall(chunk)
                except OSError:
                    reply = answer(sock)
                    break
                sent += len(piece)
            else:
                break
    assert status(reply) == 413
    # Refused once past the limit, not after the whole body: the client had sent little more
    # than the limit (plus what the sockets' buffers hold) when the answer came.
    assert limit < sent < limit + 16 * 1024 * 1024


def test_a_chunked_body_to_a_route_that_takes_large_ones_must_declare_its_length(server):
    for path in ("/import/", "/uploads/abc/", "/c/1/call/turn/"):
        with socket.create_connection(("127.0.0.1", server)) as sock:
            sock.sendall(
                head("PUT" if "uploads" in path else "POST", path, "Transfer-Encoding: chunked")
            )
            reply = answer(sock)
        assert status(reply) == 411, path
        assert b"Content-Length" in reply.partition(b"\r\n\r\n")[2]


def test_an_upload_chunk_may_be_the_chunk_size_and_no_more_than_a_little_over(server):
    over = ask(server, head("PUT", "/uploads/abc/", f"Content-Length: {CHUNK_BYTES * 3}"))
    assert status(over) == 413
    body = over.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"].startswith("Send at most")

    reply = ask(
        server,
        head("PUT", "/uploads/abc/", f"Content-Length: {CHUNK_BYTES}", "Upload-Offset: 0"),
        b"x" * CHUNK_BYTES,
    )
    assert status(reply) != 413  # the view answers: nobody is logged in


def test_an_import_takes_its_own_limit_and_says_so_where_the_form_shows_errors(server):
    over = ask(server, head("POST", "/import/", f"Content-Length: {IMPORT_BYTES * 2}"))
    assert status(over) == 413
    assert b'data-testid="error"' in over
    assert b"This archive is 6 MB; archives of up to 3 MB can be imported." in over

    # Larger than any other route takes, but within the import's limit: Django gets it.
    reply = ask(
        server, head("POST", "/import/", f"Content-Length: {IMPORT_BYTES}"), b"x" * IMPORT_BYTES
    )
    assert status(reply) != 413
    assert status(ask(server, head("POST", "/c/1/send/", f"Content-Length: {IMPORT_BYTES}"))) == 413


def test_a_calls_utterance_takes_its_own_limit_and_the_call_reads_why(server):
    path = "/c/1/call/turn/"
    over = ask(server, head("POST", path, f"Content-Length: {CALL_BYTES + 1}"))
    assert status(over) == 413
    body = json.loads(over.partition(b"\r\n\r\n")[2])
    assert body["error"] == "An utterance can be at most 4 MB; this one is larger."

    reply = ask(server, head("POST", path, f"Content-Length: {CALL_BYTES}"), b"x" * CALL_BYTES)
    assert status(reply) != 413  # the view answers: nobody is logged in


def test_the_server_goes_on_serving_after_refusals(server):
    for _ in range(5):
        assert status(ask(server, head("POST", "/", f"Content-Length: {GIB}"))) == 413
    reply = ask(server, head("GET", "/accounts/login/"))
    assert status(reply) in (200, 302)
