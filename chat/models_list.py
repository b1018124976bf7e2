"""The models a person can pick: the upstream's own list (GET /models), kept for a few minutes
per process, or PLAYGROUND_MODELS while the upstream has not answered it.

A page never waits on the upstream for long: the list is fetched in a thread of its own with a
short time-out, and a page waits for it at most FIRST_WAIT_SECONDS, once, when nothing is known
yet. A failure is kept like an answer (for the same minutes), so a down upstream costs one
request per period, not one per page.
"""

import asyncio
import logging
import threading
import time

from django.conf import settings

from . import upstream

log = logging.getLogger(__name__)

FIRST_WAIT_SECONDS = 0.3

# configuration -> (when it was fetched, time.monotonic(); the ids, or None if it failed)
_cache: dict[tuple, tuple[float, list[str] | None]] = {}
_fetching: dict[tuple, threading.Thread] = {}
_lock = threading.Lock()


def _key() -> tuple:
    return (
        bool(settings.PLAYGROUND_USE_SIMULATOR),
        settings.PLAYGROUND_API_BASE,
        settings.PLAYGROUND_API_KEY,
    )


def offered_models() -> list[str]:
    """The model ids to offer, best known now; starts a refresh when the list is stale."""
    key = _key()
    with _lock:
        entry = _cache.get(key)
        stale = (
            entry is None or time.monotonic() - entry[0] >= settings.PLAYGROUND_MODELS_CACHE_SECONDS
        )
        thread = _start_fetch(key) if stale else None
    if entry is None and thread is not None:
        thread.join(FIRST_WAIT_SECONDS)
        with _lock:
            entry = _cache.get(key)
    ids = entry[1] if entry else None
    return list(ids) if ids else list(settings.PLAYGROUND_MODELS)


def _start_fetch(key: tuple) -> threading.Thread:
    """The thread fetching the list for `key` (one at a time); called holding _lock."""
    thread = _fetching.get(key)
    if thread is None or not thread.is_alive():
        thread = threading.Thread(target=_fetch, args=(key,), name="models-list", daemon=True)
        _fetching[key] = thread
        thread.start()
    return thread


def _fetch(key: tuple) -> None:
    timeout = settings.PLAYGROUND_MODELS_TIMEOUT
    ids: list[str] | None = None
    try:
        ids = asyncio.run(upstream.list_models(timeout=timeout)) or None
    except upstream.UpstreamError as exc:
        log.warning("the upstream's model list is unavailable, offering PLAYGROUND_MODELS: %s", exc)
    except Exception as exc:  # whatever it is, the page falls back to PLAYGROUND_MODELS
        log.warning("the upstream's model list could not be read: %r", exc)
    with _lock:
        _cache[key] = (time.monotonic(), ids)


def forget() -> None:
    """Drop what is known (tests, and a changed configuration in a shell)."""
    with _lock:
        _cache.clear()
