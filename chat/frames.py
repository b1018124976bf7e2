"""The delta frame: what a streaming reply sends its pages about 20 times a second. Pure.

A reply sends a couple of thousand of these, so the frame is compact, and it is built once by
the job for every page that holds the text up to where the frame starts (chat/generation.py);
a page that holds part of it already gets one built for it (chat/consumers.py).

A frame is one line of JSON, then, when Markdown blocks completed, their HTML as it is
(rendered and sanitised by chat/live_markdown.py; inside JSON every quote of it would be
escaped). The page's script applies it (static/chat/stream.js). Keys of the line:

    d     the message's id
    t     text appended to the answer's open tail (`#message-<d>-text`)
    k     the answer's blocks completed: its HTML goes in before the tail, and the tail keeps
          only its last `k` characters (the blocks took the rest)
    r     text appended to the reasoning's open tail (`#message-<d>-reasoning`)
    rk    the same as `k`, for the reasoning
    b     the length of the answer's blocks' HTML, when the reasoning's follow it

Lengths count UTF-16 code units, as the page's strings do. The text sent is the text as the
Markdown renderer reads it (line ends normalised), so the page's tail and the server's agree
character for character.
"""

import json

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def page_length(text: str) -> int:
    """`text`'s length as a browser counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def delta_frame(
    message_id: int,
    text: str = "",
    blocks: str | None = None,
    tail: str = "",
    reasoning: str = "",
    reasoning_blocks: str | None = None,
    reasoning_tail: str = "",
) -> str:
    """One frame: text appended to the answer and the reasoning and, for each that completed
    blocks (`blocks` or `reasoning_blocks` not None), their HTML and the open tail after them.
    Empty when there is nothing to say."""
    header: dict[str, object] = {"d": message_id}
    body = ""
    if text:
        header["t"] = text
    if reasoning:
        header["r"] = reasoning
    if blocks is not None:
        header["k"] = page_length(tail)
        body = blocks
    if reasoning_blocks is not None:
        header["rk"] = page_length(reasoning_tail)
        if body:
            header["b"] = page_length(body)
        body += reasoning_blocks
    if len(header) == 1:
        return ""
    line = _encode(header)
    return f"{line}\n{body}" if body else line


def audio_frame(message_id: int, pcm_base64: str) -> str:
    """Speech for the page to play (static/chat/speech.js)."""
    return _encode({"type": "audio", "message": message_id, "pcm": pcm_base64})
