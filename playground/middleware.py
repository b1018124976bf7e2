"""Django's middleware without thread hops on the async path.

Under ASGI, a middleware built on Django's MiddlewareMixin runs each of its hooks in a worker
thread, in case the hook blocks. Django's own hooks mostly do not: they look at headers and set
cookies. With ten middlewares that was a dozen trips to a thread and back before a view ran,
several milliseconds of every message sent. The classes here run those hooks on the event loop
and keep the thread only where a hook does I/O: saving a changed session, storing flash
messages, reading a large form body. WhiteNoise (sync-only) is made async the same way.

`Compression` gzips the pages and JSON the app makes (Django's GZipMiddleware, with its
random-length padding), never a streamed file, and never for a request another site caused.
"""

import ipaddress
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import DisallowedHost, MiddlewareNotUsed
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csp import ContentSecurityPolicyMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.gzip import GZipMiddleware
from django.middleware.locale import LocaleMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.cache import patch_vary_headers
from whitenoise.middleware import WhiteNoiseMiddleware

# A form body up to this size is parsed on the event loop (it is in memory already).
SMALL_BODY = 64 * 1024


# Headers a proxy sets about the client; believed only from PLAYGROUND_TRUSTED_PROXIES.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(meta: dict, trusted: list) -> str:
    """The client's address: REMOTE_ADDR, unless that is a trusted proxy; then the right-most
    address in X-Forwarded-For that is not itself a trusted proxy (the ones to its left were
    written by the client and could say anything)."""
    peer = meta.get("REMOTE_ADDR", "")
    address = _ip(peer)
    if address is None or not any(address in network for network in trusted):
        return peer
    for hop in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop_address = _ip(hop)
        if hop_address is None:
            break  # not something a proxy of ours wrote: keep the last one we can believe
        address = hop_address
        if not any(hop_address in network for network in trusted):
            break
    return str(address)


class ClientAddress:
    """From a trusted proxy, REMOTE_ADDR becomes the client's address (see `client_address`);
    from anyone else, forwarded headers are dropped, so that nothing after this (the log-in
    throttle, SECURE_PROXY_SSL_HEADER) takes a client's word for its address or scheme. Pure
    header work: it runs on the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.trusted = [ipaddress.ip_network(n) for n in settings.PLAYGROUND_TRUSTED_PROXIES]
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _adjust(self, meta: dict) -> None:
        address = _ip(meta.get("REMOTE_ADDR", ""))
        if address is not None and any(address in network for network in self.trusted):
            meta["REMOTE_ADDR"] = client_address(meta, self.trusted)
        else:
            for name in FORWARDED_HEADERS:
                meta.pop(name, None)

    def __call__(self, request):
        self._adjust(request.META)
        return self.get_response(request)  # a coroutine on the async path, awaited by the caller


class _OnTheLoop:
    """Mixed into a MiddlewareMixin middleware whose hooks do no I/O (unless `blocks` says)."""

    def response_blocks(self, request) -> bool:
        return False

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_blocks(request):
                return await sync_to_async(self.process_response)(request, response)
            response = self.process_response(request, response)
        return response


class Security(_OnTheLoop, SecurityMiddleware):
    pass


class Common(_OnTheLoop, CommonMiddleware):
    pass


class Session(_OnTheLoop, SessionMiddleware):
    # process_request only makes a lazy store; the response saves it when it changed.
    def response_blocks(self, request) -> bool:
        return request.session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class Csrf(_OnTheLoop, CsrfViewMiddleware):
    async def process_view(self, request, callback, callback_args, callback_kwargs):
        # The check reads the form body: in memory when small, maybe spooled to disk if not.
        check = super().process_view
        if int(request.META.get("CONTENT_LENGTH") or 0) > SMALL_BODY:
            check = sync_to_async(check)
            return await check(request, callback, callback_args, callback_kwargs)
        return check(request, callback, callback_args, callback_kwargs)


class Authentication(_OnTheLoop, AuthenticationMiddleware):
    pass  # sets lazy request.user / request.auser; the view loads the user


class Messages(_OnTheLoop, MessageMiddleware):
    # Storing reads and writes the session: only when messages were added or shown.
    def response_blocks(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class Locale(_OnTheLoop, LocaleMiddleware):
    """Django's language choice (cookie, Accept-Language); a log-in that brought the person's
    kept language (chat.languages.remember_on_log_in) sets the cookie, as set_language does."""

    def process_response(self, request, response):
        response = super().process_response(request, response)
        language = getattr(request, "remembered_language", None)
        if language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            )
        return response


class XFrameOptions(_OnTheLoop, XFrameOptionsMiddleware):
    pass


class ContentSecurityPolicy(_OnTheLoop, ContentSecurityPolicyMiddleware):
    pass


class StaticFiles(WhiteNoiseMiddleware):
    """WhiteNoise's static files, answered without leaving the event loop for other requests."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response, *args, **kwargs) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:  # development: looks on disk
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:  # built once at start-up
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


# What the app writes as text; files (media, zip exports) are already compressed or streamed.
COMPRESSIBLE_TYPES = frozenset({"text/html", "application/json", "text/markdown", "text/plain"})
# Compressing a body this large takes longer than the trip to a worker thread (zlib lets go
# of the GIL while it works, so the event loop goes on serving streams meanwhile).
LARGE_BODY = 64 * 1024


def cross_site(request) -> bool:
    """Whether another site caused this request: the browser says so in Sec-Fetch-Site
    (`same-site` counts, another subdomain may be someone else's), or, from a browser that does
    not send it, the Referer is on another host. Typed addresses and bookmarks are `none`."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    referer = request.headers.get("Referer")
    if not referer:
        return False
    try:
        return urlsplit(referer).netloc != request.get_host()
    except (DisallowedHost, ValueError):
        return True


class Compression(GZipMiddleware):
    """Django's GZipMiddleware (gzip when asked, Vary: Accept-Encoding, random-length padding
    against BREACH) for the app's own text responses only, and not for cross-site requests (see
    README, Security: Compression). Streaming responses (media with its ranges, zip exports) pass
    untouched, as they must flush as they go and keep their Content-Length. Static files never
    get here: WhiteNoise, before this, sends its own precompressed copies.
    PLAYGROUND_COMPRESS=false leaves it out."""

    def __init__(self, get_response) -> None:
        if not settings.PLAYGROUND_COMPRESS:
            raise MiddlewareNotUsed
        super().__init__(get_response)

    def process_response(self, request, response):
        if response.streaming:
            return response
        content_type = response.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type not in COMPRESSIBLE_TYPES:
            return response
        if cross_site(request):
            patch_vary_headers(response, ("Accept-Encoding",))
            return response
        return super().process_response(request, response)

    async def __acall__(self, request):
        response = await self.get_response(request)
        if not response.streaming and len(response.content) > LARGE_BODY:
            compress = sync_to_async(self.process_response, thread_sensitive=False)
            return await compress(request, response)
        return self.process_response(request, response)
