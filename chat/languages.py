"""The interface's language: Django's own choice (the language cookie, else the browser's
Accept-Language, else English), with a person's choice kept on their profile so that it
follows them: `choose` is Django's `set_language` (the cookie, the redirect back) that also
saves the choice, and logging in elsewhere sets the cookie from it (`remember_on_log_in`,
written by playground.middleware.Locale). A socket's page renders in its own language
(`of_scope`, set when it opens), and a reply's job, started from the request or socket that
sent the turn, renders in that sender's language for every page of the conversation.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import JavaScriptCatalog, set_language

CODES = tuple(code for code, _ in settings.LANGUAGES)


def supported(code: object) -> str | None:
    """The language code if it is one of ours (any case, `zh-Hans` or `zh_hans`), else None."""
    if not isinstance(code, str):
        return None
    code = code.strip().lower().replace("_", "-")
    return code if code in CODES else None


@require_POST
def choose(request: HttpRequest) -> HttpResponse:
    """POST /i18n/language/ (language, next): Django's set_language, and the choice kept for the
    person when logged in."""
    response = set_language(request)
    language = supported(request.POST.get("language"))
    if language is not None and request.user.is_authenticated:
        from .models import Profile

        Profile.objects.update_or_create(user=request.user, defaults={"language": language})
    return response


def remember_on_log_in(sender, request, user, **kwargs) -> None:
    """user_logged_in: the person's language comes with them to this browser (the log-in's
    response sets the language cookie, playground.middleware.Locale)."""
    from .models import Profile

    language = Profile.objects.filter(user=user).values_list("language", flat=True).first()
    if supported(language) and request is not None:
        request.remembered_language = language


def of_scope(scope: dict) -> str:
    """The language of a socket's page, as Django finds a request's: the language cookie, else
    the handshake's Accept-Language, else the default. Pure."""
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    accept = dict(scope.get("headers") or []).get(b"accept-language", b"")
    request.META["HTTP_ACCEPT_LANGUAGE"] = accept.decode("latin-1")
    return translation.get_language_from_request(request)


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
