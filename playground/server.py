"""Start daphne on the event loop PLAYGROUND_EVENT_LOOP names: `uvloop` (the default where it is
installed) or `asyncio`.

    python -m playground.server -b 127.0.0.1 -p 8000 playground.asgi:application

The arguments are daphne's own. Daphne makes its Twisted reactor's loop when `daphne.server` is
first imported, from the event loop policy in force then, so the policy is chosen here, before
that import. uvloop runs the same asyncio API in C: the relay's per-frame work (reading the
upstream, writing WebSocket frames, waking tasks) costs the interpreter less (README,
"Performance").
"""

import asyncio
import os
import sys


def choose_event_loop(name: str | None) -> str:
    """Install the event loop policy `name` asks for; the name of the loop in force."""
    name = (name or "uvloop").strip().lower()
    if name not in ("uvloop", "asyncio"):
        raise SystemExit(f"PLAYGROUND_EVENT_LOOP must be uvloop or asyncio, not {name!r}")
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return name


def main(argv: list[str] | None = None) -> None:
    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before the event loop was chosen")
    choose_event_loop(os.environ.get("PLAYGROUND_EVENT_LOOP"))
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
