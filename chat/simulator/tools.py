"""Tool calls: which function the simulator calls, and plausible arguments for it."""

import json
from typing import Any

# Strings for common parameter names, so a demo call reads like something a model would send.
NAMED_EXAMPLES = {
    "city": "Paris",
    "location": "Paris, France",
    "country": "France",
    "query": "offline simulator",
    "q": "offline simulator",
    "url": "https://example.com/",
    "email": "simulator@example.com",
    "name": "Ada Lovelace",
    "language": "en",
    "timezone": "Europe/Paris",
}
FORMAT_EXAMPLES = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T12:00:00Z",
    "time": "12:00:00",
    "email": "simulator@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
MAX_DEPTH = 6


def chosen_tool(body: dict[str, Any], asked_in_text: bool) -> dict[str, Any] | str | None:
    """The function to call, None for a plain reply, or a reason why tool_choice is unusable."""
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        named = next((tool for tool in tools if tool["name"] == name), None)
        if named is None:
            return f"tool_choice.function.name: {name!r} is not one of the tools sent"
        return named
    # [sim:tool] only answers the user's turn: once a tool result follows it, the simulator
    # replies in text, so an app that loops on tool calls gets a final answer.
    answering_user = body["messages"][-1].get("role") == "user"
    if choice == "required" or (asked_in_text and answering_user):
        return tools[0]
    return None


def example_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """An object with a plausible value for each required property of a JSON schema."""
    value = _example(parameters, "", 0)
    return value if isinstance(value, dict) else {}


def _example(schema: Any, name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return _example(schema[combinator][0], name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            key: _example(properties.get(key, {}), key, depth + 1)
            for key in schema.get("required") or []
        }
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_example(schema.get("items", {}), name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") in FORMAT_EXAMPLES:
        return FORMAT_EXAMPLES[schema["format"]]
    return NAMED_EXAMPLES.get(name.lower(), f"example {name}".strip())


def argument_pieces(arguments: dict[str, Any], size: int = 8) -> list[str]:
    """The arguments JSON cut into fragments, as a model streams them."""
    text = json.dumps(arguments, ensure_ascii=False)
    return [text[i : i + size] for i in range(0, len(text), size)] or ["{}"]
