"""What the page shows when its socket meets bad input, an over-long text or a session that
ended in another tab."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"
SOCKET = re.compile(r"/ws/conversations/(\d+|new)/$")


def open_chat(page, server, username: str) -> None:
    """A conversation page with its socket open."""
    log_in(page, server, username)
    page.goto(server.url + "/new/")
    page.fill("textarea[name=text]", "Hello [sim:length=3]")
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    # The new conversation's address replaces /new/ once it exists (history.pushState).
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))


def test_a_frame_the_server_cannot_read_is_shown_and_the_socket_goes_on(app_server, new_context):
    app_server.create_user("garbled")
    page = new_context().new_page()
    to_server = []

    def route(ws):
        to_server.append(ws.connect_to_server())  # frames pass both ways as they are

    page.route_web_socket(SOCKET, route)
    open_chat(page, app_server, "garbled")
    for _ in range(100):
        if to_server:
            break
        page.wait_for_timeout(50)
    assert to_server, "the page opened no socket"

    composer = page.locator("textarea[name=text]")
    composer.fill("Kept while the server answers something else")
    to_server[-1].send('{"action": "sync", "after": "not a number"}')
    error = page.locator("#composer [data-testid=error]")
    expect(error).to_contain_text("That message could not be read")
    expect(composer).to_have_value("Kept while the server answers something else")
    screenshot(page, "socket-unreadable-frame")

    to_server[-1].send("\x00{[")
    expect(error).to_have_count(1)
    composer.fill("Over the same socket [sim:length=3]")
    composer.press("Enter")
    expect(composer).to_have_value("")
    expect(error).to_have_count(0)
    expect(page.locator(ASSISTANT)).to_have_count(2)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


def test_the_composer_refuses_text_over_its_limit_before_sending(app_server, new_context):
    app_server.create_user("verbose")
    page = new_context().new_page()
    open_chat(page, app_server, "verbose")
    sent_frames, posts = [], []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent_frames.append(frame)))
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    limit = int(page.locator("textarea[name=text]").get_attribute("data-max-length"))
    assert limit == 100_000  # the form's own limit, rendered into the page

    composer = page.locator("textarea[name=text]")
    too_long = "é" * limit + "!"
    composer.fill(too_long)
    composer.press("Enter")
    error = page.locator("#composer [data-testid=error]")
    expect(error).to_contain_text(f"at most {limit} characters (this one has {limit + 1})")
    expect(composer).to_have_value(too_long)
    page.click("[data-testid=send]")
    expect(error).to_have_count(1)
    assert posts == [] and sent_frames == []
    screenshot(page, "composer-over-limit")

    # Exactly at the limit (astral characters count once, as the server counts them) it goes.
    composer.fill("😀" * 10 + "x" * (limit - 10))
    composer.press("Enter")
    expect(composer).to_have_value("", timeout=20_000)
    expect(error).to_have_count(0)


def test_logging_out_in_another_tab_ends_the_page_with_a_way_back(app_server, new_context):
    app_server.create_user("leaver")
    context = new_context()
    page = context.new_page()
    open_chat(page, app_server, "leaver")
    chat_url = page.url
    composer = page.locator("textarea[name=text]")
    composer.fill("Half-written thought")

    other_tab = context.new_page()
    other_tab.goto(app_server.url + "/")
    other_tab.locator("form[action='/accounts/logout/'] button").click()
    expect(other_tab).to_have_url(re.compile(r"/accounts/login/"))

    error = page.locator("#composer [data-testid=error][data-reason=logged-out]")
    expect(error).to_contain_text("You were logged out")
    expect(composer).to_have_value("Half-written thought")
    screenshot(page, "socket-logged-out")
    composer.press("Enter")  # nothing is sent to a session that ended
    expect(error).to_have_count(1)
    expect(composer).to_have_value("Half-written thought")

    page.locator("[data-testid=log-in-again]").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=username]", "leaver")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(chat_url)
    expect(page.locator(ASSISTANT)).to_have_count(1)
