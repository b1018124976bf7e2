"""Template filters for Markdown rendered block by block (chat/live_markdown.py)."""

from django import template
from django.utils.safestring import mark_safe

from .. import live_markdown, rendering

register = template.Library()


@register.filter
def markdown_blocks(text: str) -> str:
    """A finished text's sanitised HTML, as its blocks streamed."""
    return mark_safe(rendering.finished_html(text or ""))


@register.filter
def live_blocks(text: str) -> tuple[str, str]:
    """A streaming text as a live page holds it: its complete blocks' sanitised HTML, and the
    open tail's source (to be escaped)."""
    html, tail = live_markdown.split_rendered(text or "")
    return mark_safe(html), tail.lstrip("\n")  # the gap before it is the tail's margin
