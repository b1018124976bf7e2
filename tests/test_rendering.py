from chat.rendering import render_markdown


def test_markdown_is_rendered():
    html = render_markdown("# Title\n\nSome **bold** and `code`.\n\n- one\n- two")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert "<li>one</li>" in html


def test_code_blocks_are_highlighted_with_classes_kept():
    html = render_markdown("```python\nprint('hi')\n```")
    assert '<code class="language-python">' in html
    assert '<span class="nb">print</span>' in html


def test_raw_html_from_the_model_is_shown_as_text():
    html = render_markdown("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html


def test_dangerous_links_are_dropped():
    html = render_markdown("[click](javascript:alert(1)) and [ok](https://example.com)")
    assert "javascript:" not in html.split("[click]")[0] or 'href="javascript' not in html
    assert 'href="javascript' not in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_tables_render():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<table>" in html and "<td>1</td>" in html


def test_a_cost_in_usage_shows_in_the_footer_and_the_totals(client, alice):
    """OpenAI-compatible proxies such as LiteLLM's report the cost as usage.cost (dollars)."""
    import json
    from pathlib import Path

    from chat.models import Conversation, Message

    usage = None
    for line in (Path(__file__).parent / "streams" / "litellm_usage_cost.sse").open():
        if line.startswith("data: {"):
            usage = json.loads(line.removeprefix("data: ")).get("usage") or usage
    conversation = Conversation.objects.create(owner=alice, title="Costs")
    Message.objects.create(conversation=conversation, role="assistant", content="x", usage=usage)
    client.force_login(alice)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert '<span title="Cost reported by the API">$0.00042</span>' in html
    assert "12 → 9 tokens · $0.00042" in html
