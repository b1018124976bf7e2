"""The interface's language: what a person chose (kept on their profile, copied into their
session when they log in), else what their browser asks for (Accept-Language), else English.

`Locale` is Django's LocaleMiddleware reading the session's choice first; `choose` is Django's
`set_language` (the cookie, the redirect back) that also keeps the choice for the person, so it
follows them to another browser. A socket's page renders in its own language
(`of_scope`, set when it opens), and a reply's job, started from the request or socket that
sent the turn, renders in that sender's language for every page of the conversation.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import JavaScriptCatalog, set_language

SESSION_KEY = "_language"
CODES = tuple(code for code, _ in settings.LANGUAGES)


def supported(code: object) -> str | None:
    """The language code if it is one of ours (any case, `zh-Hans` or `zh_hans`), else None."""
    if not isinstance(code, str):
        return None
    code = code.strip().lower().replace("_", "-")
    return code if code in CODES else None


def language_for(request: HttpRequest, chosen: object) -> str:
    """The person's choice if it is one of ours, else Django's reading of the request (the
    language cookie, then Accept-Language, then the default)."""
    return supported(chosen) or translation.get_language_from_request(request)


class Locale(LocaleMiddleware):
    """LocaleMiddleware, with the session's choice first. On the event loop: the session is
    read with its async API, once, and shared with the authentication that follows."""

    def process_request(self, request: HttpRequest) -> None:  # the sync path
        translation.activate(language_for(request, request.session.get(SESSION_KEY)))
        request.LANGUAGE_CODE = translation.get_language()

    async def __acall__(self, request):
        chosen = await request.session.aget(SESSION_KEY)
        translation.activate(language_for(request, chosen))
        request.LANGUAGE_CODE = translation.get_language()
        return self.process_response(request, await self.get_response(request))


@require_POST
def choose(request: HttpRequest) -> HttpResponse:
    """POST /i18n/language/ (language, next): Django's set_language, and the choice kept for the
    person when logged in."""
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


def of_scope(scope: dict) -> str:
    """The language of a socket's page, as `Locale` finds a request's: the session's choice,
    else the cookie, else the handshake's Accept-Language, else the default. Sync: it may load
    the session."""
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    accept = dict(scope.get("headers") or []).get(b"accept-language", b"")
    request.META["HTTP_ACCEPT_LANGUAGE"] = accept.decode("latin-1")
    session = scope.get("session")
    return language_for(request, session.get(SESSION_KEY) if session is not None else None)


_catalog = JavaScriptCatalog.as_view()


def catalog(request: HttpRequest, language: str) -> HttpResponse:
    """GET /i18n/<language>/catalog.js: the strings the page's scripts translate (Django's
    JavaScriptCatalog, no eval: allowed by the page's Content-Security-Policy). One address per
    language, so browsers and proxies may keep it; base.html links the page's own."""
    code = supported(language)
    if code is None or code != language:
        raise Http404
    with translation.override(code):
        response = _catalog(request)
    response["Cache-Control"] = "public, max-age=3600"
    return response
