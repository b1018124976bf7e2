"""Every English string a person reads in a template is inside a translation tag, so the Chinese
and Arabic pages show no stray English: text, and the attributes people read or hear (title,
aria-label, placeholder, alt, a button's value, a confirmation)."""

import re
from html.parser import HTMLParser
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Left in English on purpose: the product's name, key names (also inside <kbd>), and the names of
# the languages and libraries the code samples are written for. Kept short: anything else a person
# reads goes through {% translate %} or {% blocktranslate %}.
ALLOWED = ("Omni Playground", "Ctrl", "Enter", "Esc", "Shift", "Alt", "⌘")
ALLOWED += ("curl", "Python (httpx)", "JavaScript (fetch)")

# Attributes whose value is read or heard (value only on buttons, hx-confirm is a confirmation).
READ_ATTRIBUTES = {
    "title",
    "aria-label",
    "placeholder",
    "alt",
    "aria-description",
    "aria-roledescription",
    "hx-confirm",
}
# Text inside these is code, key names or scripts, not interface words.
UNREAD_ELEMENTS = {"script", "style", "code", "kbd", "pre"}

PLACEHOLDER = "_"  # stands for whatever a template tag renders: it holds no letter
COMMENTS = re.compile(r"\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\}|\{#.*?#\}", re.DOTALL)
BLOCK_TRANSLATIONS = re.compile(
    r"\{%\s*blocktrans(?:late)?\b.*?%\}.*?\{%\s*endblocktrans(?:late)?\s*%\}", re.DOTALL
)
# A child template's body_class block is the <body>'s class attribute: class names, not words.
CLASS_BLOCKS = re.compile(r"\{%\s*block body_class\s*%\}.*?\{%\s*endblock\s*%\}", re.DOTALL)
TAGS = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
LETTER = re.compile(r"[A-Za-z]")
# A string given to an included template ({% include ... with label="..." %}) is shown there.
INCLUDES = re.compile(r"\{%\s*include\b.*?%\}", re.DOTALL)
INCLUDE_LITERALS = re.compile(r"(?<![\w(])(\w+)=(\"[^\"]*\"|'[^']*')")


def blank(match: re.Match) -> str:
    """A placeholder with the match's line breaks, so line numbers stay those of the file."""
    return PLACEHOLDER + "\n" * match.group().count("\n")


def without_template_tags(source: str) -> str:
    """The HTML with comments dropped and each tag (translations first) a placeholder."""
    source = COMMENTS.sub(lambda m: "\n" * m.group().count("\n"), source)
    source = CLASS_BLOCKS.sub(blank, source)
    source = BLOCK_TRANSLATIONS.sub(blank, source)
    return TAGS.sub(blank, source)


def readable(text: str) -> bool:
    """Whether the text holds a letter once the allowed names are taken out."""
    for allowed in ALLOWED:
        text = text.replace(allowed, "")
    return bool(LETTER.search(text))


class EnglishFinder(HTMLParser):
    def __init__(self, name: str):
        super().__init__(convert_charrefs=True)
        self.name = name
        self.unread_depth = 0
        self.found: list[str] = []

    def report(self, line: int, text: str) -> None:
        self.found.append(f"{self.name}:{line}: {' '.join(text.split())}")

    def handle_starttag(self, tag, attrs):
        if tag in UNREAD_ELEMENTS:
            self.unread_depth += 1
        attributes = dict(attrs)
        is_button = tag == "button" or (
            tag == "input" and (attributes.get("type") or "").lower() in {"submit", "button"}
        )
        start_line = self.getpos()[0]
        start_text = self.get_starttag_text() or ""
        for name, value in attrs:
            read = name in READ_ATTRIBUTES or (name == "value" and is_button)
            if read and value and readable(value):
                at = start_text.find(f"{name}=")
                self.report(start_line + start_text[: max(at, 0)].count("\n"), value)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in UNREAD_ELEMENTS:
            self.unread_depth -= 1

    def handle_endtag(self, tag):
        if tag in UNREAD_ELEMENTS and self.unread_depth:
            self.unread_depth -= 1

    def handle_data(self, data):
        if self.unread_depth or not readable(data):
            return
        line = self.getpos()[0] + data[: len(data) - len(data.lstrip())].count("\n")
        self.report(line, data)


def untranslated_includes(source: str, name: str) -> list[str]:
    """The literal strings with a letter handed to included templates (not through _("..."))."""
    found = []
    for tag in INCLUDES.finditer(source):
        for literal in INCLUDE_LITERALS.finditer(tag.group()):
            if readable(literal.group(2)[1:-1]):
                line = source[: tag.start() + literal.start()].count("\n") + 1
                found.append(f"{name}:{line}: {literal.group(2)[1:-1]}")
    return found


def untranslated(source: str, name: str) -> list[str]:
    """A "file:line: text" for each English string of the template outside the translation tags."""
    source = COMMENTS.sub(lambda m: "\n" * m.group().count("\n"), source)
    found = untranslated_includes(source, name)
    finder = EnglishFinder(name)
    finder.feed(without_template_tags(source))
    finder.close()
    return found + finder.found


def test_every_english_string_a_person_reads_in_the_templates_is_marked_for_translation():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 10
    found = []
    for template in templates:
        name = template.relative_to(TEMPLATES).as_posix()
        found += untranslated(template.read_text(encoding="utf-8"), name)
    assert not found, "Not marked for translation:\n" + "\n".join(found)


def test_the_check_reports_an_unmarked_button_label_title_and_included_label():
    source = """{% load i18n %}{# a comment in English #}
<form hx-post="/send/">
  <button type="submit" class="send">Send</button>
  <span title="Close the list">{% translate "Marked" %}</span>
  {% include "chat/field.html" with field=form.name label=_("Name") note="Shown to others" %}
  <input type="submit" value="{% translate 'Save' %}" aria-label="{{ label }}">
  <p>{% blocktranslate trimmed with n=count %}Sent {{ n }}
  times{% endblocktranslate %} · <kbd>Ctrl</kbd> Omni Playground</p>
</form>"""
    assert untranslated(source, "sample.html") == [
        "sample.html:5: Shown to others",  # handed to an included template
        "sample.html:3: Send",
        "sample.html:4: Close the list",
    ]
