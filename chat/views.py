import functools

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import OperationalError, transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from . import admission, branches, code_samples, files, generation, tool_calls, turns
from .attachments import copy_attachment
from .conversations import search as search_conversations
from .conversations import sidebar
from .forms import ComposerForm, ThrottledLoginForm
from .models import Attachment, Conversation, Message, Preset, load_attachments
from .settings_form import (
    KNOWN_VOICES,
    SettingsForm,
    autosaved_settings,
    initial_from_settings,
    settings_data,
)

SIDEBAR_SIZE = 200
# The words of Django's own check (forms.CharField), for text that reaches a view without a form.
NUL_REFUSAL = gettext_lazy("Null characters are not allowed.")


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _has_users() -> bool:
    return get_user_model().objects.exists()


def index(request: HtmxHttpRequest) -> HttpResponse:
    if not _has_users():
        return redirect("setup")
    if not request.user.is_authenticated:
        return redirect("login")
    latest = request.user.conversations.first()
    if latest is not None:
        return redirect(latest)
    return redirect("new_chat")


def setup(request: HtmxHttpRequest) -> HttpResponse:
    """A fresh install's first visitor creates the admin account."""
    if _has_users():
        return redirect("index")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if _has_users():  # someone else finished first
                return redirect("login")
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = True
            user.save()
        auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("index")
    return render(request, "registration/setup.html", {"form": form})


def login(request: HtmxHttpRequest) -> HttpResponse:
    if not _has_users():
        return redirect("setup")
    return auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm)(request)


logout = auth_views.LogoutView.as_view()


def signup(request: HtmxHttpRequest) -> HttpResponse:
    if not settings.PLAYGROUND_SIGNUP:
        raise Http404("Sign-up is closed")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form})


def _chat_page(
    request: HtmxHttpRequest,
    conversation: Conversation | None,
    form: ComposerForm,
    formset=None,
    extra: dict | None = None,
) -> HttpResponse:
    """The chat page; `formset`: compare's columns refused (with their reasons), `extra`: more
    context (the "Compare with..." dialog, open)."""
    from . import compare  # it builds on this module's views

    messages, everything = shown_messages(conversation) if conversation else ([], [])
    presets = request.user.presets.all()
    asked = request.GET.get("compare")
    context = {
        "conversation": conversation,
        "groups": sidebar(request.user, SIDEBAR_SIZE),
        "messages": messages,
        "form": form,
        "totals": usage_totals(everything),  # every reply costs, whichever branch is shown
        "settings_form": settings_form_for(request.user, conversation),
        "presets": presets,
        "known_voices": KNOWN_VOICES,
        # The presets are read once, for the settings panel and the columns alike.
        "setup": compare.setup(
            {str(p.pk): (p.name, dict(p.settings)) for p in presets},
            compare.shown_count(asked) if asked is not None else None,
            formset,
        ),
        **(extra or {}),
    }
    return render(request, "chat/chat.html", context)


def usage_totals(messages: list[Message]) -> dict:
    """What a conversation has cost so far, from its replies' usage. Pure."""
    totals = {"prompt": 0, "completion": 0, "usd": 0.0, "replies": 0}
    for message in messages:
        if message.usage:
            totals["prompt"] += message.usage.get("prompt_tokens") or 0
            totals["completion"] += message.usage.get("completion_tokens") or 0
            totals["replies"] += 1
        totals["usd"] += message.usd_amount or 0
    return totals


@login_required
def new_chat(request: HtmxHttpRequest) -> HttpResponse:
    return _chat_page(request, None, ComposerForm())


@login_required
def conversation(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    return _chat_page(request, conversation, ComposerForm())


def shown_messages(conversation: Conversation) -> tuple[list[Message], list[Message]]:
    """(The messages shown: the path to the conversation's current message, each carrying its
    place among its siblings (`message.branch`) and its attachments; every message of the
    conversation.) Not their request bodies: each one holds the history sent, so together they
    grow with the square of the conversation's length; the page only needs to know whether
    there is one (`has_request`, for "View code")."""
    everything = list(
        conversation.messages.defer("request").annotate(has_request=Q(request__isnull=False))
    )
    positions = branches.branches(everything)
    path = branches.shown_path(everything, conversation.current_id)
    parents = {message.parent_id for message in everything}
    for message in path:
        message.branch = positions.get(message.pk)
        message.has_children = message.pk in parents
    from . import compare  # it builds on this module's views

    columns = []
    for message in path:  # known here: a reply rendered alone would ask the database
        message.in_grid = False
    if grid := compare.open_grid(path, everything):  # the columns of an undecided comparison
        columns = [column.reply for column in grid.columns if column.reply not in path]
        for column in grid.columns:
            column.reply.branch = positions.get(column.reply.pk)
            column.reply.in_grid = True
        path[-1].grid = grid
    load_attachments(path + columns)
    tool_calls.name_results(path)
    return path, everything


def _composer(request: HtmxHttpRequest, conversation, form: ComposerForm, status=200):
    context = {"conversation": conversation, "form": form}
    return render(request, "chat/chat.html#composer", context, status=status)


@admission.gives_back_connection
def _signed_in_turn(request: HtmxHttpRequest, conversation_id: int | None):
    """`turns.take_turn` for the person signed in, or None for an anonymous visitor: the log-in
    check is made in the same trip to a worker thread, inside the admitted work."""
    if not request.user.is_authenticated:
        return None
    return turns.take_turn(request.user, conversation_id, request.POST)


def _busy(request: HtmxHttpRequest, conversation_id: int | None, retry_after: int):
    """A send refused for now (no turn slot freed, or no database connection): 503 with
    Retry-After, the text kept in the composer. htmx gets the composer saying it retries (the
    page does); a plain form post gets a page with the composer to send again. Nothing here
    touches the database (not even the person: the log-in check may not have run)."""
    form = ComposerForm(initial={"text": request.POST.get("text", "")})
    conversation = None
    if conversation_id is not None:
        conversation = Conversation(pk=conversation_id)  # the form's address needs only its id
    if request.htmx:
        template, context = "chat/chat.html#composer", {"busy": admission.BUSY_MESSAGE}
    else:
        template, context = "chat/busy.html", {}
    context.update(conversation=conversation, form=form, retry_after=retry_after)
    response = render(request, template, context, status=503)
    response["Retry-After"] = str(retry_after)
    return response


@require_POST
async def send(request: HtmxHttpRequest, conversation_id: int | None = None) -> HttpResponse:
    """Take a message from the composer form. The turn is saved in one of the process's turn
    slots (chat/admission.py); a send that finds none within the wait, or no database
    connection, is answered busy."""
    try:
        return await _send(request, conversation_id)
    except (admission.Busy, OperationalError) as error:
        if (retry_after := admission.busy_retry_after(error)) is None:
            raise
    return await sync_to_async(_busy)(request, conversation_id, retry_after)


async def _send(request: HtmxHttpRequest, conversation_id: int | None) -> HttpResponse:
    async with admission.turn_slot():
        taken = await sync_to_async(_signed_in_turn)(request, conversation_id)
    if taken is None:
        return redirect_to_login(request.get_full_path())
    form, turn = taken
    user = request.user
    if turn is None:
        # The text stays in the composer, with the reason beside it.
        if request.htmx:
            conversation = None
            if conversation_id is not None:
                conversation = await Conversation.objects.filter(
                    pk=conversation_id, owner=user
                ).afirst()
                if conversation is None:
                    raise Http404
            return _composer(request, conversation, form, status=422)
        return await sync_to_async(_invalid_page)(request, conversation_id, form)
    conversation, messages, payload, everything = turn
    # The slot is free again: starting the job needs no database. The reply's request goes out
    # before the pages are told and this response is rendered.
    await generation.start(
        messages[-1], payload, turns.announce(conversation, messages, everything)
    )
    if not request.htmx:
        return redirect(conversation)
    if conversation_id is None:
        return HttpResponseClientRedirect(conversation.get_absolute_url())
    return await sync_to_async(_composer)(request, conversation, ComposerForm())


def _error_note(problem: str) -> str:
    return f'<div class="error" data-testid="error" role="alert">{escape(problem)}</div>'


BUSY_NOTE = gettext_lazy("The server is busy. Nothing was lost: try again in a moment.")


def busy_answered(retarget_reply: bool = False):
    """A turn-starting view (retry, edit, tool results) that found no turn slot in time, or no
    database connection, answers 503 with Retry-After and a note in place of a server error;
    `retarget_reply`: the note goes to the end of the reply the view is about, as its
    refusals do."""

    def decorator(view):
        @functools.wraps(view)
        async def answered(request: HtmxHttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                return await view(request, *args, **kwargs)
            except (admission.Busy, OperationalError) as error:
                if (retry_after := admission.busy_retry_after(error)) is None:
                    raise
            headers = {"Retry-After": str(retry_after)}
            if retarget_reply:
                headers["HX-Retarget"] = f"#message-{kwargs['message_id']}"
                headers["HX-Reswap"] = "beforeend"
            return HttpResponse(_error_note(BUSY_NOTE), status=503, headers=headers)

        return answered

    return decorator


def _refused_page(request, conversation: Conversation, problem: str) -> HttpResponse:
    """Without htmx: the chat page again, the reason beside the composer."""
    form = ComposerForm()
    form.is_valid()  # an unbound form: no errors of its own, room for this one
    form.errors[NON_FIELD_ERRORS] = form.error_class([problem])
    response = _chat_page(request, conversation, form)
    response.status_code = 422
    return response


def _invalid_page(request, conversation_id, form):
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    response = _chat_page(request, conversation, form)
    response.status_code = 422
    return response


@admission.gives_back_connection
def _regenerate(user, conversation_id: int, message_id: int):
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    earlier = get_object_or_404(
        Message.objects.exclude(status=Message.Status.STREAMING),
        pk=message_id,
        conversation=conversation,
        role=Message.Role.ASSISTANT,
    )
    parent = Message.objects.filter(pk=earlier.parent_id, conversation=conversation).first()
    if parent is None:  # e.g. an imported conversation that starts with a reply
        return conversation, None, str(NO_PROMPT_REFUSAL)
    assistant, payload = turns.begin_reply(conversation, parent)
    return conversation, assistant, payload


NO_PROMPT_REFUSAL = gettext_lazy("This reply has no message to answer, so it can't be regenerated.")


@require_POST
@busy_answered(retarget_reply=True)
@login_required
async def retry(request: HtmxHttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """Generate a reply again, as a sibling of the earlier one (which stays, one arrow away)."""
    user = await request.auser()
    async with admission.turn_slot():
        conversation, assistant, payload = await sync_to_async(_regenerate)(
            user, conversation_id, message_id
        )
    if assistant is None:
        if not request.htmx:
            return await sync_to_async(_refused_page)(request, conversation, payload)
        # Retry buttons swap nothing: the refusal goes to the end of the reply it is about.
        return HttpResponse(
            _error_note(payload),
            status=422,
            headers={"HX-Retarget": f"#message-{message_id}", "HX-Reswap": "beforeend"},
        )
    await generation.start(assistant, payload, announce_transcript(conversation))
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(conversation)


async def announce_transcript(conversation: Conversation) -> None:
    """Every open page of the conversation shows its (new) current path."""
    html, last_id, streaming = await sync_to_async(_transcript_frame)(conversation)
    await get_channel_layer().group_send(
        conversation.group_name,
        {"type": "transcript.replace", "html": html, "last": last_id, "streaming": streaming},
    )


def _transcript_frame(conversation: Conversation) -> tuple[str, int, list[int]]:
    conversation.refresh_from_db(fields=["current"])
    messages, _ = shown_messages(conversation)
    html = render_to_string(
        "chat/chat.html#transcript",
        {"messages": messages, "conversation": conversation, "replace": True},
    )
    grid = getattr(messages[-1], "grid", None) if messages else None
    shown = messages + ([column.reply for column in grid.columns] if grid else [])
    streaming = [m.pk for m in shown if m.status == Message.Status.STREAMING]
    return html, max((m.pk for m in shown), default=0), list(dict.fromkeys(streaming))


@require_POST
@login_required
async def switch_branch(
    request: HtmxHttpRequest, conversation_id: int, message_id: int
) -> HttpResponse:
    """Show another sibling: the path now runs through it, to its newest leaf."""
    user = await request.auser()
    conversation = await sync_to_async(_switch)(user, conversation_id, message_id)
    await announce_transcript(conversation)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(conversation)


def _switch(user, conversation_id: int, message_id: int) -> Conversation:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    everything = list(conversation.messages.all())
    target = next((m for m in everything if m.pk == message_id), None)
    if target is None:
        raise Http404
    conversation.current = branches.newest_leaf(everything, target)
    conversation.save(update_fields=["current"])
    return conversation


@require_http_methods(["GET", "POST"])
@busy_answered()
@login_required
async def edit_message(
    request: HtmxHttpRequest, conversation_id: int, message_id: int
) -> HttpResponse:
    """GET: the form that edits a user message, put in place of its slot when Edit is pressed.
    POST: an edited user message is a new sibling with its own reply; the original stays."""
    user = await request.auser()
    if request.method == "GET":
        return await sync_to_async(_edit_form)(request, user, conversation_id, message_id)
    text = request.POST.get("content", "")
    # Keys are slugs: one with a NUL names no attachment (and PostgreSQL refuses to look).
    keep = [key for key in request.POST.getlist("keep") if "\x00" not in key]
    async with admission.turn_slot():
        result = await sync_to_async(_edit)(user, conversation_id, message_id, text, keep)
    if isinstance(result, str):
        return HttpResponse(_error_note(result), status=422)
    conversation, assistant, payload = result
    await generation.start(assistant, payload, announce_transcript(conversation))
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(conversation)


def _edit_form(request, user, conversation_id: int, message_id: int) -> HttpResponse:
    message = get_object_or_404(
        Message,
        pk=message_id,
        conversation__pk=conversation_id,  # an id past any the database holds finds nothing
        conversation__owner=user,
        role=Message.Role.USER,
    )
    if not request.htmx:  # the form lives in the page: there is nothing to show on its own
        return redirect(message.conversation)
    return render(request, "chat/chat.html#edit_form", {"message": message})


@admission.gives_back_connection
def _edit(user, conversation_id: int, message_id: int, text: str, keep: list[str]):
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    original = get_object_or_404(
        Message, pk=message_id, conversation=conversation, role=Message.Role.USER
    )
    kept = list(original.attachments.filter(key__in=keep))
    if "\x00" in text:
        return str(NUL_REFUSAL)
    if not text.strip() and not kept:
        return _("Type a message or keep an attachment.")
    limit = ComposerForm.base_fields["text"].max_length
    if len(text) > limit:
        # The composer's own words (forms.ComposerForm).
        return ComposerForm.base_fields["text"].error_messages["max_length"] % {
            "limit_value": limit
        }
    with transaction.atomic():
        edited = Message.objects.create(
            conversation=conversation,
            parent_id=original.parent_id,
            role=Message.Role.USER,
            content=text,
        )
        for attachment in kept:
            copy_attachment(attachment, owner=user, message=edited)
        assistant, payload = turns.begin_reply(conversation, edited)
    return conversation, assistant, payload


@require_POST
@login_required
async def delete_message(
    request: HtmxHttpRequest, conversation_id: int, message_id: int
) -> HttpResponse:
    """Delete a message and everything that follows from it (its branch), files included."""
    user = await request.auser()
    conversation, streaming = await sync_to_async(_delete_message)(
        user, conversation_id, message_id
    )
    for message_id in streaming:
        await generation.request_stop(message_id)
    await announce_transcript(conversation)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(conversation)


def _delete_message(user, conversation_id: int, message_id: int):
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    everything = list(conversation.messages.all())
    target = next((m for m in everything if m.pk == message_id), None)
    if target is None:
        raise Http404
    doomed = branches.subtree(everything, target)
    doomed_ids = {m.pk for m in doomed}
    for attachment in Attachment.objects.filter(message__in=doomed_ids):
        files.remove(attachment)
    with transaction.atomic():
        Message.objects.filter(pk__in=doomed_ids).delete()
        remaining = [m for m in everything if m.pk not in doomed_ids]
        if conversation.current_id in doomed_ids or conversation.current_id is None:
            parent = next((m for m in remaining if m.pk == target.parent_id), None)
            conversation.current = (
                branches.newest_leaf(remaining, parent)
                if parent
                else branches.current_leaf(remaining, None)
            )
            conversation.save(update_fields=["current"])
    streaming = [m.pk for m in doomed if m.status == Message.Status.STREAMING]
    return conversation, streaming


@require_POST
@login_required
async def stop(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    user = await request.auser()
    conversation = await Conversation.objects.filter(pk=conversation_id, owner=user).afirst()
    if conversation is None:
        raise Http404
    await generation.stop_conversation(conversation.pk)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(conversation)


# Generation settings and presets


def _panel(request, conversation: Conversation | None, form: SettingsForm, status=200, saved=""):
    context = {
        "conversation": conversation,
        "settings_form": form,
        "presets": request.user.presets.all(),
        "known_voices": KNOWN_VOICES,
        "saved": saved,
    }
    return render(request, "chat/settings.html#panel", context, status=status)


def settings_form_for(user, conversation: Conversation | None) -> SettingsForm:
    stored = conversation.settings if conversation else turns.default_settings(user)
    return SettingsForm(initial=initial_from_settings(stored))


@login_required
def conversation_settings(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    """Show or save a conversation's settings; the next reply uses them."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    if request.method != "POST":
        return _panel(request, conversation, settings_form_for(request.user, conversation))
    if _is_partial(request):
        stored = conversation.settings
        saved, answer = _autosave(request, stored)
        if saved is not None:
            conversation.settings = saved
            conversation.save(update_fields=["settings"])
        return answer(conversation)
    form = SettingsForm(request.POST)
    if not form.is_valid():
        return _panel(request, conversation, form, status=422)
    conversation.settings = form.to_settings()
    conversation.save(update_fields=["settings"])
    return _panel(
        request, conversation, form, saved=_("Saved. The next reply uses these settings.")
    )


@login_required
def default_settings(request: HtmxHttpRequest) -> HttpResponse:
    """Settings for new chats: kept as the person's default preset."""
    if request.method != "POST":
        return _panel(request, None, settings_form_for(request.user, None))
    if _is_partial(request):
        with transaction.atomic():
            saved, answer = _autosave(request, turns.default_settings(request.user))
            if saved is not None:
                _save_default(request.user, saved)
        return answer(None)
    form = SettingsForm(request.POST)
    if not form.is_valid():
        return _panel(request, None, form, status=422)
    with transaction.atomic():
        _save_default(request.user, form.to_settings())
    return _panel(request, None, form, saved=_("Saved as the default for new chats."))


def _save_default(user, stored: dict) -> None:
    preset = user.presets.select_for_update().filter(is_default=True).first()
    if preset is None:
        preset = Preset(
            owner=user, name=_free_preset_name(user, pgettext("preset name", "Default"))
        )
        preset.is_default = True
    preset.settings = stored
    preset.save()


def _is_partial(request) -> bool:
    """An autosave from the panel (`autosave`), or a form that sets some fields (`only`)."""
    return "autosave" in request.POST or "only" in request.POST


def _autosave(request, stored: dict):
    """(The settings to store or None; a function of the conversation giving the response.)

    `autosave` (the panel's script, on each change): the whole panel is posted; what is right
    is saved, each wrong field keeps its stored value, and the answer is JSON the panel shows
    in place. `only=<field>` (the header's model picker without JavaScript): those fields
    change, the rest stay as stored, then back to the page."""
    if "autosave" in request.POST:
        data = request.POST
    else:
        data = settings_data(stored)
        for name in request.POST.getlist("only"):
            if name in SettingsForm.base_fields:
                data.setlist(name, request.POST.getlist(name))
    saved, errors = autosaved_settings(data, stored)
    if saved is not None and not errors:
        status = _("Saved")
    elif saved is not None:
        status = _("Saved, except the field marked.")
    else:
        status = _("Not saved: fix the field marked.")

    def answer(conversation):
        if "autosave" not in request.POST:
            if errors:
                form = SettingsForm(data)
                form.is_valid()
                return _panel(request, conversation, form, status=422)
            return redirect(conversation or "new_chat")
        # 200 even with errors: the autosave did its job (kept what is right); the errors are
        # the answer's content, shown in place, not a failed request.
        body = {"saved": saved is not None, "errors": errors, "status": status}
        return JsonResponse(body)

    return saved, answer


def _free_preset_name(user, name: str) -> str:
    taken = set(user.presets.values_list("name", flat=True))
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} {n}", n + 1
    return candidate


@require_POST
@login_required
def save_preset(request: HtmxHttpRequest) -> HttpResponse:
    """Save the panel's current values as a named preset."""
    conversation, problem = _conversation_from_post(request)
    if problem:
        return _refused_panel(request, problem)
    form = SettingsForm(request.POST)
    raw_name = request.POST.get("preset_name", "")
    name = " ".join(raw_name.split())[:80]
    problem = NUL_REFUSAL if "\x00" in raw_name else "" if name else _("Give the preset a name.")
    if problem:
        form.is_valid()
        form.add_error(None, problem)
        return _panel(request, conversation, form, status=422)
    if not form.is_valid():
        return _panel(request, conversation, form, status=422)
    Preset.objects.update_or_create(
        owner=request.user, name=name, defaults={"settings": form.to_settings()}
    )
    return _panel(request, conversation, form, saved=_("Saved preset “%(name)s”.") % {"name": name})


@require_POST
@login_required
def apply_preset(request: HtmxHttpRequest, preset_id: int) -> HttpResponse:
    preset = get_object_or_404(Preset, pk=preset_id, owner=request.user)
    conversation, problem = _conversation_from_post(request)
    if problem:
        return _refused_panel(request, problem)
    if conversation is not None:
        conversation.settings = dict(preset.settings)
        conversation.save(update_fields=["settings"])
    form = SettingsForm(initial=initial_from_settings(preset.settings))
    return _panel(
        request, conversation, form, saved=_("Applied “%(name)s”.") % {"name": preset.name}
    )


@require_POST
@login_required
def default_preset(request: HtmxHttpRequest, preset_id: int) -> HttpResponse:
    preset = get_object_or_404(Preset, pk=preset_id, owner=request.user)
    conversation, problem = _conversation_from_post(request)
    if problem:
        return _refused_panel(request, problem)
    with transaction.atomic():
        request.user.presets.filter(is_default=True).update(is_default=False)
        preset.is_default = True
        preset.save(update_fields=["is_default"])
    return _panel(
        request,
        conversation,
        settings_form_for(request.user, conversation),
        saved=_("New chats now start with “%(name)s”.") % {"name": preset.name},
    )


@require_POST
@login_required
def delete_preset(request: HtmxHttpRequest, preset_id: int) -> HttpResponse:
    preset = get_object_or_404(Preset, pk=preset_id, owner=request.user)
    conversation, problem = _conversation_from_post(request)
    if problem:
        return _refused_panel(request, problem)
    preset.delete()
    return _panel(
        request,
        conversation,
        settings_form_for(request.user, conversation),
        saved=_("Deleted “%(name)s”.") % {"name": preset.name},
    )


def _conversation_from_post(request) -> tuple[Conversation | None, str]:
    """(The conversation the panel's hidden `conversation` field names, or None; the reason to
    refuse the request, or ""). One that is missing or someone else's is a 404."""
    value = request.POST.get("conversation", "")
    if not value:
        return None, ""
    if not (value.isascii() and value.isdigit()):
        return None, _("The conversation to apply this to is not a number. Reload the page.")
    if len(value) > 18:  # past any id a database gives out
        raise Http404
    return get_object_or_404(Conversation, pk=int(value), owner=request.user), ""


def _refused_panel(request, problem: str) -> HttpResponse:
    """The panel as posted, with why the request was refused; nothing was saved."""
    form = SettingsForm(request.POST)
    form.is_valid()
    form.add_error(None, problem)
    return _panel(request, None, form, status=400)


@login_required
def view_code(request: HtmxHttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """The exact request behind a reply, as code to run elsewhere."""
    message = get_object_or_404(
        Message,
        pk=message_id,
        conversation__pk=conversation_id,
        conversation__owner=request.user,
        role=Message.Role.ASSISTANT,
    )
    body = message.request or {}
    url = f"{settings.PLAYGROUND_API_BASE}/chat/completions"
    with_key = bool(settings.PLAYGROUND_API_KEY) or settings.PLAYGROUND_USE_SIMULATOR
    context = {
        "message": message,
        "samples": code_samples.samples(url, body, with_key),
        "elided": code_samples.has_elided_media(body),
    }
    return render(request, "chat/chat.html#code", context)


@admission.gives_back_connection
def _tool_turn(user, conversation_id: int, message_id: int, results: dict[str, str]):
    """(the reason to refuse, or "") and, if taken, the turn as `turns.take_turn` gives it."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    call_message = get_object_or_404(
        Message, pk=message_id, conversation=conversation, role=Message.Role.ASSISTANT
    )
    calls = call_message.tool_calls or []
    missing = [c["function"]["name"] for c in calls if not results.get(c["id"], "").strip()]
    if not calls or missing:
        names = pgettext("list separator", ", ").join(missing)
        return _("Give a result for %(names)s.") % {"names": names}, None
    if any("\x00" in results[c["id"]] for c in calls):
        return str(NUL_REFUSAL), None
    with transaction.atomic():
        parent = call_message
        created = []
        for call in calls:  # one tool message per call, in the order the model made them
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=Message.Role.TOOL,
                content=results[call["id"]],
                tool_call_id=call["id"],
            )
            created.append(parent)
        tool_calls.name_results([call_message, *created])
        assistant, payload = turns.begin_reply(conversation, parent)
    messages = [*created, assistant]
    return "", (conversation, messages, payload, None)


@require_POST
@busy_answered()
@login_required
async def tool_results(
    request: HtmxHttpRequest, conversation_id: int, message_id: int
) -> HttpResponse:
    """The person answers the model's tool calls; the conversation continues."""
    user = await request.auser()
    results = {
        key.removeprefix("result_"): value
        for key, value in request.POST.items()
        if key.startswith("result_")
    }
    async with admission.turn_slot():
        problem, turn = await sync_to_async(_tool_turn)(user, conversation_id, message_id, results)
    if problem:
        return HttpResponse(_error_note(problem), status=422)
    conversation, messages, payload, everything = turn
    await generation.start(
        messages[-1], payload, turns.announce(conversation, messages, everything)
    )
    if request.htmx:
        sent = escape(_("Results sent."))
        return HttpResponse(f'<p class="muted small">{sent}</p>')
    return redirect(conversation)


# Finding and keeping conversations


@login_required
def search(request: HtmxHttpRequest) -> HttpResponse:
    """Titles and message text; an empty query shows the grouped list again."""
    query = request.GET.get("q", "").strip()[:200]
    if "\x00" in query:
        label = escape(_("Saved conversations"))
        return HttpResponse(
            '<nav class="conversation-list" id="conversation-list" '
            f'aria-label="{label}">{_error_note(NUL_REFUSAL)}</nav>',
            status=422,
        )
    if query:
        context = {"query": query, "hits": search_conversations(request.user, query)}
    else:
        context = {"query": None, "groups": sidebar(request.user, SIDEBAR_SIZE)}
    return render(request, "chat/sidebar.html#list", context)


@require_POST
@login_required
def rename(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    title = " ".join(request.POST.get("title", "").split())[:200]
    problem = NUL_REFUSAL if "\x00" in title else "" if title else _("A title cannot be empty.")
    if problem:
        return HttpResponse(
            f'<p class="error" data-testid="error" role="alert">{escape(problem)}</p>', status=422
        )
    conversation.title = title
    conversation.save(update_fields=["title"])
    if request.htmx:
        return HttpResponse(headers={"HX-Refresh": "true"})
    return redirect(conversation)


@require_POST
@login_required
def pin(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    conversation.pinned = not conversation.pinned
    conversation.save(update_fields=["pinned"])
    if request.htmx:
        return HttpResponse(headers={"HX-Refresh": "true"})
    return redirect(conversation)


@require_POST
@login_required
async def delete_conversation(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    """The conversation, its messages, shares and media files go; a running reply stops."""
    user = await request.auser()
    streaming = await sync_to_async(_delete_conversation)(user, conversation_id)
    for message_id in streaming:
        await generation.request_stop(message_id)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("new_chat"))
    return redirect("new_chat")


def _delete_conversation(user, conversation_id: int) -> list[int]:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=user)
    streaming = list(
        conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    for attachment in Attachment.objects.filter(conversation=conversation):
        files.remove(attachment)
    conversation.delete()
    return streaming
