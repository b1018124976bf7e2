"""Bytes written to a TCP connection go out at once, when nothing is waiting before them.

Twisted's TCP transport never writes in `write()`: it buffers the bytes, asks the reactor to
watch the socket for writability (an epoll_ctl call), writes on the loop's next turn, and stops
watching (another epoll_ctl). A streaming reply writes a WebSocket frame per delta, about two
thousand a second with a hundred streams, so each frame cost two system calls and a turn of the
event loop before it left. Here, when the connection's buffer is empty and nothing (TLS, a
pull producer, a closing connection) needs Twisted's own path, `write()` sends right away, as
asyncio's transports do; whatever the socket does not take goes to Twisted's buffer, in order,
and is written as before.
"""

from twisted.internet import tcp

_buffered_write = tcp.Connection.write


def write_now(self, data: bytes) -> None:
    if (
        type(data) is bytes
        and data
        and not self.TLS
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnecting
        and not self._writeDisconnected
        # A pull producer writes again when Twisted's buffer drains, so it keeps Twisted's
        # path; a streaming one (daphne's HTTP channel under every connection) is paused only
        # when that buffer fills, and bytes sent at once never fill it.
        and (self.producer is None or (self.streamingProducer and not self.producerPaused))
        and not self._tempDataBuffer
        and self.offset == len(self.dataBuffer)  # nothing written before is still waiting
    ):
        try:
            sent = self.socket.send(data)
        except OSError:  # full (EAGAIN) or lost: Twisted's path waits, or reports the loss
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    _buffered_write(self, data)


def install() -> None:
    tcp.Connection.write = write_now
