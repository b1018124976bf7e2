"""axe-core on every page and state, on a phone and a desktop, light and dark: no serious or
critical violation. axe is evaluated through the DevTools protocol, so the page keeps its strict
Content-Security-Policy while it is checked."""

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, log_in

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
ASSISTANT = "[data-testid=message][data-role=assistant]"
LAYOUTS = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
SCHEMES = ("light", "dark")
REPLY = 30_000


def axe_violations(page, state: str) -> list[str]:
    """The serious and critical violations on the page as it is now; the others are printed."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    found = []
    for violation in result["violations"]:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]][:5]
        impact, rule = violation["impact"], violation["id"]
        line = f"{state}: {impact} {rule} ({violation['help']}) at {targets}"
        if impact in ("serious", "critical"):
            found.append(line)
        else:
            print(line)
    return found


def each_look(new_context):
    for layout, viewport in LAYOUTS.items():
        for scheme in SCHEMES:
            yield f"{layout}-{scheme}", new_context(viewport=viewport, color_scheme=scheme)


def test_the_first_run_setup_has_no_serious_violations(fresh_server, new_context):
    found = []
    for look, context in each_look(new_context):
        page = context.new_page()
        page.goto(fresh_server.url + "/")
        expect(page).to_have_url(re.compile(r"/setup/$"))
        found += axe_violations(page, f"setup {look}")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", "something else entirely")
        page.click("button[type=submit]")
        found += axe_violations(page, f"setup with an error {look}")
    assert not found, "\n".join(found)


def _open_settings(page) -> None:
    panel = page.locator("#settings-panel")
    if not panel.is_visible():
        page.click("[data-testid=open-settings]")
        expect(panel).to_be_visible()


def test_the_log_in_chat_and_sharing_pages_have_no_serious_violations(app_server, new_context):
    app_server.create_user("axe-reader")
    found = []
    for look, context in each_look(new_context):
        page = context.new_page()
        page.goto(app_server.url + "/accounts/login/")
        found += axe_violations(page, f"log-in {look}")
        page.fill("input[name=username]", "nobody")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        found += axe_violations(page, f"log-in with an error {look}")
        log_in(page, app_server, "axe-reader")
        page.goto(app_server.url + "/new/")
        found += axe_violations(page, f"chat empty {look}")

        page.fill("textarea[name=text]", "[sim:delay=0.2] Tell me what you received.")
        page.keyboard.press("Enter")
        expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "streaming")
        expect(
            page.locator(ASSISTANT).last.locator("[data-testid=message-content]")
        ).not_to_be_empty()
        found += axe_violations(page, f"chat streaming {look}")
        page.click("[data-testid=stop]")
        expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "stopped")

        page.fill("textarea[name=text]", "Please describe what you received.")
        page.keyboard.press("Enter")
        expect(page.locator(ASSISTANT).last).to_have_attribute(
            "data-status", "complete", timeout=REPLY
        )
        found += axe_violations(page, f"chat finished {look}")

        page.fill("textarea[name=text]", "[sim:status=500] This one fails.")
        page.keyboard.press("Enter")
        expect(page.locator(ASSISTANT).last).to_have_attribute(
            "data-status", "error", timeout=REPLY
        )
        found += axe_violations(page, f"chat error {look}")

        _open_settings(page)
        found += axe_violations(page, f"settings open {look}")
        page.reload()

        page.click("[data-testid=share]")
        dialog = page.locator("#share-dialog")
        expect(dialog).to_be_visible()
        found += axe_violations(page, f"share dialog {look}")
        dialog.locator("[data-testid=create-share]").click()
        link = dialog.locator("[data-testid=share-url]")
        expect(link).to_be_visible()
        found += axe_violations(page, f"share dialog with a link {look}")
        url = link.get_attribute("href")

        page.goto(url)
        found += axe_violations(page, f"shared page {look}")
        page.goto(app_server.url + "/shares/")
        expect(page.locator("[data-testid=share-row]").first).to_be_visible()
        found += axe_violations(page, f"Shared links {look}")
        page.close()
    assert not found, "\n".join(found)
