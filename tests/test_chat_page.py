import re

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model, client):
    user = django_user_model.objects.create_user("alice", password="x-long-password-1")
    client.force_login(user)
    return user


def test_the_chat_page_has_the_stable_hooks(client, alice):
    html = client.get("/new/").content.decode()
    assert 'name="text"' in html and "<textarea" in html
    assert 'data-testid="send"' in html


def test_a_conversation_page_has_stop_and_a_websocket(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Hello")
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'data-testid="stop"' in html
    assert f'ws-connect="/ws/conversations/{conversation.pk}/"' in html


@pytest.mark.parametrize("page", ["/new/", "conversation"])
def test_no_template_comment_leaks_into_the_page(client, alice, page):
    """Django's {# #} comments end at the line's end: one over several lines is shown as text."""
    if page == "conversation":
        page = Conversation.objects.create(owner=alice, title="Hello").get_absolute_url()
    html = client.get(page).content.decode()
    assert "{#" not in html and "#}" not in html and "{% comment" not in html


def test_the_simulator_banner_shows_only_when_the_simulator_answers(client, alice, settings):
    settings.PLAYGROUND_USE_SIMULATOR = True
    assert 'data-testid="simulator-banner"' in client.get("/new/").content.decode()
    settings.PLAYGROUND_USE_SIMULATOR = False
    assert 'data-testid="simulator-banner"' not in client.get("/new/").content.decode()


def test_an_empty_message_is_refused_in_place(client, alice):
    response = client.post("/new/send/", {"text": "   \n"}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    assert 'data-testid="error"' in html and "Type a message or attach a file first." in html
    assert Conversation.objects.count() == 0


def test_a_too_long_message_is_refused_and_its_text_kept(client, alice):
    text = "x" * 100_001
    response = client.post("/new/send/", {"text": text}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "at most 100000 characters" in html
    assert text in html


def test_the_page_never_contains_the_api_key(client, alice, settings):
    settings.PLAYGROUND_API_KEY = "sk-secret-never-shown"
    conversation = Conversation.objects.create(owner=alice, title="Hello")
    for url in ("/new/", f"/c/{conversation.pk}/"):
        assert "sk-secret-never-shown" not in client.get(url).content.decode()


def test_pages_send_a_strict_content_security_policy(client, alice):
    policy = client.get("/new/").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    # Scripts from the site only; WebAssembly may be compiled (a call's speech detection),
    # nothing evaluated or inline.
    assert directives["script-src"].split() == ["'self'", "'wasm-unsafe-eval'"]
    sources = {source for value in directives.values() for source in value.split()}
    assert not sources & {"'unsafe-inline'", "'unsafe-eval'"}


def test_the_conversation_shows_its_token_and_cost_totals(client, alice):
    from chat.models import Message

    conversation = Conversation.objects.create(owner=alice, title="Costs")
    for prompt, completion, usd in ((10, 20, 0.001), (30, 40, 0.002)):
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            content="x",
            usage={"prompt_tokens": prompt, "completion_tokens": completion},
            cost={"usd_spent": usd},
        )
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "40 → 60 tokens · $0.00300" in html


def test_a_reply_cost_is_written_plainly():
    from chat.models import Message

    def shown(cost):
        return Message(cost=cost).usd_spent

    assert shown({"usd_spent": 7.6e-06}) == "0.0000076"
    assert shown({"usd_spent": 0.0001}) == "0.0001"
    assert shown({"usd_spent": 1.25}) == "1.25"
    assert shown({"usd_spent": 0}) == "0"
    assert shown({"usd_spent": None}) is None
    assert shown({"credits_used": 3}) is None
    assert shown(None) is None


def test_a_reply_footer_gives_each_figure_it_has():
    from datetime import UTC, datetime, timedelta

    from chat.models import Message

    started = datetime(2026, 1, 1, tzinfo=UTC)
    reply = Message(
        role="assistant",
        usage={
            "prompt_tokens": 12,
            "completion_tokens": 40,
            "completion_tokens_details": {"audio_tokens": 30, "text_tokens": 10},
        },
        cost={"usd_spent": 7.6e-06},
        started_at=started,
        first_token_at=started + timedelta(seconds=0.25),
        finished_at=started + timedelta(seconds=2.25),
        finish_reason="length",
    )
    assert reply.facts == [
        ("Prompt tokens → completion tokens", "12 → 40 tokens"),
        ("Time to first token", "0.25 s to first token"),
        ("Total time", "2.2 s"),
        ("", "20 tok/s"),
        ("Cost reported by the API", "$0.0000076"),
        ("", "audio out 30"),
        ("", "text out 10"),
        ("", "finish: length"),
    ]
    assert Message(role="assistant", finish_reason="stop").facts == []


def _long_conversation(owner, pairs: int) -> Conversation:
    from chat.models import Attachment, Message

    conversation = Conversation.objects.create(owner=owner, title="Long")
    parent = None
    for i in range(pairs):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"Question {i}"
        )
        Attachment.objects.create(
            owner=owner,
            conversation=conversation,
            message=question,
            key=f"k{i}-{pairs}",
            status="ready",
            kind="image",
            original_name="a.png",
        )
        parent = Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            content=f"Answer {i}",
            html=f"<p>Answer {i}</p>",
            usage={"prompt_tokens": 1, "completion_tokens": 2},
        )
    return conversation


def test_a_conversation_renders_with_the_same_number_of_queries_however_long(client, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for pairs in (3, 30):
        conversation = _long_conversation(alice, pairs)
        client.get(f"/c/{conversation.pk}/")  # warm: the session and caches settle
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/c/{conversation.pk}/")
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="message"') == 2 * pairs
        counts.append([q["sql"][:90] for q in queries.captured_queries])
    assert len(counts[0]) == len(counts[1]), "\n".join(counts[1])
    assert len(counts[1]) <= 12


def test_the_page_shows_view_code_without_loading_any_request_body(client, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Message

    conversation = _long_conversation(alice, 3)
    Message.objects.filter(conversation=conversation, role="assistant").update(
        request={"model": "m", "messages": [{"role": "user", "content": "x" * 1000}]}
    )
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert page.count('data-testid="view-code"') == 3
    assert page.count('data-testid="attachment"') == 3  # one image per question
    body = re.compile(r'"chat_message"\."request"(?! IS NOT NULL)')  # the column, not the test
    assert [q["sql"] for q in queries.captured_queries if body.search(q["sql"])] == []


def test_tool_call_replies_render_with_the_same_number_of_queries_however_many(client, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Message

    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    counts = []
    for pairs in (2, 20):
        conversation = Conversation.objects.create(owner=alice, title=f"Tools {pairs}")
        parent = None
        for i in range(pairs):
            question = Message.objects.create(
                conversation=conversation, parent=parent, role="user", content=f"Q{i}"
            )
            parent = Message.objects.create(
                conversation=conversation,
                parent=question,
                role="assistant",
                status="complete",
                tool_calls=[call],
            )
        Conversation.objects.filter(pk=conversation.pk).update(current=parent)
        client.get(f"/c/{conversation.pk}/")
        with CaptureQueriesContext(connection) as queries:
            page = client.get(f"/c/{conversation.pk}/").content.decode()
        counts.append(len(queries.captured_queries))
        # Only the last reply still waits for its tool results: the others were followed up.
        assert page.count('data-testid="send-tool-results"') == 1
        assert page.count('data-testid="tool-call"') == pairs
    assert counts[0] == counts[1]


def _reply(alice, **fields):
    from chat.models import Message

    conversation = Conversation.objects.create(owner=alice, title="Replies")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", **fields
    )
    Conversation.objects.filter(pk=conversation.pk).update(current=reply)
    return conversation, reply


def _article(page: str, message) -> str:
    start = page.index(f'id="message-{message.pk}"')
    return page[start : page.index("</article>", start)]


@pytest.mark.parametrize("status", ["error", "stopped", "interrupted"])
def test_an_unfinished_reply_offers_retry_only_and_no_unmeasured_figures(client, alice, status):
    from django.utils import timezone

    now = timezone.now()
    conversation, reply = _reply(
        alice,
        status=status,
        content="",
        started_at=now,
        finished_at=now,
        error={"kind": "server_error", "status": 500, "message": "Boom."},
    )
    article = _article(client.get(f"/c/{conversation.pk}/").content.decode(), reply)
    assert article.count('data-testid="retry"') == 1
    assert 'data-testid="regenerate"' not in article
    assert "0.0 s" not in article and "tok/s" not in article


def test_a_finished_reply_offers_regenerate_and_its_measured_time(client, alice):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    conversation, reply = _reply(
        alice,
        status="complete",
        content="Hello",
        html="<p>Hello</p>",
        started_at=now,
        first_token_at=now + timedelta(seconds=0.5),
        finished_at=now + timedelta(seconds=2),
    )
    article = _article(client.get(f"/c/{conversation.pk}/").content.decode(), reply)
    assert 'data-testid="regenerate"' in article and 'data-testid="retry"' not in article
    assert "2.0 s" in article


WEATHER = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def test_a_reply_of_only_tool_calls_has_no_empty_reply_placeholder(client, alice):
    conversation, reply = _reply(alice, status="complete", content="", tool_calls=[WEATHER])
    article = _article(client.get(f"/c/{conversation.pk}/").content.decode(), reply)
    assert "(empty reply)" not in article
    assert 'data-testid="tool-call"' in article and "get_weather" in article


def test_a_tool_result_is_labelled_with_the_function_it_answers(client, alice):
    from chat.models import Message

    conversation, reply = _reply(alice, status="complete", content="", tool_calls=[WEATHER])
    result = Message.objects.create(
        conversation=conversation,
        parent=reply,
        role="tool",
        content='{"temperature": 21}',
        tool_call_id="call_1",
    )
    Conversation.objects.filter(pk=conversation.pk).update(current=result)
    article = _article(client.get(f"/c/{conversation.pk}/").content.decode(), result)
    assert 'data-testid="tool-result-label"' in article
    assert re.search(r"Result of\s*<code>get_weather</code>", article)


# Icons drawn from an emoji font show as empty boxes where none is installed.
EMOJI = re.compile("[\u2300-\u2317\u2319-\u23ff\u25a0-\u25ff\u2600-\u27bf\U0001f000-\U0001faff]")


def test_the_chat_page_draws_its_icons_without_emoji(client, alice):
    conversation, reply = _reply(alice, status="error", content="", tool_calls=[WEATHER])
    Conversation.objects.filter(pk=conversation.pk).update(pinned=True)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "📌" not in page and "🔧" not in page
    assert EMOJI.findall(page) == []
    assert "<svg" in page


def test_the_scripts_and_styles_add_no_emoji_icons():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for name in ("chat.js", "attachments.js", "speech.js", "shortcuts.js", "theme.js", "app.css"):
        text = (root / "static" / "chat" / name).read_text()
        assert EMOJI.findall(text) == [], name


def test_import_is_an_entry_that_opens_the_file_picker_not_a_file_control(client, alice):
    page = client.get("/new/").content.decode()
    assert 'data-action="choose-import"' in page
    form = page[page.index('data-testid="import-form"') :]
    form = form[: form.index("</form>")]
    assert 'type="file"' in form and 'class="visually-hidden"' in form
    assert 'data-testid="import"' in form  # shown once a file is chosen
