"""What only a browser shows: typing, streaming, Stop, reload mid-stream, the phone layout."""

import re

from playwright.sync_api import expect

from chat.simulator.reply import filler_tokens
from tests.browser.conftest import PASSWORD, log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"


def last_reply(page):
    return page.locator(ASSISTANT).last


def test_the_first_visitor_creates_the_admin_account_and_lands_in_the_chat(
    fresh_server, new_context
):
    page = new_context().new_page()
    page.goto(fresh_server.url + "/")
    expect(page).to_have_url(re.compile(r"/setup/$"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("textarea[name=text]")).to_be_visible()
    expect(page.locator("[data-testid=simulator-banner]")).to_be_visible()


def test_a_typed_message_streams_in_and_is_rendered(app_server, new_context):
    app_server.create_user("typist")
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, app_server, "typist")
    page.goto(app_server.url + "/new/")

    composer = page.locator("textarea[name=text]")
    composer.fill("Hello! Please describe what you received.")
    composer.press("Shift+Enter")
    composer.type("Second line.")
    assert composer.input_value().endswith("\nSecond line.")
    composer.press("Enter")

    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    content = reply.locator("[data-testid=message-content]")
    expect(content).to_contain_text("offline simulator", ignore_case=True)
    expect(page.locator("[data-testid=stop]")).to_be_visible()
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    # The finished reply is rendered Markdown (lists, code) and the composer is empty again.
    expect(content.locator(".md li").first).to_be_visible()
    expect(content.locator(".md pre code")).to_be_visible()
    expect(composer).to_have_value("")
    expect(page.locator("[data-testid=send]")).to_be_visible()
    user_message = page.locator("[data-testid=message][data-role=user]").last
    expect(user_message).to_contain_text("Second line.")
    # The conversation is saved and listed in the sidebar under its title.
    expect(page.locator(".conversation-link.current")).to_contain_text("Hello! Please describe")
    screenshot(page, "chat-desktop")


def test_stop_ends_a_slow_stream_and_keeps_the_partial_answer(app_server, new_context):
    app_server.create_user("stopper")
    page = new_context().new_page()
    log_in(page, app_server, "stopper")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Tell me a long story [sim:length=2000] [sim:delay=0.05]")
    page.click("[data-testid=send]")

    reply = last_reply(page)
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")
    page.click("[data-testid=stop]")
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")
    expect(reply.locator("[data-testid=retry]")).to_be_visible()
    kept = reply.locator("[data-testid=message-content]").inner_text()
    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    assert last_reply(page).locator("[data-testid=message-content]").inner_text() == kept


def test_reloading_mid_stream_shows_the_text_so_far_and_the_answer_finishes(
    app_server, new_context
):
    app_server.create_user("reloader")
    page = new_context().new_page()
    log_in(page, app_server, "reloader")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Stream for a while [sim:length=120] [sim:delay=0.03]")
    page.click("[data-testid=send]")
    reply = last_reply(page)
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")

    page.reload()
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    text = reply.locator("[data-testid=message-content]").inner_text()
    # The whole 120-token answer, each piece once: no gap and no repeat around the reload.
    expected = "".join(filler_tokens(120))
    assert text.split() == expected.split()


def test_a_second_tab_streams_the_same_answer(app_server, new_context):
    app_server.create_user("twotabs")
    context = new_context()
    first = context.new_page()
    log_in(first, app_server, "twotabs")
    first.goto(app_server.url + "/new/")
    first.fill("textarea[name=text]", "Warm up [sim:length=3]")
    first.click("[data-testid=send]")
    expect(last_reply(first)).to_have_attribute("data-status", "complete")

    second = context.new_page()
    second.goto(first.url)
    expect(second.locator(ASSISTANT)).to_have_count(1)
    first.fill("textarea[name=text]", "Both tabs [sim:length=60] [sim:delay=0.02]")
    first.click("[data-testid=send]")
    expect(second.locator(ASSISTANT)).to_have_count(2)
    expect(last_reply(second)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(last_reply(first)).to_have_attribute("data-status", "complete", timeout=20_000)
    assert (
        last_reply(first).locator("[data-testid=message-content]").inner_text()
        == last_reply(second).locator("[data-testid=message-content]").inner_text()
    )


def test_an_upstream_error_shows_in_the_transcript_with_retry(app_server, new_context):
    app_server.create_user("unlucky")
    page = new_context().new_page()
    log_in(page, app_server, "unlucky")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Please fail [sim:status=429]")
    page.click("[data-testid=send]")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "error")
    error = reply.locator("[data-testid=error]")
    expect(error).to_contain_text("429")
    expect(error).to_contain_text("Too Many Requests")
    expect(error).to_contain_text("7")
    page.locator("[data-testid=retry]").last.click()
    # The new attempt is a sibling of the failed one: shown in its place, one arrow away.
    expect(page.locator("[data-testid=branch] .branch-count").last).to_have_text("2/2")
    expect(page.locator(ASSISTANT)).to_have_count(1)
    expect(page.locator("[data-testid=message][data-role=user]")).to_have_count(1)
    page.locator("[data-testid=branch-previous]").last.click()
    expect(page.locator("[data-testid=branch] .branch-count").last).to_have_text("1/2")


def test_an_empty_message_is_refused_beside_the_composer(app_server, new_context):
    app_server.create_user("blank")
    page = new_context().new_page()
    log_in(page, app_server, "blank")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "   ")
    page.click("[data-testid=send]")
    expect(page.locator("#composer [data-testid=error]")).to_contain_text(
        "Type a message or attach a file first"
    )
    expect(page.locator("textarea[name=text]")).to_have_value("   ")


def test_a_send_the_server_fails_to_take_says_so_and_keeps_the_text(app_server, new_context):
    app_server.create_user("overloaded")
    page = new_context().new_page()
    log_in(page, app_server, "overloaded")
    # With no socket open (it never opens here) the composer posts.
    page.route_web_socket(re.compile(r"/ws/conversations/new/$"), lambda ws: ws.close())
    page.goto(app_server.url + "/new/")
    composer = page.locator("textarea[name=text]")
    error = page.locator("#composer [data-testid=error]")

    page.route("**/send/", lambda route: route.fulfill(status=500, body="Server Error"))
    composer.fill("Hello while the server is overloaded")
    page.click("[data-testid=send]")
    expect(error).to_contain_text("could not take your message (error 500)")
    expect(composer).to_have_value("Hello while the server is overloaded")
    expect(page.locator("[data-testid=send]")).to_be_enabled()
    screenshot(page, "composer-server-error")

    page.unroute("**/send/")
    page.route("**/send/", lambda route: route.abort())
    page.click("[data-testid=send]")
    expect(error).to_contain_text("could not be reached")
    expect(error).to_have_count(1)
    expect(composer).to_have_value("Hello while the server is overloaded")

    page.unroute("**/send/")
    page.click("[data-testid=send]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("[data-testid=message][data-role=user]")).to_have_count(1)


def test_on_a_conversation_page_messages_go_over_its_socket(app_server, new_context):
    app_server.create_user("socketeer")
    page = new_context().new_page()
    log_in(page, app_server, "socketeer")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "First, in a new chat [sim:length=3]")
    page.click("[data-testid=send]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    composer = page.locator("textarea[name=text]")
    composer.fill("x" * 100_001)
    composer.press("Enter")
    error = page.locator("#composer [data-testid=error]")
    expect(error).to_contain_text("at most 100000 characters")
    expect(composer).to_have_value("x" * 100_001)  # nothing lost
    expect(page.locator(ASSISTANT)).to_have_count(1)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)  # the sidebar slides away
    screenshot(page, "composer-refused-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    composer.fill("Second, over the socket [sim:length=20] [sim:delay=0.01]")
    composer.press("Enter")
    expect(composer).to_have_value("")
    expect(error).to_have_count(0)
    expect(page.locator(ASSISTANT)).to_have_count(2)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("[data-testid=message][data-role=user]").last).to_contain_text(
        "Second, over the socket"
    )
    expect(composer).to_be_focused()
    assert posts == []  # both went over the page's WebSocket


def test_a_sent_message_is_edited_in_place_into_a_new_version(app_server, new_context):
    app_server.create_user("editor")
    page = new_context().new_page()
    log_in(page, app_server, "editor")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "First wording [sim:length=3]")
    page.click("[data-testid=send]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    question = page.locator("[data-testid=message][data-role=user]").last
    expect(question.locator(".edit-form")).to_have_count(0)  # fetched only when asked for

    question.locator("[data-testid=edit]").click()
    box = question.locator(".edit-form textarea")
    expect(box).to_be_focused()
    expect(box).to_have_value("First wording [sim:length=3]")
    question.get_by_role("button", name="Cancel").click()
    expect(question.locator(".edit-form")).to_have_count(0)

    composer = page.locator("textarea[name=text]")
    composer.press("ArrowUp")  # in an empty composer: edit the last message
    expect(box).to_be_focused()
    box.fill("   ")
    question.locator("[data-testid=save-edit]").click()
    expect(question.locator(".edit-error")).to_contain_text("Type a message")
    box.fill("Better wording [sim:length=3]")
    question.locator("[data-testid=save-edit]").click()

    edited = page.locator("[data-testid=message][data-role=user]").last
    expect(edited).to_contain_text("Better wording")
    expect(edited.locator(".branch-count")).to_have_text("2/2")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    edited.locator("[data-testid=branch-previous]").click()
    expect(page.locator("[data-testid=message][data-role=user]").last).to_contain_text(
        "First wording"
    )
    screenshot(page, "edited-message")


def test_the_phone_layout_fits_and_the_sidebar_opens(app_server, new_context):
    app_server.create_user("phone")
    context = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, app_server, "phone")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Hi from a phone. [sim:length=40]")
    page.click("[data-testid=send]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    expect(page.locator("[data-testid=send]")).to_be_in_viewport()
    screenshot(page, "chat-phone")
    page.click(".topbar [data-action=toggle-sidebar]")
    expect(page.locator("#sidebar .conversation-link").first).to_be_in_viewport()
    page.wait_for_timeout(300)  # let the slide-in finish
    screenshot(page, "chat-phone-sidebar")


def test_the_page_runs_without_content_security_policy_violations(app_server, new_context):
    app_server.create_user("strict")
    page = new_context().new_page()
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    log_in(page, app_server, "strict")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "CSP check [sim:length=5]")
    page.click("[data-testid=send]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert violations == []


def test_the_theme_follows_the_system_and_the_toggle_picks_one_that_lasts(app_server, new_context):
    app_server.create_user("nightowl")
    page = new_context(color_scheme="dark").new_page()
    log_in(page, app_server, "nightowl")
    page.goto(app_server.url + "/new/")
    root, toggle = page.locator("html"), page.locator("[data-testid=theme]")

    def background():
        return page.evaluate("getComputedStyle(document.body).backgroundColor")

    expect(root).to_have_attribute("data-theme", "dark")  # the system's choice
    assert background() == "rgb(22, 24, 29)"
    toggle.click()
    expect(toggle).to_have_attribute("data-theme", "light")
    expect(root).to_have_attribute("data-theme", "light")
    assert background() == "rgb(255, 255, 255)"
    toggle.click()
    expect(root).to_have_attribute("data-theme", "dark")
    page.emulate_media(color_scheme="light")
    page.reload()
    expect(root).to_have_attribute("data-theme", "dark")  # the pick outlasts the page
    toggle.click()
    expect(toggle).to_have_attribute("data-theme", "system")
    expect(root).to_have_attribute("data-theme", "light")
    page.emulate_media(color_scheme="dark")  # "system" follows a change as it happens
    expect(root).to_have_attribute("data-theme", "dark")
    assert background() == "rgb(22, 24, 29)"
