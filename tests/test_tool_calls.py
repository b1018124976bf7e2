import json

from chat.tool_calls import merge_fragments, ordered, pretty_arguments


def test_fragments_are_assembled_per_index_across_chunks():
    calls: dict = {}
    chunks = [
        (
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            },
        ),
        (
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz"'},
            },
        ),
        ({"index": 0, "function": {"arguments": '{"ci'}},),
        (
            {"index": 0, "function": {"arguments": 'ty": "Par'}},
            {"index": 1, "function": {"arguments": ': "UTC"}'}},
        ),
        ({"index": 0, "function": {"arguments": 'is"}'}},),
    ]
    for fragments in chunks:
        merge_fragments(calls, fragments)
    first, second = ordered(calls)
    assert first["id"] == "call_a" and first["function"]["name"] == "get_weather"
    assert json.loads(first["function"]["arguments"]) == {"city": "Paris"}
    assert second["id"] == "call_b"
    assert json.loads(second["function"]["arguments"]) == {"tz": "UTC"}


def test_invalid_arguments_are_flagged_not_hidden():
    assert pretty_arguments('{"a": 1}') == ('{\n  "a": 1\n}', True)
    assert pretty_arguments('{"a": ') == ('{"a": ', False)
