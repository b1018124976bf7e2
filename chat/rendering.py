"""Model output -> safe HTML: Markdown rendered, code highlighted, then sanitised."""

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
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
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "td": {"style"},
    "th": {"style"},
    "ol": {"start"},
}


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else guess_lexer(code)
    except ClassNotFound:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, _formatter)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # html=False: raw HTML in model output is shown as text, never passed through.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    return md


def render_markdown(text: str) -> str:
    """Sanitised HTML for untrusted Markdown. Pure."""
    html = _markdown().render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


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
