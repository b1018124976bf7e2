"""A whole session in a real browser leaves the console clean: no error logged (htmx's own, a
script's, a Content-Security-Policy violation), no uncaught exception, no request that fails
or answers with an error status unless the step expects it."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.media_files import make_audio, make_image, make_video

ASSISTANT = "[data-testid=message][data-role=assistant]"
FILES = "input[type=file][name=files]"
READY_CHIP = "[data-testid=pending] [data-testid=pending-attachment][data-status=ready]"
REPLY = 30_000


class Console:
    """What went wrong in a page, as it happened. `expecting(status, path)` lets one error
    response through (a form the server refuses in place answers 4xx on purpose)."""

    def __init__(self, page):
        self.problems: list[str] = []
        self.expected: list[tuple[int, str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        text = message.text
        # The browser logs each error response once more; those are judged in _response.
        if text.startswith("Failed to load resource: the server responded with a status of"):
            return
        where = message.location.get("url", "")
        self.problems.append(
            f"console error: {text} ({where}:{message.location.get('lineNumber')})"
        )

    def _failed(self, request) -> None:
        # Cancelled by the browser itself: a page left mid-load (its favicon), a media element
        # that read what it needed. A server that fails says so otherwise (reset, empty reply).
        if request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"request failed: {request.method} {request.url} {request.failure}")

    def _response(self, response) -> None:
        if response.status < 400:
            return
        path = re.sub(r"^https?://[^/]+", "", response.url)
        for i, (status, where) in enumerate(self.expected):
            if response.status == status and path.startswith(where):
                del self.expected[i]
                return
        self.problems.append(f"{response.status} {response.request.method} {path}")

    def expecting(self, status: int, path: str) -> None:
        self.expected.append((status, path))

    def assert_clean(self, step: str) -> None:
        assert self.problems == [], f"after {step}:\n" + "\n".join(self.problems)


def _conversation_path(page) -> str:
    match = re.search(r"/c/\d+/$", page.url)
    assert match, page.url
    return match.group(0)


def test_a_session_that_chats_stops_tunes_shares_and_uploads_logs_no_error(
    app_server, new_context, tmp_path
):
    app_server.create_user("tidy")
    context = new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    page = context.new_page()
    console = Console(page)
    log_in(page, app_server, "tidy")
    page.goto(app_server.url + "/new/")
    console.assert_clean("opening a new chat")

    # Chat: a new conversation's first message streams and finishes.
    page.fill("textarea[name=text]", "Hello there [sim:length=20]")
    page.click("[data-testid=send]")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    console.assert_clean("sending the first message")

    # A second message in the open chat (over the page's socket), then Stop while it streams.
    page.fill("textarea[name=text]", "A long story please [sim:length=2000] [sim:delay=0.05]")
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    reply = page.locator(ASSISTANT).last
    expect(reply.locator("[data-testid=message-content]")).to_contain_text("quick brown fox")
    page.click("[data-testid=stop]")
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(page.locator("[data-testid=send]")).to_be_enabled()
    console.assert_clean("stopping a streaming reply")

    # Settings: a wrong value is refused in place, a right one is saved.
    page.click("[data-testid=open-settings]")
    page.fill("#settings-form input[name=temperature]", "5")
    console.expecting(422, _conversation_path(page) + "settings/")
    page.click("[data-testid=save-settings]")
    expect(page.locator("#settings-form [data-testid=error]").first).to_contain_text(
        "less than or equal to 2"
    )
    page.fill("#settings-form input[name=temperature]", "0.3")
    page.click("[data-testid=save-settings]")
    expect(page.locator("[data-testid=settings-saved]")).to_be_visible()
    assert console.expected == [], "the wrong setting was not refused with 422"
    console.assert_clean("changing settings")

    # Uploads: a picture, a short recording and a short video, sent and described.
    files = [
        make_image(tmp_path / "picture.png", "png"),
        make_audio(tmp_path / "tone.wav", "wav", "pcm_s16le", seconds=0.5),
        make_video(tmp_path / "clip.mp4", "mp4", "h264", "aac", seconds=1.0, size=(160, 120)),
    ]
    page.set_input_files(FILES, [str(path) for path in files])
    expect(page.locator(READY_CHIP)).to_have_count(3, timeout=60_000)
    page.fill("textarea[name=text]", "What are these? [sim:length=10]")
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT)).to_have_count(3)
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    sent = page.locator("[data-testid=message][data-role=user]").last
    expect(sent.locator("[data-testid=attachment]")).to_have_count(3)
    console.assert_clean("uploading and sending a picture, a recording and a video")

    # A reply's tools: its API request as code, copying it, and editing the message before it.
    reply.locator("[data-testid=view-code]").click()
    expect(reply.locator("[data-testid=code-python]")).to_contain_text("httpx")
    reply.locator("[data-testid=copy]").click()
    sent.locator("[data-testid=edit]").click()
    expect(sent.locator("textarea")).to_be_visible()
    console.assert_clean("viewing a reply's code, copying it and opening an edit")

    # An upstream failure is shown in the transcript, not thrown in the console; Retry works.
    page.keyboard.press("Shift+Escape")
    page.fill("textarea[name=text]", "Break please [sim:status=429]")
    page.click("[data-testid=send]")
    failed = page.locator(ASSISTANT).last
    expect(failed).to_have_attribute("data-status", "error", timeout=REPLY)
    expect(failed.locator("[data-testid=error]")).to_contain_text("429")
    first_try = failed.get_attribute("data-id")
    failed.locator("[data-testid=retry]").click()
    retried = page.locator(f"{ASSISTANT}:not([data-id='{first_try}'])").last
    expect(page.locator(ASSISTANT).last).not_to_have_attribute("data-id", first_try)
    expect(retried).to_have_attribute("data-status", "error", timeout=REPLY)
    console.assert_clean("an upstream error and its retry")

    # The page's own controls: the theme toggle and the shortcuts list.
    page.click("[data-testid=theme]")
    page.keyboard.press("Control+/")
    expect(page.locator("[data-testid=shortcuts]")).to_be_visible()
    page.keyboard.press("Escape")
    console.assert_clean("the theme toggle and the shortcuts list")

    # Share: the dialog opens, the link is made, and the shared page opens.
    page.click("[data-testid=share]")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("[data-testid=create-share]").click()
    link = dialog.locator("[data-testid=share-url]")
    expect(link).to_be_visible()
    url = link.get_attribute("href")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    console.assert_clean("sharing the conversation")
    shared = page.context.new_page()
    shared_console = Console(shared)
    shared.goto(url)
    expect(shared.locator("[data-testid=message]")).to_have_count(8)
    shared.wait_for_load_state("networkidle")
    shared_console.assert_clean("opening the shared page")
    shared.close()

    # And the page as it loads again, with all of that in it.
    page.reload()
    expect(page.locator("[data-testid=message]")).to_have_count(8)
    page.wait_for_load_state("networkidle")
    console.assert_clean("reloading the conversation")
