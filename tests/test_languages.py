"""The interface language: the browser's Accept-Language, the person's choice (kept on their
profile and brought back at log-in), right-to-left for Arabic, and the scripts' catalogue."""

import pytest
from django.test import Client

from chat import languages
from chat.models import Profile

pytestmark = pytest.mark.django_db


def page(client, **headers):
    response = client.get("/new/", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def person(django_user_model):
    return django_user_model.objects.create_user("polyglot", password="pw-long-enough-1")


def test_the_page_follows_the_browsers_language(client, person):
    client.force_login(person)
    assert '<html lang="en" dir="ltr">' in page(client)
    assert '<html lang="zh-hans" dir="ltr">' in page(client, accept_language="zh-CN,zh;q=0.9")
    assert '<html lang="ar" dir="rtl">' in page(client, accept_language="ar-EG")
    assert '<html lang="en" dir="ltr">' in page(client, accept_language="fr-FR, de")


def test_a_choice_is_kept_for_the_person_and_comes_back_at_log_in(client, person):
    client.force_login(person)
    response = client.post("/i18n/language/", {"language": "ar", "next": "/new/"})
    assert response.status_code == 302 and response.headers["Location"] == "/new/"
    assert Profile.objects.get(user=person).language == "ar"
    assert '<html lang="ar" dir="rtl">' in page(client, accept_language="en")

    elsewhere = Client()  # another browser: no cookie, an English Accept-Language
    assert (
        elsewhere.post(
            "/accounts/login/", {"username": "polyglot", "password": "pw-long-enough-1"}
        ).status_code
        == 302
    )
    assert '<html lang="ar" dir="rtl">' in page(elsewhere, accept_language="en")


def test_an_unknown_language_changes_nothing(client, person):
    client.force_login(person)
    client.post("/i18n/language/", {"language": "zh-hans", "next": "/new/"})
    response = client.post("/i18n/language/", {"language": "xx", "next": "/new/"})
    assert response.status_code == 302
    assert Profile.objects.get(user=person).language == "zh-hans"
    assert client.get("/i18n/language/").status_code == 405


def test_the_way_back_never_leaves_the_site(client, person):
    client.force_login(person)
    for away in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post("/i18n/language/", {"language": "ar", "next": away})
        assert response.status_code == 302
        assert "evil" not in response.headers["Location"]
        assert not response.headers["Location"].startswith("javascript")


def test_the_choice_is_cross_site_protected(person):
    client = Client(enforce_csrf_checks=True)
    client.force_login(person)
    assert client.post("/i18n/language/", {"language": "ar"}).status_code == 403
    assert not Profile.objects.filter(user=person).exists()


def test_the_scripts_catalogue_is_one_cacheable_file_per_language(client):
    response = client.get("/i18n/zh-hans/catalog.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "public" in response["Cache-Control"]
    assert b"django.gettext" in response.content or b"gettext" in response.content
    assert b"eval(" not in response.content  # the page's CSP has no 'unsafe-eval'
    assert client.get("/i18n/xx/catalog.js").status_code == 404
    assert client.get("/i18n/ZH-HANS/catalog.js").status_code == 404


def test_the_page_links_its_own_catalogue(client, person):
    client.force_login(person)
    assert 'src="/i18n/ar/catalog.js"' in page(client, accept_language="ar")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("zh-Hans", "zh-hans"), ("zh_hans", "zh-hans"), (" ar ", "ar"), ("xx", None), (3, None)],
)
def test_supported(value, expected):
    assert languages.supported(value) == expected


def test_a_sockets_language_is_its_cookie_then_its_headers():
    # As channels gives them: the headers, and the cookies its CookieMiddleware read from them.
    cookie = [(b"cookie", b"a=b; django_language=zh-hans"), (b"accept-language", b"ar")]
    scope = {"headers": cookie, "cookies": {"a": "b", "django_language": "zh-hans"}}
    assert languages.of_scope(scope) == "zh-hans"
    accept = [(b"accept-language", b"fr;q=1, zh-TW;q=0.8")]
    assert languages.of_scope({"headers": accept, "cookies": {}}) == "zh-hans"
    assert languages.of_scope({"headers": [(b"accept-language", b"fr")]}) == "en"
