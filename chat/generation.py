"""One streaming reply from start to saved message, run as a server-side job.

The job belongs to the process that started it, not to a socket: pages subscribe to the
conversation's channel-layer group and the job sends frames there. Stop and "what is the text
so far?" reach the job through its own group, so they work from any tab and any process.

Frames sent to the conversation group (handled by `consumers.ConversationConsumer`):
- `stream.delta`: text appended since the last frame, with the offsets it starts at; and, for
  the answer and the reasoning each, the Markdown blocks that this text showed complete
  (rendered, with the count of blocks before them) and then the open tail's source;
- `stream.snapshot`: the whole text so far, its complete blocks rendered and the open tail, to
  one subscriber that asked (`job.sync`);
- `message.final`: the finished message, rendered (for pages that followed the stream, around
  the blocks they hold).
"""

import asyncio
import base64
import contextvars
import hashlib
import logging
import secrets
import time
from collections.abc import Coroutine
from contextlib import suppress
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import frames, speech, titles, upstream
from .live_markdown import LiveMarkdown
from .models import Attachment, Conversation, Message
from .rendering import finished_html, message_html
from .tool_calls import merge_fragments, ordered

log = logging.getLogger(__name__)

# A new message's request goes upstream before the pages hear of it (rendering it would compete
# with sending for the interpreter), unless sending takes longer than this (a cold connection, a
# body carrying large media).
SEND_FIRST_SECONDS = 0.02


def interrupted_error() -> dict:
    """What a reply cut short by its server stopping says, whoever settles it (the job itself
    on shutdown, in its sender's language; another process's sweeper, start-up: the default
    language). Saved with the message, so written in the language active now."""
    return {
        "kind": "interrupted",
        "status": None,
        "message": _("The server stopped while this reply was streaming."),
        "hint": _("The text received so far is kept. Retry to generate the reply again."),
        "retry_after": None,
    }


def internal_error() -> dict:
    """What a reply that failed on the playground's side says (saved with the message)."""
    return {
        "kind": "internal",
        "status": None,
        "message": _("The playground hit an unexpected problem while streaming."),
        "hint": _("Retry; if it keeps happening, check the server log."),
        "retry_after": None,
    }


# Jobs running in this process, kept referenced so the event loop does not drop them.
_tasks: dict[int, asyncio.Task] = {}


def job_group(message_id: int) -> str:
    return f"job-{message_id}"


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def _db(fn):
    # Off the event loop, in the shared pool: one job's save never waits on another's thread.
    # Those threads outlive requests, so nothing else tidies their database connections: like
    # Django around a request, each call drops a broken or expired one first and lets go of it
    # after (back to PostgreSQL's pool, see settings.DATABASES), so a connection the database
    # closed is replaced instead of failing every save from then on.
    return database_sync_to_async(fn, thread_sensitive=False)


async def start(message: Message, payload: dict[str, Any], announce: Coroutine) -> asyncio.Task:
    """Start streaming `message` (an assistant row in `streaming`) in this process; return once
    the pages have heard of it.

    `announce` tells the pages about the message (renders and sends its frames). It runs once
    the request has gone upstream (see SEND_FIRST_SECONDS), and the job's frames wait for it:
    a page drops text for a message it does not know. The caller's own work (its response)
    waits too, so the request goes first.

    The task gets a fresh context: one inheriting the request's asgiref context would fail its
    later database calls once the request has finished. Only the language goes with it: what
    the job renders and saves (its messages, the pages' frames, the title's) is in the language
    of the request or socket that started it.
    """
    ensure_sweeper()
    job = Job(message.pk, message.conversation_id, payload, announce)
    context = contextvars.Context()
    context.run(translation.activate, translation.get_language() or settings.LANGUAGE_CODE)
    task = asyncio.get_running_loop().create_task(job.run(), context=context)
    _tasks[message.pk] = task
    task.add_done_callback(lambda _t: _tasks.pop(message.pk, None))
    await job.told.wait()
    return task


def running_ids() -> list[int]:
    return list(_tasks)


async def interrupt_running(timeout: float = 5) -> None:
    """End this process's replies now, each saved as `interrupted` with its text so far and
    announced to its pages: the server is stopping (see playground/asgi.py). Without this they
    would wait a lease for another process's sweeper, or for the next start-up."""
    tasks = list(_tasks.values())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


async def request_stop(message_id: int) -> None:
    """Ask the job streaming `message_id`, in whichever process it runs, to stop."""
    await get_channel_layer().group_send(job_group(message_id), {"type": "job.stop"})


async def stop_conversation(conversation_id: int) -> None:
    """Stop every reply streaming in a conversation (the Stop button, from any tab)."""

    def streaming() -> list[int]:
        return list(
            Message.objects.filter(
                conversation_id=conversation_id, status=Message.Status.STREAMING
            ).values_list("pk", flat=True)
        )

    for message_id in await _db(streaming)():
        await request_stop(message_id)


async def request_snapshot(message_id: int, reply_channel: str) -> None:
    await get_channel_layer().group_send(
        job_group(message_id), {"type": "job.sync", "reply_channel": reply_channel}
    )


class Job:
    def __init__(
        self,
        message_id: int,
        conversation_id: int,
        payload: dict[str, Any],
        announce: Coroutine,
    ) -> None:
        self.message_id = message_id
        self.announce = announce
        self.sent = asyncio.Event()  # the request has gone upstream
        self.told = asyncio.Event()  # the pages have heard of the message
        self.telling: asyncio.Task | None = None  # tell_pages, held: the loop keeps tasks weakly
        self.conversation_id = conversation_id
        self.payload = payload
        self.group = conversation_group(conversation_id)
        self.layer = get_channel_layer()
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.content_len = 0
        self.reasoning_len = 0
        # Text received but not yet sent to subscribers, and the offsets it starts at.
        self.pending_content: list[str] = []
        self.pending_reasoning: list[str] = []
        self.sent_content_len = 0
        self.sent_reasoning_len = 0
        self.last_frame = 0.0
        # The Markdown of what was sent, block by block (see live_markdown).
        self.live_content = LiveMarkdown()
        self.live_reasoning = LiveMarkdown()
        self.flush_task: asyncio.Task | None = None
        self.flush_lock = asyncio.Lock()
        self.audio = bytearray()  # raw PCM of a spoken answer
        self.pending_audio = bytearray()
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[dict[str, Any]] = []
        self.finish_reason = ""
        self.usage: dict | None = None
        self.cost: dict | None = None
        self.first_token_at = None
        self.last_checkpoint = time.monotonic()
        self.saving: asyncio.Task | None = None  # the checkpoint being written
        self.stopped = False

    # The job's life

    async def run(self) -> None:
        # The request goes out first; the pages hear of the message, and the job subscribes
        # for Stop, while it is on its way.
        stream = asyncio.create_task(self.consume())
        self.telling = asyncio.create_task(self.tell_pages())
        heartbeat = asyncio.create_task(self.heartbeat())
        channel, control = None, None
        error: dict | None = None
        try:
            channel = await self.layer.new_channel()
            await self.layer.group_add(job_group(self.message_id), channel)
            control = asyncio.create_task(self.listen(channel, stream))
            await stream
            status = Message.Status.COMPLETE
        except asyncio.CancelledError:
            if not self.stopped:
                # The process is going away: keep what arrived, and say so.
                status = Message.Status.INTERRUPTED
                error = interrupted_error()
                stream.cancel()
            else:
                status = Message.Status.STOPPED
        except upstream.UpstreamError as exc:
            status = Message.Status.ERROR
            error = exc.as_dict()
        except Exception:
            log.exception("generation %s failed", self.message_id)
            status = Message.Status.ERROR
            error = internal_error()
        finally:
            heartbeat.cancel()
            if control is not None:
                control.cancel()
            if channel is not None:
                await self.layer.group_discard(job_group(self.message_id), channel)
        # Saving must finish even when the process is cancelling this task.
        await asyncio.shield(self.finish(status, error))

    async def tell_pages(self) -> None:
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(SEND_FIRST_SECONDS):
                    await self.sent.wait()
            await self.announce
        except Exception:
            log.exception("telling the pages about message %s failed", self.message_id)
        finally:
            self.told.set()

    async def heartbeat(self) -> None:
        """Keep the lease while the upstream is silent (e.g. thinking before the first token):
        a row whose checkpoint goes stale is taken for a dead process's (see sweep)."""
        while True:
            await asyncio.sleep(settings.PLAYGROUND_CHECKPOINT_SECONDS)
            self.checkpoint()

    async def listen(self, channel: str, stream: asyncio.Task) -> None:
        while True:
            event = await self.layer.receive(channel)
            if event.get("type") == "job.stop":
                self.stopped = True
                stream.cancel()
            elif event.get("type") == "job.sync":
                await self.layer.send(event["reply_channel"], self.snapshot())

    async def consume(self) -> None:
        async for event in upstream.stream_chat(self.payload, sent=self.sent):
            if event.index != 0:
                continue  # one reply per message; extra choices (n > 1) are not shown
            text = event.content or event.refusal
            if text or event.reasoning:
                if self.first_token_at is None:
                    self.first_token_at = timezone.now()
                if text:
                    self.content.append(text)
                    self.pending_content.append(text)
                    self.content_len += len(text)
                if event.reasoning:
                    self.reasoning.append(event.reasoning)
                    self.pending_reasoning.append(event.reasoning)
                    self.reasoning_len += len(event.reasoning)
                await self.frame_due()
            if event.audio:
                pcm = base64.b64decode(event.audio)
                self.audio += pcm
                self.pending_audio += pcm
                await self.frame_due()
            if event.tool_calls:
                merge_fragments(self.tool_calls, event.tool_calls)
            if event.logprobs:
                self.logprobs.extend(event.logprobs)
            if event.finish_reason:
                self.finish_reason = event.finish_reason
            if event.usage is not None:
                self.usage = event.usage
            if event.cost is not None:
                self.cost = event.cost
            self.checkpoint()

    def snapshot(self) -> dict:
        """The text so far for a page that (re)connects: rendered blocks, then the tail (the
        text received since the last frame included)."""
        return {
            "type": "stream.snapshot",
            "message": self.message_id,
            "content": "".join(self.content),
            "reasoning": "".join(self.reasoning),
            "content_html": self.live_content.html(),
            "content_blocks": len(self.live_content.blocks),
            "content_tail": self.live_content.tail + "".join(self.pending_content),
            "reasoning_html": self.live_reasoning.html(),
            "reasoning_blocks": len(self.live_reasoning.blocks),
            "reasoning_tail": self.live_reasoning.tail + "".join(self.pending_reasoning),
        }

    # Frames: the first at once, then at most one per PLAYGROUND_FRAME_INTERVAL

    async def frame_due(self) -> None:
        wait = self.last_frame + settings.PLAYGROUND_FRAME_INTERVAL - time.monotonic()
        if wait <= 0:
            await self.flush()
        elif self.flush_task is None:
            self.flush_task = asyncio.create_task(self.flush_later(wait))

    async def flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self.flush_task = None
        await self.flush()

    async def flush(self) -> None:
        # One frame at a time, handed to the layer in order: a page drops text that leaves a
        # gap, so the order must not rest on how a layer treats two sends in flight.
        async with self.flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        if not self.pending_content and not self.pending_reasoning and not self.pending_audio:
            return
        # Whole samples only: a chunk may end in the middle of one.
        cut = len(self.pending_audio) - len(self.pending_audio) % 2
        audio, self.pending_audio = self.pending_audio[:cut], self.pending_audio[cut:]
        content, reasoning = "".join(self.pending_content), "".join(self.pending_reasoning)
        frame = {
            "type": "stream.delta",
            "message": self.message_id,
            "content": content,
            "content_at": self.sent_content_len,
            "reasoning": reasoning,
            "reasoning_at": self.sent_reasoning_len,
            "audio": frames.audio_frame(self.message_id, base64.b64encode(audio).decode())
            if audio
            else "",
        }
        # The page's frame, built here once for every page that holds the text so far.
        page: dict[str, str | None] = {}
        for name, live, text in (
            ("content", self.live_content, content),
            ("reasoning", self.live_reasoning, reasoning),
        ):
            if not text:
                continue
            page[name] = live.feed(text)
            blocks = live.advance()
            if blocks:
                frame[f"{name}_blocks"] = blocks
                frame[f"{name}_blocks_at"] = len(live.blocks) - len(blocks)
                frame[f"{name}_tail"] = live.tail
                page[f"{name}_blocks"] = "".join(blocks)
        frame["page"] = frames.delta_frame(
            self.message_id,
            text=page.get("content") or "",
            blocks=page.get("content_blocks"),
            tail=self.live_content.tail,
            reasoning=page.get("reasoning") or "",
            reasoning_blocks=page.get("reasoning_blocks"),
            reasoning_tail=self.live_reasoning.tail,
        )
        self.sent_content_len = self.content_len
        self.sent_reasoning_len = self.reasoning_len
        self.pending_content.clear()
        self.pending_reasoning.clear()
        self.last_frame = time.monotonic()
        await self.told.wait()
        await self.layer.group_send(self.group, frame)

    # Saving

    def checkpoint(self) -> None:
        """Save the text so far if a checkpoint is due, in the background: the stream never
        waits for the database (a write can queue behind others for a while, SQLite's
        especially). One at a time."""
        if time.monotonic() - self.last_checkpoint < settings.PLAYGROUND_CHECKPOINT_SECONDS:
            return
        if self.saving is not None and not self.saving.done():
            return
        self.last_checkpoint = time.monotonic()
        content, reasoning = "".join(self.content), "".join(self.reasoning)
        self.content = [content]
        self.reasoning = [reasoning]
        self.saving = asyncio.create_task(self.save_checkpoint(content, reasoning))

    async def save_checkpoint(self, content: str, reasoning: str) -> None:
        try:
            await _db(save_checkpoint)(self.message_id, content, reasoning, self.first_token_at)
        except Exception:
            log.exception("checkpoint of message %s failed", self.message_id)

    async def finish(self, status: str, error: dict | None) -> None:
        if self.saving is not None:  # a late checkpoint must not overwrite the final text
            await asyncio.wait([self.saving])
        if self.flush_task is not None:
            self.flush_task.cancel()
        await self.flush()

        # The last blocks; the ones before were rendered as they streamed.
        last = {
            name: (len(live.blocks), live.advance(final=True))
            for name, live in (("content", self.live_content), ("reasoning", self.live_reasoning))
        }

        def settle() -> dict:  # saved and rendered in one trip to the worker thread
            message = save_final(
                self.message_id,
                status=status,
                content="".join(self.content),
                reasoning="".join(self.reasoning),
                finish_reason=self.finish_reason,
                usage=self.usage,
                cost=self.cost,
                error=error,
                first_token_at=self.first_token_at,
                tool_calls=ordered(self.tool_calls) or None,
                logprobs=self.logprobs or None,
                audio=bytes(self.audio),
                html=self.live_content.html(),
            )
            return final_frame(message, last)

        frame = await _db(settle)()
        await self.told.wait()
        await self.layer.group_send(self.group, frame)
        await titles.after_reply(self.message_id, status)


def save_checkpoint(message_id: int, content: str, reasoning: str, first_token_at) -> None:
    # Built here, in the worker thread: composing even a one-row query costs the event loop
    # about a millisecond, which every other stream would wait for.
    Message.objects.filter(pk=message_id).update(
        content=content,
        reasoning=reasoning,
        checkpoint_at=timezone.now(),
        first_token_at=first_token_at,
    )


def save_final(message_id: int, audio: bytes = b"", **fields: Any) -> Message:
    """Finalise a reply: its text rendered (unless given: the blocks that streamed), status,
    usage, speech."""
    now = timezone.now()
    if fields.get("html") is None:
        fields["html"] = finished_html(fields["content"])
    fields.update(finished_at=now, checkpoint_at=now)
    Message.objects.filter(pk=message_id).update(**fields)
    message = Message.objects.select_related("conversation").get(pk=message_id)
    Conversation.objects.filter(pk=message.conversation_id).update(updated_at=now)
    if len(audio) >= 2:
        save_spoken_answer(message, audio)
    return message


def save_spoken_answer(message: Message, pcm: bytes) -> Attachment:
    """The reply's speech as a WAV attachment of the message, with a player and a download."""
    wav = speech.pcm_to_wav(pcm)
    attachment = Attachment(
        owner_id=message.conversation.owner_id,
        conversation_id=message.conversation_id,
        message=message,
        key=secrets.token_urlsafe(16),
        status=Attachment.Status.READY,
        kind=Attachment.Kind.AUDIO,
        original_name=f"reply-{message.pk}.wav",
        content_type="audio/wav",
        size=len(wav),
        sha256=hashlib.sha256(wav).hexdigest(),
        duration=speech.duration(len(wav) - 44),
        codecs={"container": "wav", "audio": "pcm_s16le"},
        progress=1,
    )
    attachment.file.save("speech.wav", ContentFile(wav), save=False)
    attachment.save()
    return attachment


def final_frame(message: Message, last: dict[str, tuple[int, list[str]]] | None = None) -> dict:
    """The finished message, rendered once for every open page of its conversation.

    With `last` (for the answer and the reasoning: the count of blocks that streamed, and the
    blocks after them), it carries what a page that followed the stream needs: those last
    blocks, and the message with its content kept from the page (`kept_html`), so the blocks
    the page holds are not sent again. A page that did not follow it (rare: it lost a frame
    and waits for a snapshot) renders the whole message itself (`consumers.message_final`), so
    the message is rendered once here, not twice for every reply.
    """
    frame: dict[str, Any] = {"type": "message.final", "message": message.pk}
    if last is not None and message.html:
        message.kept = True
        frame["kept_html"] = message_html(message, "replace")
        for name, (blocks_at, blocks) in last.items():
            frame[f"{name}_blocks_at"] = blocks_at
            frame[f"{name}_blocks"] = blocks
    else:
        frame["html"] = message_html(message, "replace")
    return frame


def lease() -> timedelta:
    """How long a streaming row may go without a checkpoint before its process counts as dead."""
    return timedelta(seconds=settings.PLAYGROUND_LEASE_SECONDS)


_sweeper: asyncio.Task | None = None


def ensure_sweeper() -> None:
    """Run `sweep` in this process's event loop from now on (once per process)."""
    global _sweeper
    loop = asyncio.get_running_loop()
    if _sweeper is None or _sweeper.done() or _sweeper.get_loop() is not loop:
        _sweeper = loop.create_task(_sweep_forever(), context=contextvars.Context())


async def _sweep_forever() -> None:
    while True:
        await asyncio.sleep(settings.PLAYGROUND_LEASE_SECONDS / 2)
        try:
            await sweep()
        except Exception:  # a database hiccup must not end the sweeping
            log.exception("sweeping stale streams failed")


async def sweep() -> list[Message]:
    """Settle replies whose process died mid-stream (any process, any machine), and tell the
    pages watching them."""

    def settle() -> list[tuple[Message, dict]]:
        return [(message, final_frame(message)) for message in interrupt_stale(lease())]

    settled = await _db(settle)()
    for message, frame in settled:
        await get_channel_layer().group_send(conversation_group(message.conversation_id), frame)
    return [message for message, _frame in settled]


def interrupt_stale(lease: timedelta | None) -> list[Message]:
    """Mark streaming messages whose process is gone as `interrupted`, keeping their text.

    With `lease=None` every streaming row is stale (one process, just started); otherwise a row
    is stale when its last checkpoint is older than the lease.
    """
    stale = Message.objects.filter(status=Message.Status.STREAMING)
    if lease is not None:
        cutoff = timezone.now() - lease
        stale = stale.filter(Q(checkpoint_at__lt=cutoff) | Q(checkpoint_at__isnull=True))
        stale = stale.exclude(pk__in=running_ids())
    settled = []
    error = interrupted_error()
    for message in stale.select_related("conversation"):
        message.status = Message.Status.INTERRUPTED
        message.html = finished_html(message.content)
        message.finished_at = timezone.now()
        message.error = error
        # Only if nothing changed since it was read: a job that checkpointed or finished in
        # the meantime is alive, and keeps its row.
        changed = stale.filter(pk=message.pk, checkpoint_at=message.checkpoint_at).update(
            status=message.status,
            html=message.html,
            finished_at=message.finished_at,
            error=message.error,
        )
        if changed:
            settled.append(message)
    return settled
