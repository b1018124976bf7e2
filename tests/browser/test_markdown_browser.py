"""Rendered replies in a real Chromium: math as MathML the browser lays out (no math script),
fenced code whose Copy button copies exactly the code, tables that scroll in their own box, all
under the strict Content-Security-Policy with nothing logged to the console."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import live_app, log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"

CODE = (
    "def area(r: float) -> float:\n"
    '    """The area of a circle of radius r."""\n'
    "    return math.pi * r ** 2  # a long comment that runs past the edge of a phone's screen"
)
REPLY = f"""## Circles

A circle of radius $r$ has the area $A = \\pi r^2$, and \\(C = 2\\pi r\\) around it.

$$
\\int_0^r 2\\pi t \\, dt = \\pi r^2
$$

```python
{CODE}
```

| shape | formula | area at r = 2 |
|:------|:-------:|--------------:|
| circle | $\\pi r^2$ | 12.57 |
| square | $(2r)^2$ | 16.00 |

| year | north | south | east | west | total | note |
|---|--:|--:|--:|--:|--:|---|
| 2025 | 1,204.50 | 980.25 | 1,530.00 | 744.10 | 4,458.85 | a wide table scrolls in its box |

Prices stay text: $5 and $10.
"""

SEED = """
import json
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
from chat.rendering import render_markdown
user = get_user_model().objects.get(username={user!r})
c = Conversation.objects.create(owner=user, title="Circles")
question = Message.objects.create(conversation=c, role="user", content="Tell me about circles")
reply = json.loads({reply!r})
answer = Message.objects.create(
    conversation=c, parent=question, role="assistant", content=reply,
    html=render_markdown(reply), status="complete",
)
Conversation.objects.filter(pk=c.pk).update(current=answer)
print(c.pk)
"""


class Console:
    def __init__(self, page):
        self.problems: list[str] = []
        page.on(
            "console",
            lambda message: message.type == "error" and self.problems.append(message.text),
        )
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))


@pytest.fixture(scope="module")
def server():
    with live_app() as server:
        server.create_user("reader")
        code = SEED.format(user="reader", reply=json.dumps(REPLY))
        server.conversation = int(server.manage("shell", "-c", code).strip().splitlines()[-1])
        yield server


def open_reply(server, new_context, **options):
    context = new_context(**options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    console = Console(page)
    log_in(page, server, "reader")
    page.goto(f"{server.url}/c/{server.conversation}/")
    return page, console


def test_math_shows_as_mathml_with_a_size_of_its_own(server, new_context):
    page, console = open_reply(server, new_context, viewport={"width": 1280, "height": 900})
    reply = page.locator(ASSISTANT)
    display = reply.locator("math[display=block]")
    expect(display).to_have_count(1)
    inline = reply.locator("p math[display=inline]")
    expect(inline).to_have_count(3)
    for math in [display, *inline.all()]:
        box = math.bounding_box()
        assert box and box["width"] > 5 and box["height"] > 5, box
    text_height = reply.locator("p", has_text="A circle of radius").evaluate(
        "p => parseFloat(getComputedStyle(p).lineHeight)"
    )
    # sized like the text: an inline formula is about a line high, the integral taller
    assert inline.first.bounding_box()["height"] < text_height * 1.4
    assert display.bounding_box()["height"] > inline.first.bounding_box()["height"] * 1.5
    # Chromium lays MathML out itself: no script on the page knows about math
    scripts = page.eval_on_selector_all("script[src]", "s => s.map(e => e.src).join(' ')")
    assert "katex" not in scripts.lower() and "mathjax" not in scripts.lower()
    expect(reply.locator("p", has_text="Prices stay text")).to_have_text(
        "Prices stay text: $5 and $10."
    )
    assert console.problems == []


def test_the_copy_button_copies_exactly_the_code(server, new_context):
    page, console = open_reply(server, new_context, viewport={"width": 1280, "height": 900})
    block = page.locator(f"{ASSISTANT} .code-block")
    expect(block.locator(".code-lang")).to_have_text("python")
    button = block.locator("[data-testid=copy-code]")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    expect(button).to_have_text("Copy", timeout=5000)

    assert console.problems == []


def test_long_lines_and_wide_tables_scroll_in_their_box_not_the_page(server, new_context):
    page, console = open_reply(
        server, new_context, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    reply = page.locator(ASSISTANT)
    expect(reply.locator(".code-block")).to_be_visible()
    pre = reply.locator(".code-block pre")
    assert pre.evaluate("e => e.scrollWidth > e.clientWidth")  # the long comment scrolls
    assert pre.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    wide = reply.locator(".table-scroll").nth(1)
    assert wide.evaluate("e => e.scrollWidth > e.clientWidth")  # it scrolls, the page does not
    cells = reply.locator("table").first.locator("th")
    assert [c.get_attribute("class") for c in cells.all()] == [
        "align-left",
        "align-center",
        "align-right",
    ]
    assert cells.nth(2).evaluate("e => getComputedStyle(e).textAlign") == "right"
    assert cells.nth(1).evaluate("e => getComputedStyle(e).textAlign") == "center"
    assert console.problems == []


def test_a_streamed_reply_brings_its_math_and_a_copy_button_that_works(server, new_context):
    """The simulator quotes the message it received (its formula comes back in the reply) and
    shows the settings it was sent in a JSON code block: both arrive over the WebSocket."""
    page, console = open_reply(server, new_context, viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/")
    page.fill("textarea[name=text]", "Is $e^{i\\pi} + 1 = 0$ true?")
    page.click("[data-testid=send]")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(reply).to_contain_text("Last user message")
    math = reply.locator("math[display=inline]")
    expect(math.first).to_be_visible()
    assert math.first.bounding_box()["width"] > 20
    assert "<msup><mi>e</mi>" in math.first.evaluate("m => m.outerHTML")
    button = reply.locator(".code-block [data-testid=copy-code]")
    button.click()
    expect(button).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == reply.locator(".code-block pre code").text_content()
    assert isinstance(json.loads(copied), dict)  # the settings, without the "json" label
    assert console.problems == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    "name, viewport", [("desktop", {"width": 1280, "height": 900}), ("phone", None)]
)
def test_screenshots_of_a_reply_with_code_math_and_a_table(
    server, new_context, scheme, name, viewport
):
    options = {"viewport": viewport} if viewport else {"viewport": {"width": 390, "height": 844}}
    if name == "phone":
        options.update(is_mobile=True, device_scale_factor=2, has_touch=True)
    page, console = open_reply(server, new_context, color_scheme=scheme, **options)
    page.locator(ASSISTANT).first.locator("h2").scroll_into_view_if_needed()
    screenshot(page, f"markdown-{name}-{scheme}")
    assert console.problems == []
