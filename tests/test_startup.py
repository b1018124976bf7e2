import pytest
from django.core.management import call_command

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_interrupt_streams_marks_left_over_streaming_replies_and_keeps_their_text(
    django_user_model, capsys
):
    alice = django_user_model.objects.create_user("alice")
    conversation = Conversation.objects.create(owner=alice)
    orphan = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="**Half**"
    )
    done = Message.objects.create(conversation=conversation, role="assistant", content="Done")

    call_command("interrupt_streams")

    orphan.refresh_from_db()
    done.refresh_from_db()
    assert orphan.status == "interrupted" and orphan.content == "**Half**"
    assert "<strong>Half</strong>" in orphan.html
    assert orphan.error["kind"] == "interrupted"
    assert done.status == "complete"
    assert "1 interrupted" in capsys.readouterr().out


def test_with_a_lease_only_silent_streams_are_interrupted(django_user_model):
    from datetime import timedelta

    from django.utils import timezone

    alice = django_user_model.objects.create_user("alice")
    conversation = Conversation.objects.create(owner=alice)
    fresh = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        checkpoint_at=timezone.now(),
    )
    stale = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        checkpoint_at=timezone.now() - timedelta(minutes=5),
    )
    call_command("interrupt_streams", "--lease", "30")
    fresh.refresh_from_db()
    stale.refresh_from_db()
    assert fresh.status == "streaming"
    assert stale.status == "interrupted"
