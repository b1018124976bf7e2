"""Admission of turn-starting work: at most PLAYGROUND_TURN_SLOTS turns are being saved at once
in a process; the next ones wait up to PLAYGROUND_TURN_WAIT_SECONDS for a slot, and past that
are answered busy (503 with Retry-After, or a `busy` frame on the socket), the text kept.

Why: each turn borrows a database connection for several queries. A burst of sends that all
start at once would each wait on the connection pool, and past its time-out fail with a server
error; waiting here instead bounds the work a burst starts, and leaves connections to the
streaming replies' checkpoints and to the pages. The slots are per process and per event loop
thread (one, under daphne); the gate keeps its waiters in order, so the first to come is the
first let in.
"""

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable

from django.conf import settings
from django.db import OperationalError, connection
from django.utils.translation import gettext_lazy

# What a busy answer tells the sender to wait before trying again (seconds).
RETRY_AFTER_SECONDS = 2
BUSY_MESSAGE = gettext_lazy("The server is busy; retrying…")


class Busy(Exception):
    """No slot freed in time: the sender should try again after `retry_after` seconds."""

    def __init__(self, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(f"busy, retry after {retry_after} s")
        self.retry_after = retry_after


class Gate:
    """A first-come first-served counter of slots. The number of slots is given at each
    acquire (settings may change in tests); a slot that frees goes straight to the oldest
    waiter, so a newcomer never overtakes someone already waiting."""

    def __init__(self) -> None:
        self.in_use = 0
        self.waiters: deque[asyncio.Future] = deque()

    async def acquire(self, slots: int, wait: float) -> None:
        """Take a slot, waiting at most `wait` seconds; Busy if none freed."""
        if self.in_use < slots and not self.waiters:
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # handed a slot just as the time ran out: it is ours
            self._forget(waiter)
            raise Busy() from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as the wait was cancelled: pass it on
            else:
                self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    def release(self) -> None:
        """Give the slot to the oldest waiter still waiting, or free it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: in_use stays
                return
        self.in_use -= 1


TURNS = Gate()


@contextlib.asynccontextmanager
async def turn_slot(gate: Gate = TURNS) -> AsyncIterator[None]:
    """Hold one of the process's turn slots for the block (Busy if none frees in time); it is
    given back however the block ends, an exception or a cancellation too."""
    await gate.acquire(settings.PLAYGROUND_TURN_SLOTS, settings.PLAYGROUND_TURN_WAIT_SECONDS)
    try:
        yield
    finally:
        gate.release()


def gives_back_connection[**P, R](work: Callable[P, R]) -> Callable[P, R]:
    """Admitted work (run in a worker thread) that returns its thread's pooled database
    connection as soon as it is done. A request's thread would otherwise keep it until the
    response has gone, so connections, not only slots, would pile up behind a burst. Without a
    pool (SQLite; the in-process tests) the connection stays, as Django keeps it."""

    @functools.wraps(work)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return work(*args, **kwargs)
        finally:
            if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
                connection.close()

    return run


def busy_retry_after(error: BaseException) -> int | None:
    """Seconds to tell the sender to wait if `error` means the server is busy (no slot freed,
    or the pool's time-out); None if it is some other failure."""
    if isinstance(error, Busy):
        return error.retry_after
    if pool_timed_out(error):
        return RETRY_AFTER_SECONDS
    return None


def pool_timed_out(error: BaseException) -> bool:
    """Whether a database error is the connection pool's time-out (every connection lent out
    for PLAYGROUND_DB_POOL_TIMEOUT seconds): the server is busy, not broken."""
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # no pool without psycopg's
        return False
    if not isinstance(error, OperationalError | PoolTimeout):
        return False
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, PoolTimeout):
            return True
        cause = cause.__cause__
    return False
