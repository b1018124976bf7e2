"""What people read of uploads, media, imports and upstream errors is said in their language:
translated through the catalogues, with whole sentences whose first argument gettext can
extract (no f-strings, no names, no concatenation)."""

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from chat import attachments, media, upstream

ROOT = Path(__file__).resolve().parent.parent
CHINESE_CATALOGUE = Path(settings.LOCALE_PATHS[0]) / "zh_Hans" / "LC_MESSAGES" / "django.mo"
HAN = re.compile(r"[\u4e00-\u9fff]")

# The modules whose messages these tests watch: what a person reads of an upload, a medium,
# an import or export, and an upstream error.
MODULES = [
    "chat/upstream.py",
    "chat/attachments.py",
    "chat/media.py",
    "chat/files.py",
    "chat/archive.py",
    "chat/speech.py",
    "chat/payloads.py",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "chat" / "simulator").glob("*.py")),
]

# The translation functions, and the positions of the arguments xgettext reads as msgids.
MESSAGE_ARGUMENTS = {
    "_": (0,),
    "gettext": (0,),
    "gettext_lazy": (0,),
    "gettext_noop": (0,),
    "ngettext": (0, 1),
    "ngettext_lazy": (0, 1),
    "pgettext": (0, 1),
    "pgettext_lazy": (0, 1),
    "npgettext": (0, 1, 2),
    "npgettext_lazy": (0, 1, 2),
}


def unextractable_calls(source: str, filename: str = "<source>") -> list[str]:
    """Calls of a translation function whose message is not a plain string literal (an
    f-string, a name, a concatenation, a % or .format done inside the call): "file:line name"."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name not in MESSAGE_ARGUMENTS:
            continue
        positions = MESSAGE_ARGUMENTS[name]
        arguments = node.args[: max(positions) + 1]
        if len(arguments) <= max(positions) or any(
            not (isinstance(arguments[i], ast.Constant) and isinstance(arguments[i].value, str))
            for i in positions
        ):
            found.append(f"{filename}:{node.lineno} {name}")
    return found


def test_every_message_in_these_modules_is_a_literal_gettext_can_extract():
    bad = []
    for module in MODULES:
        path = ROOT / module
        bad += unextractable_calls(path.read_text(encoding="utf-8"), module)
    assert bad == []


@pytest.mark.parametrize(
    "snippet",
    [
        'name = "x"\n_(f"Hello {name}")',
        'message = "Hi"\ngettext(message)',
        '_("Files up to " + "8 MB")',
        '_("Files up to %(limit)s" % {"limit": 1})',
        'gettext_lazy("{} bytes".format(3))',
        'n = 2\nngettext("%(n)s file", f"{n} files", n)',
        'pgettext("size", f"{1} MB")',
        "translation.gettext(text)",
        "_()",
    ],
)
def test_the_checker_catches_a_message_gettext_cannot_extract(snippet):
    assert unextractable_calls(snippet) != []


def test_the_checker_passes_literal_messages():
    good = (
        '_("Files up to %(limit)s can be uploaded.") % {"limit": "8 MB"}\n'
        '_("One sentence " "split over lines.")\n'
        'ngettext("%(n)s file", "%(n)s files", 2) % {"n": 2}\n'
        'pgettext_lazy("size unit", "%(size)s MB")\n'
        "log.warning(f'not a message for a person {x}')\n"
    )
    assert unextractable_calls(good) == []


@pytest.mark.skipif(
    not CHINESE_CATALOGUE.exists(),
    reason=f"no compiled Chinese catalogue yet ({CHINESE_CATALOGUE.relative_to(ROOT)})",
)
def test_refusals_and_upstream_errors_come_out_in_chinese(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with translation.override("en"):
        with pytest.raises(media.MediaRefused) as english:
            media.probe(empty, "empty.png")
        english_hint = upstream.error_hint("rate_limited", status=429)
        english_size = attachments.human_bytes(3 * 1024 * 1024)
        english_failure = str(attachments.GENERIC_FAILURE)
    with translation.override("zh-hans"):
        with pytest.raises(media.MediaRefused) as chinese:
            media.probe(empty, "empty.png")
        hint = upstream.error_hint("rate_limited", status=429)
        error = upstream.UpstreamError("boom", hint=upstream.DROPPED_HINT)
        failure = str(attachments.GENERIC_FAILURE)
        size = attachments.human_bytes(3 * 1024 * 1024)
    assert english.value.message.startswith("The file is empty.")
    assert english_hint == "Wait a moment and retry."
    assert HAN.search(chinese.value.message) and chinese.value.message != english.value.message
    assert HAN.search(hint) and hint != english_hint
    assert HAN.search(error.hint) and error.as_dict()["hint"] == error.hint
    assert HAN.search(failure) and failure != english_failure
    assert "3" in size and english_size == "3 MB"
