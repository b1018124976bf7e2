"""The catalogues: every interface string gathered (scripts/messages finds nothing new), every
entry of Simplified Chinese and Arabic translated and not fuzzy, with the same placeholders and
tags as its English, the right number of plural forms, and the compiled files in use."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import polib
import pytest
from django.utils import translation

from tests.conftest import REPO_ROOT

LOCALES = {"zh_Hans": 1, "ar": 6}  # the languages we ship and their number of plural forms
DOMAINS = ("django", "djangojs")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]")
TAG = re.compile(r"</?([a-z][a-z0-9]*)\b")


def catalogue(locale: str, domain: str, root: Path = REPO_ROOT) -> polib.POFile:
    return polib.pofile(str(root / "locale" / locale / "LC_MESSAGES" / f"{domain}.po"))


def key(entry: polib.POEntry) -> tuple[str | None, str]:
    return entry.msgctxt, entry.msgid


def problems(po: polib.POFile, plurals: int) -> list[str]:
    """What is wrong with a catalogue's entries, one line each. Pure."""
    found = []
    for entry in po:
        if entry.obsolete:
            continue
        name = repr(entry.msgid[:60])
        if "fuzzy" in entry.flags:
            found.append(f"fuzzy: {name}")
        translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
        if not all(translations):
            found.append(f"untranslated: {name}")
            continue
        if entry.msgid_plural and len(entry.msgstr_plural) != plurals:
            found.append(f"{len(entry.msgstr_plural)} plural forms, not {plurals}: {name}")
        english = {*PLACEHOLDER.findall(entry.msgid), *PLACEHOLDER.findall(entry.msgid_plural)}
        tags = sorted(TAG.findall(entry.msgid))
        for text in translations:
            if entry.msgid_plural:
                # A language's form for exactly one may write the number as a word.
                if not set(PLACEHOLDER.findall(text)) <= english:
                    found.append(f"placeholders differ: {name} -> {text!r}")
            elif set(PLACEHOLDER.findall(text)) != english:
                found.append(f"placeholders differ: {name} -> {text!r}")
            if sorted(TAG.findall(text)) != tags:
                found.append(f"tags differ: {name} -> {text!r}")
    return found


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("locale", LOCALES)
def test_every_entry_is_translated_with_its_placeholders_and_tags(locale, domain):
    po = catalogue(locale, domain)
    assert len(po) > 20
    assert problems(po, LOCALES[locale]) == []


def test_the_checker_finds_each_kind_of_problem():
    po = polib.POFile()
    po.append(polib.POEntry(msgid="Send", msgstr=""))
    po.append(polib.POEntry(msgid="Stop", msgstr="停止", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="Up to %(size)s", msgstr="最多"))
    po.append(polib.POEntry(msgid="<strong>Offline</strong> mode", msgstr="离线模式"))
    po.append(
        polib.POEntry(
            msgid="%(count)s file",
            msgid_plural="%(count)s files",
            msgstr_plural={0: "%(count)s ملف", 1: "ملف"},
        )
    )
    found = problems(po, 6)
    assert any(line.startswith("untranslated: 'Send'") for line in found)
    assert any(line.startswith("fuzzy: 'Stop'") for line in found)
    assert any(line.startswith("placeholders differ: 'Up to") for line in found)
    assert any(line.startswith("tags differ: '<strong>") for line in found)
    assert any(line.startswith("2 plural forms, not 6") for line in found)


def test_gathering_the_strings_again_finds_nothing_new(tmp_path):
    """scripts/messages on a copy of the source: every string marked in a template, in Python or
    in a script is already in each catalogue (a string marked but never translated fails)."""
    if shutil.which("xgettext") is None:
        pytest.fail("Debian's gettext (xgettext) is needed: scripts/test installs it")
    for part in ("chat", "playground", "templates", "static", "scripts", "locale"):
        shutil.copytree(REPO_ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("*.mo"))
    shutil.copy(REPO_ROOT / "manage.py", tmp_path)
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    env = {**os.environ, "PLAYGROUND_DATA_DIR": str(tmp_path / "data")}
    subprocess.run(
        ["bash", "scripts/messages"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    for locale in LOCALES:
        for domain in DOMAINS:
            have = {key(e) for e in catalogue(locale, domain) if not e.obsolete}
            gathered = {key(e) for e in catalogue(locale, domain, tmp_path) if not e.obsolete}
            assert sorted(gathered - have, key=str) == [], f"run scripts/messages ({locale})"
            assert sorted(have - gathered, key=str) == [], f"no longer used ({locale})"


@pytest.mark.parametrize(("language", "locale"), [("zh-hans", "zh_Hans"), ("ar", "ar")])
def test_the_compiled_catalogues_are_the_ones_in_use(language, locale):
    """scripts/test and scripts/serve compile the catalogues before Django reads them."""
    po = catalogue(locale, "django")
    mo = REPO_ROOT / "locale" / locale / "LC_MESSAGES" / "django.mo"
    assert mo.exists(), "compile the catalogues first (scripts/test does)"
    entry = next(e for e in po if not e.msgid_plural and not e.msgctxt and "%" not in e.msgid)
    with translation.override(language):
        assert translation.gettext(entry.msgid) == entry.msgstr
