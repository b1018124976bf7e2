import pytest

from chat.models import Conversation, Preset

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model, client):
    user = django_user_model.objects.create_user("alice")
    client.force_login(user)
    return user


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, title="Tuning")


def test_valid_settings_are_saved_on_the_conversation(client, conversation):
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"temperature": "0.4", "seed": "9", "system_prompt": "Be terse."},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert 'data-testid="settings-saved"' in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.settings == {"temperature": 0.4, "seed": 9, "system_prompt": "Be terse."}


def test_a_wrong_value_is_shown_beside_its_field_and_nothing_is_saved(client, conversation):
    conversation.settings = {"temperature": 1.0}
    conversation.save()
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"temperature": "7", "stop": "a\nb\nc\nd\ne", "system_prompt": "Keep me"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "less than or equal to 2" in html
    assert "At most 4 stop sequences" in html
    assert "Keep me" in html  # what was typed stays
    conversation.refresh_from_db()
    assert conversation.settings == {"temperature": 1.0}


def test_the_panel_shows_the_stored_settings(client, conversation):
    conversation.settings = {
        "temperature": 0.25,
        "modalities": ["text", "audio"],
        "audio": {"voice": "Ethan", "format": "wav"},
    }
    conversation.save()
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'name="temperature" value="0.25"' in html
    assert 'name="voice" value="Ethan"' in html
    assert 'name="audio_output"' in html and "checked" in html


def test_a_preset_is_saved_applied_made_default_and_deleted(client, alice, conversation):
    response = client.post(
        "/presets/",
        {"preset_name": "Precise", "temperature": "0.1", "conversation": conversation.pk},
    )
    assert response.status_code == 200
    preset = Preset.objects.get(owner=alice, name="Precise")
    assert preset.settings == {"temperature": 0.1}

    client.post(f"/presets/{preset.pk}/apply/", {"conversation": conversation.pk})
    conversation.refresh_from_db()
    assert conversation.settings == {"temperature": 0.1}

    client.post(f"/presets/{preset.pk}/default/")
    preset.refresh_from_db()
    assert preset.is_default

    client.post(f"/presets/{preset.pk}/delete/")
    assert not Preset.objects.filter(pk=preset.pk).exists()


def test_a_preset_needs_a_name(client, conversation):
    response = client.post("/presets/", {"preset_name": "  ", "temperature": "0.1"})
    assert response.status_code == 422
    assert "Give the preset a name." in response.content.decode()


def test_default_settings_are_kept_as_the_default_preset(client, alice):
    client.post("/settings/", {"max_tokens": "64"})
    preset = Preset.objects.get(owner=alice, is_default=True)
    assert preset.settings == {"max_tokens": 64}
    html = client.get("/new/").content.decode()
    assert 'name="max_tokens" value="64"' in html


def test_another_users_settings_and_presets_are_out_of_reach(client, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    theirs = Conversation.objects.create(owner=bob, title="Bob's")
    preset = Preset.objects.create(owner=bob, name="Bob's preset", settings={"seed": 3})
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(f"/c/{theirs.pk}/settings/").status_code == 404
    assert client.post(f"/c/{theirs.pk}/settings/", {"seed": "1"}).status_code == 404
    assert client.post(f"/presets/{preset.pk}/apply/").status_code == 404
    assert client.post(f"/presets/{preset.pk}/delete/").status_code == 404
    assert (
        client.post("/presets/", {"preset_name": "x", "conversation": theirs.pk}).status_code == 404
    )
    theirs.refresh_from_db()
    assert theirs.settings == {}


def test_tools_nested_too_deeply_are_refused_beside_the_field(client, conversation):
    deep = "[" * 10_000 + "]" * 10_000
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"tools": deep, "system_prompt": "Keep me"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "nested too deeply" in html
    assert "Keep me" in html
    conversation.refresh_from_db()
    assert conversation.settings == {}


def test_a_json_schema_nested_too_deeply_is_refused_beside_the_field(client, conversation):
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"response_format": "json_schema", "json_schema": deep},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "nested too deeply" in response.content.decode()


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"])
def test_tools_whose_json_spells_a_nul_or_a_lone_surrogate_are_refused(
    client, conversation, escape
):
    tools = '[{"name": "f", "description": "a' + escape + 'b"}]'
    response = client.post(
        f"/c/{conversation.pk}/settings/", {"tools": tools}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "Tools" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.settings == {}


@pytest.mark.parametrize("field", ["system_prompt", "stop", "voice", "tool_choice"])
def test_a_nul_in_a_settings_text_field_is_refused_beside_it(client, conversation, field):
    response = client.post(
        f"/c/{conversation.pk}/settings/", {field: "a\x00b"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()


@pytest.mark.parametrize(
    "route",
    [
        "/presets/",
        "/presets/{preset}/apply/",
        "/presets/{preset}/default/",
        "/presets/{preset}/delete/",
    ],
)
def test_a_conversation_that_is_not_a_number_is_refused_by_the_preset_routes(
    client, alice, conversation, route
):
    preset = Preset.objects.create(owner=alice, name="Mine", settings={"seed": 3})
    response = client.post(
        route.format(preset=preset.pk),
        {"preset_name": "New", "conversation": "abc"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert "conversation" in response.content.decode().lower()
    assert Preset.objects.filter(pk=preset.pk, is_default=False).exists()
    assert not Preset.objects.filter(name="New").exists()


def test_a_preset_name_with_a_nul_is_refused_in_the_panel(client, conversation):
    response = client.post(
        "/presets/",
        {"preset_name": "a\x00b", "temperature": "0.1", "conversation": conversation.pk},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()
    assert not Preset.objects.exists()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
def test_tools_with_a_number_json_cannot_carry_are_refused(client, conversation, number):
    tools = '[{"name": "f", "parameters": {"type": "object", "default": ' + number + "}}]"
    response = client.post(
        f"/c/{conversation.pk}/settings/", {"tools": tools}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    conversation.refresh_from_db()
    assert conversation.settings == {}


def test_an_autosave_saves_the_valid_fields_and_reports_the_wrong_one(client, conversation):
    conversation.settings = {"temperature": 1.0, "seed": 3}
    conversation.save()
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"autosave": "1", "temperature": "7", "seed": "3", "system_prompt": "Be terse."},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["saved"] is True
    assert "less than or equal to 2" in answer["errors"]["temperature"][0]
    assert set(answer["errors"]) == {"temperature"}
    conversation.refresh_from_db()
    # The wrong value is not saved; the others are, and the stored temperature stays.
    assert conversation.settings == {"temperature": 1.0, "seed": 3, "system_prompt": "Be terse."}


def test_an_autosave_of_valid_fields_says_saved(client, conversation):
    response = client.post(
        f"/c/{conversation.pk}/settings/", {"autosave": "1", "temperature": "0.3"}
    )
    assert response.status_code == 200
    assert response.json() == {"saved": True, "errors": {}, "status": "Saved"}
    conversation.refresh_from_db()
    assert conversation.settings == {"temperature": 0.3}


def test_an_autosave_with_a_cross_field_error_keeps_the_stored_value(client, conversation):
    conversation.settings = {"enable_thinking": True, "thinking_budget": 50}
    conversation.save()
    # Thinking turned off with its budget still set: the budget is refused, thinking stays on.
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"autosave": "1", "thinking_budget": "80", "max_tokens": "30"},
    )
    assert response.status_code == 200
    assert "thinking_budget" in response.json()["errors"]
    conversation.refresh_from_db()
    assert conversation.settings["max_tokens"] == 30
    assert "thinking_budget" not in conversation.settings or (
        conversation.settings.get("enable_thinking") is True
    )


def test_default_settings_autosave_too(client, alice):
    response = client.post("/settings/", {"autosave": "1", "seed": "12"})
    assert response.json()["saved"] is True
    assert Preset.objects.get(owner=alice, is_default=True).settings == {"seed": 12}


def test_another_users_conversation_is_not_autosaved(client, alice, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    theirs = Conversation.objects.create(owner=bob, title="Bob's")
    response = client.post(f"/c/{theirs.pk}/settings/", {"autosave": "1", "seed": "1"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.settings == {}


def test_a_form_post_only_for_the_model_keeps_the_other_settings(client, conversation):
    conversation.settings = {"temperature": 0.2, "seed": 5}
    conversation.save()
    response = client.post(
        f"/c/{conversation.pk}/settings/",
        {"only": "model", "model": "alibaba/qwen3.5-omni-plus"},
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.settings == {
        "temperature": 0.2,
        "seed": 5,
        "model": "alibaba/qwen3.5-omni-plus",
    }


def test_the_header_offers_the_model_picker_with_the_saved_model(client, conversation):
    conversation.settings = {"model": "alibaba/qwen3.5-omni-plus"}
    conversation.save()
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    picker = html.split('data-testid="model-picker"', 1)[1].split("</select>", 1)[0]
    assert '<option value="alibaba/qwen3.5-omni-plus" selected>' in picker
    assert 'data-testid="settings-status"' in html and 'aria-live="polite"' in html


def test_example_prompts_are_shown_only_on_an_empty_chat(client, conversation):
    from chat.models import Message

    html = client.get("/new/").content.decode()
    assert html.count('data-testid="example"') >= 7
    kinds = {"image", "audio", "video", "microphone"}
    assert all(f'data-example-kind="{kind}"' in html for kind in kinds)
    assert 'data-example-accept="video/*"' in html
    assert 'data-testid="examples"' in client.get(f"/c/{conversation.pk}/").content.decode()
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    assert 'data-testid="examples"' not in client.get(f"/c/{conversation.pk}/").content.decode()


def test_wrong_autosave_and_only_posts_are_answered_in_place(client, conversation):
    response = client.post(
        f"/c/{conversation.pk}/settings/", {"autosave": "1", "system_prompt": "a\x00b"}
    )
    assert response.status_code == 200
    assert "Null characters" in response.json()["errors"]["system_prompt"][0]
    response = client.post(f"/c/{conversation.pk}/settings/", {"only": ["owner", "pk"]})
    assert response.status_code == 302  # nothing it names is a setting: nothing changes
    response = client.post(f"/c/{conversation.pk}/settings/", {"only": "model", "model": "x/y"})
    assert response.status_code == 422
    assert "not one of the available choices" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.settings == {}
