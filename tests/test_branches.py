"""Messages form a tree: regenerate and edit make siblings, arrows switch between them, and the
request sent upstream carries only the path shown."""

import asyncio
import html

import pytest

from chat import branches
from chat.models import Attachment, Message
from tests.test_relay import logged_in, new_conversation, open_page, send

pytestmark = pytest.mark.django_db(transaction=True)


def m(pk, parent=None, role="user"):
    return Message(pk=pk, parent_id=parent, role=role)


def test_the_path_runs_from_the_root_to_the_current_message():
    tree = [m(1), m(2, 1, "assistant"), m(3, 1, "assistant"), m(4, 3), m(5, 4, "assistant")]
    assert [x.pk for x in branches.path_to(tree, tree[4])] == [1, 3, 4, 5]
    assert branches.current_leaf(tree, None).pk == 5
    assert branches.current_leaf(tree, 2).pk == 2


def test_siblings_know_their_place_and_neighbours():
    tree = [m(1), m(2, 1, "assistant"), m(3, 1, "assistant"), m(6, 1, "assistant")]
    found = branches.branches(tree)
    assert found[3] == branches.Branch(index=2, total=3, previous=2, next=6)
    assert 1 not in found  # no siblings, no arrows


def test_switching_to_a_branch_goes_to_its_newest_leaf():
    tree = [m(1), m(2, 1, "assistant"), m(3, 2), m(4, 3, "assistant"), m(5, 3, "assistant")]
    assert branches.newest_leaf(tree, tree[1]).pk == 5
    assert {x.pk for x in branches.subtree(tree, tree[2])} == {3, 4, 5}


async def wait_final(message_id: int) -> Message:
    for _ in range(400):
        message = await Message.objects.aget(pk=message_id)
        if message.status != "streaming":
            return message
        await asyncio.sleep(0.02)
    raise AssertionError("still streaming")


async def test_regenerate_makes_a_sibling_and_arrows_switch_between_them(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    page = await open_page(client, conversation.pk)
    first = await send(client, conversation, "Question one [sim:delay=0]")
    await page.receive_until_final(first.pk)
    follow = await send(client, conversation, "Question two [sim:delay=0]")
    await page.receive_until_final(follow.pk)

    response = await client.post(
        f"/c/{conversation.pk}/m/{first.pk}/retry/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    second = await conversation.messages.filter(role="assistant").alast()
    assert second.parent_id == first.parent_id  # a sibling, not an overwrite
    await page.receive_until_final(second.pk)
    await wait_final(second.pk)

    html = (await client.get(f"/c/{conversation.pk}/")).content.decode()
    assert 'class="branch-count">2/2<' in html
    assert "Question two" not in html  # the other branch's later messages are not shown
    assert f'id="message-{first.pk}"' not in html

    # The request for the next message carries only the path shown.
    third = await send(client, conversation, "Question three [sim:delay=0]")
    await wait_final(third.pk)
    await third.arefresh_from_db()
    contents = [msg["content"] for msg in third.request["messages"]]
    assert "Question one [sim:delay=0]" in contents and "Question three [sim:delay=0]" in contents
    assert "Question two [sim:delay=0]" not in contents

    # Back to the first version: its own later messages come back with it.
    response = await client.post(
        f"/c/{conversation.pk}/m/{first.pk}/switch/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    frame = await page.ws.receive_from(timeout=10)
    while 'id="transcript"' not in frame:
        frame = await page.ws.receive_from(timeout=10)
    assert "Question two" in frame and "Question three" not in frame
    assert 'class="branch-count">1/2<' in frame
    await page.ws.disconnect()


async def test_editing_a_message_sends_a_new_version_and_keeps_the_old(
    upstream_is_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    reply = await send(client, conversation, "Original wording [sim:delay=0]")
    await wait_final(reply.pk)

    response = await client.post(
        f"/c/{conversation.pk}/m/{reply.parent_id}/edit/",
        {"content": "Better wording [sim:delay=0]"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    new_reply = await conversation.messages.filter(role="assistant").alast()
    await wait_final(new_reply.pk)
    edited = await Message.objects.aget(pk=new_reply.parent_id)
    original = await Message.objects.aget(pk=reply.parent_id)
    assert edited.content == "Better wording [sim:delay=0]"
    assert edited.parent_id == original.parent_id and edited.pk != original.pk
    await new_reply.arefresh_from_db()
    assert [m["content"] for m in new_reply.request["messages"]] == [edited.content]

    empty = await client.post(
        f"/c/{conversation.pk}/m/{original.pk}/edit/",
        {"text": "  "},
        headers={"HX-Request": "true"},
    )
    assert empty.status_code == 422 and "Type a message" in empty.content.decode()


def test_the_edit_form_is_fetched_when_edit_is_pressed(alice_client, bob_client, alice):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, title="Edits")
    question = Message.objects.create(
        conversation=conversation, role="user", content="Is <b>this</b> kept?"
    )
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="Yes.",
        status="complete",
    )
    Attachment.objects.create(
        owner=alice,
        conversation=conversation,
        message=question,
        key="e" * 22,
        status="ready",
        kind="image",
        original_name="cat.png",
    )
    Conversation.objects.filter(pk=conversation.pk).update(current=answer)
    url = f"/c/{conversation.pk}/m/{question.pk}/edit/"

    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'hx-get="{url}"' in page
    assert f'id="message-{question.pk}-edit-slot"' in page
    assert "<textarea" not in page.split('id="transcript"')[1].split("</section>")[0]

    form = alice_client.get(url, headers={"HX-Request": "true"})
    assert form.status_code == 200
    html = form.content.decode()
    assert f'hx-post="{url}"' in html
    assert "autofocus>Is &lt;b&gt;this&lt;/b&gt; kept?</textarea>" in html
    assert 'name="keep" value="eeeeeeeeeeeeeeeeeeeeee" checked> Keep cat.png' in html

    assert alice_client.get(url).url == f"/c/{conversation.pk}/"  # not a page of its own
    assert bob_client.get(url, headers={"HX-Request": "true"}).status_code == 404
    answer_url = f"/c/{conversation.pk}/m/{answer.pk}/edit/"
    assert alice_client.get(answer_url, headers={"HX-Request": "true"}).status_code == 404


async def test_deleting_a_message_removes_its_branch_and_files(upstream_is_simulator, alice):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    first = await send(client, conversation, "Keep me [sim:delay=0]")
    await wait_final(first.pk)
    second = await send(client, conversation, "Delete me [sim:delay=0]")
    await wait_final(second.pk)
    doomed_user = await Message.objects.aget(pk=second.parent_id)
    attachment = await Attachment.objects.acreate(
        owner=alice,
        conversation=conversation,
        message=doomed_user,
        key="k" * 22,
        status="ready",
        kind="image",
    )
    from chat.files import working_dir

    folder = working_dir(attachment)
    folder.mkdir(parents=True)
    (folder / "original").write_bytes(b"x")

    response = await client.post(
        f"/c/{conversation.pk}/m/{doomed_user.pk}/delete/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    assert not await Message.objects.filter(pk__in=[doomed_user.pk, second.pk]).aexists()
    assert not await Attachment.objects.filter(pk=attachment.pk).aexists()
    assert not folder.exists()
    await conversation.arefresh_from_db()
    assert conversation.current_id == first.pk  # the path now ends where the branch began


async def test_another_user_cannot_switch_edit_or_delete(
    upstream_is_simulator, alice, django_user_model
):
    conversation = await new_conversation(alice)
    message = await Message.objects.acreate(conversation=conversation, role="user", content="x")
    bob = await django_user_model.objects.acreate(username="bob")
    client = await logged_in(bob)
    for action in ("switch", "edit", "delete", "retry"):
        response = await client.post(
            f"/c/{conversation.pk}/m/{message.pk}/{action}/", {"text": "y"}
        )
        assert response.status_code == 404, action
    assert await Message.objects.filter(pk=message.pk, content="x").aexists()


def test_a_reply_with_no_message_to_answer_cannot_be_regenerated(alice, alice_client):
    """An imported conversation can start with a reply: there is nothing to send again."""
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, title="Imported")
    orphan = Message.objects.create(
        conversation=conversation, role="assistant", content="Hello", status="complete"
    )
    response = alice_client.post(
        f"/c/{conversation.pk}/m/{orphan.pk}/retry/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "This reply has no message to answer, so it can't be regenerated." in html.unescape(
        response.content.decode()
    )
    assert response.headers["HX-Retarget"] == f"#message-{orphan.pk}"
    assert list(conversation.messages.values_list("pk", flat=True)) == [orphan.pk]
    page = alice_client.post(f"/c/{conversation.pk}/m/{orphan.pk}/retry/")
    assert page.status_code == 422
    assert "no message to answer" in page.content.decode()


@pytest.mark.parametrize("text", ["a\x00b", "\x00media0\x00"])
def test_an_edit_with_a_nul_is_refused_in_place_and_nothing_is_sent(alice, alice_client, text):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, title="Edits")
    original = Message.objects.create(conversation=conversation, role="user", content="hi")
    response = alice_client.post(
        f"/c/{conversation.pk}/m/{original.pk}/edit/",
        {"content": text, "keep": ["x\x00y"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()
    assert list(conversation.messages.values_list("pk", flat=True)) == [original.pk]


def test_the_edit_form_of_a_conversation_past_any_id_is_not_found(alice, alice_client):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, title="Edits")
    message = Message.objects.create(conversation=conversation, role="user", content="hi")
    for far in (2**63, 10**30):
        response = alice_client.get(
            f"/c/{far}/m/{message.pk}/edit/", headers={"HX-Request": "true"}
        )
        assert response.status_code == 404
