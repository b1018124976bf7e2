"""A turn of a conversation: the person's message and the streaming reply row that answers it,
saved together, and the frames that tell the open pages about them.

Sending is the same whichever way the message came (the page's WebSocket, or a form post).
"""

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from . import branches
from .attachments import signed_url
from .forms import ComposerForm
from .models import Attachment, Conversation, Message, load_attachments, title_from_text
from .payloads import build_request, elided
from .rendering import message_html


def default_settings(user) -> dict:
    preset = user.presets.filter(is_default=True).first()
    return dict(preset.settings) if preset else {}


def take_turn(user, conversation_id: int | None, data):
    """Validate the composer and, if it is right, save the turn: (conversation, its two new
    messages, the request body, the conversation's messages). The pages are told by `announce`,
    which renders the new messages while the request is on its way upstream."""
    form = ComposerForm(data, user=user)
    if not form.is_valid():
        return form, None
    conversation, messages, payload, everything = create_turn(
        user, conversation_id, form.cleaned_data["text"], form.cleaned_data["attachments"]
    )
    return form, (conversation, messages, payload, everything)


# What the message tree and a request body need of each message (not the saved requests,
# usage or rendered HTML, which grow with every reply).
TURN_FIELDS = ("conversation_id", "parent_id", "role", "content", "tool_calls", "tool_call_id")


def begin_reply(
    conversation: Conversation,
    parent: Message,
    everything: list[Message] | None = None,
    reply_settings: dict | None = None,
) -> tuple[Message, dict]:
    """Create the streaming assistant row that answers `parent`, and its request body; the
    conversation now shows the path through it. `everything`: the conversation's messages
    (with TURN_FIELDS), if the caller has them; `reply_settings`: this reply's settings, if not
    the conversation's (a call's spoken reply)."""
    now = timezone.now()
    if everything is None:
        everything = list(conversation.messages.only(*TURN_FIELDS))
    path = branches.path_to(everything, parent)
    files: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message__in=[m.pk for m in path]):
        files.setdefault(attachment.message_id, []).append(attachment)
    media_url = signed_url if settings.PLAYGROUND_MEDIA_DELIVERY == "url" else None
    payload = build_request(
        path,
        conversation.settings if reply_settings is None else reply_settings,
        settings.PLAYGROUND_MODEL,
        files,
        media_url,
    )
    assistant = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=payload["model"],
        request=elided(payload),
        started_at=now,
        checkpoint_at=now,
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=now, current=assistant)
    conversation.current = assistant
    return assistant, payload


@transaction.atomic
def create_turn(
    user,
    conversation_id: int | None,
    text: str,
    attachments: list[Attachment],
    reply_settings=None,
):
    """Save the person's message and the reply row; `reply_settings`: a function of the
    conversation's settings giving the reply's, if they differ (a call's)."""
    if conversation_id is None:
        title = title_from_text(text or " ".join(a.original_name for a in attachments))
        conversation = Conversation.objects.create(
            owner=user, title=title, settings=default_settings(user)
        )
    else:
        conversation = get_object_or_404(
            Conversation.objects.select_for_update(), pk=conversation_id, owner=user
        )
    everything = list(conversation.messages.only(*TURN_FIELDS))
    last = branches.current_leaf(everything, conversation.current_id)
    if not conversation.title:
        conversation.title = title_from_text(text or " ".join(a.original_name for a in attachments))
        conversation.save(update_fields=["title"])
    user_message = Message.objects.create(
        conversation=conversation, parent=last, role=Message.Role.USER, content=text
    )
    if attachments:  # one update for them all
        Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(
            conversation=conversation, message=user_message
        )
    for attachment in attachments:
        attachment.conversation = conversation
        attachment.message = user_message
    everything += [user_message]
    assistant, payload = begin_reply(
        conversation,
        user_message,
        everything,
        None if reply_settings is None else reply_settings(conversation.settings),
    )
    # Both new rows' attachments are known: the pages' frames need not look them up.
    user_message._shown_attachments = sorted(attachments, key=lambda a: (a.created_at, a.pk))
    assistant._shown_attachments = []
    return conversation, [user_message, assistant], payload, [*everything, assistant]


async def announce(
    conversation: Conversation, messages: list[Message], everything: list[Message] | None = None
) -> None:
    """Tell every open page of the conversation about new messages (`insert_frames`, rendered
    in a worker thread). A job runs it once its request has gone upstream (generation.start):
    the page sees the messages as soon as before, and the model's first token no longer waits
    for their rendering, which happens while the request travels."""
    frames = await database_sync_to_async(insert_frames, thread_sensitive=False)(
        messages, everything
    )
    layer = get_channel_layer()
    for frame in frames:
        await layer.group_send(conversation.group_name, frame)


def insert_frames(messages: list[Message], everything: list[Message] | None = None) -> list[dict]:
    """Frames that add `messages` to the pages; `everything`: the conversation's messages, if
    the caller has them (their siblings are found there instead of by a query each)."""
    # One query, not one per message (none if the caller gave them their attachments).
    load_attachments([m for m in messages if not hasattr(m, "_shown_attachments")])
    return [
        {
            "type": "message.insert",
            "message": message.pk,
            "streaming": message.status == Message.Status.STREAMING,
            "html": message_html(
                message,
                "append",
                None
                if everything is None
                else [m for m in everything if m.parent_id == message.parent_id],
            ),
        }
        for message in messages
    ]
