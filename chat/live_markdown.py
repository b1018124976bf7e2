"""Markdown rendered block by block while a reply streams. Pure, apart from the renderer.

A reply's text is cut into top-level blocks (paragraph, list, heading, fenced code, table,
quote, math block) by markdown-it's own block parser, the one `rendering.render_markdown`
uses. A block is rendered (and sanitised) once, when the text after it shows it is complete;
what follows the last complete block, the open tail, is shown as escaped text until it closes.
The finished message's HTML is the concatenation of its blocks (`render_blocks`), so nothing
changes when a reply completes, and a page drawn from a checkpoint (`split_rendered`) shows the
blocks a live page shows.

When a block is complete:
- another top-level block starts after it (only whole lines count: a line still being written
  can change what it is, `#` is a heading and `#x` is not);
- or, as the last block, a blank line follows it (a paragraph, table, quote, heading or closed
  fence cannot continue past one; a list or an indented code block can, so they wait for the
  next block), or it is a heading, a rule or a closed fence and any text follows it;
- a fence is complete only once closed, and so is a math block opened with `$$` or `\\[`:
  until it closes, it and everything after it stay in the tail.

Where this differs from rendering the whole text at once: a link reference definition
(`[x]: https://...`) applies to the blocks after it, never to blocks before it (they are already
on the page). Everything else renders as it would in one piece.
"""

import re
from functools import lru_cache

from . import rendering

# Blocks that end at their last line: nothing after them can join them.
_SELF_CLOSING = {"heading_open", "hr"}
# Blocks a blank line ends.
_BLANK_ENDS = {"paragraph_open", "table_open", "blockquote_open", "heading_open", "hr", "fence"}
_MATH_OPEN = re.compile(r"^ {0,3}(\$\$|\\\[)", re.M)


def _parser():
    # The renderer's own parser, so the blocks found here are the blocks it renders (with any
    # block rules it has, math among them).
    return rendering._markdown()


def normalize(text: str) -> str:
    """Line ends as markdown-it reads them, so line numbers and offsets agree."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\0", "\ufffd") if "\0" in text else text


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    find = text.find
    at = find("\n")
    while at != -1:
        offsets.append(at + 1)
        at = find("\n", at + 1)
    return offsets


def _fence_closed(token, lines: list[str]) -> bool:
    first, end = token.map
    if end - first < 2:
        return False
    last = lines[end - 1].strip()
    mark = token.markup[:1]
    return bool(mark) and len(last) >= len(token.markup) and set(last) == {mark}


def _math_open(chunk: str) -> bool:
    """Whether a `$$` or `\\[` block opens in `chunk` and does not close there."""
    at = 0
    while match := _MATH_OPEN.search(chunk, at):
        closer = "$$" if match.group(1) == "$$" else "\\]"
        end = chunk.find(closer, match.end())
        if end == -1:
            return True
        at = end + len(closer)
    return False


def block_ends(text: str, final: bool = False) -> list[int]:
    """Offsets in `text` (normalised) where each complete top-level block's source ends.

    Each block's source runs from the previous end (or 0) to its own, blank lines and link
    reference definitions before it included. With `final`, the text is whole and every block
    is complete."""
    whole = text if final else text[: text.rfind("\n") + 1]
    if not whole.strip():
        return []
    tokens = _parser().block.parse(whole, _parser(), {}, [])
    tops = [t for t in tokens if t.level == 0 and t.nesting != -1 and t.map]
    if not tops:
        return []
    offsets = _line_offsets(whole)
    lines = whole.split("\n")

    def end_of(token) -> int:
        line = token.map[1]
        return offsets[line] if line < len(offsets) else len(whole)

    ends = []
    for n, token in enumerate(tops):
        start = offsets[token.map[0]]
        if n + 1 < len(tops):
            closed = True
        elif final:
            closed = True
        else:
            after = token.map[1]
            followed = len(text) > end_of(token)
            blank_after = after < len(lines) - 1 and not lines[after].strip()
            if token.type == "fence":
                closed = followed and _fence_closed(token, lines)
            elif token.type in _SELF_CLOSING:
                closed = followed
            else:
                closed = blank_after and token.type in _BLANK_ENDS
        if not final and _math_open(whole[start:]):
            break  # an open math block holds back itself and what follows
        if not closed:
            break
        ends.append(end_of(token))
    return ends


class LiveMarkdown:
    """One streaming text: its complete blocks' HTML and the open tail's source."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.tail = ""  # normalised source after the last complete block
        self.definitions = ""  # link reference definitions seen so far
        self.after_cr = False  # the text so far ends with "\r": a "\n" next is the same line end

    def feed(self, text: str) -> str:
        """Add streamed text; return it as the renderer reads it (line ends normalised)."""
        if self.after_cr and text.startswith("\n"):
            text = text[1:]
        if not text:
            return ""
        self.after_cr = text.endswith("\r")
        text = normalize(text)
        self.tail += text
        return text

    def advance(self, final: bool = False) -> list[str]:
        """Render the blocks the text now shows complete; return their HTML (in order)."""
        ends = block_ends(self.tail, final=final)
        if not ends:
            if final:
                self.tail = ""
            return []
        new = []
        start = 0
        for end in ends:
            new.append(self._render(self.tail[start:end]))
            start = end
        self.tail = "" if final else self.tail[start:]
        self.blocks += new
        return new

    def _render(self, source: str) -> str:
        html = render_markdown_block(self.definitions, source)
        if "]:" in source:
            # A definition in this block's source applies to the blocks after it too.
            self.definitions = _collect_definitions(self.definitions, source)
        return html

    def html(self) -> str:
        return "".join(self.blocks)


def _collect_definitions(known: str, source: str) -> str:
    """Link reference definitions of `source` appended to `known`: lines outside every
    token of the source (markdown-it gives definitions no tokens)."""
    tokens = _parser().block.parse(source, _parser(), {}, [])
    covered = set()
    for t in tokens:
        if t.map and t.level == 0:
            covered.update(range(*t.map))
    lines = source.split("\n")
    extra = "\n".join(line for n, line in enumerate(lines) if n not in covered and line.strip())
    if not extra:
        return known
    return f"{known}\n\n{extra}" if known else extra


def render_markdown_block(definitions: str, source: str) -> str:
    if definitions:
        source = f"{definitions}\n\n{source}"
    return rendering.render_markdown(source)


@lru_cache(maxsize=64)  # finished texts shown again (Thinking boxes on a page)
def render_blocks(text: str) -> str:
    """A whole text's HTML, block by block: what a finished reply's page shows."""
    if not text:
        return ""
    live = LiveMarkdown()
    live.feed(text)
    live.advance(final=True)
    return live.html()


def split_rendered(text: str) -> tuple[str, str]:
    """The HTML of a streaming text's complete blocks, and its open tail's source."""
    live = LiveMarkdown()
    live.feed(text)
    live.advance()
    return live.html(), live.tail
