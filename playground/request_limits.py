"""Request bodies refused at the server, before they are read.

daphne (Twisted) collects a request's whole body before the app sees any of it, and then hands
it over in one go: a guard inside Django comes after the memory is spent. So the limit is
applied where Twisted learns the body's size: `gotLength`, called once the headers are in, for a
declared `Content-Length`, and `handleContentChunk`, called for every piece that arrives, for a
chunked body that declares none (on a route that takes bodies larger than most, an upload chunk
or an import, such a body is answered 411 at once: browsers always declare the length there).
Past the limit for its route the request is answered 413 at once (no `100 Continue` first),
what the client still sends is read and dropped for a moment so the answer reaches it, and the
connection closes. The app never sees the request.

Limits by route (`body_limit`): an upload chunk takes the chunk size and a little more, an
archive import its own limit, a call's utterance PLAYGROUND_MAX_CALL_BYTES, anything else
PLAYGROUND_MAX_BODY_BYTES (2.5 MiB, Django's own default for a form).
"""

import json
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote

from daphne import http_protocol
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.translation import gettext as _
from twisted.internet import reactor

from chat.archive import too_big
from chat.attachments import human_bytes
from chat.languages import of_scope

# Room for a multipart form's boundaries and fields around an archive.
FORM_OVERHEAD = 64 * 1024
# Room for headers a proxy may count in, around an upload chunk.
CHUNK_OVERHEAD = 64 * 1024
# After a refusal, how long and how much of the rest of the body is read and dropped, so the
# client (which may still be sending) gets the answer rather than a reset connection.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
# Routes that take bodies larger than most: a chunked body there is refused before it is read.
LENGTH_REQUIRED = {"upload", "import_conversation", "call_turn"}


def route_of(path: str) -> str | None:
    """The URL name of a request target (`/uploads/abc/?x=1` -> 'upload')."""
    try:
        return resolve(unquote(path.split("?", 1)[0])).url_name
    except Resolver404:
        return None


def body_limit(name: str | None) -> int:
    """The largest request body, in bytes, that the route named `name` takes."""
    if name == "upload":
        return settings.PLAYGROUND_UPLOAD_CHUNK_BYTES + CHUNK_OVERHEAD
    if name == "import_conversation":
        return settings.PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES + FORM_OVERHEAD
    if name == "call_turn":
        return settings.PLAYGROUND_MAX_CALL_BYTES
    return settings.PLAYGROUND_MAX_BODY_BYTES


def refusal(name: str | None, limit: int, size: int | None) -> bytes:
    """The 413 answer to a body of `size` bytes (None: not declared), whole, as it goes on the
    wire: an import's in the words and markup of the import form's own refusals."""
    if name == "import_conversation":
        message = too_big(size).message
        body = render_to_string("chat/archive.html#refusal", {"message": message}).encode()
        kind = b"text/html; charset=utf-8"
    elif name == "upload":
        text = _("Send at most %(limit)s at a time.") % {"limit": human_bytes(limit)}
        body = json.dumps({"error": text}).encode()
        kind = b"application/json"
    elif name == "call_turn":  # in the call's words (chat/calls.py)
        text = _("An utterance can be at most %(limit)s; this one is larger.") % {
            "limit": human_bytes(limit)
        }
        body, kind = json.dumps({"error": text}).encode(), b"application/json"
    else:
        text = _("This request is too large: this address takes at most %(limit)s.") % {
            "limit": human_bytes(limit)
        }
        body = f"{text}\n".encode()
        kind = b"text/plain; charset=utf-8"
    return _answer(b"413 Content Too Large", kind, body)


def _answer(status: bytes, kind: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: " + kind + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )


def length_required(name: str | None) -> bytes:
    """The 411 answer to a chunked body on a route that takes large ones. Pure."""
    text = _("Send this request with a Content-Length header.")
    if name in ("upload", "call_turn"):
        body, kind = json.dumps({"error": text}).encode(), b"application/json"
    else:
        body, kind = text.encode(), b"text/plain; charset=utf-8"
    return _answer(b"411 Length Required", kind, body)


def language_of(headers) -> str:
    """The language of the page that sent a request (its language cookie, else its
    Accept-Language), from Twisted's headers, as chat.languages finds a socket's."""
    cookies = {}
    for line in headers.getRawHeaders(b"cookie") or []:
        try:
            parsed = SimpleCookie(line.decode("latin-1"))
        except CookieError:
            continue
        cookies.update({key: morsel.value for key, morsel in parsed.items()})
    accept = b", ".join(headers.getRawHeaders(b"accept-language") or [])
    return of_scope({"cookies": cookies, "headers": [(b"accept-language", accept)]})


class LimitedRequest(http_protocol.WebRequest):
    """daphne's request, refused as soon as its body is known to be too large."""

    refused = False

    def gotLength(self, length: int | None) -> None:
        # The request line is the channel's until the body is in: its path decides the limit.
        self.route = route_of(self.channel._path.decode("latin-1"))
        self.body_limit = body_limit(self.route)
        self.body_received = 0
        if length is not None and length > self.body_limit:
            super().gotLength(0)
            self.refuse(length)
            return
        if length is None and self.route in LENGTH_REQUIRED:
            # A route that takes large bodies wants their length first (browsers always give
            # it): one without would be read up to the limit before it could be refused.
            super().gotLength(0)
            self.refuse(None, status=411)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self.refuse(None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)

    def refuse(self, size: int | None, status: int = 413) -> None:
        self.refused = True
        channel = self.channel
        transport = channel.transport
        # Twisted answers `Expect: 100-continue` right after gotLength: not for this one.
        self.requestHeaders.removeHeader(b"expect")
        dropped = 0

        def drop(data: bytes) -> None:
            nonlocal dropped
            dropped += len(data)
            if dropped > LINGER_BYTES:
                transport.abortConnection()

        # What follows (the rest of this read, and every later one) is dropped unparsed.
        channel.dataReceived = channel.rawDataReceived = drop
        # In the sender's words: nothing of Django's has chosen a language for this request.
        with translation.override(language_of(self.requestHeaders)):
            if status == 413:
                answer = refusal(self.route, self.body_limit, size)
            else:
                answer = length_required(self.route)
        transport.write(answer)
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()  # the answer, then end of stream; still reading
        else:
            transport.loseConnection()

        def give_up() -> None:
            if transport.connected:
                transport.abortConnection()

        reactor.callLater(LINGER_SECONDS, give_up)


def install() -> None:
    """Make daphne build LimitedRequest for every HTTP request (its factory looks the class up
    in its module each time a connection comes)."""
    http_protocol.WebRequest = LimitedRequest
