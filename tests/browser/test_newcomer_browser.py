"""What a newcomer meets first, in a real browser: the phone header and the simulator banner,
audio players wide enough to seek, editing in view, Copy without stray whitespace, the Import
entry, tool calls and the error page (screenshots in test-results/, light and dark)."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import live_app, log_in, screenshot
from tests.media_files import make_audio

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

SEED = """
import json
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
user = get_user_model().objects.get(username={user!r})
c = Conversation.objects.create(owner=user, title={title!r})
parent = None
for fields in json.loads({messages!r}):
    parent = Message.objects.create(conversation=c, parent=parent, **fields)
Conversation.objects.filter(pk=c.pk).update(current=parent)
print(c.pk)
"""

WEATHER = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
}


def seed(server, user: str, title: str, messages: list[dict]) -> int:
    code = SEED.format(user=user, title=title, messages=json.dumps(messages))
    return int(server.manage("shell", "-c", code).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server():
    with live_app() as server:
        server.create_user("newcomer")
        yield server


def _page(new_context, server, viewport, scheme="light"):
    context = new_context(viewport=viewport, color_scheme=scheme)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    log_in(page, server, "newcomer")
    return page


def _box(page, selector):
    return page.locator(selector).first.bounding_box()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_phone_the_title_has_the_room_and_the_banner_is_one_dismissible_line(
    new_context, server, scheme
):
    pk = seed(
        server,
        "newcomer",
        "Weather in Paris this weekend",
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "status": "complete", "content": "Mild.", "html": "<p>Mild.</p>"},
        ],
    )
    page = _page(new_context, server, PHONE, scheme)
    page.evaluate("localStorage.removeItem('simulator-banner-dismissed')")
    page.goto(f"{server.url}/c/{pk}/")
    header = _box(page, ".topbar")
    title = _box(page, "#conversation-title")
    inner = page.locator(".topbar").evaluate(
        "el => el.clientWidth - parseFloat(getComputedStyle(el).paddingLeft)"
        " - parseFloat(getComputedStyle(el).paddingRight)"
    )
    assert title["width"] >= inner / 2, (title, header, inner)  # it was 44 px: "W…"
    banner = page.locator("[data-testid=simulator-banner]")
    expect(banner).to_be_visible()
    assert banner.bounding_box()["height"] <= 40  # one line
    screenshot(page, f"newcomer-phone-chat-{scheme}")

    page.click("[data-testid=dismiss-banner]")
    expect(banner).to_be_hidden()
    page.reload()
    expect(page.locator("[data-testid=simulator-banner]")).to_be_hidden()
    pill = page.locator("[data-testid=model-name]")
    expect(pill).to_be_visible()  # still clear what answers
    expect(pill).to_have_attribute("title", "Offline simulator: replies are not from a model")
    screenshot(page, f"newcomer-phone-chat-dismissed-{scheme}")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_audio_players_take_the_message_width(new_context, server, tmp_path, viewport):
    page = _page(new_context, server, viewport, "dark" if viewport is PHONE else "light")
    page.goto(f"{server.url}/new/")
    clip = make_audio(tmp_path / "tone.wav", "wav", "pcm_s16le", seconds=2.0)
    page.set_input_files("input[type=file][name=files]", str(clip))
    expect(page.locator(".chip[data-status=ready]")).to_have_count(1, timeout=20_000)
    page.fill("textarea[name=text]", "Listen [sim:length=3]")
    page.click("[data-testid=send]")
    player = page.locator("[data-testid=message][data-role=user] audio").first
    expect(player).to_be_visible(timeout=20_000)
    transcript = _box(page, "#transcript")
    width = player.bounding_box()["width"]
    # The user's column is at most 85% of the transcript (92% on a phone), less its padding.
    assert width >= 0.75 * (transcript["width"] - 32), (width, transcript)
    name = "desktop" if viewport is DESKTOP else "phone"
    screenshot(page, f"newcomer-audio-{name}")


def test_edit_opens_in_view_full_width_with_its_buttons_above_the_composer(new_context, server):
    long_reply = "\n\n".join(f"Paragraph {i} of a long answer." for i in range(40))
    pk = seed(
        server,
        "newcomer",
        "A long one",
        [
            {"role": "user", "content": "First question"},
            {
                "role": "assistant",
                "status": "complete",
                "content": long_reply,
                "html": "".join(f"<p>{p}</p>" for p in long_reply.split("\n\n")),
            },
            {"role": "user", "content": "Short"},
            {
                "role": "assistant",
                "status": "complete",
                "content": long_reply,
                "html": "<p>x</p>" * 40,
            },
        ],
    )
    page = _page(new_context, server, PHONE)
    page.goto(f"{server.url}/c/{pk}/")
    last = page.locator("[data-testid=message][data-role=user]").last
    edit = last.locator("[data-testid=edit]")
    # The message sits at the bottom of the view, just above the composer: the form opens below.
    edit.evaluate(
        """button => {
            const scroller = document.getElementById("scroller");
            const bottom = scroller.getBoundingClientRect().bottom;
            scroller.scrollTop -= bottom - button.getBoundingClientRect().bottom - 4;
        }"""
    )
    edit.click()
    save = last.locator("[data-testid=save-edit]")
    expect(save).to_be_visible()
    page.wait_for_timeout(800)  # the smooth scroll settles
    composer = _box(page, "#composer")
    button = save.bounding_box()
    assert button["y"] >= 0 and button["y"] + button["height"] <= composer["y"], (button, composer)
    form = last.locator(".edit-form").bounding_box()
    transcript = _box(page, "#transcript")
    assert form["width"] >= 0.9 * (transcript["width"] - 24), (form, transcript)
    screenshot(page, "newcomer-phone-edit")


def test_copy_copies_the_text_without_the_whitespace_around_it(new_context, server):
    pk = seed(
        server,
        "newcomer",
        "Copying",
        [
            {"role": "user", "content": "Line one\n\n  indented line two"},
            {"role": "assistant", "status": "complete", "content": "Hi", "html": "<p>Hi there</p>"},
        ],
    )
    page = _page(new_context, server, DESKTOP)
    page.goto(f"{server.url}/c/{pk}/")
    page.locator("[data-testid=message][data-role=user] [data-testid=copy]").click()
    expect(page.locator("[data-testid=message][data-role=user] [data-testid=copy]")).to_have_text(
        "Copied"
    )
    assert page.evaluate("navigator.clipboard.readText()") == "Line one\n\n  indented line two"
    page.locator("[data-testid=message][data-role=assistant] [data-testid=copy]").click()
    assert page.evaluate("navigator.clipboard.readText()") == "Hi there"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_tool_call_and_its_result_read_as_such(new_context, server, scheme):
    pk = seed(
        server,
        "newcomer",
        "Tools",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "status": "complete", "content": "", "tool_calls": [WEATHER]},
            {"role": "tool", "content": '{"temperature": 21}', "tool_call_id": "call_1"},
            {
                "role": "assistant",
                "status": "complete",
                "content": "It is 21 °C.",
                "html": "<p>It is 21 °C.</p>",
            },
        ],
    )
    page = _page(new_context, server, DESKTOP, scheme)
    page.goto(f"{server.url}/c/{pk}/")
    expect(page.locator("[data-testid=tool-call]")).to_contain_text("get_weather")
    expect(page.get_by_text("(empty reply)")).to_have_count(0)
    expect(page.locator("[data-testid=tool-result-label]")).to_have_text("Result of get_weather")
    expect(page.locator("[data-testid=tool-call] svg")).to_be_visible()
    screenshot(page, f"newcomer-tool-call-{scheme}")


def test_import_is_an_entry_that_opens_the_file_picker(new_context, server):
    page = _page(new_context, server, DESKTOP)
    page.goto(f"{server.url}/new/")
    control = page.locator("[data-testid=import-form] input[type=file]").bounding_box()
    assert control["width"] <= 1 and control["height"] <= 1  # no native "Choose File"
    expect(page.locator("[data-testid=import]")).to_be_hidden()
    with page.expect_file_chooser() as chooser:
        page.click("[data-testid=import-open]")
    assert not chooser.value.is_multiple()
    screenshot(page, "newcomer-desktop-sidebar")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_an_unknown_address_shows_the_styled_error_page(new_context, server, viewport, scheme):
    page = _page(new_context, server, viewport, scheme)
    response = page.goto(f"{server.url}/no/such/page/")
    assert response.status == 404
    expect(page.locator("[data-testid=error-page]")).to_be_visible()
    page.click("text=Back to your chats")
    page.wait_for_url(lambda url: "/no/such/" not in url)
    page.goto(f"{server.url}/no/such/page/")
    name = "desktop" if viewport is DESKTOP else "phone"
    screenshot(page, f"newcomer-404-{name}-{scheme}")


SPOKEN = """
from chat.generation import save_spoken_answer
from chat.models import Conversation
reply = Conversation.objects.get(pk={pk}).current
save_spoken_answer(reply, bytes(48000 * 2))
"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_spoken_answer_player_takes_the_reply_width(new_context, server, viewport):
    pk = seed(
        server,
        "newcomer",
        "Say it",
        [
            {"role": "user", "content": "Say hello"},
            {"role": "assistant", "status": "complete", "content": "Hello", "html": "<p>Hello</p>"},
        ],
    )
    server.manage("shell", "-c", SPOKEN.format(pk=pk))
    page = _page(new_context, server, viewport)
    page.goto(f"{server.url}/c/{pk}/")
    player = page.locator("[data-testid=message][data-role=assistant] audio")
    expect(player).to_be_visible()
    transcript = page.locator("#transcript").evaluate(
        "el => el.clientWidth - parseFloat(getComputedStyle(el).paddingLeft)"
        " - parseFloat(getComputedStyle(el).paddingRight)"
    )
    assert player.bounding_box()["width"] >= 0.95 * transcript, transcript  # it was ~160 px
    name = "desktop" if viewport is DESKTOP else "phone"
    screenshot(page, f"newcomer-spoken-answer-{name}")
