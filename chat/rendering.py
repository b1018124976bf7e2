"""Model output -> safe HTML: Markdown rendered, code highlighted, math as MathML, then sanitised.

One renderer for finished messages and for each block of a streaming one, so both are the same
HTML. Raw HTML in the source is never passed through (markdown-it's `html` is off); what the
renderer itself writes still goes through nh3's allow-list below.
"""

import html as html_lib
import re
from functools import lru_cache
from xml.etree.ElementTree import Element

import nh3
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.rules_inline import StateInline
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)

# MathML Core's presentation elements, and the attributes that only shape how math looks.
# No href (MathML links), no style/class/id (\style and \class would set them), no
# annotation-xml (an HTML integration point), no mglyph or maction.
MATHML_TAGS = {
    "math",
    "mrow",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "mspace",
    "msup",
    "msub",
    "msubsup",
    "mfrac",
    "msqrt",
    "mroot",
    "mover",
    "munder",
    "munderover",
    "mmultiscripts",
    "mprescripts",
    "none",
    "mtable",
    "mtr",
    "mtd",
    "mstyle",
    "mpadded",
    "mphantom",
    "menclose",
    "merror",
}
MATHML_ATTRIBUTES = {
    "accent",
    "accentunder",
    "columnalign",
    "columnlines",
    "columnspacing",
    "columnspan",
    "depth",
    "displaystyle",
    "fence",
    "form",
    "frame",
    "height",
    "largeop",
    "linebreak",
    "linethickness",
    "lspace",
    "mathcolor",
    "mathsize",
    "mathvariant",
    "maxsize",
    "minsize",
    "movablelimits",
    "notation",
    "rowalign",
    "rowlines",
    "rowspacing",
    "rowspan",
    "rspace",
    "scriptlevel",
    "separator",
    "stretchy",
    "symmetric",
    "voffset",
    "width",
}
# Lengths past these would let a formula push the page wide or tall (\hspace{1e5em}).
_LENGTH_ATTRIBUTES = {
    "width",
    "height",
    "depth",
    "voffset",
    "lspace",
    "rspace",
    "mathsize",
    "minsize",
    "maxsize",
}
_LENGTH = re.compile(r"\s*[+-]?(\d*\.?\d+)\s*([a-z%]*)\s*")
_LENGTH_LIMITS = {"px": 400.0, "pt": 300.0, "%": 400.0}
_LENGTH_LIMIT = 20.0  # em, ex, mu and bare numbers

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "button",
    "code",
    "del",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
    "img",
} | MATHML_TAGS
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class", "tabindex"},
    "ol": {"start"},
    "div": {"tabindex"},
    "button": {"data-testid", "aria-label"},
    **{tag: MATHML_ATTRIBUTES for tag in MATHML_TAGS},
}
ALLOWED_VALUES = {
    "math": {"display": {"block", "inline"}},
    "button": {"type": {"button"}},
}
ALLOWED_CLASSES = {
    "div": {"code-block", "code-head", "table-scroll", "math-display"},
    "button": {"code-copy"},
    "th": {"align-left", "align-center", "align-right"},
    "td": {"align-left", "align-center", "align-right"},
}

_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    tag_attribute_values=ALLOWED_VALUES,
    allowed_classes=ALLOWED_CLASSES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)


# Math -> MathML. latex2mathml builds an element tree whose texts carry `&#x...;` references and
# whose attributes may come straight from the LaTeX (\href, \style, \class); it then serialises
# it unescaped. So the tree is written here instead: texts escaped, only MathML's own
# presentation attributes kept, lengths bounded. nh3 checks the result again like all the rest.

_MAX_LATEX = 4000  # characters; converting is linear but slow (about 30 ms per 1,000)
_REFERENCE = re.compile(r"&#x([0-9a-fA-F]{1,6});")


def _char(match: re.Match) -> str:
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _text(text: str) -> str:
    return html_lib.escape(_REFERENCE.sub(_char, text), quote=False)


def _length_fits(value: str) -> bool:
    match = _LENGTH.fullmatch(value)
    if not match:  # a keyword ("thinmathspace", "true", "left"), not a length
        return True
    return float(match.group(1)) <= _LENGTH_LIMITS.get(match.group(2), _LENGTH_LIMIT)


# How many children each script and fraction needs: the converter leaves out what the LaTeX
# lacks (`\frac{a`, `x^`), and a browser would draw a broken formula without saying so.
_ARITY = {
    "mfrac": 2,
    "mroot": 2,
    "msub": 2,
    "msup": 2,
    "mover": 2,
    "munder": 2,
    "msubsup": 3,
    "munderover": 3,
}


def _write_mathml(element: Element, out: list[str]) -> None:
    tag = element.tag
    if tag in _ARITY and len(element) != _ARITY[tag]:
        raise ValueError(f"{tag} needs {_ARITY[tag]} parts")
    out.append(f"<{tag}")
    for name, value in element.attrib.items():
        if name == "display" and tag == "math":
            pass
        elif name not in MATHML_ATTRIBUTES:
            continue
        elif name in _LENGTH_ATTRIBUTES and not _length_fits(value):
            continue
        out.append(f' {name}="{html_lib.escape(_REFERENCE.sub(_char, value))}"')
    out.append(">")
    if element.text:
        out.append(_text(element.text))
    for child in element:
        _write_mathml(child, out)
    out.append(f"</{tag}>")
    if element.tail:
        out.append(_text(element.tail))


@lru_cache(maxsize=4096)
def _mathml(latex: str, display: bool) -> str:
    """MathML for one formula, or its source as code when the LaTeX does not parse."""
    latex = latex.strip()
    if len(latex) > _MAX_LATEX:
        return f'<code class="math-error">{escapeHtml(latex)}</code>'
    try:
        out: list[str] = []
        _write_mathml(convert_to_element(latex, display="block" if display else "inline"), out)
        return "".join(out)
    except Exception:  # the converter's own errors, and IndexError, RecursionError, ... alike
        return f'<code class="math-error">{escapeHtml(latex)}</code>'


def _inline_math(self, tokens, idx, options, env) -> str:
    return _mathml(tokens[idx].content, False)


def _display_math_in_text(self, tokens, idx, options, env) -> str:
    return f'<span class="math-display" tabindex="0">{_mathml(tokens[idx].content, True)}</span>'


def _display_math_block(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    label = f' <span class="math-label">({escapeHtml(token.info)})</span>' if token.info else ""
    return f'<div class="math-display" tabindex="0">{_mathml(token.content, True)}{label}</div>\n'


def _bracket_display_in_text(state: StateInline, silent: bool) -> bool:
    r"""`\[...\]` inside a paragraph (texmath's rule only sees it at the start of a block)."""
    if not state.src.startswith("\\[", state.pos):
        return False
    end = state.src.find("\\]", state.pos + 2)
    if end < 0 or not state.src[state.pos + 2 : end].strip():
        return False
    if not silent:
        token = state.push("math_inline_double", "math", 0)
        token.content = state.src[state.pos + 2 : end]
        token.markup = "\\["
    state.pos = end + 2
    return True


# Fenced code: a header with the language and a Copy button (static/chat/code.js), then the
# code exactly as written: no guessed language, no stripped or added newlines.


@lru_cache(maxsize=128)
def _lexer(lang: str):
    try:
        return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _render_fence(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    info = unescapeAll(token.info).strip()
    lang = info.split(maxsplit=1)[0] if info else ""
    code = token.content.removesuffix("\n")
    if lang.lower() == "math":
        return _display_math_block(self, [token.copy(info="", content=code)], 0, options, env)
    lexer = _lexer(lang.lower()) if lang else None
    body = highlight(code, lexer, _formatter) if lexer else escapeHtml(code)
    if lexer and not code.endswith("\n"):  # lexers end their last line, whatever the options
        body = body.removesuffix("\n")
    language = f' class="language-{escapeHtml(lang)}"' if lang else ""
    # The header's words are the page's language: code blocks render in the language of
    # whoever the HTML is for (a reply's job: its sender's).
    name = escapeHtml(lang) if lang else escapeHtml(pgettext("code block language", "text"))
    copy_label, copy = escapeHtml(_("Copy code")), escapeHtml(pgettext("button", "Copy"))
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{name}</span>'
        '<button type="button" class="code-copy" data-testid="copy-code" '
        f'aria-label="{copy_label}">{copy}'
        "</button></div>"
        f"<pre><code{language}>{body}</code></pre></div>\n"
    )


# Tables: alignment as a class (the CSP blocks the inline style markdown-it writes), and a box
# of their own that scrolls sideways on a narrow screen.

_ALIGN = {f"text-align:{side}": f' class="align-{side}"' for side in ("left", "center", "right")}


def _render_cell_open(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    return f"<{token.tag}{_ALIGN.get(token.attrGet('style'), '')}>"


def _render_table_open(self, tokens, idx, options, env) -> str:
    return '<div class="table-scroll" tabindex="0"><table>\n'


def _render_table_close(self, tokens, idx, options, env) -> str:
    return "</table></div>\n"


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # html=False: raw HTML in model output is shown as text, never passed through.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
    md.enable(["table", "strikethrough"])
    # As pandoc reads $: no space just inside either dollar, no digit just outside, so prices
    # ("$5 and $10", "$5-$10") stay text; $$...$$ in a paragraph is display math.
    dollarmath_plugin(
        md,
        allow_labels=False,
        allow_space=False,
        allow_digits=False,
        allow_blank_lines=False,
        double_inline=True,
    )
    texmath_plugin(md, delimiters="brackets")  # \(...\), and \[...\] opening a block
    md.inline.ruler.before("escape", "math_display_in_text", _bracket_display_in_text)
    md.add_render_rule("math_inline", _inline_math)
    md.add_render_rule("math_inline_double", _display_math_in_text)
    for name in ("math_block", "math_block_label", "math_block_eqno"):
        md.add_render_rule(name, _display_math_block)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("th_open", _render_cell_open)
    md.add_render_rule("td_open", _render_cell_open)
    md.add_render_rule("table_open", _render_table_open)
    md.add_render_rule("table_close", _render_table_close)
    return md


def render_markdown(text: str) -> str:
    """Sanitised HTML for untrusted Markdown (a whole message or one block of it). Pure."""
    return _cleaner.clean(_markdown().render(text))


@lru_cache(maxsize=64)  # finished texts shown again (Thinking boxes on a page)
def _blocks_in(text: str, language: str | None) -> str:
    from .live_markdown import render_blocks

    return render_blocks.__wrapped__(text)


def finished_html(text: str) -> str:
    """A finished text's HTML, block by block (live_markdown.render_blocks), with the words the
    renderer adds (a code block's Copy) in the active language: kept apart by language, so a
    page never gets another language's copy of the same text."""
    return _blocks_in(text, translation.get_language())


def message_html(message, placement: str, siblings: list | None = None) -> str:
    """A message as the page shows it, marked for htmx to put in place: "append" to the
    transcript, or "replace" its earlier self. Sync: the template may query attachments, and
    the messages sharing its parent are looked up unless given (`siblings`, itself included)."""
    from django.template.loader import render_to_string

    from .branches import branches

    if siblings is None:  # only what the positions need: not the texts, requests, usage
        siblings = list(
            type(message)
            .objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
            .only("pk", "parent_id")
        )
    message.branch = branches(siblings).get(message.pk)
    if not hasattr(message, "has_request"):  # as `views.shown_messages` annotates it
        message.has_request = message.request is not None
    html = render_to_string(
        "chat/chat.html#message", {"message": message, "oob": placement == "replace"}
    )
    if placement == "append":
        return f'<div hx-swap-oob="beforeend:#transcript">{html}</div>'
    return html
