"""The interface's language: what a person chose (kept on their profile, copied into their
session when they log in), else what their browser asks for (Accept-Language), else English.

`Locale` is Django's LocaleMiddleware reading the session's choice first; `choose` is Django's
`set_language` (the cookie, the redirect back) that also keeps the choice for the person, so it
follows them to another browser. A socket's page renders in its own language
(`of_scope`, set when it opens), and a reply's job, started from the request or socket that
sent the turn, renders in that sender's language for every page of the conversation.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.middleware.locale import LocaleMiddleware
from django.utils import translation
from django.views.i18n import JavaScriptCatalog, set_language

SESSION_KEY = "_language"
CODES = tuple(code for code, _ in settings.LANGUAGES)


def supported(code: object) -> str | None:
    """The language code if it is one of ours (any case, `zh-Hans` or `zh_hans`), else None."""
    if not isinstance(code, str):
        return None
    code = code.strip().lower().replace("_", "-")
    return code if code in CODES else None


class Locale(LocaleMiddleware):
    """LocaleMiddleware, with the session's choice first; on the event loop (the session is read
    with its async API, once, and shared with the authentication that follows)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def _activate(self, request: HttpRequest, chosen: object) -> None:
        language = supported(chosen) or translation.get_language_from_request(request)
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        session = getattr(request, "session", None)
        self._activate(request, session.get(SESSION_KEY) if session is not None else None)
        return self.process_response(request, self.get_response(request))

    async def __acall__(self, request):
        session = getattr(request, "session", None)
        self._activate(request, await session.aget(SESSION_KEY) if session is not None else None)
        response = await self.get_response(request)
        return self.process_response(request, response)


def choose(request: HttpRequest) -> HttpResponse:
    """POST /i18n/language/ (language, next): Django's set_language, and the choice kept for the
    person when logged in."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    response = set_language(request)
    language = supported(request.POST.get("language"))
    if language is not None and request.user.is_authenticated:
        from .models import Profile

        Profile.objects.update_or_create(user=request.user, defaults={"language": language})
        request.session[SESSION_KEY] = language
    return response


def remember_on_log_in(sender, request, user, **kwargs) -> None:
    """user_logged_in: the person's language comes with them into the new session."""
    from .models import Profile

    language = Profile.objects.filter(user=user).values_list("language", flat=True).first()
    if supported(language) and getattr(request, "session", None) is not None:
        request.session[SESSION_KEY] = language
        translation.activate(language)


def of_scope(scope: dict) -> str:
    """The language of a socket's page: the session's choice, else the cookie, else the
    Accept-Language of its handshake, else the default. Pure but for reading the session."""
    session = scope.get("session")
    chosen = supported(session.get(SESSION_KEY)) if session is not None else None
    if chosen:
        return chosen
    headers = dict(scope.get("headers") or [])
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == settings.LANGUAGE_COOKIE_NAME and supported(value):
            return supported(value)
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    for tag, _ in translation.trans_real.parse_accept_lang_header(accept):
        if tag == "*":
            break
        try:
            found = translation.get_supported_language_variant(tag)
        except LookupError:
            continue
        return found
    return settings.LANGUAGE_CODE


def catalog(request: HttpRequest, language: str) -> HttpResponse:
    """GET /i18n/<language>/catalog.js: the strings the page's scripts translate (Django's
    JavaScriptCatalog, no eval: allowed by the page's Content-Security-Policy). One address per
    language, so browsers and proxies may keep it; base.html links the page's own."""
    code = supported(language)
    if code is None or code != language:
        raise Http404
    with translation.override(code):
        response = JavaScriptCatalog.as_view(domain="djangojs")(request)
    response["Cache-Control"] = "public, max-age=3600"
    return response
