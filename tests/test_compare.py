"""Compare: one message to two to four columns, each its own model and settings, streaming
together as sibling replies; Stop stops all; Keep makes the branch; a column's Retry; "Compare
with..."; a share shows the columns; bad columns are refused in place."""

import asyncio
import time

import pytest

from chat import compare
from chat.models import Comparison, Conversation, Message
from chat.simulator.schema import request_errors
from tests.test_branches import wait_final
from tests.test_relay import logged_in, new_conversation, open_page, send

pytestmark = pytest.mark.django_db(transaction=True)

PLUS = "alibaba/qwen3.5-omni-plus"


async def columns_sent(page, text: str, columns: list[dict]) -> dict:
    answered = len(page.answers)
    await page.ws.send_json_to({"action": "compare", "text": text, "columns": columns})
    await page.receive_until(lambda p: len(p.answers) > answered)
    return page.answers[answered]


async def replies_of(conversation) -> list[Message]:
    return [
        m
        async for m in Message.objects.filter(conversation=conversation, role="assistant").order_by(
            "column", "pk"
        )
    ]


async def test_one_message_to_three_columns_streams_three_siblings_with_their_settings(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"system_prompt": "Be brief.", "temperature": 0.9}
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    columns = [
        {"model": "", "temperature": "0.1"},
        {"model": PLUS, "max_tokens": "300"},
        {"model": PLUS, "thinking": "on"},
    ]
    firsts: dict[int, float] = {}
    answer = await columns_sent(page, "Compare me [sim:delay=0.03] [sim:length=40]", columns)
    assert answer == {"type": "sent"}

    replies = await replies_of(conversation)
    assert len(replies) == 3 and len({r.parent_id for r in replies}) == 1
    assert [r.column for r in replies] == [0, 1, 2]

    async def until_all_final():
        while not all(r.pk in page.final for r in replies):
            page.apply(await page.ws.receive_from(timeout=20))
            for r in replies:
                streamed = page.text.get(r.pk) or page.reasoning.get(r.pk)
                if streamed and r.pk not in firsts:
                    firsts[r.pk] = time.time()

    await until_all_final()
    finals = [await wait_final(r.pk) for r in replies]
    assert all(r.status == "complete" for r in finals)
    # All three streamed at once: each column's first words reached the page before any
    # column had finished (40 tokens 30 ms apart: 1.2 s each, 3.6 s one after another) ...
    first_end = min(r.finished_at.timestamp() for r in finals)
    assert all(firsts[r.pk] < first_end for r in finals)
    # ... and each within about a frame interval of its own upstream's first token.
    for r in finals:
        assert firsts[r.pk] - r.first_token_at.timestamp() < 0.05 + 0.25
    # Their own settings, on top of the conversation's, each a schema-valid request.
    for r in finals:
        assert request_errors(r.request) == []
        assert r.request["messages"][0] == {"role": "system", "content": "Be brief."}
    assert finals[0].request["temperature"] == 0.1 and "max_tokens" not in finals[0].request
    assert finals[0].request["model"] == "alibaba/qwen3.5-omni-flash"
    assert finals[1].request["model"] == PLUS and finals[1].request["max_tokens"] == 300
    assert finals[1].request["temperature"] == 0.9
    assert finals[2].request["enable_thinking"] is True
    assert finals[2].reasoning  # the simulator thinks when asked to

    comparison = await Comparison.objects.aget(conversation=conversation)
    assert comparison.kept_id is None and len(comparison.columns) == 3
    assert comparison.columns[1]["label"].startswith(PLUS)

    # The page shows the columns side by side, with the summary once all are done.
    html = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert html.count('data-testid="compare-column"') == 3
    assert 'data-testid="compare-summary"' in html and "First token" in html
    await page.ws.disconnect()


async def test_stop_stops_every_column(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    columns = [{"model": ""}, {"model": PLUS}, {"temperature": "1"}]
    assert await columns_sent(page, "Slow [sim:delay=0.2] [sim:length=200]", columns) == {
        "type": "sent"
    }
    replies = await replies_of(conversation)
    await page.receive_until(lambda p: all(p.text.get(r.pk) for r in replies))
    await page.ws.send_json_to({"action": "stop"})
    finals = [await wait_final(r.pk) for r in replies]
    assert [r.status for r in finals] == ["stopped"] * 3
    assert all(0 < len(r.content) for r in finals)
    await page.ws.disconnect()


async def test_keep_makes_the_next_message_follow_the_kept_reply(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    await columns_sent(page, "Pick one [sim:delay=0]", [{"model": ""}, {"model": PLUS}])
    first, second = await replies_of(conversation)
    await page.receive_until_final(first.pk)
    await page.receive_until_final(second.pk)

    response = await client.post(
        f"/c/{conversation.pk}/m/{second.pk}/keep/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    assert (await Comparison.objects.aget(conversation=conversation)).kept_id == second.pk
    html = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert 'data-testid="compare-column"' not in html  # decided: an ordinary reply again
    assert 'class="branch-count">2/2<' in html

    follow = await send(client, conversation, "And then? [sim:delay=0]")
    follow = await wait_final(follow.pk)
    history = follow.request["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    kept = await Message.objects.aget(pk=second.pk)
    assert history[1]["content"] == kept.content
    assert (await Message.objects.aget(pk=follow.parent_id)).parent_id == second.pk
    await page.ws.disconnect()


async def test_a_column_retries_with_its_own_settings_in_its_place(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    columns = [{"model": ""}, {"model": PLUS, "temperature": "0.4"}]
    await columns_sent(page, "Again please [sim:delay=0]", columns)
    first, second = await replies_of(conversation)
    await wait_final(first.pk)
    await wait_final(second.pk)

    response = await client.post(
        f"/c/{conversation.pk}/m/{second.pk}/compare/retry/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    again = await Message.objects.filter(conversation=conversation, role="assistant").alast()
    again = await wait_final(again.pk)
    assert again.column == 1 and again.comparison_id == second.comparison_id
    assert again.request["model"] == PLUS and again.request["temperature"] == 0.4
    html = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert html.count('data-testid="compare-column"') == 2
    assert f'id="message-{again.pk}"' in html and f'id="message-{second.pk}"' not in html

    await page.ws.disconnect()


async def test_a_columns_retry_sent_twice_answers_once(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    await columns_sent(page, "Slowly [sim:delay=0.05] [sim:length=30]", [{}, {"model": PLUS}])
    first, second = await replies_of(conversation)
    await wait_final(first.pk)
    await wait_final(second.pk)

    retry = f"/c/{conversation.pk}/m/{second.pk}/compare/retry/"
    first_click = await client.post(retry, headers={"HX-Request": "true"})
    second_click = await client.post(retry, headers={"HX-Request": "true"})
    assert first_click.status_code == 204 and second_click.status_code == 422
    assert "still streaming" in second_click.content.decode()
    column = Message.objects.filter(comparison_id=second.comparison_id, column=1)
    assert await column.acount() == 2  # the first answer and one retry
    await wait_final((await column.alast()).pk)
    await page.ws.disconnect()


async def test_compare_with_answers_an_existing_reply_again_in_columns(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    reply = await send(client, conversation, "Once [sim:delay=0]")
    await wait_final(reply.pk)
    dialog = await client.get(
        f"/c/{conversation.pk}/m/{reply.pk}/compare/", headers={"HX-Request": "true"}
    )
    assert dialog.status_code == 200 and b'data-testid="compare-again"' in dialog.content
    data = {
        "columns-TOTAL_FORMS": "2",
        "columns-INITIAL_FORMS": "0",
        "columns-0-model": PLUS,
        "columns-1-temperature": "0.2",
    }
    response = await client.post(
        f"/c/{conversation.pk}/m/{reply.pk}/compare/", data, headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    replies = [r for r in await replies_of(conversation) if r.pk != reply.pk]
    assert len(replies) == 2 and all(r.parent_id == reply.parent_id for r in replies)
    finals = [await wait_final(r.pk) for r in replies]
    assert finals[0].request["model"] == PLUS and finals[1].request["temperature"] == 0.2


async def test_wrong_columns_are_refused_in_place_and_nothing_is_saved(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    one = await columns_sent(page, "Hi", [{"model": ""}])
    assert one["type"] == "refused" and "2 to 4 columns" in one["html"]
    five = [{"model": ""}] * 5
    await page.ws.send_json_to({"action": "compare", "text": "Hi", "columns": five})
    await page.receive_until(lambda p: len(p.answers) > 1)
    assert page.answers[1]["type"] == "error"
    for malformed in ("two", [{"model": ""}, "junk"], [None, None], {"0": {}}):
        seen = len(page.answers)
        await page.ws.send_json_to({"action": "compare", "text": "Hi", "columns": malformed})
        await page.receive_until(lambda p, seen=seen: len(p.answers) > seen)
        assert page.answers[seen]["type"] == "error", malformed
    wrong = await columns_sent(
        page, "Hi", [{"model": "no/such-model"}, {"temperature": "7", "max_tokens": "x"}]
    )
    assert wrong["type"] == "refused"
    assert "Column 1 · Model" in wrong["html"] and "Column 2 · Temperature" in wrong["html"]
    assert "Column 2 · Max tokens" in wrong["html"]
    clash = await columns_sent(page, "Hi", [{}, {"audio": "on", "thinking": "on"}])
    assert clash["type"] == "refused" and "Column 2" in clash["html"]
    assert "speak and think" in clash["html"] and "Column 1" not in clash["html"]
    empty = await columns_sent(page, "   ", [{"model": ""}, {"model": PLUS}])
    assert empty["type"] == "refused"
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await Comparison.objects.filter(conversation=conversation).aexists()
    await page.ws.disconnect()


async def test_another_person_cannot_compare_keep_or_retry_in_a_conversation(
    upstream_is_simulator, alice, bob
):
    alice_client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(alice_client, conversation.pk)
    await columns_sent(page, "Mine [sim:delay=0]", [{"model": ""}, {"model": PLUS}])
    first, second = await replies_of(conversation)
    await wait_final(first.pk)
    await wait_final(second.pk)
    bob_client = await logged_in(bob)
    base = f"/c/{conversation.pk}"
    posts = [
        f"{base}/compare/",
        f"{base}/m/{second.pk}/keep/",
        f"{base}/m/{second.pk}/compare/",
        f"{base}/m/{second.pk}/compare/retry/",
    ]
    for url in posts:
        response = await bob_client.post(url, {"columns-TOTAL_FORMS": "2", "text": "x"})
        assert response.status_code == 404, url
    assert (await bob_client.get(f"{base}/m/{second.pk}/compare/")).status_code == 404
    assert (await Comparison.objects.aget(conversation=conversation)).kept_id is None
    assert await Message.objects.filter(conversation=conversation).acount() == 3
    await page.ws.disconnect()


async def test_a_share_of_an_undecided_comparison_shows_its_columns_read_only(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    await columns_sent(page, "Share us [sim:delay=0]", [{"model": ""}, {"model": PLUS}])
    replies = await replies_of(conversation)
    for reply in replies:
        await wait_final(reply.pk)
    response = await client.post(f"/c/{conversation.pk}/share/", {"visibility": "anyone"})
    assert response.status_code in (200, 302)
    share = await conversation.shares.alast()
    assert share.message_ids[-2:] == [replies[0].pk, replies[1].pk]
    html = (await client.get(f"/s/{share.token}/")).content.decode()
    assert html.count('data-testid="compare-column"') == 2
    assert 'data-testid="keep"' not in html
    await page.ws.disconnect()


def test_a_columns_settings_are_the_base_with_its_quick_settings_over_it():
    base = {"temperature": 0.9, "enable_thinking": True, "thinking_budget": 50, "seed": 3}
    assert compare.column_settings(base, {"thinking": "off", "temperature": 0.1}) == {
        "temperature": 0.1,
        "seed": 3,
    }
    spoken = compare.column_settings({}, {"audio": "on", "model": "m", "max_tokens": 9})
    assert spoken == {
        "model": "m",
        "max_tokens": 9,
        "modalities": ["text", "audio"],
        "audio": {"voice": "Tina", "format": "wav"},
    }
    assert compare.column_settings(spoken, {"audio": "off"}) == {"model": "m", "max_tokens": 9}


def test_a_socket_frames_columns_post_only_short_values():
    data = compare.columns_data([{"model": "m", "temperature": 0.5, "x": "y"}, "junk"])
    assert data["columns-TOTAL_FORMS"] == "2" and data["columns-0-temperature"] == "0.5"
    assert "columns-0-x" not in data and "columns-1-model" not in data
    assert compare.columns_data([{"model": "m" * 500}]).get("columns-0-model") is None
    assert compare.columns_data("nope")["columns-TOTAL_FORMS"] == "0"


def test_the_summary_names_the_fastest_cheapest_and_longest_once_all_finished():
    from datetime import datetime, timedelta

    t = datetime(2026, 1, 1)

    def reply(first, end, cost, tokens, status="complete"):
        return Message(
            status=status,
            started_at=t,
            first_token_at=t + timedelta(seconds=first),
            finished_at=t + timedelta(seconds=end),
            cost={"usd_spent": cost},
            usage={"completion_tokens": tokens},
        )

    a = compare.Column(1, "a", reply(0.5, 3, 0.002, 100))
    b = compare.Column(2, "b", reply(0.2, 4, 0.001, 300))
    rows = dict(compare.summary([a, b]))
    assert rows == {"First token": b, "Finished first": a, "Cheapest": b, "Longest": b}
    c = compare.Column(3, "c", reply(0, 0, 0, 0, status="streaming"))
    assert compare.summary([a, b, c]) == []


def test_a_conversation_can_be_deleted_with_its_comparisons(alice):
    conversation = Conversation.objects.create(owner=alice, title="x")
    prompt = Message.objects.create(conversation=conversation, role="user", content="q")
    Comparison.objects.create(conversation=conversation, prompt=prompt, columns=[])
    conversation.delete()
    assert not Comparison.objects.exists()


async def test_an_image_goes_to_every_column_streamed_from_storage(
    upstream_is_simulator, alice, tmp_path
):
    from chat.payloads import InlineMedia
    from tests.media_files import make_image
    from tests.test_media_to_model import upload

    path = tmp_path / "sample.png"
    make_image(path, "PNG")
    client = await logged_in(alice)
    status = await upload(client, path)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    answered = len(page.answers)
    await page.ws.send_json_to(
        {
            "action": "compare",
            "text": "What is this? [sim:delay=0]",
            "attachments": [status["key"]],
            "columns": [{"model": ""}, {"model": PLUS}],
        }
    )
    await page.receive_until(lambda p: len(p.answers) > answered)
    assert page.answers[answered] == {"type": "sent"}
    finals = [await wait_final(r.pk) for r in await replies_of(conversation)]
    size = path.stat().st_size
    for reply in finals:
        assert reply.status == "complete"
        [part] = [p for p in reply.request["messages"][-1]["content"] if p["type"] != "text"]
        assert part["type"] == "image_url"
        assert "image/png" in reply.content and f"{size:,} bytes" in reply.content

    # Each column's body holds a stand-in that streams the file as the request is written.
    taken = await asyncio.to_thread(  # saved, not started: only its bodies are looked at
        compare._again,
        conversation.pk,
        finals[0].parent_id,
        [{"label": "a", "settings": {}}, {"label": "b", "settings": {}}],
    )
    for payload in taken.payloads:
        [part] = [p for p in payload["messages"][-1]["content"] if p["type"] != "text"]
        assert isinstance(part["image_url"]["url"], InlineMedia)
    await page.ws.disconnect()


async def test_a_new_chats_first_message_can_go_to_columns(upstream_is_simulator, alice):
    from tests.test_new_chat_socket import PartsPage, answer, open_new_chat

    client = await logged_in(alice)
    page = PartsPage((await open_new_chat(client)).ws)
    await page.ws.send_json_to(
        {
            "action": "compare",
            "text": "First, side by side [sim:delay=0.005]",
            "columns": [{"model": ""}, {"model": PLUS, "temperature": "0.3"}],
        }
    )
    created = await answer(page, "created")
    assert (await answer(page, "sent", "refused"))["type"] == "sent"
    conversation = await Conversation.objects.aget(pk=created["id"])
    assert conversation.owner_id == alice.pk
    replies = await replies_of(conversation)
    assert [r.column for r in replies] == [0, 1]
    for reply in replies:
        assert await page.receive_until_final(reply.pk) == "complete"
    # The conversation's composer keeps the columns as they were sent.
    assert f'hx-post="/c/{conversation.pk}/compare/"' in page.composer
    assert 'value="0.3"' in page.composer and f'value="{PLUS}" selected' in page.composer
    parts = await page.receive_parts()
    assert 'data-testid="compare"' in parts and 'aria-pressed="true"' in parts
    html = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert html.count('data-testid="compare-column"') == 2

    refused_page = PartsPage((await open_new_chat(client)).ws)
    await refused_page.ws.send_json_to(
        {"action": "compare", "text": "One column", "columns": [{"model": ""}]}
    )
    refused = await answer(refused_page, "created", "refused")
    assert refused["type"] == "refused" and "2 to 4 columns" in refused["html"]
    assert await Conversation.objects.acount() == 1
    await page.ws.disconnect()
    await refused_page.ws.disconnect()


async def test_without_scripts_a_new_chat_posts_its_columns(upstream_is_simulator, alice):
    client = await logged_in(alice)
    page = (await client.get("/new/?compare=3")).content.decode()
    assert 'action="/new/compare/"' in page and 'name="columns-TOTAL_FORMS" value="3"' in page
    data = {
        "text": "Posted [sim:delay=0]",
        "columns-TOTAL_FORMS": "2",
        "columns-INITIAL_FORMS": "0",
        "columns-1-model": PLUS,
    }
    response = await client.post("/new/compare/", data)
    conversation = await Conversation.objects.aget()
    assert response.status_code == 302 and response["Location"] == f"/c/{conversation.pk}/"
    for reply in await replies_of(conversation):
        assert (await wait_final(reply.pk)).status == "complete"
    refused = await client.post("/new/compare/", {**data, "columns-TOTAL_FORMS": "1"})
    assert refused.status_code == 422 and "2 to 4 columns" in refused.content.decode()
    assert await Conversation.objects.acount() == 1


def test_decided_comparisons_cost_the_page_no_query_each(alice_client, alice):
    """Each decided comparison's replies are on the page like any reply: the page's queries
    do not grow with them (a reply rendered alone looks its comparison up)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    conversation = Conversation.objects.create(owner=alice, title="x")

    def decided(parent):
        prompt = Message.objects.create(conversation=conversation, parent=parent, role="user")
        comparison = Comparison.objects.create(conversation=conversation, prompt=prompt)
        replies = [
            Message.objects.create(
                conversation=conversation,
                parent=prompt,
                role="assistant",
                content=f"A{n}",
                html=f"<p>A{n}</p>",
                comparison=comparison,
                column=n,
            )
            for n in range(2)
        ]
        comparison.kept = replies[1]
        comparison.save()
        Conversation.objects.filter(pk=conversation.pk).update(current=replies[1])
        return replies[1]

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice_client.get(f"/c/{conversation.pk}/").status_code == 200
        return len(captured)

    last = decided(None)
    one = queries()
    for _ in range(3):
        last = decided(last)
    assert queries() == one
