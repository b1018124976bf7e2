"""Which pages may open the app's WebSockets: its own, compared by origin exactly.

A browser sends the page's cookies with a WebSocket handshake to any site, and the same-origin
policy does not apply to WebSockets: the server must check the page's Origin itself. Channels'
AllowedHostsOriginValidator compares host names only, so a page on another port of the same
host (another app, a dev server) could open a user's socket, read the transcript and send as
them. Here scheme, host and port must all match, as Django's CSRF check compares a form post's
Origin.
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
PAGE_SCHEMES = {"ws": "http", "wss": "https"}


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _normalised(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin as a browser writes it, or None if it is not one."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:  # a port out of range, or not a number
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    host, _ = split_domain_port(parts.netloc)
    if not host:
        return None
    return parts.scheme, host, port or DEFAULT_PORTS[parts.scheme]


def allowed_hosts() -> list[str]:
    # As Django's request.get_host(): with DEBUG on and no hosts set, localhost is allowed.
    hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not hosts:
        return [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _is_trusted(page: tuple[str, str, int]) -> bool:
    """Whether CSRF_TRUSTED_ORIGINS names the page's origin, read as Django's CSRF check reads
    it: exactly, or "https://*.example.com" for the subdomains on that scheme and port."""
    scheme, host, port = page
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in entry:
            parts = urlsplit(entry.strip().lower())
            if parts.scheme == scheme and is_same_domain(netloc, parts.netloc.lstrip("*")):
                return True
        elif _normalised(entry) == page:
            return True
    return False


def is_own_origin(scope: dict) -> bool:
    """Whether the page that opens this socket is one of the site's own: an origin trusted by
    name (CSRF_TRUSTED_ORIGINS, for a site behind a proxy on another name, scheme or port), or
    the scheme and port the socket came in on with an allowed host name, the host it was
    opened on. Settings are read on every call (tests override them)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return False  # browsers always send one: a socket without is not from a page
    page = _normalised(origin)
    if page is None:
        return False
    if _is_trusted(page):
        return True
    scheme, host, port = page
    if scheme != PAGE_SCHEMES.get(scope.get("scheme", "ws")):
        return False
    server = scope.get("server")
    # Real servers always say which port they serve; a scope without one (a test harness) is
    # taken as the scheme's default port.
    served_port = server[1] if server and server[1] is not None else DEFAULT_PORTS[scheme]
    if port != served_port or not validate_host(host, allowed_hosts()):
        return False
    opened_on = _header(scope, b"host")
    if opened_on is not None:
        # The host the browser opened the socket on is the page's own: with ALLOWED_HOSTS "*"
        # (or broad patterns) another site's page on the same port is not.
        if _normalised(f"{scheme}://{opened_on}") != page:
            return False
    return True


class SameOriginValidator:
    """ASGI middleware: a WebSocket from any page but the site's own is refused at handshake."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not is_own_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
