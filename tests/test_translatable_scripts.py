"""Every English sentence the page's scripts show goes through Django's JavaScript catalogue
(gettext, ngettext, pgettext), so the page can speak the person's language. The check reads each
script under static/chat (not the vendored ones) with a small JavaScript tokenizer (strings,
template literals, comments and regular expressions are told apart; Esprima 4 does not read
today's syntax such as `?.`), and reports every string that looks like prose and is not an
argument of a translation call.

Prose: a letter, and either a space between two words or a capitalised word ("Copied").
Not shown to anyone, so never reported: object keys, operands of comparisons and `case`,
arguments of calls that take selectors, event names, storage keys or attribute names (below),
setAttribute of an attribute nobody reads, className, and the short allowlist."""

import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "static" / "chat"

TRANSLATING = {"gettext", "ngettext", "pgettext"}
# Calls whose string arguments are selectors, event or storage names, attribute names, media
# queries, MIME types or headers: never text on the page.
NOT_SHOWN_CALLS = {
    "querySelector",
    "querySelectorAll",
    "closest",
    "matches",
    "getElementById",
    "createElement",
    "addEventListener",
    "removeEventListener",
    "CustomEvent",
    "Event",
    "KeyboardEvent",
    "getAttribute",
    "removeAttribute",
    "hasAttribute",
    "getItem",
    "setItem",
    "removeItem",
    "matchMedia",
    "isTypeSupported",
    "getResponseHeader",
    "getData",
}
NOT_SHOWN_OBJECTS = {"console", "classList", "dataset"}  # console.log(...), el.classList.add(...)
# attachments.js's el(tag, className, text): its tag and class names.
NOT_SHOWN_ARGUMENTS = {"el": {0, 1}}
# Attributes read out or shown: setAttribute's value is text for these only.
VISIBLE_ATTRIBUTES = {
    "title",
    "aria-label",
    "aria-valuetext",
    "aria-description",
    "placeholder",
    "alt",
}
ALLOWED = {
    "use strict",  # the directive
    "Files",  # the DataTransfer type of dragged files, not a word on the page
}

KEYWORDS_BEFORE_REGEX = {
    "return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw",
    "instanceof", "yield", "await",
}  # fmt: skip
NOT_CALLS = {"if", "for", "while", "switch", "catch", "function", "return", "typeof", "with"}
PUNCTUATORS = ("===", "!==", "...", "==", "!=", "=>", "&&", "||", "??", "?.")
COMPARISONS = {"===", "!==", "==", "!="}
PROSE = re.compile(r"[A-Za-z]\s+[A-Za-z]|^[A-Z][a-z]+\W*$")


def tokens(source: str):
    """(kind, value, line) for the source's tokens: "str" (a string, or one literal part of a
    template literal, its text as written), "name", "num" and "punct"; no comments, no
    regular expressions (their text is not shown)."""
    i, line, n = 0, 1, len(source)
    braces = 0
    templates = []  # the brace depth at each open `${`
    previous = None

    def template_part(start):
        nonlocal i, line, braces
        j = start
        while j < n and source[j] != "`" and not source.startswith("${", j):
            j += 2 if source[j] == "\\" else 1
        text = source[start:j]
        token = ("str", text, line)
        line += text.count("\n")
        if source.startswith("${", j):
            templates.append(braces)
            i = j + 2
        else:
            i = j + 1
        return token

    while i < n:
        c = source[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            line += 1
            i += 1
        elif source.startswith("//", i):
            i = source.find("\n", i) if "\n" in source[i:] else n
        elif source.startswith("/*", i):
            end = source.index("*/", i) + 2
            line += source.count("\n", i, end)
            i = end
        elif c in "'\"":
            j = i + 1
            while source[j] != c:
                j += 2 if source[j] == "\\" else 1
            previous = ("str", source[i + 1 : j], line)
            yield previous
            i = j + 1
        elif c == "`":
            previous = template_part(i + 1)
            yield previous
        elif c == "}" and templates and templates[-1] == braces:
            templates.pop()
            previous = template_part(i + 1)
            yield previous
        elif c == "/" and (
            previous is None
            or (previous[0] == "punct" and previous[1] not in ")]}")
            or (previous[0] == "name" and previous[1] in KEYWORDS_BEFORE_REGEX)
        ):
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            j += 1
            while j < n and (source[j].isalnum()):
                j += 1
            previous = ("name", "/regex/", line)  # an operand, as a name is
            i = j
        elif c.isalpha() or c in "_$":
            j = i
            while j < n and (source[j].isalnum() or source[j] in "_$"):
                j += 1
            previous = ("name", source[i:j], line)
            yield previous
            i = j
        elif c.isdigit():
            j = i
            while j < n and (source[j].isalnum() or source[j] == "."):
                j += 1
            previous = ("num", source[i:j], line)
            yield previous
            i = j
        else:
            value = next((p for p in PUNCTUATORS if source.startswith(p, i)), c)
            braces += value == "{"
            braces -= value == "}"
            previous = ("punct", value, line)
            yield previous
            i += len(value)


def unmarked(source: str) -> list[tuple[int, str]]:
    """(line, text) of each prose-like string in `source` that no translation call takes."""
    found = []
    stream = list(tokens(source))
    frames = []  # per open bracket: {"callee": [names], "arg": index, "first": first string}
    for k, (kind, value, line) in enumerate(stream):
        before = stream[k - 1] if k else ("punct", "", 0)
        after = stream[k + 1] if k + 1 < len(stream) else ("punct", "", 0)
        if kind == "punct" and value in "([{":
            callee = []
            if value == "(" and before[0] == "name" and before[1] not in NOT_CALLS:
                m = k - 1
                while m >= 0 and stream[m][0] == "name":
                    callee.insert(0, stream[m][1])
                    if m >= 1 and stream[m - 1][1] in (".", "?."):
                        m -= 2
                    else:
                        break
            frames.append({"callee": callee, "arg": 0, "first": None})
            continue
        if kind == "punct" and value in ")]}":
            if frames:
                frames.pop()
            continue
        if kind == "punct" and value == "," and frames:
            frames[-1]["arg"] += 1
            continue
        if kind != "str":
            continue
        call = next((f for f in reversed(frames) if f["callee"]), None)
        if (
            frames
            and frames[-1]["callee"]
            and frames[-1]["arg"] == 0
            and frames[-1]["first"] is None
        ):
            frames[-1]["first"] = value
        if not PROSE.search(value) or value in ALLOWED:
            continue
        if before[1] in COMPARISONS | {"case"} or after[1] in COMPARISONS:
            continue
        if after[1] == ":" and before[1] in ("{", ","):
            continue  # an object's key
        if before[1] == "=" and k >= 2 and stream[k - 2][1] == "className":
            continue
        if call is not None:
            name = call["callee"][-1]
            if name in TRANSLATING or name in NOT_SHOWN_CALLS:
                continue
            if NOT_SHOWN_OBJECTS & set(call["callee"]):
                continue
            if call["arg"] in NOT_SHOWN_ARGUMENTS.get(name, ()):
                continue
            if name == "setAttribute" and (
                call["arg"] == 0 or call["first"] not in VISIBLE_ATTRIBUTES
            ):
                continue
        found.append((line, value))
    return found


def test_the_page_scripts_show_no_english_outside_the_catalogue():
    scripts = sorted(SCRIPTS.glob("*.js"))
    assert scripts
    report = [
        f"{path.name}:{line}: {text!r}"
        for path in scripts
        for line, text in unmarked(path.read_text())
    ]
    assert report == [], "Strings shown without gettext/ngettext/pgettext:\n" + "\n".join(report)


def test_an_unmarked_string_is_caught():
    snippet = """
    // "A comment" is not a string; /regexes/ neither.
    var quoted = /"[a-z ]+ words"/g.test(text);
    el.textContent = "Copied to clipboard";
    button.title = "Stop";
    button.setAttribute("aria-label", "Close the panel");
    button.setAttribute("data-testid", "close panel");
    note.textContent = `Hello ${gettext("friend")} and welcome`;
    if (event.key === "Enter") document.querySelector("#composer textarea").focus();
    status.textContent = gettext("Saving…");
    label.textContent = interpolate(gettext("Remove %(name)s"), { name: name }, true);
    console.log("Not for people");
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    """
    assert [text for _, text in unmarked(snippet)] == [
        "Copied to clipboard",
        "Stop",
        "Close the panel",
        "Hello ",
        " and welcome",
    ]
