"""Compare: one prompt answered by two to four columns side by side, each with its own model and
settings, streaming together; the person keeps the answer the conversation goes on from.

A comparison is sibling replies made at once (`Comparison`, the replies' `comparison` and
`column`): the message tree, Stop, sharing and export need nothing new. Until one is kept, the
transcript shows the siblings as columns (`open_grid`); keeping one, or sending the next
message from the one shown first, makes it the branch, and the others stay one arrow away.
The page sends a comparison over its socket (the consumer's `compare` action) or, without
scripts, by posting the composer to `compare`; "Compare with..." on a reply answers its prompt
again in new columns; a column's Retry answers again with that column's settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction
from django.forms import formset_factory
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import admission, generation, turns, views
from .forms import ComposerForm
from .models import Comparison, Conversation, Message
from .models_list import offered_models
from .settings_form import KNOWN_VOICES, SettingsForm, settings_data

MIN_COLUMNS = 2
MAX_COLUMNS = 4
PREFIX = "columns"
SWITCH = [("", gettext_lazy("As set")), ("on", gettext_lazy("On")), ("off", gettext_lazy("Off"))]
# Jobs watched until their comparison's summary can be told, held: the loop keeps tasks weakly.
_watchers: set[asyncio.Task] = set()


class ColumnForm(forms.Form):
    """One column: a model and a preset (blank: the conversation's), and a few quick settings
    over them (blank: as the preset or the conversation has it)."""

    model = forms.ChoiceField(required=False, label=gettext_lazy("Model"))
    preset = forms.ChoiceField(required=False, label=gettext_lazy("Preset"))
    temperature = forms.FloatField(
        required=False, min_value=0, max_value=2, label=gettext_lazy("Temperature")
    )
    thinking = forms.ChoiceField(required=False, choices=SWITCH, label=gettext_lazy("Thinking"))
    max_tokens = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000, label=gettext_lazy("Max tokens")
    )
    audio = forms.ChoiceField(required=False, choices=SWITCH, label=gettext_lazy("Spoken answer"))

    def __init__(self, *args, presets: dict[str, tuple[str, dict]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.presets = presets or {}
        self.fields["model"].choices = [
            ("", _("Default (%(model)s)") % {"model": settings.PLAYGROUND_MODEL})
        ] + [(m, m) for m in offered_models()]
        self.fields["preset"].choices = [("", _("This chat's settings"))] + [
            (key, name) for key, (name, _settings) in self.presets.items()
        ]


class BaseColumnFormSet(forms.BaseFormSet):
    def __init__(self, *args, presets=None, **kwargs):
        self.presets = presets
        super().__init__(*args, prefix=PREFIX, **kwargs)

    def get_form_kwargs(self, index):
        return {"presets": self.presets}

    def clean(self) -> None:
        # Every column counts, a blank one too (it answers with this chat's settings): the
        # formset's own minimum would leave blank forms out.
        if self.total_form_count() < MIN_COLUMNS:
            raise forms.ValidationError(
                _("Compare needs %(min)s to %(max)s columns.")
                % {"min": MIN_COLUMNS, "max": MAX_COLUMNS}
            )


ColumnFormSet = formset_factory(
    ColumnForm,
    formset=BaseColumnFormSet,
    extra=0,
    min_num=MIN_COLUMNS,
    max_num=MAX_COLUMNS,
    absolute_max=MAX_COLUMNS,
    validate_max=True,
)


def presets_of(user) -> dict[str, tuple[str, dict]]:
    return {str(p.pk): (p.name, dict(p.settings)) for p in user.presets.all()}


def column_settings(base: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
    """A column's settings as stored: `base` (the conversation's, or the chosen preset's) with
    the column's quick settings over it. Pure."""
    result = dict(base)
    if choice.get("model"):
        result["model"] = choice["model"]
    if choice.get("temperature") is not None:
        result["temperature"] = choice["temperature"]
    if choice.get("max_tokens") is not None:
        result["max_tokens"] = choice["max_tokens"]
    if choice.get("thinking") == "on":
        result["enable_thinking"] = True
    elif choice.get("thinking") == "off":
        result.pop("enable_thinking", None)
        result.pop("thinking_budget", None)
    if choice.get("audio") == "on":
        voice = (result.get("audio") or {}).get("voice") or KNOWN_VOICES[0]
        result["modalities"] = ["text", "audio"]
        result["audio"] = {"voice": voice, "format": "wav"}
    elif choice.get("audio") == "off":
        result.pop("modalities", None)
        result.pop("audio", None)
    return result


def label(stored: dict[str, Any], preset_name: str = "") -> str:
    """A column's heading: its model and what sets it apart. Pure."""
    parts = [stored.get("model") or settings.PLAYGROUND_MODEL]
    if preset_name:
        parts.append(preset_name)
    if stored.get("temperature") is not None:
        parts.append(_("temperature %(value)s") % {"value": stored["temperature"]})
    if stored.get("enable_thinking"):
        parts.append(_("thinking"))
    if stored.get("max_tokens") is not None:
        count = stored["max_tokens"]
        parts.append(
            ngettext("at most %(count)s token", "at most %(count)s tokens", count)
            % {"count": count}
        )
    if "audio" in (stored.get("modalities") or []):
        parts.append(_("spoken"))
    return " · ".join(str(part) for part in parts)


def columns_data(columns: object) -> QueryDict:
    """A socket frame's columns as the composer form would post them. Pure; anything that is
    not a short list of objects of short values posts nothing (the formset then says why)."""
    data = QueryDict(mutable=True)
    if not isinstance(columns, list) or len(columns) > MAX_COLUMNS:
        columns = []
    data[f"{PREFIX}-TOTAL_FORMS"] = str(len(columns))
    data[f"{PREFIX}-INITIAL_FORMS"] = "0"
    for n, column in enumerate(columns):
        if not isinstance(column, dict):
            continue
        for name in ColumnForm.base_fields:
            value = column.get(name)
            if isinstance(value, bool):
                value = "on" if value else "off"
            if isinstance(value, int | float | str) and len(str(value)) <= 200:
                data[f"{PREFIX}-{n}-{name}"] = str(value)
    return data


def chosen_columns(conversation_settings: dict, formset) -> list[dict[str, Any]] | None:
    """The columns as they will be stored ([{label, settings}]), each checked as the settings
    panel checks settings; None, with the reasons added to the columns' forms, if one is wrong."""
    if not formset.is_valid():
        return None
    columns, wrong = [], False
    for form in formset.forms:
        preset_name, base = formset.presets.get(form.cleaned_data.get("preset") or "", ("", None))
        stored = column_settings(conversation_settings if base is None else base, form.cleaned_data)
        checked = SettingsForm(settings_data(stored))
        if not checked.is_valid():
            wrong = True
            for name, errors in checked.errors.items():
                field = checked.fields.get(name)
                for error in errors:
                    form.add_error(None, f"{field.label or name}: {error}" if field else error)
            continue
        stored = checked.to_settings()
        columns.append({"label": label(stored, preset_name), "settings": stored})
    return None if wrong else columns


def refusals(form, formset) -> list[str]:
    """Every reason the composer or a column was refused, each said once, column by column."""
    reasons = [str(e) for errors in form.errors.values() for e in errors]
    reasons += [str(e) for e in formset.non_form_errors()]
    for n, column in enumerate(formset.forms, start=1):
        for name, errors in column.errors.items():
            field = column.fields.get(name)
            for error in errors:
                prefix = _("Column %(number)s") % {"number": n}
                if field is not None and name != "__all__":
                    prefix += f" · {field.label}"
                reasons.append(f"{prefix}: {error}")
    return reasons


@dataclass
class Taken:
    conversation: Conversation
    prompt: Message
    replies: list[Message]
    payloads: list[dict]


def take_comparison(
    user, conversation_id: int | None, data: QueryDict
) -> tuple[list[str], Taken | None]:
    """Validate the composer and the columns and, if they are right, save the person's message
    and a streaming reply per column: ([], the comparison), or (the reasons, None). With no
    conversation, a new chat's first message: the conversation is created with it."""
    if conversation_id is None:
        base = turns.default_settings(user)
    else:
        base = get_object_or_404(Conversation, pk=conversation_id, owner=user).settings
    form = ComposerForm(data, user=user)
    formset = ColumnFormSet(data, presets=presets_of(user))
    columns = chosen_columns(base, formset)
    if not form.is_valid() or columns is None:
        return refusals(form, formset), None
    return [], _create(user, conversation_id, form.cleaned_data, columns)


@transaction.atomic
def _create(user, conversation_id: int, cleaned: dict, columns: list[dict]) -> Taken:
    conversation, (prompt, first), payload, everything = turns.create_turn(
        user,
        conversation_id,
        cleaned["text"],
        cleaned["attachments"],
        reply_settings=lambda _stored: columns[0]["settings"],
    )
    return _answer_in_columns(conversation, prompt, everything, columns, [(first, payload)])


def take_again(user, conversation_id: int, message_id: int, data: QueryDict):
    """ "Compare with...": the prompt of reply `message_id` answered again in new columns."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    reply = get_object_or_404(
        Message, pk=message_id, conversation=conversation, role=Message.Role.ASSISTANT
    )
    formset = ColumnFormSet(data, presets=presets_of(user))
    columns = chosen_columns(conversation.settings, formset)
    if columns is None or reply.parent_id is None:
        return refusals(ComposerForm(), formset) or [_("There is no message to answer.")], None
    return [], _again(conversation.pk, reply.parent_id, columns)


@transaction.atomic
def _again(conversation_id: int, prompt_id: int, columns: list[dict]) -> Taken:
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    everything = list(conversation.messages.only(*turns.TURN_FIELDS))
    prompt = next(m for m in everything if m.pk == prompt_id)
    return _answer_in_columns(conversation, prompt, everything, columns)


def _answer_in_columns(
    conversation: Conversation,
    prompt: Message,
    everything: list[Message],
    columns: list[dict],
    made: list[tuple[Message, dict]] | None = None,
) -> Taken:
    """A streaming reply to `prompt` for each column (after those `made` already, in order),
    recorded as one comparison."""
    made = list(made or [])
    for column in columns[len(made) :]:
        reply, payload = turns.begin_reply(conversation, prompt, everything, column["settings"])
        everything.append(reply)
        made.append((reply, payload))
    replies = [reply for reply, _payload in made]
    comparison = Comparison.objects.create(
        conversation=conversation, prompt=prompt, columns=columns
    )
    for n, reply in enumerate(replies):
        reply.comparison, reply.column = comparison, n
    Message.objects.bulk_update(replies, ["comparison", "column"])
    # The page shows the first column as the conversation's current reply until one is kept.
    Conversation.objects.filter(pk=conversation.pk).update(current=replies[0])
    conversation.current = replies[0]
    return Taken(conversation, prompt, replies, [payload for _reply, payload in made])


def take_column_again(user, conversation_id: int, message_id: int) -> Taken | None:
    """A column's Retry: its prompt answered again with that column's settings, in its place."""
    with transaction.atomic():
        conversation = get_object_or_404(
            Conversation.objects.select_for_update(), pk=conversation_id, owner=user
        )
        reply = get_object_or_404(
            Message.objects.select_related("comparison"),
            pk=message_id,
            conversation=conversation,
            comparison__isnull=False,
        )
        comparison = reply.comparison
        if (
            comparison.kept_id is not None
            or comparison.replies.filter(
                column=reply.column, status=Message.Status.STREAMING
            ).exists()
        ):  # decided, or the column is answering already (a second click)
            return None
        everything = list(conversation.messages.only(*turns.TURN_FIELDS))
        prompt = next(m for m in everything if m.pk == comparison.prompt_id)
        stored = comparison.columns[reply.column]["settings"]
        shown = conversation.current_id
        again, payload = turns.begin_reply(conversation, prompt, everything, stored)
        again.comparison, again.column = comparison, reply.column
        again.save(update_fields=["comparison", "column"])
        if shown is not None and shown != reply.pk:  # another column stays the one shown
            Conversation.objects.filter(pk=conversation.pk).update(current=shown)
            conversation.current_id = shown
    return Taken(conversation, prompt, [again], [payload])


def keep(user, conversation_id: int, message_id: int) -> Conversation:
    """ "Keep this one": the column's reply becomes the branch the conversation goes on from."""
    with transaction.atomic():
        conversation = get_object_or_404(
            Conversation.objects.select_for_update(), pk=conversation_id, owner=user
        )
        reply = get_object_or_404(
            Message, pk=message_id, conversation=conversation, comparison__isnull=False
        )
        Comparison.objects.filter(pk=reply.comparison_id).update(kept=reply)
        conversation.current = reply
        conversation.save(update_fields=["current"])
    return conversation


async def start(taken: Taken) -> None:
    """Stream every column's reply at once in this process. The pages hear of them in one
    transcript (rendered once the first request is on its way); every column's frames wait for
    it. When all have finished, the pages get the comparison's summary."""
    told = asyncio.Event()

    async def announce_all() -> None:
        try:
            await views.announce_transcript(taken.conversation)
        finally:
            told.set()

    async def announced() -> None:
        await told.wait()

    tasks = await asyncio.gather(
        *(
            generation.start(reply, payload, announce_all() if n == 0 else announced())
            for n, (reply, payload) in enumerate(zip(taken.replies, taken.payloads, strict=True))
        )
    )
    comparison_id = taken.replies[0].comparison_id
    watcher = asyncio.get_running_loop().create_task(_tell_summary(comparison_id, tasks))
    _watchers.add(watcher)
    watcher.add_done_callback(_watchers.discard)


async def _tell_summary(comparison_id: int, tasks: list[asyncio.Task]) -> None:
    await asyncio.wait(tasks)
    html, group = await sync_to_async(summary_frame, thread_sensitive=False)(comparison_id)
    if html:
        await get_channel_layer().group_send(group, {"type": "comparison.summary", "html": html})


# What the page shows


@dataclass
class Setup:
    """The columns' setup as a form shows it: every column's fields (the first `shown` in use)."""

    id: str
    forms: list[ColumnForm]
    shown: int
    on: bool
    presets: bool

    @property
    def more(self) -> int:
        return min(self.shown + 1, MAX_COLUMNS)

    @property
    def fewer(self) -> int:
        return max(self.shown - 1, MIN_COLUMNS)


def shown_count(value: object) -> int | None:
    """`?compare=N` as a number of columns, or None when compare is not asked for. Pure."""
    try:
        return min(max(int(str(value)), MIN_COLUMNS), MAX_COLUMNS)
    except ValueError:
        return None


def setup(
    presets: dict[str, tuple[str, dict]],
    shown: int | None,
    formset=None,
    id: str = "compare-setup",
    auto_id: str = "id_%s",
) -> Setup:
    """The setup for a page: `shown` columns in use (None: compare is off, two ready), those of
    a refused `formset` with their reasons first."""
    forms = list(formset.forms) if formset is not None else []
    for n in range(len(forms), MAX_COLUMNS):
        forms.append(ColumnForm(prefix=f"{PREFIX}-{n}", presets=presets, auto_id=auto_id))
    on = shown is not None or formset is not None
    count = len(formset.forms) if formset is not None else shown or MIN_COLUMNS
    count = min(max(count, MIN_COLUMNS), MAX_COLUMNS)
    return Setup(id, forms[:MAX_COLUMNS], count, on, bool(presets))


# The transcript's columns


@dataclass
class Column:
    number: int  # from 1
    label: str
    reply: Message


@dataclass
class Grid:
    comparison: Comparison
    prompt_id: int
    columns: list[Column]
    summary: list[tuple[str, Column]]  # (what, which column), once all have finished

    @property
    def streaming(self) -> bool:
        return any(c.reply.status == Message.Status.STREAMING for c in self.columns)


def newest_per_column(replies: list[Message]) -> dict[int, Message]:
    """Each column's newest reply (a column's Retry adds one). Pure."""
    newest: dict[int, Message] = {}
    for reply in sorted(replies, key=lambda m: (m.created_at, m.pk)):
        newest[reply.column] = reply
    return dict(sorted(newest.items()))


def summary(columns: list[Column]) -> list[tuple[str, Column]]:
    """Which column was first to its first token, first to finish, cheapest and longest, once
    every column has finished (an errored or stopped one is left out). Pure."""
    if any(c.reply.status == Message.Status.STREAMING for c in columns):
        return []
    done = [c for c in columns if c.reply.status == Message.Status.COMPLETE]
    if len(done) < 2:
        return []
    rows = []

    def best(what: str, value, smallest: bool = True) -> None:
        measured = [(value(c), c) for c in done if value(c) is not None]
        if measured:
            pick = min if smallest else max
            rows.append((what, pick(measured, key=lambda item: item[0])[1]))

    def seconds(start, end):
        return (end - start).total_seconds() if start and end else None

    best(_("First token"), lambda c: seconds(c.reply.started_at, c.reply.first_token_at))
    best(_("Finished first"), lambda c: seconds(c.reply.started_at, c.reply.finished_at))
    best(_("Cheapest"), lambda c: c.reply.usd_amount)
    best(
        _("Longest"),
        lambda c: (c.reply.usage or {}).get("completion_tokens") or len(c.reply.content),
        smallest=False,
    )
    return rows


def grid_of(comparison: Comparison, replies: list[Message]) -> Grid:
    columns = [
        Column(n + 1, comparison.columns[n]["label"] if n < len(comparison.columns) else "", m)
        for n, m in newest_per_column(replies).items()
    ]
    return Grid(comparison, comparison.prompt_id, columns, summary(columns))


def open_grid(path: list[Message], everything: list[Message]) -> Grid | None:
    """The comparison the transcript ends in, if none of its replies has been kept yet: the
    shown path's last message is one of its columns. `everything`: the conversation's messages
    (the columns are found there)."""
    last = path[-1] if path else None
    if last is None or last.comparison_id is None:
        return None
    comparison = Comparison.objects.filter(pk=last.comparison_id, kept__isnull=True).first()
    if comparison is None:
        return None
    replies = [m for m in everything if m.comparison_id == comparison.pk]
    return grid_of(comparison, replies)


def summary_frame(comparison_id: int) -> tuple[str, str]:
    """The summary row's HTML for the pages (swapped in by id) and their group; no HTML when
    the comparison was kept meanwhile."""
    comparison = Comparison.objects.filter(pk=comparison_id).select_related("conversation").first()
    if comparison is None or comparison.kept_id is not None:
        return "", ""
    replies = list(
        comparison.replies.only(
            "pk",
            "column",
            "status",
            "created_at",
            "started_at",
            "first_token_at",
            "finished_at",
            "cost",
            "usage",
            "content",
            "comparison_id",
        )
    )
    grid = grid_of(comparison, replies)
    html = render_to_string("chat/compare.html#summary", {"grid": grid, "oob": True})
    return html, comparison.conversation.group_name


# Views: the composer posted without scripts, Keep, "Compare with...", a column's Retry.


def refusal_html(reasons: list[str]) -> str:
    return render_to_string("chat/compare.html#refusal", {"reasons": reasons})


def _done(request, conversation_id: int) -> HttpResponse:
    if not request.htmx:
        return redirect("conversation", conversation_id)
    return HttpResponse(status=204)


def _refused(request, conversation_id: int | None, reasons: list[str], status: int = 422):
    if request.htmx:
        return HttpResponse(refusal_html(reasons), status=status)
    return _refused_page(request, conversation_id, reasons, status)


def _refused_page(request, conversation_id: int | None, reasons: list[str], status: int):
    """Without scripts: the chat page in compare mode again, the reasons beside the composer."""
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    form = ComposerForm(request.POST, user=request.user)
    form.is_valid()
    form.errors[NON_FIELD_ERRORS] = form.error_class(reasons)
    formset = ColumnFormSet(request.POST, presets=presets_of(request.user))
    formset.is_valid()
    base = conversation.settings if conversation else turns.default_settings(request.user)
    chosen_columns(base, formset)  # the columns' reasons, in place
    response = views._chat_page(request, conversation, form, formset=formset)
    response.status_code = status
    return response


@require_POST
@views.busy_answered()
@login_required
async def send(request, conversation_id: int | None = None) -> HttpResponse:
    """POST /c/<id>/compare/ (or /new/compare/, a new chat's first message): the composer's
    message to every column, without scripts (the page sends it over its socket,
    ConversationConsumer.compare)."""
    user = await request.auser()
    async with admission.turn_slot():
        reasons, taken = await sync_to_async(admission.gives_back_connection(take_comparison))(
            user, conversation_id, request.POST
        )
    if taken is None:
        return await sync_to_async(_refused)(request, conversation_id, reasons)
    await start(taken)
    if conversation_id is None and request.htmx:
        return HttpResponseClientRedirect(taken.conversation.get_absolute_url())
    return _done(request, taken.conversation.pk)


def again_context(user, conversation_id: int, message_id: int, open_: bool = False) -> dict:
    """The "Compare with..." dialog for a reply of the person's (404 for anyone else's)."""
    reply = get_object_or_404(
        Message,
        pk=message_id,
        conversation__pk=conversation_id,  # out of a database id's range: no such reply
        conversation__owner=user,
        role=Message.Role.ASSISTANT,
    )
    presets = presets_of(user)
    return {
        "again": {
            "action": f"{reply.url}compare/",
            "open": open_,
            "setup": setup(presets, MIN_COLUMNS, id="compare-again-setup", auto_id="again_%s"),
        }
    }


@require_http_methods(["GET", "POST"])
@views.busy_answered(retarget_reply=True)
@login_required
async def again(request, conversation_id: int, message_id: int) -> HttpResponse:
    """/c/<id>/m/<reply>/compare/: "Compare with...". GET: its dialog (for scripts) or the
    page with it open; POST: the reply's prompt answered again in the columns posted."""
    user = await request.auser()
    if request.method == "GET":
        return await sync_to_async(_again_page)(request, conversation_id, message_id)
    async with admission.turn_slot():
        reasons, taken = await sync_to_async(admission.gives_back_connection(take_again))(
            user, conversation_id, message_id, request.POST
        )
    if taken is None:
        if request.htmx:
            return HttpResponse(refusal_html(reasons), status=422)
        return await sync_to_async(_again_page)(request, conversation_id, message_id, 422)
    await start(taken)
    return _done(request, conversation_id)


def _again_page(request, conversation_id: int, message_id: int, status: int = 200):
    context = again_context(request.user, conversation_id, message_id, open_=not request.htmx)
    if request.htmx:
        return render(request, "chat/compare.html#again_dialog", context, status=status)
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    response = views._chat_page(request, conversation, ComposerForm(), extra=context)
    response.status_code = status
    return response


@require_POST
@views.busy_answered(retarget_reply=True)
@login_required
async def retry_column(request, conversation_id: int, message_id: int) -> HttpResponse:
    """POST /c/<id>/m/<reply>/compare/retry/: the column answers again, with its settings."""
    user = await request.auser()
    async with admission.turn_slot():
        taken = await sync_to_async(admission.gives_back_connection(take_column_again))(
            user, conversation_id, message_id
        )
    if taken is None:
        note = _("This column is still streaming, or one of the answers was kept already.")
        if not request.htmx:
            return _done(request, conversation_id)
        # As a reply's Retry does: the reason goes to the end of the reply it is about.
        return HttpResponse(
            views._error_note(note),
            status=422,
            headers={"HX-Retarget": f"#message-{message_id}", "HX-Reswap": "beforeend"},
        )
    await start(taken)
    return _done(request, conversation_id)


@require_POST
@login_required
async def keep_view(request, conversation_id: int, message_id: int) -> HttpResponse:
    """POST /c/<id>/m/<reply>/keep/: "Keep this one"."""
    user = await request.auser()
    conversation = await sync_to_async(keep)(user, conversation_id, message_id)
    await views.announce_transcript(conversation)
    return _done(request, conversation_id)


# Sharing: a share made while a comparison is undecided shows its columns, read-only.


def shared_columns(conversation: Conversation, path_ids: list[int]) -> list[int]:
    """The other columns' replies of the undecided comparison the path ends in (a share keeps
    them after the path), or none."""
    if not path_ids:
        return []
    last = Message.objects.filter(pk=path_ids[-1]).only("comparison_id").first()
    if last is None or last.comparison_id is None:
        return []
    if not Comparison.objects.filter(pk=last.comparison_id, kept__isnull=True).exists():
        return []
    replies = list(
        Message.objects.filter(comparison_id=last.comparison_id).only(
            "pk", "column", "created_at", "comparison_id"
        )
    )
    return [m.pk for m in newest_per_column(replies).values() if m.pk not in path_ids]


def shared_path(messages: list[Message]) -> list[Message]:
    """A share's messages as a path; columns kept after it (`shared_columns`) become the
    grid of the path's last message, read-only."""
    for n, message in enumerate(messages[:-1]):
        rest = messages[n + 1 :]
        if message.comparison_id is None:
            continue
        if all(m.comparison_id == message.comparison_id for m in rest):
            comparison = Comparison.objects.filter(pk=message.comparison_id).first()
            if comparison is not None:
                message.grid = grid_of(comparison, [message, *rest])
                for column in message.grid.columns:
                    column.reply.in_grid = True
            return messages[: n + 1]
    return messages
