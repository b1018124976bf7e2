"""Every generation setting: validated in place, and sent in a shape the schema accepts."""

import json

import pytest

from chat.models import Message
from chat.payloads import build_request
from chat.settings_form import SettingsForm, initial_from_settings
from chat.simulator.schema import request_errors

MODEL = "alibaba/qwen3.5-omni-flash"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def form(**data) -> SettingsForm:
    return SettingsForm(data={k: v for k, v in data.items()})


def sent(settings: dict) -> dict:
    return build_request([Message(pk=1, role="user", content="Hi")], settings, MODEL)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "2.5", "less than or equal to 2"),
        ("temperature", "-0.1", "greater than or equal to 0"),
        ("top_p", "0", "greater than or equal to 0.01"),
        ("top_p", "1.5", "less than or equal to 1"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("seed", "0", "greater than or equal to 1"),
        ("seed", "1.5", "whole number"),
        ("presence_penalty", "3", "less than or equal to 2"),
        ("frequency_penalty", "-3", "greater than or equal to -2"),
        ("top_logprobs", "21", "less than or equal to 20"),
        ("thinking_budget", "0", "greater than or equal to 1"),
        ("stop", "a\nb\nc\nd\ne", "At most 4 stop sequences; you gave 5."),
        ("tools", "{not json", "Tools is not valid JSON"),
        ("tools", '[{"type": "function", "function": {"name": "bad name!"}}]', "the name must be"),
        (
            "tools",
            '[{"function": {"name": "f", "parameters": {"type": 5}}}]',
            "not a valid JSON Schema",
        ),
        ("json_schema", '{"type": "objekt"}', "not a valid JSON Schema"),
        ("json_schema", "[1, 2]", "must be a JSON object"),
    ],
)
def test_a_bad_value_is_refused_beside_its_field(field, value, message):
    f = form(**{field: value})
    assert not f.is_valid()
    assert message in " ".join(f.errors[field])


def test_too_many_tools_are_refused():
    tools = [{"function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(129)]
    f = form(tools=json.dumps(tools))
    assert not f.is_valid()
    assert "At most 128 tools" in f.errors["tools"][0]


def test_audio_output_with_thinking_is_explained_not_sent():
    f = form(audio_output="on", voice="Tina", enable_thinking="on")
    assert not f.is_valid()
    assert "thinking off" in f.errors["audio_output"][0]


def test_dependent_fields_need_their_switch():
    f = form(thinking_budget="100", top_logprobs="3", response_format="json_schema")
    assert not f.is_valid()
    assert set(f.errors) == {"thinking_budget", "top_logprobs", "json_schema"}


def test_tool_choice_must_name_a_tool():
    f = form(tools=json.dumps([WEATHER]), tool_choice="get_time")
    assert not f.is_valid()
    assert "not one of the tools" in f.errors["tool_choice"][0]


def test_an_empty_form_sends_nothing_but_the_basics():
    f = form()
    assert f.is_valid(), f.errors
    assert f.to_settings() == {}
    assert set(sent({})) == {"model", "messages", "stream", "stream_options"}


@pytest.mark.parametrize(
    "data",
    [
        {"temperature": "0.7", "top_p": "0.9", "max_tokens": "256", "seed": "42"},
        {"presence_penalty": "0.5", "frequency_penalty": "-0.5", "stop": "END\n###"},
        {"response_format": "json_object", "system_prompt": "Answer in JSON."},
        {
            "response_format": "json_schema",
            "json_schema": '{"name": "answer", "schema": {"type": "object"}, "strict": true}',
        },
        {"response_format": "json_schema", "json_schema": '{"type": "object"}'},
        {"enable_thinking": "on", "thinking_budget": "512"},
        {"logprobs": "on", "top_logprobs": "5"},
        {"audio_output": "on", "voice": "Ethan"},
        {
            "tools": json.dumps([WEATHER]),
            "tool_choice": "get_weather",
            "parallel_tool_calls": "false",
        },
        {"tools": json.dumps([WEATHER]), "tool_choice": "required"},
        {"model": "alibaba/qwen3.5-omni-plus"},
    ],
)
def test_each_setting_combination_sends_a_schema_valid_request(data):
    f = form(**data)
    assert f.is_valid(), f.errors
    stored = f.to_settings()
    body = sent(stored)
    errors = request_errors(body)
    assert errors == [], errors
    # Round trip: the panel shows what is stored.
    again = SettingsForm(
        data={k: v for k, v in initial_from_settings(stored).items() if v not in (None, False)}
    )
    assert again.is_valid(), again.errors
    assert again.to_settings() == stored


def test_audio_output_asks_for_wav_with_the_voice():
    f = form(audio_output="on", voice="Serena")
    assert f.is_valid()
    body = sent(f.to_settings())
    assert body["modalities"] == ["text", "audio"]
    assert body["audio"] == {"voice": "Serena", "format": "wav"}


def test_a_named_tool_choice_is_sent_as_a_function_object():
    f = form(tools=json.dumps([WEATHER]), tool_choice="get_weather")
    assert f.is_valid()
    body = sent(f.to_settings())
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["tools"][0]["function"]["name"] == "get_weather"


def test_the_model_choices_are_the_ones_the_upstream_lists(upstream_is_simulator, settings):
    from chat import models_list

    models_list.forget()
    settings.PLAYGROUND_MODELS = ["not/listed-upstream"]
    try:
        offered = [value for value, _ in SettingsForm().fields["model"].choices if value]
        assert offered == ["alibaba/qwen3.5-omni-flash", "alibaba/qwen3.5-omni-plus"]
        refused = form(model="not/listed-upstream")
        assert not refused.is_valid() and "model" in refused.errors
        assert form(model="alibaba/qwen3.5-omni-plus").is_valid()
    finally:
        models_list.forget()
