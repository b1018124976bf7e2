"""playground/tcp_writes.py: bytes written to a Twisted TCP connection go out at once when
nothing waits before them, and in order whatever the socket takes."""

import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A Twisted server (the reactor daphne runs on) on a loopback port, with the write path
# installed or not. On connection it writes small numbered pieces, a block larger than the
# socket's buffers, more pieces, and closes; when the connection is gone it prints how often
# the reactor was asked to watch a socket for writing. The test reads slowly at first, so the
# socket fills and the rest must wait in Twisted's buffer.
SERVER = """
import sys
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import protocol, reactor
if sys.argv[1] == "now":
    from playground import tcp_writes
    tcp_writes.install()

watched = 0
add_writer = reactor.addWriter
def counting(writer):
    global watched
    watched += 1
    add_writer(writer)
reactor.addWriter = counting

BLOCK = bytes(range(256)) * 32768  # 8 MiB
PIECES = [b"%06d;" % n for n in range(2000)]

class Talk(protocol.Protocol):
    def connectionMade(self):
        for piece in PIECES[:1000]:
            self.transport.write(piece)
        self.transport.write(BLOCK)
        for piece in PIECES[1000:]:
            self.transport.write(piece)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        print("watched", watched, flush=True)
        reactor.stop()

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Talk), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""
EXPECTED = (
    b"".join(b"%06d;" % n for n in range(1000))
    + bytes(range(256)) * 32768
    + b"".join(b"%06d;" % n for n in range(1000, 2000))
)


def run(mode: str) -> tuple[bytes, int]:
    """What the server sent, read slowly at first; and its count of writability watches."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, mode], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            time.sleep(0.3)  # the server's socket fills meanwhile
            got = bytearray()
            while chunk := sock.recv(65536):
                got += chunk
        watched = int(server.stdout.readline().split()[1])
        server.wait(timeout=30)
    finally:
        server.kill()
    return bytes(got), watched


def test_bytes_arrive_whole_and_in_order_when_the_socket_fills():
    arrived, _watched = run("now")
    assert arrived == EXPECTED


def test_writes_to_an_idle_connection_need_no_writability_watch():
    _arrived, buffered_watches = run("buffered")
    arrived, watches = run("now")
    assert arrived == EXPECTED
    # Twisted's own path asks the reactor to watch the socket on every write; sent at once,
    # the thousand pieces written to the idle connection need no watch (what comes after the
    # block waits for it in Twisted's buffer, as before).
    assert buffered_watches - watches >= 1000
