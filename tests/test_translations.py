"""The translation catalogues: every interface string of the source is in them (makemessages,
run on a copy of the source, finds nothing new), every entry of zh_Hans and ar is translated
and not fuzzy, and a translation keeps its original's placeholders and HTML tags."""

import re
import shutil
import subprocess
import sys

import polib
import pytest

from tests.conftest import REPO_ROOT

LANGUAGES = ("zh_Hans", "ar")
DOMAINS = ("django", "djangojs")
# makemessages' arguments, the same ones a translator runs (README, "Languages").
IGNORE = ["--ignore=.venv", "--ignore=tests", "--ignore=bench", "--ignore=static/vendor",
          "--ignore=staticfiles", "--ignore=test-results", "--ignore=build"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]|\{\w*\}")
TAG = re.compile(r"</?([a-zA-Z][\w-]*)")


def catalogue(language: str, domain: str) -> polib.POFile:
    path = REPO_ROOT / "locale" / language / "LC_MESSAGES" / f"{domain}.po"
    assert path.exists(), f"{path} is missing"
    return polib.pofile(str(path))


def problems(po: polib.POFile) -> list[str]:
    """Untranslated, fuzzy or obsolete entries, and translations whose placeholders or tags
    differ from the original's. Pure."""
    found = []
    for entry in po:
        if entry.obsolete:
            found.append(f"obsolete: {entry.msgid!r}")
            continue
        if "fuzzy" in entry.flags:
            found.append(f"fuzzy: {entry.msgid!r}")
        translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
        if not all(t.strip() for t in translations):
            found.append(f"untranslated: {entry.msgid!r}")
            continue
        originals = [entry.msgid] + ([entry.msgid_plural] if entry.msgid_plural else [])
        wanted = sorted(set(PLACEHOLDER.findall(" ".join(originals))))
        tags = sorted(TAG.findall(entry.msgid))
        for text in translations:
            if sorted(set(PLACEHOLDER.findall(text))) != wanted and not entry.msgid_plural:
                found.append(f"placeholders differ: {entry.msgid!r} -> {text!r}")
            if sorted(TAG.findall(text)) != tags:
                found.append(f"tags differ: {entry.msgid!r} -> {text!r}")
    return found


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_keeps_its_placeholders(language, domain):
    po = catalogue(language, domain)
    assert len(po) > 10
    assert problems(po) == []


def test_the_check_finds_what_it_should():
    po = polib.POFile()
    po.append(polib.POEntry(msgid="Send", msgstr=""))
    po.append(polib.POEntry(msgid="Stop", msgstr="停止", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="%(n)s files", msgstr="个文件"))
    po.append(polib.POEntry(msgid="<strong>Off</strong>", msgstr="关闭"))
    po.append(polib.POEntry(msgid="Copy", msgstr="复制"))
    assert problems(po) == [
        "untranslated: 'Send'",
        "fuzzy: 'Stop'",
        "placeholders differ: '%(n)s files' -> '个文件'",
        "tags differ: '<strong>Off</strong>' -> '关闭'",
    ]


@pytest.mark.skipif(not shutil.which("xgettext"), reason="needs GNU gettext (Debian's gettext)")
def test_the_catalogues_hold_every_string_of_the_source(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".git", "data", "test-results", "staticfiles",
                                      "tests", "bench", "*.mo", "__pycache__", "docs"),
    )
    for domain in DOMAINS:
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-d", domain, "--no-obsolete",
             *(f"-l{language}" for language in LANGUAGES), *IGNORE, "--verbosity", "0"],
            cwd=copy, check=True, env={"PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
                                       "PATH": "/usr/bin:/bin"},
        )
        for language in LANGUAGES:
            wanted = {(e.msgctxt, e.msgid) for e in polib.pofile(
                str(copy / "locale" / language / "LC_MESSAGES" / f"{domain}.po"))}
            have = {(e.msgctxt, e.msgid) for e in catalogue(language, domain) if not e.obsolete}
            assert sorted(wanted - have, key=str) == [], f"{language} {domain}: not in the .po"
