import html as html_lib
import re

import pytest

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


# Math: LaTeX becomes MathML on the server; the page runs no math JavaScript.


def _text(fragment: str) -> str:
    """The text a browser shows for an HTML fragment (tags dropped, entities read)."""
    return html_lib.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.mark.parametrize(
    "source, display",
    [
        ("The area is $\\pi r^2$ here.", "inline"),
        ("The area is \\(\\pi r^2\\) here.", "inline"),
        ("$$\n\\pi r^2\n$$", "block"),
        ("$$\\pi r^2$$", "block"),
        ("\\[\n\\pi r^2\n\\]", "block"),
        ("\\[\\pi r^2\\]", "block"),
        ("So the area is\n$$\\pi r^2$$\nas said.", "block"),
        ("So the area is\n\\[\\pi r^2\\]\nas said.", "block"),
    ],
)
def test_math_in_each_delimiter_style_becomes_mathml(source, display):
    html = render_markdown(source)
    assert f'<math display="{display}"' in html
    assert "<msup><mi>r</mi><mn>2</mn></msup>" in html
    assert "<mi>π</mi>" in html
    assert "$" not in html and "\\(" not in html and "\\[" not in html


def test_display_math_is_a_block_of_its_own():
    html = render_markdown("Before.\n\n$$\n\\frac{a}{b}\n$$\n\nAfter.")
    assert re.search(r'<div class="math-display"[^>]*><math display="block"', html)
    assert "<mfrac>" in html
    assert "<p>Before.</p>" in html and "<p>After.</p>" in html


@pytest.mark.parametrize(
    "source",
    [
        "It costs $5 and $10.",
        "Between $5-$10 a month.",
        "Prices: $1,000 or $2,500.",
        "A $ sign alone, and $ another $ spaced.",
        "Escaped \\$x\\$ stays.",
    ],
)
def test_currency_and_stray_dollars_stay_text(source):
    html = render_markdown(source)
    assert "<math" not in html
    assert _text(html).strip() == source.replace("\\$", "$")


@pytest.mark.parametrize(
    "source, latex",
    [
        ("Broken $\\frac{a$ here.", "\\frac{a"),
        ("$x^$", "x^"),
        ("$$\n\\left( x\n$$", "\\left( x"),
        ("\\[\\begin{matrix} a \\]", "\\begin{matrix} a"),
    ],
)
def test_invalid_latex_shows_its_source_as_code(source, latex):
    html = render_markdown(source)
    assert "<math" not in html
    code = re.search(r'<code class="math-error">(.*?)</code>', html, re.S)
    assert code and html_lib.unescape(code.group(1)) == latex


@pytest.mark.parametrize(
    "source",
    [
        "$\\href{javascript:alert(1)}{x}$",
        "$$\\href{javascript:alert(1)}{click}$$",
        "$\\style{background:url(https://evil.example/x)}{x}$",
        "$\\class{code-copy}{x}$",
        "$\\text{<script>alert(1)</script>}$",
        "$\\text{<img src=x onerror=alert(1)>}$",
        "$\\unicode{x3C}script\\unicode{x3E}alert(1)$",
        "$\\mathrm{<a href='javascript:alert(1)'>x</a>}$",
        "\\(\\text{</math><img src=x onerror=alert(1)>}\\)",
    ],
)
def test_math_cannot_carry_links_styles_or_markup(source):
    html = render_markdown(source)
    tags = re.findall(r"<([a-z]+)([^>]*)>", html)  # text is escaped: only real tags match
    assert tags and all(name not in {"script", "img", "a", "style"} for name, _ in tags)
    for name, attributes in tags:
        attributes = re.sub(r' class="math-(display|error)"| tabindex="0"', "", attributes)
        assert not re.search(r"\b(href|style|class|src|on[a-z]+)=", attributes), (name, attributes)
    assert "javascript:" not in "".join(attributes for _, attributes in tags)


def test_math_text_is_shown_as_text_not_markup():
    html = render_markdown("$\\text{a < b & c}$")
    assert "<mtext>a&nbsp;&lt;&nbsp;b&nbsp;&amp;&nbsp;c</mtext>" in html


def test_math_cannot_stretch_the_page():
    html = render_markdown("$\\hspace{100000em}x$ and $\\rule{1em}{99999em}$")
    assert "100000" not in html and "99999" not in html


# Fenced code: a header with the language and a Copy button; the code itself exactly.


def _code_of(html: str) -> str:
    match = re.search(r"<pre[^>]*><code[^>]*>(.*?)</code></pre>", html, re.S)
    assert match, html
    return _text(match.group(1))


def test_fenced_code_shows_its_language_and_a_copy_button():
    html = render_markdown("```python\nprint('hi')\n```")
    head = re.search(r'<div class="code-head">(.*?)</div>', html, re.S)
    assert head, html
    assert '<span class="code-lang">python</span>' in head.group(1)
    assert re.search(
        r'<button type="button" class="code-copy" data-testid="copy-code"', head.group(1)
    )
    assert _code_of(html) == "print('hi')"


@pytest.mark.parametrize(
    "source, code",
    [
        ("```python\n    indented()\n\n\nlast = 1 < 2\n```", "    indented()\n\n\nlast = 1 < 2"),
        ("```\n<b>not html</b> & more\n```", "<b>not html</b> & more"),
        ("```nosuchlanguage\na\tb  \n```", "a\tb  "),
        ("~~~js\nlet a = `x`;\n~~~", "let a = `x`;"),
    ],
)
def test_the_code_in_a_block_is_exactly_what_was_written(source, code):
    html = render_markdown(source)
    assert _code_of(html) == code
    assert html.count('data-testid="copy-code"') == 1


def test_a_block_without_a_language_is_labelled_plainly():
    html = render_markdown("```\nls -l\n```")
    assert '<span class="code-lang">text</span>' in html


# Tables: alignment as classes, which the strict CSP lets through (inline styles it blocks).


def test_table_alignment_is_a_class_not_a_style():
    html = render_markdown("| a | b | c | d |\n|:--|:-:|--:|---|\n| 1 | 2 | 3 | 4 |\n")
    assert '<th class="align-left">a</th>' in html
    assert '<th class="align-center">b</th>' in html
    assert '<td class="align-right">3</td>' in html
    assert "<th>d</th>" in html and "<td>4</td>" in html
    assert "style" not in html


def test_a_table_scrolls_inside_its_own_box():
    html = render_markdown("| a |\n|---|\n| 1 |\n")
    assert re.search(r'<div class="table-scroll"[^>]*><table>', html)
