"""Compare in a real browser: two models side by side streaming together, keep the second and go
on from it; on a phone the columns are tabs."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"
COLUMNS = "[data-testid=compare-column]"
PLUS = "alibaba/qwen3.5-omni-plus"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
REPLY = 30_000


def _first_message(page, server, text="Hello [sim:delay=0]"):
    page.goto(server.url + "/new/")
    page.fill("textarea[name=text]", text)
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=REPLY)


def _compare(page, text: str, second_model: str = PLUS) -> None:
    page.click("[data-testid=compare]")
    setup = page.locator("#compare-setup")
    expect(setup).to_be_visible()
    setup.locator("select[name=columns-1-model]").select_option(second_model)
    page.fill("textarea[name=text]", text)
    expect(page.locator("[data-testid=send]")).to_have_text("Compare")
    page.click("[data-testid=send]")


def test_two_models_stream_side_by_side_and_the_kept_one_is_gone_on_from(app_server, new_context):
    app_server.create_user("comparer")
    page = new_context(viewport=DESKTOP).new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, app_server, "comparer")
    _first_message(page, app_server)

    _compare(page, "Which of you explains tides better? [sim:delay=0.04]")
    columns = page.locator(COLUMNS)
    expect(columns).to_have_count(2)
    replies = [columns.nth(n).locator("[data-testid=message]") for n in (0, 1)]
    # Both stream at once: each shows text while the other is still streaming.
    for reply in replies:
        expect(reply.locator("[data-testid=message-content]")).to_contain_text("simulator")
    assert all(r.get_attribute("data-status") == "streaming" for r in replies)
    expect(columns.nth(1)).to_contain_text(PLUS)
    for reply in replies:
        expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    # A finished column answers again with its own settings, and is not compared again.
    expect(columns.locator("[data-testid=compare-with]")).to_have_count(0)
    expect(columns.locator("[data-testid=regenerate]")).to_have_count(2)
    summary = page.locator("[data-testid=compare-summary]")
    expect(summary).to_contain_text("First token")
    expect(summary).to_contain_text("Longest")
    page.click("[data-testid=dismiss-banner]")
    page.set_viewport_size({"width": 1280, "height": 1040})
    page.locator("[data-testid=compare-grid]").evaluate("el => el.scrollIntoView()")
    screenshot(page, "compare-desktop")
    page.set_viewport_size(DESKTOP)

    kept_id = replies[1].get_attribute("data-id")
    columns.nth(1).locator("[data-testid=keep]").click()
    expect(columns).to_have_count(0)
    expect(page.locator(f"#message-{kept_id}")).to_be_visible()
    expect(page.locator("[data-testid=branch] .branch-count").last).to_have_text("2/2")

    page.click("[data-testid=compare]")  # compare off: one reply again
    expect(page.locator("#compare-setup")).to_be_hidden()
    expect(page.locator("[data-testid=send]")).to_have_text("Send")
    page.fill("textarea[name=text]", "And then? [sim:delay=0]")
    page.click("[data-testid=send]")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete", timeout=REPLY)
    page.reload()
    expect(page.locator(f"#message-{kept_id}")).to_be_visible()  # the path runs through it
    expect(page.locator(ASSISTANT)).to_have_count(3)
    assert errors == []


def test_on_a_phone_the_columns_are_tabs_with_their_status(app_server, new_context):
    app_server.create_user("phone-comparer")
    page = new_context(viewport=PHONE).new_page()
    log_in(page, app_server, "phone-comparer")
    page.goto(app_server.url + "/new/")  # a new chat's first message, to the columns at once
    _compare(page, "Side by side on a phone [sim:delay=0.02]")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    columns = page.locator(COLUMNS)
    expect(columns).to_have_count(2)
    tabs = page.locator("[data-testid=compare-tab]")
    expect(tabs).to_have_count(2)
    for n in (0, 1):
        expect(columns.nth(n).locator("[data-testid=message]")).to_have_attribute(
            "data-status", "complete", timeout=REPLY
        )
        expect(tabs.nth(n)).to_have_attribute("data-status", "complete")
    # One column fills the width; the second tab brings the second column into view.
    first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
    assert first["width"] > PHONE["width"] * 0.8 and second["x"] >= PHONE["width"] - 1
    tabs.nth(1).click()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(600)  # the smooth scroll
    box = columns.nth(1).bounding_box()
    assert 0 <= box["x"] < PHONE["width"] / 2, box
    screenshot(page, "compare-phone")
    wide = page.evaluate(  # what sticks out, if anything (the columns scroll inside their row)
        """() => [...document.querySelectorAll('body *')]
          .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
          .filter(e => !e.closest('.compare-row'))
          .map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().right))"""
    )
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), wide
