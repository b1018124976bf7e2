"""The interface in Simplified Chinese and Arabic, in a real browser: no English interface string
left on the chat page, the settings, the share dialog, the shortcuts or an upstream error (each
checked against the catalogue's English), and the Arabic page mirrored with code left to right.
"""

import re

import polib
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot
from tests.conftest import REPO_ROOT

ASSISTANT = "[data-testid=message][data-role=assistant]"
REPLY = 30_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|<[^>]+>")

# What a page shows that is not the interface's own words: people's and the model's text, code,
# key names, the model's name, the language switcher's names (each in its own language).
NOT_INTERFACE = (
    "[data-testid=message-content], .conversation-link, [data-testid=conversation-title], "
    "code, pre, kbd, script, style, [data-testid=model-name], option, "
    "[data-testid=message-edit-slot], textarea, [data-testid=reply-announcer]"
)

# Every visible text node and the visible elements' title, aria-label and placeholder.
VISIBLE_STRINGS = """(skip) => {
  const out = [];
  const shown = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length)
    && getComputedStyle(el).visibility !== "hidden";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || !el || el.closest(skip) || !shown(el)) continue;
    out.push(text);
  }
  for (const el of document.querySelectorAll("[title], [aria-label], [placeholder]")) {
    if (el.closest(skip) || !shown(el)) continue;
    for (const name of ["title", "aria-label", "placeholder"]) {
      const value = (el.getAttribute(name) || "").trim();
      if (value) out.push(value);
    }
  }
  return out;
}"""


def english_of(locale: str) -> tuple[set[str], list[str]]:
    """The catalogue's English (where the translation differs): whole short msgids (single
    words, compared whole) and the fragments of longer ones between placeholders and tags
    (found anywhere in a string)."""
    words: set[str] = set()
    fragments: list[str] = []
    for domain in ("django", "djangojs"):
        path = REPO_ROOT / "locale" / locale / "LC_MESSAGES" / f"{domain}.po"
        for entry in polib.pofile(str(path)):
            if entry.msgstr == entry.msgid:  # the same in both languages (a term like "Top p")
                continue
            for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
                for piece in PLACEHOLDER.split(msgid):
                    piece = piece.strip(" .,:;!?…()“”\"'-—→")
                    if not re.search(r"[A-Za-z]{2}", piece):
                        continue
                    if " " in piece:
                        fragments.append(piece)
                    else:
                        words.add(piece.lower())
    return words, sorted(fragments, key=len, reverse=True)


def english_left(page, locale: str) -> list[str]:
    words, fragments = english_of(locale)
    left = []
    for text in page.evaluate(VISIBLE_STRINGS, NOT_INTERFACE):
        bare = text.strip(" .,:;!?…()“”\"'-—→·|").lower()
        if bare in words or any(fragment in text for fragment in fragments):
            left.append(text)
    return sorted(set(left))


def test_the_chinese_interface_shows_no_english_of_its_own(app_server, new_context):
    app_server.create_user("zh-reader")
    context = new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    log_in(page, app_server, "zh-reader")
    page.goto(app_server.url + "/new/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    assert english_left(page, "zh_Hans") == []
    directives = page.locator("[data-testid=simulator-directives]")
    directives.locator("summary").click()  # the simulator's directives, explained
    expect(directives.locator("li").first).to_be_visible()
    assert english_left(page, "zh_Hans") == []
    directives.locator("summary").click()

    page.fill("textarea[name=text]", "你好，请描述你收到的内容。")
    page.click("[data-testid=send]")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    assert english_left(page, "zh_Hans") == []
    screenshot(page, "languages-zh-hans-desktop")

    page.click("[data-testid=open-settings]")
    expect(page.locator("#settings-form")).to_be_visible()
    assert english_left(page, "zh_Hans") == []
    page.fill("#settings-form input[name=temperature]", "5")
    page.click("[data-testid=save-settings]")
    expect(page.locator("#settings-form [data-testid=error]").first).to_be_visible()
    assert english_left(page, "zh_Hans") == []
    page.click("[data-action=toggle-settings] >> nth=0")

    page.click("[data-testid=share]")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    assert english_left(page, "zh_Hans") == []
    page.keyboard.press("Escape")

    page.click("[data-testid=show-shortcuts]")
    expect(page.locator("[data-testid=shortcuts]")).to_be_visible()
    assert english_left(page, "zh_Hans") == []
    page.keyboard.press("Escape")

    page.fill("textarea[name=text]", "请失败 [sim:status=429]")
    page.click("[data-testid=send]")
    failed = page.locator(ASSISTANT).last
    expect(failed).to_have_attribute("data-status", "error", timeout=REPLY)
    expect(failed.locator("[data-testid=error]")).to_contain_text("429")
    assert english_left(page, "zh_Hans") == []

    phone = new_context(viewport=PHONE, locale="zh-CN").new_page()
    log_in(phone, app_server, "zh-reader")
    phone.goto(page.url)
    expect(phone.locator(ASSISTANT).first).to_have_attribute("data-status", "complete")
    assert english_left(phone, "zh_Hans") == []
    screenshot(phone, "languages-zh-hans-phone")


def test_the_checker_finds_english_left_in_a_page(app_server, new_context):
    app_server.create_user("en-reader")
    page = new_context(viewport=DESKTOP, locale="en-US").new_page()
    log_in(page, app_server, "en-reader")
    page.goto(app_server.url + "/new/")
    left = english_left(page, "zh_Hans")
    assert "Send" in left and any("New chat" in text for text in left)


def test_the_arabic_page_is_mirrored_and_code_stays_left_to_right(app_server, new_context):
    app_server.create_user("ar-reader")
    page = new_context(viewport=DESKTOP, locale="ar-EG").new_page()
    log_in(page, app_server, "ar-reader")
    page.goto(app_server.url + "/new/")
    html = page.locator("html")
    expect(html).to_have_attribute("dir", "rtl")
    expect(html).to_have_attribute("lang", "ar")
    assert english_left(page, "ar") == []

    page.fill("textarea[name=text]", "مرحبا! صف ما وصلك من فضلك.")
    page.click("[data-testid=send]")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    assert english_left(page, "ar") == []

    send = page.locator("[data-testid=send]").bounding_box()
    composer = page.locator("textarea[name=text]").bounding_box()
    assert send["x"] + send["width"] <= composer["x"] + 1, (send, composer)  # send on the left
    sidebar = page.locator(".sidebar").bounding_box()
    main = page.locator("main").first.bounding_box()
    assert sidebar["x"] >= main["x"] + main["width"] - 1, (sidebar, main)  # sidebar on the right

    content = reply.locator("[data-testid=message-content]")
    code = content.locator("pre").first
    expect(code).to_be_visible()
    assert code.evaluate("el => getComputedStyle(el).direction") == "ltr"
    # The simulator answers in English: its text stays left to right (dir=auto), the Arabic
    # question right to left.
    assert content.evaluate("el => getComputedStyle(el).direction") == "ltr"
    question = page.locator("[data-testid=message][data-role=user] [data-testid=message-content]")
    assert question.last.evaluate("el => getComputedStyle(el).direction") == "rtl"
    screenshot(page, "languages-ar-desktop")

    phone = new_context(viewport=PHONE, locale="ar-EG").new_page()
    log_in(phone, app_server, "ar-reader")
    phone.goto(page.url)
    expect(phone.locator(ASSISTANT).first).to_have_attribute("data-status", "complete")
    send = phone.locator("[data-testid=send]").bounding_box()
    composer = phone.locator("textarea[name=text]").bounding_box()
    assert send["x"] + send["width"] <= composer["x"] + 1, (send, composer)
    wide = phone.evaluate(  # what sticks out of the page, if anything
        """() => [...document.querySelectorAll('body *')]
          .filter(e => !e.closest('.sidebar'))
          .filter(e => {
            const box = e.getBoundingClientRect();
            return box.left < -1 || box.right > innerWidth + 1;
          })
          .map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().left))"""
    )
    assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), wide
    screenshot(phone, "languages-ar-phone")


@pytest.mark.parametrize("locale", ["zh-CN", "ar-EG"])
def test_the_log_in_page_is_in_the_browsers_language(app_server, new_context, locale):
    page = new_context(viewport=DESKTOP, locale=locale).new_page()
    page.goto(app_server.url + "/accounts/login/")
    catalogue = {"zh-CN": "zh_Hans", "ar-EG": "ar"}[locale]
    assert english_left(page, catalogue) == []
