import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django_asgi_app = get_asgi_application()

import asyncio  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.attachments import paced_http  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from playground.origins import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Large downloads go out no faster than the client reads them (see paced_http).
        "http": paced_http(django_asgi_app),
        # Only the site's own pages open a socket: scheme, host and port (playground.origins).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Under daphne (Twisted's reactor), replies streaming when the server is asked to stop (SIGTERM,
# SIGINT) are settled before it goes: `interrupted`, with their text, and the pages told.
if "twisted.internet.reactor" in sys.modules:
    from twisted.internet import defer, reactor

    from chat.generation import interrupt_running
    from playground import request_limits, tcp_writes

    # Request bodies too large for their route are refused before they are read.
    request_limits.install()
    # What the app writes to a connection goes out at once (playground/tcp_writes.py).
    tcp_writes.install()

    def _settle_replies() -> defer.Deferred:
        return defer.Deferred.fromFuture(asyncio.ensure_future(interrupt_running()))

    reactor.addSystemEventTrigger("before", "shutdown", _settle_replies)

# What start-up loaded lives as long as the process: keep it out of the collector's full scans,
# which otherwise pause every stream at once.
gc.freeze()
