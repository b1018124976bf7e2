"""Serve the offline simulator over real HTTP with daphne.

    python -m chat.simulator --host 127.0.0.1 --port 8001 --delay 0.03

Then point the app (or any OpenAI-compatible client) at http://127.0.0.1:8001/v1.
"""

# daphne.server installs Twisted's asyncio reactor on import, so it must come before anything
# else that might import Twisted.
import daphne.server  # isort: skip

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from daphne.endpoints import build_endpoint_description_strings

from .app import ASGIApp, Message, Receive, Scope, Send, create_app

logger = logging.getLogger("chat.simulator")


class SimulatorServer(daphne.server.Server):
    """daphne, plus the one thing ASGI leaves to the server: dropping a connection.

    When an app raises after its response started, uvicorn and hypercorn close the connection
    without ending the body, so the client sees a broken stream. daphne instead tries to send a
    500 page on a response that has already started, which raises inside its once-a-second
    housekeeping loop and leaves the client waiting for a body that never ends. [sim:drop]
    relies on the first behaviour, so this server provides it.
    """

    def create_application(self, protocol: Any, scope: Scope) -> Any:
        application = self.application
        self.application = _drop_on_failure(application, protocol)
        try:
            return super().create_application(protocol, scope)
        finally:
            self.application = application


def _drop_on_failure(app: ASGIApp, protocol: Any) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            started = started or message["type"] == "http.response.start"
            last_body = message["type"] == "http.response.body" and not message.get("more_body")
            finished = finished or last_body
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception as exc:
            # Before the response (daphne sends a 500) or after it ended, daphne copes.
            if scope["type"] != "http" or not started or finished:
                raise
            logger.info("dropping the connection: %s", exc)
            # loseConnection flushes what was written, then closes without the final chunk.
            protocol.loseConnection()

    return guarded


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chat.simulator",
        description="Serve the offline simulator, an OpenAI-compatible /chat/completions.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--delay", type=float, default=0.03, help="seconds before each streamed token"
    )
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    if args.delay < 0:
        parser.error("--delay must be 0 or more")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/v1"

    def ready() -> None:
        print(f"Offline simulator listening on {url}", flush=True)

    server = SimulatorServer(
        application=create_app(delay=args.delay),
        endpoints=build_endpoint_description_strings(host=args.host, port=args.port),
        ready_callable=ready,
        action_logger=_log_action if args.verbose else None,
        server_name="omni-playground-simulator",
    )
    server.run()


def _log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
    logger.info("%s %s %s", protocol, action, details)


if __name__ == "__main__":
    main()
