"""A reply's Markdown renders while it streams, and nothing jumps when it completes."""

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

ASSISTANT = "[data-testid=message][data-role=assistant]"

# Each animation frame, what the last reply shows: its status, the height of its content and of
# its open tail (the text not yet rendered).
RECORD_HEIGHTS = """() => {
  window.heights = [];
  function look() {
    const replies = document.querySelectorAll('#transcript [data-role=assistant]');
    const reply = replies[replies.length - 1];
    if (reply) {
      const content = reply.querySelector('[data-testid=message-content]');
      const tail = reply.querySelector('p.stream');
      window.heights.push({
        status: reply.dataset.status,
        content: content.getBoundingClientRect().height,
        tail: tail ? tail.getBoundingClientRect().height : 0,
        pre: reply.querySelectorAll('.md pre').length,
      });
    }
    requestAnimationFrame(look);
  }
  look();
}"""


def test_bold_a_list_and_code_render_while_the_reply_streams(app_server, new_context):
    app_server.create_user("streamreader")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, app_server, "streamreader")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Show me Markdown [sim:delay=0.06]")
    page.click("[data-testid=send]")

    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    page.evaluate(RECORD_HEIGHTS)
    content = reply.locator("[data-testid=message-content]")
    expect(content.locator("strong").first).to_be_visible()
    expect(content.locator("li").first).to_be_visible()
    expect(content.locator("pre").first).to_be_visible(timeout=30_000)
    # All three while the reply is still streaming, as HTML, not as `**` and `-` text.
    assert reply.get_attribute("data-status") == "streaming"
    assert "**Offline simulator**" not in content.inner_text()
    screenshot(page, "live-markdown-streaming")

    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    heights = page.evaluate("window.heights")
    streaming = [h for h in heights if h["status"] == "streaming" and h["pre"]]
    finished = [h for h in heights if h["status"] == "complete"]
    assert streaming and finished
    before, after = streaming[-1], finished[0]
    # Only the tail changes when the reply completes: the blocks above it stay as they were.
    assert abs(after["content"] - before["content"]) <= before["tail"] + 1, (before, after)


def test_reloading_mid_stream_shows_the_same_blocks(app_server, new_context):
    app_server.create_user("reloader2")
    page = new_context().new_page()
    log_in(page, app_server, "reloader2")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Markdown, then reload [sim:delay=0.06]")
    page.click("[data-testid=send]")
    reply = page.locator(ASSISTANT).last
    expect(reply.locator("li").first).to_be_visible()
    page.reload()
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply.locator("[data-testid=message-content] li").first).to_be_visible()
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(reply.locator(".md pre")).to_be_visible()


def test_a_streaming_reply_on_a_phone_in_dark_mode(app_server, new_context):
    app_server.create_user("phone-reader")
    context = new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    log_in(page, app_server, "phone-reader")
    page.goto(app_server.url + "/new/")
    page.fill("textarea[name=text]", "Markdown on a phone [sim:delay=0.06]")
    page.click("[data-testid=send]")
    reply = page.locator(ASSISTANT).last
    expect(reply.locator("[data-testid=message-content] pre").first).to_be_visible(timeout=30_000)
    assert reply.get_attribute("data-status") == "streaming"
    screenshot(page, "live-markdown-phone-dark-streaming")
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    screenshot(page, "live-markdown-phone-dark-complete")


# The page's side of a delta frame (static/chat/stream.js), fed frames as the socket brings
# them (chat.js turns each into a playground:frame event), on a streaming message's markup as
# the page renders it (templates/chat/chat.html#live_text, #live_reasoning).
LIVE_MESSAGE = """() => {
  const article = document.createElement('article');
  article.innerHTML =
    '<div class="md reasoning-md" id="message-9001-reasoning-md">' +
    '<span class="reasoning-text" id="message-9001-reasoning">Thinking 🙂 </span></div>' +
    '<div class="md live" id="message-9001-text-md"><p class="stream" id="message-9001-tail">' +
    '<span id="message-9001-text">A 🙂 start</span><span class="cursor"></span></p></div>';
  document.getElementById('transcript').appendChild(article);
}"""

FEED = """(frames) => {
  for (const text of frames) {
    const end = text.indexOf('\\n');
    const frame = JSON.parse(end === -1 ? text : text.slice(0, end));
    if (end !== -1) frame.body = text.slice(end + 1);
    document.dispatchEvent(new CustomEvent('playground:frame', { detail: frame }));
  }
  const pick = (id) => document.getElementById(id);
  return {
    text: pick('message-9001-text').textContent,
    reasoning: pick('message-9001-reasoning').textContent,
    answer: pick('message-9001-text-md').innerHTML,
    thinking: pick('message-9001-reasoning-md').innerHTML,
  };
}"""


def test_delta_frames_append_text_and_put_completed_blocks_before_the_tail(app_server, new_context):
    from chat.frames import delta_frame

    app_server.create_user("frame-reader")
    page = new_context(reduced_motion="reduce").new_page()
    log_in(page, app_server, "frame-reader")
    page.goto(app_server.url + "/new/")
    page.evaluate(LIVE_MESSAGE)
    frames = [
        delta_frame(9001, text=" and 🙂 more\n\n", reasoning="first 🙂 part\n\n"),
        # Both parts complete a block in one frame: the answer's HTML, then the reasoning's.
        delta_frame(
            9001,
            text="🙂 Next",
            blocks="<p>A 🙂 start and 🙂 more</p>",
            tail="🙂 Next",  # kept by its length in UTF-16 units, as the page counts
            reasoning="then",
            reasoning_blocks="<p>Thinking 🙂 first 🙂 part</p>",
            reasoning_tail="then",
        ),
        delta_frame(9001, text=" 🙂 line"),
    ]
    shown = page.evaluate(FEED, frames)
    assert shown["text"] == "🙂 Next 🙂 line"
    assert shown["reasoning"] == "then"
    assert shown["answer"].startswith('<p>A 🙂 start and 🙂 more</p><p class="stream"')
    assert shown["thinking"] == (
        '<p>Thinking 🙂 first 🙂 part</p><span class="reasoning-text" '
        'id="message-9001-reasoning">then</span>'
    )
