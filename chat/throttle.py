"""Log-in throttling: slow down password guessing without letting anyone lock others out.

Every try is counted before the password is checked (so parallel tries cannot slip past a
limit), and a successful one is taken back off. Three counters, each over WINDOW seconds:

- one username from one address: PAIR_LIMIT tries, then that pair waits out the window;
- one username from anywhere: past USERNAME_LIMIT, one try per USERNAME_DELAY seconds in all,
  a short delay rather than a lockout; addresses the person logged in from before (for
  KNOWN_SECONDS) are not slowed, so a guessed account still opens from its owner's home;
- one address, any usernames: ADDRESS_LIMIT tries, then the address waits out the window
  (a shared address, a proxy or an office, has room for many people's typos).

The address is REMOTE_ADDR, which playground.middleware.ClientAddress sets from a trusted
proxy's X-Forwarded-For; an IPv6 address counts as its /64, which one host usually holds
whole. Counts live in Django's cache: Redis, shared by every process, when REDIS_URL is set.
"""

import hashlib
import ipaddress
import math
import time

from django.core.cache import cache
from django.utils.translation import ngettext

WINDOW = 15 * 60
PAIR_LIMIT = 5
USERNAME_LIMIT = 5
USERNAME_DELAY = 30
ADDRESS_LIMIT = 100
KNOWN_SECONDS = 30 * 24 * 3600


def _address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _keys(username: str, address: str) -> dict[str, str]:
    # Hashed: a username can be anything a form accepts, a cache key cannot.
    user = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    where = _address(address)
    return {
        "pair": f"login:pair:{user}:{where}",
        "user": f"login:user:{user}",
        "gate": f"login:gate:{user}",
        "address": f"login:addr:{where}",
        "known": f"login:known:{user}:{where}",
    }


def _count(key: str, now: float) -> int:
    """One more try on a counter whose window starts with its first try."""
    cache.add(f"{key}:until", now + WINDOW, WINDOW)
    cache.add(key, 0, WINDOW)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW)
        return 1


def _uncount(key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:  # gone already
        pass


def _left(key: str, now: float) -> int:
    until = cache.get(f"{key}:until")
    return max(1, math.ceil((until or now + WINDOW) - now))


def attempt(username: str, address: str) -> int:
    """Count a log-in try: 0 if its password may be checked, else the seconds to wait."""
    now = time.time()
    keys = _keys(username, address)
    waits = []
    if _count(keys["pair"], now) > PAIR_LIMIT:
        waits.append(_left(keys["pair"], now))
    if _count(keys["address"], now) > ADDRESS_LIMIT:
        waits.append(_left(keys["address"], now))
    if waits:
        return max(waits)
    if _count(keys["user"], now) > USERNAME_LIMIT and not cache.get(keys["known"]):
        # One try at a time for the username: the first to take the gate goes.
        if not cache.add(keys["gate"], now + USERNAME_DELAY, USERNAME_DELAY):
            until = cache.get(keys["gate"]) or now + USERNAME_DELAY
            return max(1, math.ceil(until - now))
    return 0


def succeeded(username: str, address: str) -> None:
    """The password was right: the try does not count, and the address is one of theirs."""
    keys = _keys(username, address)
    cache.delete_many([keys["pair"], f"{keys['pair']}:until"])
    _uncount(keys["user"])
    _uncount(keys["address"])
    cache.set(keys["known"], True, KNOWN_SECONDS)


def wait_message(seconds: int) -> str:
    """What a refused log-in says, in the language of the page."""
    if seconds <= 90:
        return ngettext(
            "Too many failed log-ins. Wait %(count)d second and try again.",
            "Too many failed log-ins. Wait %(count)d seconds and try again.",
            seconds,
        ) % {"count": seconds}
    minutes = math.ceil(seconds / 60)
    return ngettext(
        "Too many failed log-ins. Wait %(count)d minute and try again.",
        "Too many failed log-ins. Wait %(count)d minutes and try again.",
        minutes,
    ) % {"count": minutes}
