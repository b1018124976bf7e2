"""'View code' gives runnable code that reproduces the reply, with the key never shown."""

import asyncio
import os
import subprocess
import sys

import pytest

from chat.models import Conversation, Message
from tests.test_relay import logged_in, new_conversation, open_page, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def via_simulator(settings, simulator_url):
    settings.PLAYGROUND_USE_SIMULATOR = False
    settings.PLAYGROUND_API_BASE = simulator_url
    settings.PLAYGROUND_API_KEY = "sk-test-never-shown"
    return simulator_url


@pytest.fixture
async def alice(django_user_model):
    return await django_user_model.objects.acreate(username="alice")


async def test_the_python_sample_runs_against_the_simulator_and_gets_the_same_reply(
    via_simulator, alice
):
    client = await logged_in(alice)
    conversation = await new_conversation(alice)
    conversation.settings = {"temperature": 0.5, "seed": 3}
    await conversation.asave()
    page = await open_page(client, conversation.pk)
    reply = await send(client, conversation, "Reproduce me [sim:delay=0]")
    await page.receive_until_final(reply.pk)
    await page.ws.disconnect()
    await reply.arefresh_from_db()

    response = await client.get(f"/c/{conversation.pk}/m/{reply.pk}/code/")
    html = response.content.decode()
    assert "sk-test-never-shown" not in html
    assert "PLAYGROUND_API_KEY" in html
    for language in ("curl", "python", "javascript"):
        assert f'data-testid="code-{language}"' in html

    from chat import code_samples

    code = code_samples.python(f"{via_simulator}/chat/completions", reply.request, True)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        env={**os.environ, "PLAYGROUND_API_KEY": "anything"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == reply.content.strip()


async def test_another_user_cannot_view_the_code(via_simulator, alice, django_user_model):
    conversation = await Conversation.objects.acreate(owner=alice)
    reply = await Message.objects.acreate(
        conversation=conversation, role="assistant", request={"model": "m", "messages": []}
    )
    bob = await django_user_model.objects.acreate(username="bob")
    client = await logged_in(bob)
    response = await client.get(f"/c/{conversation.pk}/m/{reply.pk}/code/")
    assert response.status_code == 404
