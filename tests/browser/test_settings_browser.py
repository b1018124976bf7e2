"""The settings panel, spoken answers and 'View code' in a real browser."""

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
