"""Tool calls stream as fragments keyed by index; `arguments` arrives in pieces."""

import json
from typing import Any


def merge_fragments(calls: dict[int, dict[str, Any]], fragments: tuple[dict, ...]) -> None:
    """Fold streamed `delta.tool_calls` fragments into `calls` (index -> call), in place."""
    for fragment in fragments:
        index = fragment.get("index", 0)
        call = calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if fragment.get("id"):
            call["id"] = fragment["id"]
        if fragment.get("type"):
            call["type"] = fragment["type"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]


def ordered(calls: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [calls[i] for i in sorted(calls)]


def pretty_arguments(arguments: str) -> tuple[str, bool]:
    """(text to show, whether it is valid JSON). Models do not always produce valid JSON."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False), True
    except ValueError:
        return arguments, False


def name_results(messages: list) -> None:
    """Give each tool result in `messages` (in conversation order) the name of the function it
    answers, as `tool_name`, from the call before it in the same list: its label reads "Result
    of get_weather", with no query per message. One whose call is not in the list keeps none."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls or []:
            names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
        if message.role == "tool" and message.tool_call_id in names:
            message.tool_name = names[message.tool_call_id]
