from chat.models import Message
from chat.payloads import build_request
from chat.simulator.schema import request_errors
from chat.views import history

MODEL = "alibaba/qwen3.5-omni-flash"


def msg(pk, role, content, parent=None, status="complete"):
    return Message(pk=pk, role=role, content=content, parent_id=parent, status=status)


def test_a_first_message_becomes_a_schema_valid_streaming_request():
    body = build_request([msg(1, "user", "Hi")], {}, MODEL)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request_errors(body) == []


def test_the_system_prompt_comes_first_and_only_set_fields_are_sent():
    settings = {"system_prompt": "Be brief.", "temperature": 0.2, "top_p": None, "stop": []}
    body = build_request([msg(1, "user", "Hi")], settings, MODEL)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.2
    assert "top_p" not in body and "stop" not in body
    assert request_errors(body) == []


def test_empty_assistant_replies_are_left_out():
    history_ = [msg(1, "user", "Hi"), msg(2, "assistant", "", 1, status="error")]
    body = build_request(history_, {}, MODEL)
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_history_follows_parents_so_a_retried_reply_replaces_the_failed_one():
    messages = [
        msg(1, "user", "Q1"),
        msg(2, "assistant", "partial", 1, status="error"),
        msg(3, "assistant", "A1", 1),
        msg(4, "user", "Q2", 3),
    ]
    path = history(messages, messages[3])
    assert [m.pk for m in path] == [1, 3, 4]
    body = build_request(path, {}, MODEL)
    assert [m["content"] for m in body["messages"]] == ["Q1", "A1", "Q2"]
    assert request_errors(body) == []
