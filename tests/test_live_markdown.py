"""Markdown rendered block by block as a reply streams (chat/live_markdown.py)."""

import asyncio
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.live_markdown import LiveMarkdown, block_ends, render_blocks, split_rendered
from chat.rendering import render_markdown

DOCUMENTS = {
    "paragraphs": "Some **bold** text\nand a lazy line.\n\nA second paragraph.\n",
    "list": "Intro:\n\n- one\n- two\n- three\n\nAfter the list.",
    "loose list": "- one\n\n- two\n\n  more of two\n\n- three\n\nEnd.",
    "nested list": "1. first\n   - a\n   - b\n2. second\n\n   indented para\n3. third\n\nDone.",
    "lazy continuation": "- item\ncontinued lazily\n- next\n\n> quote\nlazy quote\n\nend",
    "fence with blank lines": "Code:\n\n```python\ndef f():\n\n    return 1\n\n\n```\n\nAfter.",
    "unclosed fence": "Text\n\n```js\nlet a = 1;\n\nlet b = 2;",
    "tilde fence": "~~~\n```\nnot closed by backticks\n~~~\nafter",
    "table": "| a | b |\n|:--|--:|\n| 1 | 2 |\n| 3 | 4 |\n\nBelow the table.",
    "table after paragraph": "Para\n| a | b |\n|---|---|\n| 1 | 2 |\nrow without pipes\n\nx",
    "quote": "> quoted\n> more\n\n> another quote\n\nplain",
    "headings": "# Title\nText\n## Sub\n\nSetext\n======\n\nOther\n---\nafter",
    "rules": "para\n\n---\n\n***\n- a\n---\nend",
    "math": "Euler:\n\n$$\ne^{i\\pi} + 1 = 0\n$$\n\nand\n\n\\[\nx^2\n\\]\n\nend $5 and $10.",
    "math with blank line": "$$\na\n\nb\n$$\n\nafter",
    "indented code": "para\n\n    code\n\n    more code\n\npara",
    "reference links": "[def]: https://example.com/a\n\nSee [the docs][def] and [later][l].\n\n[l]: https://example.com/l\n",
    "html is text": "<b>not bold</b>\n\n<script>alert(1)</script>\n",
    "ordered start": "3. three\n4. four\n\n7) seven\n",
    "crlf": "line one\r\nline two\r\n\r\n- a\r\n- b\r\n",
    "empty": "",
    "blank only": "\n\n\n",
}


def stream(text: str, sizes) -> tuple[list[str], str]:
    """Feed `text` in deltas of the given sizes, advancing after each, then finish."""
    live = LiveMarkdown()
    at = 0
    for size in sizes:
        if at >= len(text):
            break
        live.feed(text[at : at + size])
        at += size
        live.advance()
    live.feed(text[at:])
    live.advance(final=True)
    return live.blocks, live.html()


def random_sizes(seed: int, count: int = 2000) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([1, 1, 2, 3, 5, 8, 13, 40]) for _ in range(count)]


@pytest.mark.parametrize("name", DOCUMENTS)
@pytest.mark.parametrize("seed", range(8))
def test_streaming_in_random_deltas_gives_the_whole_texts_blocks(name, seed):
    text = DOCUMENTS[name]
    _blocks, html = stream(text, random_sizes(seed))
    assert html == render_blocks(text)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_one_character_at_a_time_gives_the_whole_texts_blocks(name):
    text = DOCUMENTS[name]
    _blocks, html = stream(text, [1] * len(text))
    assert html == render_blocks(text)


@pytest.mark.parametrize("name", [n for n in DOCUMENTS if n != "reference links"])
def test_block_by_block_renders_as_the_whole_text_does(name):
    # Where they differ (a link definition after its use) is below.
    text = DOCUMENTS[name]
    assert render_blocks(text) == render_markdown(text)


def test_a_link_definition_applies_to_the_blocks_after_it_only():
    html = render_blocks(DOCUMENTS["reference links"])
    assert '<a href="https://example.com/a" rel="noopener noreferrer nofollow">the docs</a>' in html
    assert "[later][l]" in html  # defined after its use: that block was already on the page


def test_a_block_is_complete_only_when_what_follows_shows_it():
    assert block_ends("A paragraph") == []
    assert block_ends("A paragraph\n") == []  # a lazy line may still join it
    assert block_ends("A paragraph\n\n") == [12]
    assert block_ends("# Head") == []  # `#x` would not be a heading
    assert block_ends("# Head\nx") == [7]
    assert block_ends("- a\n- b\n\n") == []  # a list goes on past a blank line
    assert block_ends("- a\n- b\n\nNext\n") == [9]
    assert block_ends("```\ncode\n\n") == []  # open fence
    assert block_ends("```\ncode\n```\n") == []  # closed, but nothing after it yet
    assert block_ends("```\ncode\n```\nx") == [13]
    assert block_ends("$$\nx\n\n") == []  # an open math block holds everything back
    assert block_ends("$$\nx\n\ny\n\n# h\n") == []


def test_a_streaming_text_splits_into_rendered_blocks_and_an_escaped_tail():
    html, tail = split_rendered("**Bold** intro\n\n- one\n- two\n\n```py\nx = 1\n```\n\nEnd <b")
    assert html.startswith("<p><strong>Bold</strong> intro</p>")
    assert "<li>one</li>" in html
    assert "<pre" in html
    assert tail == "\nEnd <b"


def test_frames_never_resend_finished_blocks():
    text = DOCUMENTS["list"] + "\n\n" + DOCUMENTS["fence with blank lines"]
    live = LiveMarkdown()
    sent = []
    for ch in text:
        live.feed(ch)
        sent += live.advance()
    sent += live.advance(final=True)
    assert "".join(sent) == render_blocks(text)
    assert len(sent) == len(live.blocks)


markdown_lines = st.sampled_from(
    [
        "",
        "",
        "plain words",
        "**bold** and *em*",
        "- item",
        "  - nested",
        "1. first",
        "2) second",
        "> quote",
        "# heading",
        "Setext",
        "===",
        "---",
        "```",
        "```python",
        "~~~",
        "    indented",
        "| a | b |",
        "|---|:-:|",
        "| 1 | 2 |",
        "$$",
        "x^2 + y",
        "\\[",
        "\\]",
        "[r]: https://example.com",
        "see [r] and `code`",
        "***",
        "<div>",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(markdown_lines, min_size=1, max_size=25),
    st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=60),
    st.booleans(),
)
def test_any_markdown_streams_to_the_blocks_of_its_whole_text(lines, sizes, trailing):
    text = "\n".join(lines) + ("\n" if trailing else "")
    _blocks, html = stream(text, sizes * 50)
    assert html == render_blocks(text)


# End to end: the real job streams the simulator's Markdown reply through the real consumer.

# The final frame's last blocks, in place of the tail.
LAST_BLOCKS = re.compile(
    r'<div hx-swap-oob="beforebegin:#message-(\d+)-tail">(.*?)</div>'
    r'(?=<div hx-swap-oob="(?:delete|beforebegin))',
    re.S,
)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_reply_streams_as_blocks_whose_concatenation_is_the_final_html(
    upstream_is_simulator, alice
):
    from tests.test_relay import logged_in, new_conversation, open_page, send

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Hello [sim:delay=0.005]")
    frames = []
    async with asyncio.timeout(30):
        while True:
            frame = await page.ws.receive_from(timeout=30)
            page.apply(frame)
            if reply.pk in page.final:
                final = frame
                break
            frames.append(frame)
            if reply.pk in page.tail:
                # The page's tail is the text after the blocks it holds, from its first line.
                _html, tail = split_rendered(page.text[reply.pk])
                assert page.tail[reply.pk] == tail.lstrip("\n")
    await reply.arefresh_from_db()
    streamed = page.blocks[reply.pk]
    assert any("<strong>" in html for html in streamed)  # before the reply completed
    assert any("<li>" in html for html in streamed)
    assert any("<pre" in html for html in streamed)
    # Each block was sent once, in order, and the finished message is those blocks and the last.
    assert reply.html.startswith("".join(streamed))
    assert reply.html == render_blocks(reply.content)
    assert page.text[reply.pk] == reply.content
    # The final frame brings the last block in place of the tail, and the finished message
    # around the content the page keeps: no block is sent twice.
    last = [html for _id, html in LAST_BLOCKS.findall(final)]
    assert "".join(streamed + last) == reply.html
    assert f'id="message-{reply.pk}-content" hx-preserve' in final
    assert streamed[0] not in final and streamed[1] not in final
    # Deltas are compact frames: the text as it is, no markup around it.
    deltas = [frame for frame in frames if frame.startswith('{"d":')]
    assert len(deltas) > 5 and not any("hx-swap-oob" in frame for frame in deltas)
    await page.ws.disconnect()


@pytest.mark.django_db
def test_a_page_drawn_mid_stream_shows_the_checkpoints_blocks_and_its_tail(alice_client, alice):
    from chat.models import Conversation, Message

    conversation = Conversation.objects.create(owner=alice, title="Live")
    text = "**Bold** start\n\n- one\n- two\n\nStill <typing\nmore"
    Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content=text
    )
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    html, tail = split_rendered(text)
    assert "<li>one</li>" in html
    assert html in page
    assert tail == "Still <typing\nmore"
    assert "Still &lt;typing\nmore</span>" in page


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_page_that_reconnects_mid_stream_gets_the_blocks_so_far_and_the_tail(
    upstream_is_simulator, alice
):
    from tests.test_relay import logged_in, new_conversation, open_page, send

    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    first = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Hello [sim:delay=0.02]")
    await first.receive_until(lambda p: "```" in p.text.get(reply.pk, ""))
    second = await open_page(client, conversation.pk, after=reply.pk, streaming=(reply.pk,))
    region = f'hx-swap-oob="innerHTML:#message-{reply.pk}-text-md">'
    async with asyncio.timeout(20):
        frame = ""
        while region not in frame:
            frame = await second.ws.receive_from(timeout=20)
    shown = frame.split(region, 1)[1]
    assert shown.startswith("<p><strong>Offline simulator</strong>")
    assert "<li>Model: <code>" in shown
    assert f'<p class="stream" id="message-{reply.pk}-tail">' in shown
    await first.ws.disconnect()
    await second.ws.disconnect()


def test_a_closed_math_block_lets_the_blocks_after_it_complete():
    text = "$$\nx^2\n$$\n\nA paragraph.\n\n\\[\ny\n\\]\n\nAnother.\n\n# Next\n"
    assert block_ends(text)[-1] == text.index("\n# Next")  # all but the heading, still open


def test_the_tail_stays_one_block_long_however_long_the_reply():
    section = (
        "## S\n\nText **b** and $x$.\n\n- a\n- b\n\n```py\nx = 1\n```\n\n"
        "$$\ny\n$$\n\n| a |\n|---|\n| 1 |\n\n"
    )
    live = LiveMarkdown()
    longest = 0
    for _ in range(200):
        for ch in section:
            live.feed(ch)
            live.advance()
            longest = max(longest, len(live.tail))
    assert longest < len(section)


@pytest.mark.django_db
def test_the_thinking_box_renders_markdown_streaming_and_finished(alice_client, alice):
    from chat.models import Conversation, Message

    conversation = Conversation.objects.create(owner=alice, title="Thinking")
    reasoning = "First **weigh** it:\n\n- one\n- two\n\nthen decide\nand go"
    streaming = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", reasoning=reasoning
    )
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    region = page.split(f'id="message-{streaming.pk}-reasoning-md">', 1)[1]
    assert region.startswith("<p>First <strong>weigh</strong> it:</p>")
    assert "<li>one</li>" in region
    assert (
        f'<span class="reasoning-text" id="message-{streaming.pk}-reasoning">then decide' in region
    )

    Message.objects.filter(pk=streaming.pk).update(status="complete", content="Done.")
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'<div class="md reasoning-md" dir="auto">{render_blocks(reasoning)}</div>' in page
