"""Sharing in a real browser: a conversation with a video is shared, opened by a stranger in a
fresh browser (the video plays from the share's own URL), continued by another user, revoked."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, log_in, screenshot
from tests.media_files import make_video

ASSISTANT = "[data-testid=message][data-role=assistant]"
USER = "[data-testid=message][data-role=user]"
FILES = "input[type=file][name=files]"
READY_CHIP = "[data-testid=pending] [data-testid=pending-attachment][data-status=ready]"
PROCESSING = 60_000
REPLY = 30_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    return errors


def _send(page, text: str) -> None:
    page.fill("textarea[name=text]", text)
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=REPLY)


def _conversation_with_video(app_server, context, username: str, tmp_path):
    """Log in as a new user and ask about a video; answers the page, on the conversation."""
    app_server.create_user(username)
    page = context.new_page()
    page.errors = _watch_errors(page)
    log_in(page, app_server, username)
    page.goto(app_server.url + "/new/")
    clip = make_video(
        tmp_path / "street-scene.mp4", "mp4", "h264", "aac", seconds=2.0, size=(320, 240)
    )
    page.set_input_files(FILES, str(clip))
    expect(page.locator(READY_CHIP)).to_have_count(1, timeout=PROCESSING)
    page.fill("textarea[name=text]", "Describe this video")
    page.click("[data-testid=send]")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=REPLY)
    return page


def _share(page, visibility: str = "anyone") -> str:
    page.click("[data-testid=share]")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    if visibility == "users":
        dialog.get_by_label(re.compile("Signed-in users only")).check()
    with page.expect_response(lambda r: r.url.endswith("/share/")) as answer:
        dialog.locator("[data-testid=create-share]").click()
    assert answer.value.status == 200
    link = dialog.locator("[data-testid=share-url]")
    expect(link).to_be_visible()
    url = link.get_attribute("href")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{32}/", url)
    expect(link).to_have_text(url)
    return url


def _video_plays(page, video) -> None:
    """The browser loads the video's metadata and its clock moves when played (muted)."""
    video.evaluate(
        """v => new Promise((resolve, reject) => {
            if (v.readyState >= 1) return resolve();
            v.addEventListener("loadedmetadata", resolve, { once: true });
            v.addEventListener("error", () => reject(new Error("video error " + v.error?.code)));
            v.load();
        })"""
    )
    assert video.evaluate("v => v.duration") > 1.5
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0.2", arg=video.element_handle(), timeout=10_000)
    video.evaluate("v => v.pause()")


def test_a_shared_video_conversation_opens_read_only_for_a_stranger(
    app_server, new_context, tmp_path
):
    owner = new_context(viewport=DESKTOP)
    owner.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    page = _conversation_with_video(app_server, owner, "sharer", tmp_path)

    url = _share(page)
    screenshot(page, "share-dialog-desktop")
    page.locator("#share-dialog [data-testid=copy-share-url]").click()
    expect(page.locator("#share-dialog [data-testid=copy-share-url]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url
    page.keyboard.press("Escape")
    expect(page.locator("#share-dialog")).to_be_hidden()
    # Said after sharing: the link never shows it.
    _send(page, "A question asked after sharing")
    assert page.errors == [], "\n".join(page.errors)

    stranger = new_context(viewport=DESKTOP).new_page()
    stranger.errors = _watch_errors(stranger)
    response = stranger.goto(url)
    assert response.status == 200
    expect(stranger).to_have_title(re.compile(r"^Describe this video · Omni Playground$"))
    messages = stranger.locator("[data-testid=message]")
    expect(messages).to_have_count(2)
    expect(stranger.locator(USER)).to_contain_text("Describe this video")
    expect(stranger.locator(ASSISTANT).locator("[data-testid=message-content]")).to_contain_text(
        "h264"
    )
    expect(stranger.get_by_text("A question asked after sharing")).to_have_count(0)
    for hidden in (
        "textarea[name=text]",
        "[data-testid=send]",
        "[data-testid=retry]",
        "[data-testid=view-code]",
        "[data-testid=message-actions]",
        "#sidebar",
    ):
        expect(stranger.locator(hidden)).to_have_count(0)

    token = url.rstrip("/").rsplit("/", 1)[1]
    video = stranger.locator("[data-testid=attachment][data-kind=video] video")
    expect(video).to_be_visible()
    expect(video).to_have_attribute("src", re.compile(rf"^/s/{token}/media/[^/]+/sent/$"))
    expect(video).to_have_attribute("poster", re.compile(rf"^/s/{token}/media/[^/]+/poster/$"))
    _video_plays(stranger, video)
    download = stranger.get_by_role("link", name="Download")
    expect(download).to_have_attribute("href", re.compile(rf"^/s/{token}/media/.+/original/"))
    # Unfurling: the preview image is the video's poster, by an absolute share URL.
    og_image = stranger.locator("meta[property='og:image']").get_attribute("content")
    assert og_image.startswith(url + "media/") and og_image.endswith("/poster/")
    assert stranger.request.get(og_image).status == 200
    expect(stranger.locator("meta[property='og:description']")).to_have_attribute(
        "content", "Describe this video"
    )
    expect(stranger.locator("[data-testid=continue]")).to_have_text(
        "Sign in to continue this conversation"
    )

    stranger.wait_for_function("() => document.querySelector('video').readyState >= 2")
    screenshot(stranger, "share-page-desktop")
    stranger.set_viewport_size(PHONE)
    stranger.wait_for_timeout(300)
    screenshot(stranger, "share-page-phone")
    stranger.locator(ASSISTANT).scroll_into_view_if_needed()
    screenshot(stranger, "share-page-phone-reply")
    assert stranger.errors == []

    dark = new_context(viewport=PHONE, color_scheme="dark").new_page()
    dark.goto(url)
    dark.wait_for_function("() => document.querySelector('video').readyState >= 1")
    screenshot(dark, "share-page-phone-dark")

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    assert _share(page) != url  # the conversation grew: a new snapshot, a new link
    expect(page.locator("#share-dialog")).to_contain_text("A snapshot of 4 messages")
    screenshot(page, "share-dialog-phone")
    assert page.errors == [], "\n".join(page.errors)


def test_a_private_link_is_continued_by_a_signed_in_user_and_then_revoked(
    app_server, new_context, tmp_path
):
    owner = new_context(viewport=DESKTOP)
    page = _conversation_with_video(app_server, owner, "private-sharer", tmp_path)
    url = _share(page, "users")

    # A stranger is sent to log in, and comes back to the link.
    app_server.create_user("reader")
    reader = new_context(viewport=DESKTOP).new_page()
    reader.errors = _watch_errors(reader)
    reader.goto(url)
    expect(reader).to_have_url(re.compile(r"/accounts/login/\?next=/s/"))
    reader.fill("input[name=username]", "reader")
    reader.fill("input[name=password]", PASSWORD)
    reader.click("button[type=submit]")
    reader.wait_for_url(url)
    expect(reader.locator("[data-testid=message]")).to_have_count(2)

    # Continuing makes the reader's own conversation, with a copy of the video.
    reader.click("[data-testid=continue]")
    reader.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(reader.locator("textarea[name=text]")).to_be_visible()
    expect(reader.locator("[data-testid=message]")).to_have_count(2)
    video = reader.locator("[data-testid=attachment][data-kind=video] video")
    expect(video).to_have_attribute("src", re.compile(r"^/media/[^/]+/sent/$"))
    _video_plays(reader, video)
    _send(reader, "And what colour is it?")
    expect(reader.locator("[data-testid=message]")).to_have_count(4)

    # The owner sees the link on the Shared links page, opened once, and revokes it.
    page.goto(app_server.url + "/shares/")
    row = page.locator("[data-testid=share-row]").first
    expect(row).to_contain_text("Describe this video")
    expect(row).to_contain_text("Signed-in users only")
    expect(row.locator("[data-testid=share-opened]")).to_have_text("opened 1 time")
    expect(row.locator(".share-url")).to_have_text(url)
    screenshot(page, "shares-page-desktop")
    page.set_viewport_size(PHONE)
    screenshot(page, "shares-page-phone")
    page.set_viewport_size(DESKTOP)
    row.locator("[data-testid=revoke]").click()
    confirm = row.locator("[data-testid=confirm-revoke]")
    expect(confirm).to_be_visible()
    screenshot(page, "shares-revoke-confirm")
    confirm.click()
    expect(page.locator("[data-testid=share-row]").first).to_contain_text("Revoked")
    page.set_viewport_size(PHONE)
    screenshot(page, "shares-page-phone-revoked")

    assert reader.goto(url).status == 404
    # The reader's copy is theirs: it stays.
    reader.go_back()
    reader.reload()
    expect(reader.locator("[data-testid=message]")).to_have_count(4)
    assert page.errors == [], "\n".join(page.errors)
    assert [e for e in reader.errors if "404" not in e] == []
