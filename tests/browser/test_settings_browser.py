"""The settings panel, spoken answers and 'View code' in a real browser."""

import json

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"


def send_and_wait(page, text: str):
    """Send `text` and return the new reply once it is complete."""
    before = page.locator(ASSISTANT).count()
    page.fill("textarea[name=text]", text)
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT)).to_have_count(before + 1)
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete")
    return reply


def start_chat(page, server, text: str) -> None:
    page.goto(server.url + "/new/")
    page.fill("textarea[name=text]", text)
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


def test_a_wrong_setting_is_explained_in_place_and_a_right_one_is_used(app_server, new_context):
    app_server.create_user("tuner")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "tuner")
    start_chat(page, app_server, "First [sim:length=3]")

    page.click("[data-testid=open-settings]")
    page.fill("#settings-form input[name=temperature]", "5")
    page.fill("#settings-form textarea[name=system_prompt]", "Be brief.")
    page.click("[data-testid=save-settings]")
    error = page.locator("#settings-form [data-testid=error]").first
    expect(error).to_contain_text("less than or equal to 2")
    expect(page.locator("#settings-form textarea[name=system_prompt]")).to_have_value("Be brief.")
    screenshot(page, "settings-error")

    page.fill("#settings-form input[name=temperature]", "0.3")
    page.click("[data-testid=save-settings]")
    expect(page.locator("[data-testid=settings-saved]")).to_be_visible()

    reply = send_and_wait(page, "Second [sim:length=3]")
    reply.locator("[data-testid=view-code]").click()
    python = reply.locator("[data-testid=code-python]")
    expect(python).to_contain_text('"temperature": 0.3')
    expect(python).to_contain_text("Be brief.")
    expect(python).to_contain_text("PLAYGROUND_API_KEY")


def test_a_spoken_answer_plays_while_streaming_and_is_saved_with_a_player(app_server, new_context):
    app_server.create_user("listener")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "listener")
    start_chat(page, app_server, "Warm up [sim:length=2]")

    page.click("[data-testid=open-settings]")
    page.check("#settings-form input[name=audio_output]")
    page.fill("#settings-form input[name=voice]", "Tina")
    page.click("[data-testid=save-settings]")
    expect(page.locator("[data-testid=settings-saved]")).to_be_visible()
    page.click("[data-action=toggle-settings] >> nth=0")

    reply = send_and_wait(page, "Please say hello [sim:length=12]")
    # Web Audio played real (non-silent) samples while the reply streamed...
    assert float(page.locator("body").get_attribute("data-speech-peak")) > 0.05
    assert float(page.locator("body").get_attribute("data-speech-seconds")) > 1
    # ...and the finished reply carries the saved WAV with a player.
    player = reply.locator("[data-testid=attachment] audio")
    expect(player).to_be_visible()
    duration = player.evaluate(
        "a => new Promise(r => a.readyState >= 1 ? r(a.duration) : "
        "a.addEventListener('loadedmetadata', () => r(a.duration)))"
    )
    assert duration > 1
    screenshot(page, "spoken-answer")


def test_thinking_and_speech_together_are_explained_not_sent(app_server, new_context):
    app_server.create_user("thinker")
    page = new_context().new_page()
    log_in(page, app_server, "thinker")
    start_chat(page, app_server, "Hi [sim:length=2]")
    page.click("[data-testid=open-settings]")
    page.check("#settings-form input[name=audio_output]")
    page.fill("#settings-form input[name=voice]", "Ethan")
    page.check("#settings-form input[name=enable_thinking]")
    page.click("[data-testid=save-settings]")
    expect(page.locator("#settings-form [data-testid=error]").first).to_contain_text("thinking off")


def request_of(server, reply) -> dict:
    """The request the upstream received for a reply, as saved on the message."""
    message_id = reply.get_attribute("data-id")
    code = (
        "import json; from chat.models import Message; "
        f"print(json.dumps(Message.objects.get(pk={message_id}).request))"
    )
    return json.loads(server.manage("shell", "-c", code).strip().splitlines()[-1])


def test_a_setting_changed_without_save_reaches_the_next_request(app_server, new_context):
    app_server.create_user("autosaver")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "autosaver")
    start_chat(page, app_server, "First [sim:length=3]")

    page.click("[data-testid=open-settings]")
    status = page.locator("[data-testid=settings-status]")
    expect(status).to_have_attribute("aria-live", "polite")
    page.fill("#settings-form input[name=temperature]", "0.35")
    expect(status).to_have_text("Saved")
    # A wrong value is explained in place and not saved; the others still are.
    page.fill("#settings-form input[name=top_p]", "7")
    page.fill("#settings-form input[name=seed]", "42")
    error = page.locator("#settings-form .field:has([name=top_p]) [data-testid=error]")
    expect(error).to_contain_text("less than or equal to 1")
    expect(status).to_contain_text("except the field marked")
    screenshot(page, "settings-autosave-error")
    page.fill("#settings-form input[name=top_p]", "")
    expect(status).to_have_text("Saved")
    expect(error).to_have_count(0)

    # The header's model picker (beside the title while the panel is closed) is the panel's
    # model field.
    page.click("[data-testid=open-settings]")
    saved = lambda r: r.url.endswith("/settings/") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(saved) as answer:
        page.select_option("[data-testid=model-picker]", "alibaba/qwen3.5-omni-plus")
    assert answer.value.json()["saved"] is True
    expect(status).to_have_text("Saved")
    page.click("[data-testid=open-settings]")
    expect(page.locator("#settings-form select[name=model]")).to_have_value(
        "alibaba/qwen3.5-omni-plus"
    )
    screenshot(page, "settings-autosave")

    reply = send_and_wait(page, "Second [sim:length=3]")
    sent = request_of(app_server, reply)
    assert sent["temperature"] == 0.35
    assert sent["seed"] == 42
    assert "top_p" not in sent
    assert sent["model"] == "alibaba/qwen3.5-omni-plus"

    page.reload()  # the panel and the picker show what was saved
    expect(page.locator("[data-testid=model-picker]")).to_have_value("alibaba/qwen3.5-omni-plus")
    expect(page.locator("#settings-form input[name=temperature]")).to_have_value("0.35")


def test_an_example_prompt_fills_the_composer_on_an_empty_chat(app_server, new_context):
    app_server.create_user("curious")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "curious")
    page.goto(app_server.url + "/new/")
    examples = page.locator("[data-testid=example]")
    expect(examples.first).to_be_visible()
    screenshot(page, "examples")
    examples.first.click()
    composer = page.locator("textarea[name=text]")
    expect(composer).to_have_value("Explain how a rainbow forms, in three short paragraphs.")
    expect(composer).to_be_focused()

    with page.expect_file_chooser() as chooser:
        page.click("[data-testid=example][data-example-kind=video]")
    assert chooser.value.element.get_attribute("accept") == "video/*"
    expect(composer).to_have_value("Describe what happens in this video.")


def test_the_first_reply_brings_a_title_to_the_header_and_the_list(app_server, new_context):
    app_server.create_user("titled")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "titled")
    start_chat(page, app_server, "Tell me [sim:length=3] about the tides of Brittany, please")
    expect(page.locator("#conversation-title")).to_have_text("Tell me about the tides")
    expect(page).to_have_title("Tell me about the tides · Omni Playground")  # the tab too
    expect(page.locator(".conversation-link.current")).to_have_text("Tell me about the tides")
    expect(page.locator("#conversation-title")).not_to_contain_text("sim:")
