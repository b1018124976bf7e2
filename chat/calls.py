"""Voice calls: each utterance the page hears (16 kHz WAV from the microphone, or a short video
from the camera with its sound) becomes an ordinary turn of the conversation whose reply is
spoken.

The page (static/chat/call.js) detects speech in the browser and POSTs each utterance whole to
`turn`; the file is saved and checked as any upload is (one request instead of an upload's
three, so the request goes upstream sooner), and the reply is asked for with audio output and
thinking off, whatever the conversation's settings say for typed messages. The reply streams to
the page's socket like any other; interrupting it is the conversation's Stop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from . import admission, generation, turns
from .attachments import human_bytes, save_whole
from .models import Attachment, Conversation
from .settings_form import KNOWN_VOICES

# What the page may send, by the type it declares (the bytes are sniffed all the same).
RECORDING_NAMES = {
    "audio/wav": "utterance.wav",
    "audio/x-wav": "utterance.wav",
    "video/webm": "utterance.webm",
    "video/mp4": "utterance.mp4",
}
THINKING_OFF = gettext_lazy(
    "Thinking is off for the call's replies: the model speaks only with thinking off. "
    "Typed messages keep your settings."
)


def spoken(stored: dict) -> dict:
    """The settings of a call's reply, from the conversation's: audio output on (in its voice,
    or the first known one), thinking off, the rest as they are. Pure."""
    result = {k: v for k, v in stored.items() if k not in ("enable_thinking", "thinking_budget")}
    voice = (stored.get("audio") or {}).get("voice") or KNOWN_VOICES[0]
    result["modalities"] = ["text", "audio"]
    result["audio"] = {"voice": voice, "format": "wav"}
    return result


def notes(stored: dict) -> list[str]:
    """What the call changes of the conversation's settings, said in the call's panel. Pure."""
    return [str(THINKING_OFF)] if stored.get("enable_thinking") else []


def _refused(message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"error": str(message), **extra}, status=status)


@require_POST
async def turn(request: HttpRequest, conversation_id: int) -> JsonResponse:
    """POST /c/<id>/call/turn/: one utterance, the whole file as the body. Answers 201 with the
    ids of the person's message and of the reply (which streams to the page's socket), or an
    error the call's panel shows: 400/413/415 for a recording it cannot take, 422 when the file
    is refused as an upload would be, 503 with Retry-After when the server is busy."""
    user = await request.auser()
    if not user.is_authenticated:
        return _refused(_("You were logged out. Log in again to go on with the call."), 403)
    if not await Conversation.objects.filter(pk=conversation_id, owner=user).aexists():
        raise Http404
    body = request.read()  # read whole by daphne, within the route's limit (request_limits)
    if not body:
        return _refused(_("The recording is empty."), 400)
    declared = (request.content_type or "").lower()
    name = RECORDING_NAMES.get(declared)
    if name is None:
        return _refused(_("Send the utterance as audio/wav, video/webm or video/mp4."), 415)
    if len(body) > settings.PLAYGROUND_MAX_CALL_BYTES:
        limit = human_bytes(settings.PLAYGROUND_MAX_CALL_BYTES)
        return _refused(
            _("An utterance can be at most %(limit)s; this one is larger.") % {"limit": limit}, 413
        )
    try:
        async with admission.turn_slot():
            taken = await sync_to_async(_take, thread_sensitive=False)(
                user, conversation_id, name, body, declared.startswith("video/")
            )
    except (admission.Busy, OperationalError) as error:
        if (retry_after := admission.busy_retry_after(error)) is None:
            raise
        response = _refused(admission.BUSY_MESSAGE, 503, retry_after=retry_after)
        response["Retry-After"] = str(retry_after)
        return response
    if isinstance(taken, str):
        return _refused(taken, 422)
    conversation, messages, payload, everything = taken
    await generation.start(
        messages[-1], payload, turns.announce(conversation, messages, everything)
    )
    return JsonResponse({"message": messages[0].pk, "reply": messages[-1].pk}, status=201)


@admission.gives_back_connection
def _take(user, conversation_id: int, name: str, data: bytes, video: bool):
    """The saved turn (as turns.create_turn gives it), or why the recording was refused."""
    attachment = save_whole(user, name, data, quick=video)
    if attachment.status != Attachment.Status.READY:
        return attachment.error or _("The recording could not be read.")
    return turns.create_turn(user, conversation_id, "", [attachment], reply_settings=spoken)
