"""How a chat socket stays bound to the session that opened it.

Each socket joins a group for its session and one for its user. Log-out tells the session's
group to end at once; a change to the user that can end sessions (password, active) tells the
user's group to check again. `session_expiry` is that check, as Django's `get_user` would make
it, and the consumer makes it before every action too.
"""

import hashlib
import logging
from datetime import datetime
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

log = logging.getLogger(__name__)


def session_group(session_key: str) -> str:
    # A digest: group names travel to Redis, session keys are secrets.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def user_group(user_id) -> str:
    return f"user-sockets.{user_id}"


def session_expiry(session_key: str | None, user) -> datetime | None:
    """When the session ends, if it still signs `user` in as Django's `get_user` would see it
    (in the store, not expired, the same user, active, its password unchanged); else None."""
    if not session_key or not user.is_authenticated:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if hasattr(store, "get_model_class"):  # database-backed: the row says when it expires
        row = (
            store.get_model_class()
            .objects.filter(session_key=session_key, expire_date__gt=timezone.now())
            .only("session_data", "expire_date")
            .first()
        )
        if row is None:
            return None
        data, expires = store.decode(row.session_data), row.expire_date
    else:
        data = store.load()
        expires = store.get_expiry_date()
    if data.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return None
    backend_path = data.get(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    current = load_backend(backend_path).get_user(user.pk)  # None once deactivated
    if current is None or not hasattr(current, "get_session_auth_hash"):
        return None
    session_hash = data.get(HASH_SESSION_KEY)
    if not session_hash:
        return None
    hashes = [current.get_session_auth_hash(), *current.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(session_hash, h) for h in hashes):
        return None
    return expires


def _tell_sockets(group: str, event: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:  # a layer that is down must not fail the log-out; the sockets recheck
        log.warning("Could not tell the sockets of %s", group, exc_info=True)


def end_session_sockets(sender, request, user, **kwargs) -> None:
    """On log-out: the session's sockets close now (the session is flushed right after)."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        _tell_sockets(session_group(key), {"type": "session.end"})


def recheck_user_sockets(sender, instance, update_fields=None, **kwargs) -> None:
    """On a change to a user that can end sessions (password, active): each of their sockets
    checks its session again. A log-in's own save (last_login only) is not one."""
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    group = user_group(instance.pk)
    transaction.on_commit(lambda: _tell_sockets(group, {"type": "session.recheck"}))
