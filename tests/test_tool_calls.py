import json

import pytest

from chat.models import Conversation, Message
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


@pytest.mark.django_db
@pytest.mark.parametrize("result", ["a\x00b", "\x00media0\x00"])
def test_a_tool_result_with_a_nul_is_refused_in_place(alice, alice_client, result):
    conversation = Conversation.objects.create(owner=alice, title="Tools")
    calls = [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    asked = Message.objects.create(
        conversation=conversation, role="assistant", status="complete", tool_calls=calls
    )
    response = alice_client.post(
        f"/c/{conversation.pk}/m/{asked.pk}/tool-results/",
        {"result_call_a": result},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()
    assert list(conversation.messages.values_list("pk", flat=True)) == [asked.pk]


def test_each_tool_result_is_named_after_the_call_it_answers():
    from chat.models import Message
    from chat.tool_calls import name_results

    calls = [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    reply = Message(role="assistant", tool_calls=calls)
    results = [Message(role="tool", tool_call_id=i, content="{}") for i in ("b", "a", "c")]
    name_results([reply, *results])
    assert [getattr(m, "tool_name", None) for m in results] == ["get_time", "get_weather", None]
