import math
from decimal import Decimal
from functools import cached_property

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext, pgettext_lazy

TITLE_LENGTH = 80


def title_from_text(text: str) -> str:
    """A conversation's title: the first line of its first message, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_LENGTH:
        return line or _("New chat")
    cut = line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0]
    return cut + "…"


def decimal(value: float, places: int) -> str:
    """A figure rounded to `places` decimals, written the way the page's language writes
    numbers (2.25 -> '2.25' in English, '2,25' in Arabic)."""
    return number_format(Decimal(f"{value:.{places}f}"), places)


# Kinds of tokens the API counts separately, as the footer names them (others as they come).
TOKEN_KINDS = {
    "text": pgettext_lazy("token kind", "text"),
    "audio": pgettext_lazy("token kind", "audio"),
    "image": pgettext_lazy("token kind", "image"),
    "video": pgettext_lazy("token kind", "video"),
    "cached": pgettext_lazy("token kind", "cached"),
    "reasoning": pgettext_lazy("token kind", "reasoning"),
}


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # Generation settings sent with each request (system prompt, temperature, ...).
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    pinned = models.BooleanField(default=False)
    # The last message of the branch being shown; the transcript is the path up to it.
    current = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-pinned", "-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or _("New chat")

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.pk])

    @property
    def group_name(self) -> str:
        """The channel-layer group every open page of this conversation listens on."""
        return f"conversation-{self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # The message this one answers or follows; the transcript is a path through these.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True
    )
    # Sanitised HTML rendered from `content` once the message is final.
    html = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    # {kind, status, message, hint, retry_after} when the generation failed.
    error = models.JSONField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True)
    cost = models.JSONField(null=True, blank=True)
    # The request body that produced this reply, media elided.
    request = models.JSONField(null=True, blank=True)
    # Function calls the reply asked for: [{id, type, function: {name, arguments}}].
    tool_calls = models.JSONField(null=True, blank=True)
    # On a `tool` message: the call it answers.
    tool_call_id = models.CharField(max_length=200, blank=True)
    # Per-token log-probabilities: [{token, logprob, top_logprobs: [{token, logprob}]}].
    logprobs = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by every checkpoint; a streaming row whose lease ran out lost its process.
    checkpoint_at = models.DateTimeField(null=True, blank=True)
    # A reply made side by side with others (chat/compare.py), and its column there.
    comparison = models.ForeignKey(
        "Comparison", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    column = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @cached_property
    def in_grid(self) -> bool:
        """Whether it is a column of a comparison nobody has decided yet (chat/compare.py): its
        Retry answers with the column's settings, and it has no "Compare with..." of its own.
        The transcript sets it for the columns it shows; a reply rendered alone asks."""
        if self.comparison_id is None:
            return False
        return Comparison.objects.filter(pk=self.comparison_id, kept__isnull=True).exists()

    @property
    def url(self) -> str:
        """Where its actions live: /c/<conversation>/m/<message>/ (retry/, edit/, ...)."""
        return f"/c/{self.conversation_id}/m/{self.pk}/"

    @property
    def shown_attachments(self) -> list["Attachment"]:
        """Its attachments, oldest first: as `load_attachments` left them for a batch of
        messages (one query for all), or else queried now."""
        try:
            return self._shown_attachments
        except AttributeError:
            return list(self.attachments.all())

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING

    @property
    def time_to_first_token(self) -> float | None:
        if self.started_at and self.first_token_at:
            return (self.first_token_at - self.started_at).total_seconds()
        return None

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def tool_calls_display(self) -> list[dict]:
        from .tool_calls import pretty_arguments

        shown = []
        for call in self.tool_calls or []:
            arguments, valid = pretty_arguments(call["function"].get("arguments", ""))
            shown.append(
                {
                    "id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": arguments,
                    "valid": valid,
                }
            )
        return shown

    @property
    def needs_tool_results(self) -> bool:
        """A finished reply that asked for tool calls and has no follow-up yet. Whether it has
        one comes from `has_children` when the caller set it (from messages it has loaded
        anyway), else from a query."""
        if not self.tool_calls or not self.is_final:
            return False
        has_children = getattr(self, "has_children", None)
        if has_children is None:
            has_children = self.children.exists()
        return not has_children

    @property
    def logprob_tokens(self) -> list[dict]:
        """Tokens with their probability (percent), a shade bucket 0-9, and the alternatives."""
        shown = []
        for entry in self.logprobs or []:
            percent = 100 * math.exp(entry.get("logprob", -9999))
            alternatives = " · ".join(
                f"{alt.get('token', '')!r} {decimal(100 * math.exp(alt.get('logprob', -9999)), 1)}%"
                for alt in entry.get("top_logprobs") or []
            )
            shown.append(
                {
                    "token": entry.get("token", ""),
                    "percent": percent,
                    "bucket": min(int(percent // 10), 9),
                    "alternatives": alternatives,
                }
            )
        return shown

    @property
    def usage_by_kind(self) -> list[tuple[str, str, int]]:
        """(kind, "in" or "out", count) for each kind of token the upstream counted (text,
        audio, image, ...)."""
        usage = self.usage or {}
        details = []
        for side, label in (("prompt_tokens_details", "in"), ("completion_tokens_details", "out")):
            for kind, count in (usage.get(side) or {}).items():
                if isinstance(count, int) and not isinstance(count, bool) and count:
                    details.append((kind.removesuffix("_tokens"), label, count))
        return details

    @property
    def usage_details(self) -> list[tuple[str, int]]:
        """Token counts by kind, as the upstream reported them ("audio out", 30)."""
        return [(f"{kind} {side}", count) for kind, side, count in self.usage_by_kind]

    @property
    def usd_amount(self) -> float | None:
        """The cost the API reported, in US dollars, if it reported one: the gateway's
        meta.usage.usd_spent, else usage.cost (LiteLLM's proxy, OpenRouter)."""
        for source, key in ((self.cost, "usd_spent"), (self.usage, "cost")):
            amount = source.get(key) if isinstance(source, dict) else None
            if isinstance(amount, int | float) and not isinstance(amount, bool):
                return amount if math.isfinite(amount) else None
        return None

    @property
    def usd_spent(self) -> str | None:
        """That cost written plainly: 7.6e-06 -> '0.0000076'."""
        amount = self.usd_amount
        return None if amount is None else f"{amount:.7f}".rstrip("0").rstrip(".")

    @property
    def facts(self) -> list[tuple[str, str]]:
        """A finished reply's footer, formatted: (what it is, shown as) for each figure there is
        (tokens, time to first token, total time, speed, cost, tokens by kind, finish)."""
        facts = []
        if self.usage:
            prompt, completion = (
                self.usage.get(k, "") for k in ("prompt_tokens", "completion_tokens")
            )
            count = completion if isinstance(completion, int) else 0
            tokens = ngettext(
                "%(prompt)s → %(completion)s token",
                "%(prompt)s → %(completion)s tokens",
                count,
            ) % {"prompt": _figure(prompt), "completion": _figure(completion)}
            facts.append((_("Prompt tokens → completion tokens"), tokens))
        if (first_token := self.time_to_first_token) is not None:
            facts.append(
                (
                    _("Time to first token"),
                    _("%(seconds)s s to first token") % {"seconds": decimal(first_token, 2)},
                )
            )
        # A reply that failed or was stopped before its first token measured nothing.
        if self.first_token_at and (duration := self.duration) is not None:
            facts.append((_("Total time"), _("%(seconds)s s") % {"seconds": decimal(duration, 1)}))
        if speed := self.tokens_per_second:
            facts.append(("", _("%(speed)s tok/s") % {"speed": decimal(speed, 0)}))
        if (usd := self.usd_spent) is not None:
            amount = pgettext("cost in US dollars", "$%(amount)s") % {
                "amount": number_format(Decimal(usd))
            }
            facts.append((_("Cost reported by the API"), amount))
        for kind, side, count in self.usage_by_kind:
            values = {"kind": TOKEN_KINDS.get(kind, kind), "count": _figure(count)}
            if side == "in":
                text = pgettext("tokens of a kind", "%(kind)s in %(count)s") % values
            else:
                text = pgettext("tokens of a kind", "%(kind)s out %(count)s") % values
            facts.append(("", text))
        if self.finish_reason and self.finish_reason != "stop":
            facts.append(("", _("finish: %(reason)s") % {"reason": self.finish_reason}))
        return facts

    @property
    def tokens_per_second(self) -> float | None:
        tokens = (self.usage or {}).get("completion_tokens")
        if not tokens or not self.first_token_at or not self.finished_at:
            return None
        seconds = (self.finished_at - self.first_token_at).total_seconds()
        return tokens / seconds if seconds > 0 else None


def _figure(value) -> str:
    """A count as the page's language writes it; anything else (a missing count) as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return number_format(value)
    return str(value)


def attachment_path(instance: "Attachment", filename: str) -> str:
    """Files live under generated names; the person's file name is kept for display only."""
    return f"attachments/{instance.owner_id}/{instance.key}/{filename}"


class Attachment(models.Model):
    """A file a person attached: validated, measured, converted where the API needs it."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        AUDIO = "audio"
        VIDEO = "video"

    class Status(models.TextChoices):
        UPLOADING = "uploading"  # chunks still arriving
        PROCESSING = "processing"  # probing / converting
        READY = "ready"  # may be sent
        FAILED = "failed"  # refused; `error` says why

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    # Both stay empty until the attachment is sent with a message.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    # Random, unguessable: names the upload in URLs and the folder its files live in.
    key = models.CharField(max_length=32, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADING)
    # While "processing": when the process doing it last said it is alive (see attachments.py).
    processing_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    # Declared by the browser when the upload starts; never trusted, only compared.
    declared_size = models.BigIntegerField(default=0)
    received = models.BigIntegerField(default=0)
    content_type = models.CharField(max_length=100, blank=True)  # sniffed from the bytes
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)  # seconds
    # e.g. {"container": "mov,mp4", "video": "h264", "audio": "aac"}
    codecs = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to=attachment_path, max_length=300, blank=True)
    # What is sent to the API when the original is not in a format it accepts.
    derived = models.FileField(upload_to=attachment_path, max_length=300, blank=True)
    derived_content_type = models.CharField(max_length=100, blank=True)
    # A JPEG thumbnail (images) or poster frame (videos).
    poster = models.FileField(upload_to=attachment_path, max_length=300, blank=True)
    progress = models.FloatField(default=0)  # 0..1 while processing
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind or 'file'} {self.original_name}"

    @property
    def sent_file(self):
        """The file the API receives: the converted one when there is one."""
        return self.derived or self.file

    @property
    def sent_content_type(self) -> str:
        return self.derived_content_type or self.content_type


def load_attachments(messages: list[Message]) -> None:
    """Give each message its `shown_attachments` with one query. (Django's prefetch_related
    does the same with a queryset per message, which costs 30 ms on a page of 1,000.)"""
    if not messages:
        return
    by_message: dict[int, list[Attachment]] = {message.pk: [] for message in messages}
    # By conversation from the oldest message on, not by a list of ids: Django resolves each
    # id of an `__in` one by one (3 ms for 1,000). Other branches' attachments may come too,
    # and are left out here.
    conversations = {message.conversation_id for message in messages}
    found = Attachment.objects.filter(
        message__conversation_id__in=conversations, message_id__gte=min(by_message)
    )
    for attachment in found:
        if attachment.message_id in by_message:
            by_message[attachment.message_id].append(attachment)
    for message in messages:
        message._shown_attachments = by_message[message.pk]


class Comparison(models.Model):
    """One prompt answered side by side: 2-4 sibling replies, each with its column's settings,
    until the person keeps one (or goes on from the one shown first)."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="comparisons"
    )
    # The person's message the columns answer.
    prompt = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    # Each column as chosen: [{"label": "qwen3.5-omni-flash · 0.2", "settings": {...}}].
    columns = models.JSONField(default=list)
    kept = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class Preset(models.Model):
    """Named generation settings a person can apply to a conversation; one may be the default
    for new chats."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presets"
    )
    name = models.CharField(max_length=80)
    settings = models.JSONField(default=dict, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_preset_name"),
            models.UniqueConstraint(
                fields=["owner"],
                condition=models.Q(is_default=True),
                name="one_default_preset",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Share(models.Model):
    """A read-only snapshot of a conversation's current path, opened by an unguessable link."""

    class Visibility(models.TextChoices):
        ANYONE = "anyone", gettext_lazy("Anyone with the link")
        USERS = "users", gettext_lazy("Signed-in users only")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    token = models.CharField(max_length=64, unique=True)  # at least 128 random bits
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.ANYONE
    )
    title = models.CharField(max_length=200, blank=True)
    # The messages of the path at sharing time, in order: messages added later never appear.
    message_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    opened = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"share of {self.conversation_id}"


class Profile(models.Model):
    """What is kept about a person beyond Django's user: the interface language they chose
    (chat/languages.py; empty: their browser's)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    language = models.CharField(max_length=16, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {self.language or 'browser language'}"
