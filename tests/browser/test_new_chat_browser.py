"""A new chat's first message goes over the socket the empty page already holds: the page becomes
the conversation's without loading another, its address is pushed, and reload, back and forward
show what they should. Without a socket the form posts, as before."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"
MESSAGES = "#transcript [data-testid=message]"
CONVERSATION_URL = re.compile(r"/c/(\d+)/$")
NEW_CHAT_SOCKET = re.compile(r"/ws/conversations/new/$")


def new_chat_with_its_socket_open(page, server, username: str) -> list:
    """The empty new-chat page, once its socket is open (it says so with its first sync); the
    frames the page sends from then on, and the POST requests it makes."""
    log_in(page, server, username)
    sent, posts = [], []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(server.url + "/new/")
    for _ in range(100):
        if any('"sync"' in frame for frame in sent):
            break
        page.wait_for_timeout(50)
    assert any('"sync"' in frame for frame in sent), "the new-chat page opened no socket"
    return posts


def test_the_first_message_turns_the_page_into_its_conversation_without_loading_one(
    app_server, new_context
):
    app_server.create_user("firstmover")
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    posts = new_chat_with_its_socket_open(page, app_server, "firstmover")
    page.evaluate("window.__marker = 'the same page'")
    expect(page.locator("#conversation-title")).to_have_text("New chat")

    composer = page.locator("textarea[name=text]")
    composer.fill("Where first words go [sim:length=40]")
    composer.press("Enter")
    expect(page).to_have_url(CONVERSATION_URL)
    reply = page.locator(ASSISTANT)
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    assert page.evaluate("window.__marker") == "the same page"
    assert posts == [], "the message went by form post"
    conversation_url = page.url

    # The page is the conversation's: header, title, menu, Stop, the list, composer, settings.
    expect(composer).to_have_value("")
    expect(page.locator("#conversation-title")).to_contain_text("Where first words go")
    expect(page).to_have_title(re.compile(r"^Where first words go.* · Omni Playground$"))
    expect(page.locator("[data-testid=conversation-menu]")).to_have_count(1)
    expect(page.locator("[data-testid=share]")).to_have_count(1)
    expect(page.locator("[data-testid=stop]")).to_have_count(1)
    current = page.locator(".conversation-link.current")
    expect(current).to_contain_text("Where first words go")
    assert current.get_attribute("href") == CONVERSATION_URL.search(conversation_url).group(0)
    assert page.locator("#composer").get_attribute("action").endswith("/send/")
    assert "/c/" in page.locator("#composer").get_attribute("action")
    assert "/c/" in page.locator("#settings-form").get_attribute("action")
    expect(page.locator(".empty-state")).to_be_hidden()
    screenshot(page, "new-chat-over-the-socket")

    # The next message goes to the same conversation, over the same socket.
    composer.fill("And a second one [sim:length=5]")
    composer.press("Enter")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    assert page.url == conversation_url and posts == []
    assert page.evaluate("window.__marker") == "the same page"

    # Back: the empty new-chat page; forward: the conversation again; reload: the same.
    page.go_back()
    expect(page).to_have_url(re.compile(r"/new/$"))
    expect(page.locator(MESSAGES)).to_have_count(0)
    expect(page.locator("#conversation-title")).to_have_text("New chat")
    expect(page.locator(".empty-state")).to_be_visible()
    page.go_forward()
    expect(page).to_have_url(conversation_url)
    expect(page.locator(MESSAGES)).to_have_count(4)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    page.reload()
    expect(page.locator(MESSAGES)).to_have_count(4)
    expect(page.locator("#conversation-title")).to_contain_text("Where first words go")
    assert page.evaluate("window.__marker") is None


def test_a_reload_right_after_the_first_message_shows_the_conversation_and_its_reply(
    app_server, new_context
):
    app_server.create_user("quickreloader")
    page = new_context().new_page()
    new_chat_with_its_socket_open(page, app_server, "quickreloader")
    composer = page.locator("textarea[name=text]")
    composer.fill("Reload me [sim:length=300] [sim:delay=0.01]")
    composer.press("Enter")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "streaming")
    expect(page.locator("[data-testid=stop]")).to_be_visible()  # from the reply's start
    expect(page).to_have_url(CONVERSATION_URL)
    page.reload()
    expect(page).to_have_url(CONVERSATION_URL)
    expect(page.locator("[data-testid=message][data-role=user]")).to_contain_text("Reload me")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator(".conversation-link.current")).to_contain_text("Reload me")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/new/$"))
    expect(page.locator(MESSAGES)).to_have_count(0)


def test_without_an_open_socket_the_first_message_is_posted_as_before(app_server, new_context):
    app_server.create_user("nosocket")
    page = new_context().new_page()
    log_in(page, app_server, "nosocket")
    page.route_web_socket(NEW_CHAT_SOCKET, lambda ws: ws.close())  # the socket never opens
    page.goto(app_server.url + "/new/")
    page.evaluate("window.__marker = 'the new-chat page'")
    page.fill("textarea[name=text]", "By form post [sim:length=5]")
    page.click("[data-testid=send]")
    expect(page).to_have_url(CONVERSATION_URL)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    assert page.evaluate("window.__marker") is None  # the conversation's page was loaded
    expect(page.locator(".conversation-link.current")).to_contain_text("By form post")


def test_without_javascript_the_first_message_is_posted_as_before(app_server, new_context):
    app_server.create_user("scriptless")
    page = new_context(java_script_enabled=False).new_page()
    log_in(page, app_server, "scriptless")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "No scripts here [sim:length=5]")
    page.click("[data-testid=send]")
    expect(page).to_have_url(CONVERSATION_URL)
    expect(page.locator("[data-testid=message][data-role=user]")).to_contain_text("No scripts")
