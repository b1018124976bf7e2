"""Directives: `[sim:...]` markers in the last user message that make the simulator misbehave
(for a message with no text, such as a call's utterance: in the system prompt).

They let tests and demos reach every failure path of a real upstream on purpose:

    [sim:help]            list the directives in the reply
    [sim:status=N]        answer HTTP N (400-599) with the gateway's error body; 429 adds
                          `Retry-After: 7`
    [sim:vendor-error]    answer 400 with the vendor's error body
                          ({"error": {"code", "message", "type"}, "request_id"})
    [sim:drop]            stream a few tokens, then drop the connection mid-body
    [sim:malformed]       stream a few tokens, then an event whose data is not JSON, then end
    [sim:error]           stream a few tokens, then an in-stream {"error": {...}} event, then end
    [sim:stall]           stream a few tokens, then send nothing for 600 s
    [sim:delay=S]         wait S seconds (0-10) before each token instead of the default
    [sim:length=N]        reply with exactly N content tokens (1-100000) of filler text
    [sim:tool]            call the first tool, when tools were sent
"""

import re
from dataclasses import dataclass
from typing import Literal

Fault = Literal["drop", "malformed", "error", "stall"]
FAULTS: tuple[Fault, ...] = ("drop", "malformed", "error", "stall")

MAX_LENGTH = 100_000
MAX_DELAY = 10.0


def gettext_noop(message: str) -> str:
    """Marks a string for the translators (makemessages looks for this name) and leaves it as
    it is. Not Django's: that one reads the settings, and the simulator runs without them."""
    return message


# The list the `[sim:help]` reply gives (in English, as all its replies), and the chat page's
# banner shows in the page's language (marked here for the translators, translated there).
HELP: tuple[tuple[str, str], ...] = (
    ("[sim:help]", gettext_noop("this list")),
    ("[sim:status=N]", gettext_noop("answer HTTP error N (401, 403, 429, 500, 502, 503, ...)")),
    ("[sim:vendor-error]", gettext_noop("a 400 in the vendor's error shape")),
    ("[sim:drop]", gettext_noop("drop the connection mid-stream")),
    ("[sim:malformed]", gettext_noop("send an event that is not JSON")),
    ("[sim:error]", gettext_noop("send an error event mid-stream")),
    ("[sim:stall]", gettext_noop("stop sending for 600 s")),
    ("[sim:delay=0.2]", gettext_noop("seconds to wait before each token")),
    ("[sim:length=N]", gettext_noop("reply with exactly N tokens")),
    ("[sim:tool]", gettext_noop("call the first tool sent")),
)

_DIRECTIVE = re.compile(r"\[sim:([a-z-]+)(?:=([^\]\s]*))?\]")


def strip_directives(text: str) -> str:
    """`text` without its [sim:...] markers."""
    return _DIRECTIVE.sub("", text)


@dataclass(frozen=True)
class Directives:
    help: bool = False
    status: int | None = None
    vendor_error: bool = False
    fault: Fault | None = None
    delay: float | None = None
    length: int | None = None
    tool: bool = False


def parse_directives(text: str) -> tuple[Directives, list[str]]:
    """The directives in `text`, and reasons for any that are unknown or have a bad value.

    A mistyped directive is reported rather than ignored, so a test never silently gets the
    happy path it did not ask for.
    """
    found: dict[str, object] = {}
    problems: list[str] = []
    for match in _DIRECTIVE.finditer(text):
        name, value = match.group(1), match.group(2)
        marker = match.group(0)
        if name in ("help", "vendor-error", "tool", *FAULTS):
            if value is not None:
                problems.append(f"{marker}: this directive takes no value")
            elif name in FAULTS:
                found.setdefault("fault", name)
            else:
                found[name.replace("-", "_")] = True
        elif name == "status":
            number = _number(value, int)
            if number is None or not 400 <= number <= 599:
                problems.append(f"{marker}: the status must be a whole number from 400 to 599")
            else:
                found["status"] = number
        elif name == "delay":
            seconds = _number(value, float)
            if seconds is None or not 0 <= seconds <= MAX_DELAY:
                problems.append(f"{marker}: the delay must be seconds from 0 to {MAX_DELAY:g}")
            else:
                found["delay"] = seconds
        elif name == "length":
            count = _number(value, int)
            if count is None or not 1 <= count <= MAX_LENGTH:
                problems.append(f"{marker}: the length must be a whole number, 1 to {MAX_LENGTH}")
            else:
                found["length"] = count
        else:
            problems.append(f"{marker}: unknown directive; send [sim:help] for the list")
    return Directives(**found), problems  # type: ignore[arg-type]


def _number[T: (int, float)](value: str | None, kind: type[T]) -> T | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        return None
