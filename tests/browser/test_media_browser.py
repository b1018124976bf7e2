"""Attachments in a real browser: record, upload, convert, preview, send, and what gets refused.

The uploads go through the real chunked upload API and the real media processing; the replies
come from the offline simulator, which measures every part it receives, so its words say what
the app really sent.
"""

import json
import os
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, log_in, screenshot
from tests.media_files import make_image, make_video

ASSISTANT = "[data-testid=message][data-role=assistant]"
USER = "[data-testid=message][data-role=user]"
TRAY = "[data-testid=pending]"
CHIP = "[data-testid=pending-attachment]"
FILES = "input[type=file][name=files]"
# Chromium's fake capture devices: a microphone that beeps, and no permission prompt.
FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PROCESSING_SECONDS = 60_000  # generous: media conversion runs in a worker thread
SENT = 30_000  # the first send of a fresh server imports and warms up a lot


def _video(path, seconds=2.0, size=(320, 240)):
    return make_video(path, "mp4", "h264", "aac", seconds=seconds, size=size)


def _image(path, size=(480, 320)):
    return make_image(path, "png", size=size)


@pytest.fixture(scope="module")
def mic_browser(chromium):
    """A second Chromium, from the same Playwright, with a fake microphone."""
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *FAKE_MEDIA]
    )
    yield browser
    browser.close()


def _chat(app_server, context, username):
    app_server.create_user(username)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    page.errors = errors
    log_in(page, app_server, username)
    page.goto(app_server.url + "/new/")
    expect(page.locator("textarea[name=text]")).to_be_visible()
    return page


def _wait_ready(page, count=1):
    ready = page.locator(f"{TRAY} {CHIP}[data-status=ready]")
    expect(ready).to_have_count(count, timeout=PROCESSING_SECONDS)
    return ready


def _resize(page, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(400)  # the sidebar slides away on phones


def _last_reply_complete(page):
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    return reply.locator("[data-testid=message-content]")


def test_a_recording_from_the_microphone_is_sent_and_the_simulator_hears_it(
    app_server, mic_browser
):
    context = mic_browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    context.grant_permissions(["microphone"], origin=app_server.url)
    try:
        page = _chat(app_server, context, "recorder")
        page.click("[data-testid=record]")
        recorder = page.locator("[data-testid=recorder]")
        expect(recorder).to_be_visible()
        expect(page.locator("[data-testid=record]")).to_have_attribute("aria-pressed", "true")
        # Send waits while the microphone is on: the clip is not attached yet.
        expect(page.locator("[data-testid=send]")).to_be_disabled()
        expect(recorder.locator("[data-attach-time]")).to_have_text("00:02", timeout=5_000)
        screenshot(page, "media-recording")
        page.click("[data-testid=stop-recording]")
        expect(recorder).to_be_hidden()

        chip = _wait_ready(page).first
        expect(chip).to_have_attribute("data-kind", "audio")
        screenshot(page, "media-recorded")
        expect(chip).to_contain_text(re.compile(r"recording-.*\.webm"))
        expect(chip.locator("audio")).to_have_count(1)
        page.get_by_role("button", name="Transcribe", exact=True).click()
        expect(page.locator("textarea[name=text]")).to_have_value("Transcribe")
        expect(page.locator("textarea[name=text]")).to_be_focused()
        page.click("[data-testid=send]")

        sent = page.locator(USER).last
        expect(sent.locator("[data-testid=attachment][data-kind=audio] audio")).to_be_visible(
            timeout=SENT
        )
        expect(sent).to_contain_text("Transcribe")
        content = _last_reply_complete(page)
        # The browser recorded WebM/Opus; the API takes WAV or MP3, so the app converted it.
        expect(content).to_contain_text(re.compile(r"\b(wav|mp3)\b", re.IGNORECASE))
        expect(content).to_contain_text("Audio")
        assert page.errors == []
    finally:
        context.close()


def test_no_microphone_says_so(app_server, new_context):
    # A plain headless Chromium has no capture device at all.
    page = _chat(app_server, new_context(), "no-mic")
    page.click("[data-testid=record]")
    error = page.locator("#composer [data-testid=error]")
    expect(error).to_be_visible()
    expect(error).to_contain_text("No microphone was found")
    screenshot(page, "media-mic-refused")
    expect(page.locator("[data-testid=recorder]")).to_be_hidden()
    expect(page.locator("[data-testid=send]")).to_be_enabled()


def test_a_denied_microphone_says_how_to_allow_it(app_server, chromium, tmp_path):
    # A fake microphone, but no automatic "Allow": the permission is refused.
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream"]
    )
    try:
        context = browser.new_context()
        context.set_default_timeout(15_000)
        page = _chat(app_server, context, "mic-denied")
        page.click("[data-testid=record]")
        error = page.locator("#composer [data-testid=error]")
        expect(error).to_contain_text("Microphone access was denied")
        expect(page.locator("[data-testid=record]")).to_be_enabled()
        expect(page.locator("[data-testid=send]")).to_be_enabled()
        # The error goes once something else is attached.
        page.set_input_files(FILES, str(_image(tmp_path / "ok.png")))
        expect(error).to_be_hidden()
    finally:
        browser.close()


def test_an_uploaded_video_is_previewed_described_and_shown_in_the_transcript(
    app_server, new_context, tmp_path
):
    page = _chat(app_server, new_context(viewport={"width": 1280, "height": 800}), "videographer")
    page.set_input_files(FILES, str(_video(tmp_path / "clip.mp4", seconds=2.0)))
    chip = page.locator(f"{TRAY} {CHIP}").first
    expect(chip).to_contain_text("clip.mp4")
    # The input is emptied at once: the file travels by the upload API, not with the form.
    assert page.locator(FILES).evaluate("input => input.files.length") == 0

    _wait_ready(page)
    expect(chip).to_have_attribute("data-kind", "video")
    expect(chip.locator(".chip-thumb img")).to_be_visible()  # the poster frame
    expect(chip.locator(".chip-duration")).to_have_text("0:02")
    expect(chip.locator("input[type=hidden][name=attachments]")).to_have_count(1)
    expect(page.locator("[data-testid=send]")).to_be_enabled()

    # Quick prompts for a video; one click fills the text (it does not send).
    prompts = page.locator("[data-attach-prompts]")
    expect(prompts.get_by_role("button", name="Summarise what is said")).to_be_visible()
    prompts.get_by_role("button", name="Describe this video").click()
    textarea = page.locator("textarea[name=text]")
    expect(textarea).to_have_value("Describe this video")
    expect(prompts).to_be_hidden()
    expect(page.locator(USER)).to_have_count(0)
    page.click("[data-testid=send]")

    sent = page.locator(USER).last
    attachment = sent.locator("[data-testid=attachment][data-kind=video]")
    expect(attachment.locator("video")).to_be_visible(timeout=SENT)
    expect(attachment).to_contain_text("clip.mp4")
    expect(attachment.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile(r"/media/[^/]+/original/\?download=1$")
    )
    content = _last_reply_complete(page)
    expect(content).to_contain_text("Video")
    expect(content).to_contain_text("h264")
    expect(content).to_contain_text(re.compile(r"\b2\.0\d s\b"))
    # The composer came back empty: nothing pending any more.
    expect(page.locator(f"{TRAY} {CHIP}")).to_have_count(0)
    expect(textarea).to_have_value("")
    # The video plays from the app (same origin, owner only).
    src = attachment.locator("video").get_attribute("src")
    assert page.request.get(app_server.url + src).status in (200, 206)
    assert page.errors == []


def test_media_kept_in_an_s3_store_show_and_play_from_the_store(
    s3_app_server, new_context, tmp_path
):
    server, bucket = s3_app_server
    page = _chat(server, new_context(viewport={"width": 1280, "height": 800}), "stored")
    page.set_input_files(FILES, str(_video(tmp_path / "clip.mp4", seconds=2.0)))
    _wait_ready(page)
    chip = page.locator(f"{TRAY} {CHIP}").first
    thumbnail = chip.locator(".chip-thumb img")
    expect(thumbnail).to_be_visible()  # the poster frame, fetched from the store
    loaded = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=thumbnail.element_handle())
    page.fill("textarea[name=text]", "Describe this video")
    page.click("[data-testid=send]")

    video = page.locator(USER).last.locator("[data-testid=attachment] video")
    expect(video).to_be_visible(timeout=SENT)
    # Metadata loaded: the browser followed the app's redirect to the store and read the file.
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 1.9", arg=video.element_handle())
    src = video.get_attribute("src")
    answer = page.request.get(server.url + src, max_redirects=0)
    assert answer.status == 302
    assert answer.headers["location"].startswith(f"{bucket.endpoint}/{bucket.name}/attachments/")
    assert any(key.endswith("/original") for key in bucket.keys())
    expect(_last_reply_complete(page)).to_contain_text("h264")
    assert page.errors == []  # no Content-Security-Policy violation on the store's origin
    screenshot(page, "s3-video")


def test_a_refused_file_shows_why_in_the_tray_and_keeps_the_text(app_server, new_context, tmp_path):
    page = _chat(app_server, new_context(), "refused")
    textarea = page.locator("textarea[name=text]")
    textarea.fill("Keep this text")
    fake = tmp_path / "holiday.png"
    fake.write_text("This is a text file wearing a .png name.\n" * 20)
    page.set_input_files(FILES, str(fake))
    chip = page.locator(f"{TRAY} {CHIP}").first
    error = chip.locator("[data-testid=error]")
    expect(error).to_be_visible(timeout=PROCESSING_SECONDS)
    expect(chip).to_have_attribute("data-status", "failed")
    expect(textarea).to_have_value("Keep this text")
    # A refused file does not hold the message back, and it is not sent.
    expect(page.locator("[data-testid=send]")).to_be_enabled()
    expect(chip.locator("input[name=attachments]")).to_be_disabled()

    # Refused up front (empty file): the server's reason, in place.
    empty_file = {"name": "empty.mp3", "mimeType": "audio/mpeg", "buffer": b""}
    page.set_input_files(FILES, files=[empty_file])
    empty = page.locator(f"{TRAY} {CHIP}").nth(1)
    expect(empty.locator("[data-testid=error]")).to_contain_text("empty")
    screenshot(page, "media-refused")

    # Both chips can be removed, with the keyboard too.
    empty.get_by_role("button", name="Remove empty.mp3").focus()
    page.keyboard.press("Enter")
    chip.get_by_role("button", name="Remove holiday.png").click()
    expect(page.locator(f"{TRAY} {CHIP}")).to_have_count(0)
    expect(page.locator(TRAY)).to_be_hidden()
    expect(textarea).to_have_value("Keep this text")
    assert page.errors == []


def test_a_refused_send_keeps_the_pending_attachments(app_server, new_context, tmp_path):
    """The server re-renders the composer on a 422; the tray comes back from the page's state."""
    page = _chat(app_server, new_context(), "resender")
    page.set_input_files(FILES, str(_image(tmp_path / "photo.png")))
    _wait_ready(page)
    # Make the send fail: a message that is too long is refused with the text kept.
    page.locator("textarea[name=text]").fill("x" * 100_001)
    page.click("[data-testid=send]")
    expect(page.locator("#composer > [data-testid=error]")).to_be_visible()
    chip = page.locator(f"{TRAY} {CHIP}[data-status=ready]")
    expect(chip).to_have_count(1)
    expect(chip.locator("input[name=attachments]")).to_be_enabled()
    page.locator("textarea[name=text]").fill("")
    expect(page.get_by_role("button", name="Describe this image")).to_be_visible()
    page.get_by_role("button", name="Describe this image").click()
    page.locator("textarea[name=text]").press("Enter")
    sent = page.locator(USER).last
    expect(sent.locator("[data-testid=attachment][data-kind=image] img")).to_be_visible(
        timeout=SENT
    )
    content = _last_reply_complete(page)
    expect(content).to_contain_text("Image")
    expect(content).to_contain_text("480x320")
    # The sent image opens in a lightbox.
    sent.locator("[data-action=open-lightbox]").click()
    dialog = page.locator("dialog.lightbox")
    expect(dialog).to_be_visible()
    expect(dialog.locator("img")).to_be_visible()
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    screenshot(page, "media-lightbox")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.errors == []


def test_uploads_survive_dropped_chunks_and_resume_where_the_server_says(
    app_server, new_context, tmp_path
):
    """Small chunks (the server allows any size up to its own), one dropped, one out of step."""
    page = _chat(app_server, new_context(), "flaky")
    seen = {"puts": 0, "offsets": []}

    def small_chunks(route):
        response = route.fetch()
        body = response.json()
        if response.status == 201:
            body["chunk_size"] = 4096
        route.fulfill(response=response, body=json.dumps(body))

    def flaky(route):
        request = route.request
        if request.method != "PUT":
            return route.continue_()
        seen["puts"] += 1
        seen["offsets"].append(int(request.headers["upload-offset"]))
        if seen["puts"] == 2:
            return route.abort("connectionreset")  # the connection drops mid-upload
        if seen["puts"] == 4:
            # The server claims it has less than it has: the page goes back there.
            return route.fulfill(status=409, json={"error": "Out of step.", "received": 0})
        return route.continue_()

    page.route(re.compile(r"/uploads/$"), small_chunks)
    page.route(re.compile(r"/uploads/[^/]+/$"), flaky)
    image = tmp_path / "noise.png"  # noise: it does not compress, so it takes several chunks
    Image.frombytes("RGB", (100, 80), os.urandom(100 * 80 * 3)).save(image)
    page.set_input_files(FILES, str(image))
    _wait_ready(page)
    size = image.stat().st_size
    assert size > 4 * 4096, size
    offsets = seen["offsets"]
    assert offsets[:2] == [0, 4096]
    assert offsets[2] == 4096  # the dropped chunk, sent again
    assert offsets[4] == 0  # resumed from what the 409 said
    assert page.errors == []


def test_send_waits_while_an_attachment_is_converting(app_server, new_context, tmp_path):
    page = _chat(app_server, new_context(), "patient")
    hold = {"on": True}

    def converting(route):
        if route.request.method == "GET" and hold["on"]:
            response = route.fetch()
            body = response.json()
            if body.get("status") in ("processing", "ready"):
                body.update(status="processing", progress=0.4)
            return route.fulfill(response=response, body=json.dumps(body))
        return route.continue_()

    page.route(re.compile(r"/uploads/[^/]+/$"), converting)
    page.locator("textarea[name=text]").fill("What is this?")
    page.set_input_files(FILES, str(_video(tmp_path / "slow.mp4", seconds=1.0)))
    chip = page.locator(f"{TRAY} {CHIP}").first
    expect(chip.locator(".chip-status")).to_have_text("Converting… 40%")
    expect(chip.locator("progress")).to_have_attribute("value", "40")
    send = page.locator("[data-testid=send]")
    expect(send).to_be_disabled()
    expect(page.locator("[data-attach-hint]")).to_contain_text("ready")
    screenshot(page, "media-converting")
    # Enter does not send either.
    page.locator("textarea[name=text]").press("Enter")
    page.wait_for_timeout(300)
    expect(page.locator(USER)).to_have_count(0)
    hold["on"] = False
    _wait_ready(page)
    expect(send).to_be_enabled()
    expect(page.locator("[data-attach-hint]")).to_be_hidden()
    assert page.errors == []


def test_removing_an_upload_cancels_it_and_deletes_it_on_the_server(
    app_server, new_context, tmp_path
):
    page = _chat(app_server, new_context(), "remover")
    deleted = []
    page.on(
        "request",
        lambda request: deleted.append(request.url) if request.method == "DELETE" else None,
    )
    page.set_input_files(FILES, str(_image(tmp_path / "gone.png")))
    _wait_ready(page)
    page.get_by_role("button", name="Remove gone.png").click()
    expect(page.locator(f"{TRAY} {CHIP}")).to_have_count(0)
    expect(page.locator("textarea[name=text]")).to_be_focused()
    page.wait_for_timeout(300)
    assert len(deleted) == 1 and "/uploads/" in deleted[0]
    assert page.request.get(deleted[0]).status == 404


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_pending_and_sent_attachments(app_server, new_context, tmp_path, scheme):
    context = new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    page = _chat(app_server, context, f"shots-{scheme}")
    video = _video(tmp_path / "street-scene.mp4", seconds=3.0, size=(320, 240))
    image = _image(tmp_path / "diagram.png", size=(480, 320))
    page.set_input_files(FILES, [str(video), str(image)])
    _wait_ready(page, 2)
    screenshot(page, f"media-pending-desktop-{scheme}")
    _resize(page, 390, 844)
    screenshot(page, f"media-pending-phone-{scheme}")

    page.get_by_role("button", name="Describe this video").click()
    page.click("[data-testid=send]")
    _last_reply_complete(page)
    sent = page.locator(USER).last
    expect(sent.locator("[data-testid=attachment]")).to_have_count(2)
    expect(sent.locator("[data-testid=attachment][data-kind=image] img")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.message-attachments img')].every(i => i.complete)"
    )
    sent.scroll_into_view_if_needed()
    screenshot(page, f"media-sent-phone-{scheme}")
    _resize(page, 1280, 800)
    sent.scroll_into_view_if_needed()
    screenshot(page, f"media-sent-desktop-{scheme}")
    assert page.errors == []


MAKE_PNG = """async (name) => {
  const canvas = document.createElement("canvas");
  canvas.width = 96; canvas.height = 64;
  const g = canvas.getContext("2d");
  g.fillStyle = "#3a7"; g.fillRect(0, 0, 96, 64);
  g.fillStyle = "#fd0"; g.fillRect(20, 12, 40, 30);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const data = new DataTransfer();
  data.items.add(new File([blob], name, { type: "image/png" }));
  return data;
}"""

PASTE = """(data) => document.querySelector("textarea[name=text]").dispatchEvent(
  new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true })
)"""


def test_files_can_be_picked_dropped_on_the_page_or_pasted(app_server, new_context):
    page = _chat(app_server, new_context(viewport={"width": 1280, "height": 800}), "dropper")
    # The paper-clip button opens the file picker, from the keyboard too.
    # (Locator.press focuses and presses in one step: the composer's autofocus cannot step in.)
    with page.expect_file_chooser() as chooser:
        page.locator("[data-testid=attach]").press("Enter")
    assert chooser.value.is_multiple()

    dropped = page.evaluate_handle(MAKE_PNG, "dropped.png")
    page.dispatch_event("#transcript", "dragenter", {"dataTransfer": dropped})
    overlay = page.locator("[data-testid=drop-overlay]")
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text("Drop files to attach")
    screenshot(page, "media-drop-overlay")
    page.dispatch_event("#transcript", "drop", {"dataTransfer": dropped})
    expect(overlay).to_be_hidden()
    expect(page.locator(f"{TRAY} {CHIP}").first).to_contain_text("dropped.png")

    # A screenshot pasted from the clipboard arrives as "image.png": it gets a better name.
    pasted = page.evaluate_handle(MAKE_PNG, "image.png")
    page.locator("textarea[name=text]").focus()
    page.evaluate(PASTE, pasted)
    expect(page.locator(f"{TRAY} {CHIP}").nth(1)).to_contain_text(re.compile(r"pasted-.*\.png"))
    expect(page.locator("textarea[name=text]")).to_have_value("")
    _wait_ready(page, 2)

    # Attachments alone make a message: Enter sends them with no text.
    page.locator("textarea[name=text]").press("Enter")
    sent = page.locator(USER).last
    expect(sent.locator("[data-testid=attachment][data-kind=image]")).to_have_count(2, timeout=SENT)
    expect(sent.locator("[data-testid=message-content]")).to_be_hidden()  # no empty bubble
    content = _last_reply_complete(page)
    expect(content).to_contain_text("96x64")
    assert page.errors == []
