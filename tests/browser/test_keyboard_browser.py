"""The whole round by keyboard alone: log in, write, send, stop (Escape, and Tab to Stop), change
a setting, share, copy the link. Every control that takes focus shows it, and a streaming reply
is announced politely once it is done, not token by token."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

ASSISTANT = "[data-testid=message][data-role=assistant]"
REPLY = 30_000

# What has focus, and whether it shows: its own outline or box-shadow, or (for the composer's
# borderless textarea) the box around it, whose border takes the accent colour.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {tag: "body", visible: false, what: "body"};
  const shows = (node) => {
    const style = getComputedStyle(node);
    const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
    return outline || (style.boxShadow && style.boxShadow !== "none");
  };
  let visible = shows(el);
  const box = el.closest(".composer-box");
  if (!visible && box) {
    const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
    const probe = document.createElement("span");
    probe.style.color = accent;
    document.body.appendChild(probe);
    visible = getComputedStyle(box).borderTopColor === getComputedStyle(probe).color;
    probe.remove();
  }
  const testid = el.dataset.testid ? `[data-testid=${el.dataset.testid}]` : "";
  const what = el.tagName.toLowerCase() + testid + (el.name ? `[name=${el.name}]` : "")
    + (el.id ? `#${el.id}` : "")
    + ` "${(el.getAttribute("aria-label") || el.textContent || "").trim().slice(0, 30)}"`;
  return {visible, what};
}"""


def tab_to(page, selector: str, backwards: bool = False, limit: int = 80) -> None:
    """Tab until `selector` has focus; every stop on the way must show its focus."""
    hidden = []
    if page.evaluate("(s) => document.activeElement.matches(s)", selector):
        return
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focus = page.evaluate(FOCUS)
        if not focus["visible"] and focus["what"] != "body":  # past the last control
            hidden.append(focus["what"])
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            assert not hidden, f"focus not visible on: {hidden}"
            return
    raise AssertionError(f"{selector} never took focus in {limit} Tabs")


def watch_announcements(page) -> None:
    """Record each change of text in a polite live region, and flag one around a reply."""
    page.evaluate("""() => {
      window.announced = [];
      const regions = () => document.querySelectorAll(
        '[aria-live=polite], [aria-live=assertive], [role=log], [role=status]');
      const observer = new MutationObserver(() => {
        regions().forEach((region) => {
          const text = region.textContent.trim();
          if (region.dataset.lastAnnounced !== text) {
            region.dataset.lastAnnounced = text;
            if (region.matches('#transcript') || region.querySelector('[data-testid=message]')) {
              window.announced.push('TRANSCRIPT');
            } else if (text && !region.closest('[data-testid=message]')) {
              window.announced.push(text);
            }
          }
        });
      });
      regions().forEach((r) => { r.dataset.lastAnnounced = r.textContent.trim(); });
      observer.observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")


def test_a_keyboard_alone_logs_in_chats_stops_changes_a_setting_and_shares(app_server, new_context):
    app_server.create_user("keyboarder")
    context = new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()

    page.goto(app_server.url + "/accounts/login/")
    tab_to(page, "input[name=username]")
    page.keyboard.type("keyboarder")
    tab_to(page, "input[name=password]")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.goto(app_server.url + "/new/")
    composer = page.locator("textarea[name=text]")
    expect(composer).to_be_focused()
    page.keyboard.type("[sim:delay=0.2] Hello there")
    page.keyboard.press("Enter")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    # Escape stops the reply.
    page.keyboard.press("Escape")
    expect(reply).to_have_attribute("data-status", "stopped", timeout=REPLY)

    # Tab from the composer reaches Stop; Enter on it stops the reply.
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(composer).to_be_focused()
    page.keyboard.type("[sim:delay=0.2] Once more")
    page.keyboard.press("Enter")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(page.locator("[data-testid=stop]")).to_be_visible()
    tab_to(page, "[data-testid=stop]")
    page.keyboard.press("Enter")
    expect(reply).to_have_attribute("data-status", "stopped", timeout=REPLY)

    # A whole reply: its text is announced once, when it is done, not token by token.
    composer.focus()
    watch_announcements(page)
    page.keyboard.type("Please describe what you received.")
    page.keyboard.press("Enter")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply).to_have_attribute("data-status", "complete", timeout=REPLY)
    page.wait_for_timeout(300)
    announced = page.evaluate("window.announced")
    replies = [text for text in announced if "offline simulator" in text.lower()]
    assert "TRANSCRIPT" not in announced, "the transcript itself is a live region"
    assert len(replies) == 1, announced
    assert "offline simulator" in replies[0].lower()

    # Settings: open the panel and change the temperature; it saves without a Save button.
    tab_to(page, "[data-testid=open-settings]", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#settings-panel")).to_be_visible()
    tab_to(page, "input[name=temperature]")
    page.keyboard.press("Control+A")
    page.keyboard.type("0.3")
    expect(page.locator("[data-testid=settings-status]")).to_contain_text("Saved", timeout=5_000)

    # Share, then copy the link.
    tab_to(page, "[data-testid=share]", backwards=True, limit=150)
    page.keyboard.press("Enter")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    tab_to(page, "[data-testid=create-share]")
    page.keyboard.press("Enter")
    link = dialog.locator("[data-testid=share-url]")
    expect(link).to_be_visible()
    tab_to(page, "[data-testid=copy-share-url]")
    page.keyboard.press("Enter")
    expect(dialog.locator("[data-testid=copy-share-url]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link.get_attribute("href")


ON_SCREEN = """() => {
  const rect = document.activeElement.getBoundingClientRect();
  return rect.right > 0 && rect.left < innerWidth && rect.bottom > 0 && rect.top < innerHeight;
}"""


def test_on_a_phone_tab_skips_the_closed_conversation_list_and_reaches_it_once_open(
    app_server, new_context
):
    app_server.create_user("phone-keyboarder")
    page = new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(app_server.url + "/accounts/login/")
    page.keyboard.type("phone-keyboarder")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.goto(app_server.url + "/new/")

    off_screen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement !== document.body") and not page.evaluate(
            ON_SCREEN
        ):
            off_screen.append(page.evaluate(FOCUS)["what"])
    assert not off_screen, f"focus went off screen to: {off_screen}"

    tab_to(page, "[data-action=toggle-sidebar]")
    page.keyboard.press("Enter")
    tab_to(page, "input[type=search], [name=q]")
    assert page.evaluate(ON_SCREEN)
