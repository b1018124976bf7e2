"""Share links: a read-only snapshot of a conversation's path, opened by an unguessable token.

A share stores the ids of the messages on the path at the moment it was made, so replies added
later (or other branches) never show on it. The token is the only key: whoever holds it sees the
snapshot ("anyone") or, for "users" links, any signed-in person does. Media of the snapshot are
served under the share's own URL (`/s/<token>/media/<key>/<variant>/`), never the owner's, and
only for attachments of messages in the snapshot. A revoked or unknown token is a 404, for the
page and its media alike, from the moment it is revoked.

"Continue this conversation" copies the snapshot into a new conversation of the viewer's: the
messages as one straight path and each attachment's files under a new key that the viewer owns.
Not the sharer's settings, which the page does not show either (a system prompt can be private):
the copy gets the viewer's defaults, as a new chat does, and its replies keep no request body
(the request behind a reply holds the system prompt and settings it was sent with).

Links to the site (the share dialog, the Shared links page, link previews) are made on the
configured public origin (`public_origin`), never on the Host header a request came with.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from . import branches, compare, files, tool_calls, turns
from .attachments import _serve_file, copy_attachment
from .models import Attachment, Conversation, Message, Share, load_attachments

# 24 random bytes: 192 bits, 32 URL-safe characters.
TOKEN_BYTES = 24
DESCRIPTION_LENGTH = 200
FALLBACK_DESCRIPTION = gettext_lazy("A conversation shared from Omni Playground.")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def share_url(share: Share) -> str:
    return reverse("shared", args=[share.token])


def snapshot_ids(conversation: Conversation) -> list[int]:
    """The ids of the path the conversation shows now, oldest first."""
    messages = list(conversation.messages.only("id", "parent_id"))
    path = [m.pk for m in branches.shown_path(messages, conversation.current_id)]
    return path + compare.shared_columns(conversation, path)


def create(owner, conversation: Conversation, visibility: str) -> Share | None:
    """A share of the conversation's current path; an identical live one is reused, so sharing
    twice in a row gives the same link. None when there is nothing to share yet."""
    ids = snapshot_ids(conversation)
    if not ids:
        return None
    existing = Share.objects.filter(
        conversation=conversation, visibility=visibility, revoked_at__isnull=True
    ).first()
    if existing is not None and existing.message_ids == ids:
        return existing
    return Share.objects.create(
        owner=owner,
        conversation=conversation,
        token=new_token(),
        visibility=visibility,
        title=str(conversation),
        message_ids=ids,
    )


def live_share(token: str) -> Share:
    """The share a token names, or a 404 when there is none or it was revoked."""
    share = Share.objects.filter(token=token, revoked_at__isnull=True).first()
    if share is None:
        raise Http404("No such link")
    return share


def may_open(user, share: Share) -> bool:
    return share.visibility == Share.Visibility.ANYONE or user.is_authenticated


def snapshot_messages(share: Share) -> list[Message]:
    """The snapshot's messages in their order, with their attachments (a fixed number of
    queries, however long the conversation)."""
    found = Message.objects.filter(pk__in=share.message_ids, conversation_id=share.conversation_id)
    by_id = {m.pk: m for m in found}
    messages = [by_id[pk] for pk in share.message_ids if pk in by_id]
    load_attachments(messages)
    tool_calls.name_results(messages)
    return messages


def description(messages: list[Message]) -> str:
    """The first thing the person said, on one line and cut short: what link previews show."""
    for message in messages:
        text = " ".join(message.content.split())
        if message.role == Message.Role.USER and text:
            return Truncator(text).chars(DESCRIPTION_LENGTH)
    return str(FALLBACK_DESCRIPTION)


def preview_image(messages: list[Message]) -> tuple[Attachment, str] | None:
    """The snapshot's first picture (an image, or a video's poster frame) and its variant."""
    for message in messages:
        for attachment in message.shown_attachments:
            if attachment.status != Attachment.Status.READY:
                continue
            if attachment.poster and attachment.kind in (
                Attachment.Kind.IMAGE,
                Attachment.Kind.VIDEO,
            ):
                return attachment, "poster"
            if attachment.kind == Attachment.Kind.IMAGE:
                return attachment, "sent"
    return None


def public_origin(request: HttpRequest) -> str:
    """Where people reach this site, e.g. https://chat.example.com: PLAYGROUND_PUBLIC_URL, else
    the first (wildcard-free) DJANGO_CSRF_TRUSTED_ORIGINS, else the request's own scheme and
    host. The last is safe only because the host was checked against ALLOWED_HOSTS, which
    settings refuse to make a wildcard: a link must never carry a Host header someone made up."""
    if settings.PLAYGROUND_PUBLIC_URL:
        return settings.PLAYGROUND_PUBLIC_URL.rstrip("/")
    for origin in settings.CSRF_TRUSTED_ORIGINS:
        if "*" not in origin:
            return origin.rstrip("/")
    return f"{request.scheme}://{request.get_host()}"


def absolute(request: HttpRequest, path: str) -> str:
    """An absolute URL to a path of this site: previews are fetched by other servers."""
    return public_origin(request) + path


# The shared page and its media -----------------------------------------------------------------


@never_cache
@require_safe
def shared(request: HttpRequest, token: str) -> HttpResponse:
    """GET /s/<token>/: the snapshot, read-only, rendered like the chat."""
    share = live_share(token)
    if not may_open(request.user, share):
        return redirect_to_login(request.get_full_path())
    messages = compare.shared_path(snapshot_messages(share))
    if request.method == "GET":
        Share.objects.filter(pk=share.pk).update(opened=F("opened") + 1)
    page_url = share_url(share)
    media_base = f"{page_url}media/"
    image = preview_image(messages)
    context = {
        "share": share,
        "messages": messages,
        "readonly": True,
        "media_base": media_base,
        "description": description(messages),
        "page_url": absolute(request, page_url),
        "image_url": absolute(request, f"{media_base}{image[0].key}/{image[1]}/") if image else "",
        "is_owner": request.user.is_authenticated and share.owner_id == request.user.pk,
    }
    response = render(request, "chat/shared.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_safe
def shared_media(request: HttpRequest, token: str, key: str, variant: str) -> HttpResponse:
    """GET /s/<token>/media/<key>/<variant>/: a file of an attachment in the snapshot."""
    share = live_share(token)
    if not may_open(request.user, share):
        raise Http404("No such file")
    attachment = Attachment.objects.filter(
        key=key,
        status=Attachment.Status.READY,
        message__conversation_id=share.conversation_id,
        message_id__in=share.message_ids,
    ).first()
    if attachment is None:
        raise Http404("No such file")
    response = _serve_file(request, attachment, variant)
    # Ask again every time (a 304 while the link lives): a revoked link stops working at once,
    # also for browsers that fetched the file before.
    response["Cache-Control"] = "private, no-cache"
    return response


# Making and revoking links ------------------------------------------------------------------------


@require_POST
@login_required
def create_share(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """POST /c/<id>/share/ with `visibility`: a link to the path shown now."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    visibility = request.POST.get("visibility", Share.Visibility.ANYONE)
    context = {"conversation": conversation, "visibility": visibility}
    if visibility not in Share.Visibility.values:
        context["problem"] = _("Choose who may open the link.")
        return render(request, "chat/shares.html#share_panel", context, status=422)
    share = create(request.user, conversation, visibility)
    if share is None:
        context["problem"] = _("There is nothing to share yet: send a message first.")
        return render(request, "chat/shares.html#share_panel", context, status=422)
    if not request.htmx:
        return redirect(f"{reverse('shares')}#share-{share.pk}")
    context.update(share=share, url=absolute(request, share_url(share)))
    return render(request, "chat/shares.html#share_panel", context)


@login_required
def shares(request: HttpRequest) -> HttpResponse:
    """GET /shares/ (optionally ?conversation=<id>): the person's links."""
    found = request.user.shares.select_related("conversation")
    conversation = None
    if request.GET.get("conversation"):
        try:
            conversation_id = int(request.GET["conversation"])
        except ValueError:
            raise Http404("No such conversation") from None
        conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
        found = found.filter(conversation=conversation)
    rows = [(share, absolute(request, share_url(share))) for share in found]
    context = {"rows": rows, "filtered": conversation}
    return render(request, "chat/shares.html", context)


@require_POST
@login_required
def revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    """POST /shares/<id>/revoke/: the link stops working now, for the page and its media."""
    share = get_object_or_404(Share, pk=share_id, owner=request.user)
    Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    share.refresh_from_db(fields=["revoked_at"])
    if request.htmx:
        context = {"share": share, "url": absolute(request, share_url(share))}
        return render(request, "chat/shares.html#share_row", context)
    return redirect("shares")


# Continuing a shared conversation ----------------------------------------------------------------

# Copied as they are; everything else on a message is its place in the tree, its lease, or its
# request body (which holds the sharer's system prompt and settings).
COPIED_FIELDS = (
    "role",
    "content",
    "reasoning",
    "status",
    "html",
    "model",
    "finish_reason",
    "error",
    "usage",
    "cost",
    "tool_calls",
    "tool_call_id",
    "logprobs",
    "created_at",
    "started_at",
    "first_token_at",
    "finished_at",
)


def fork(share: Share, viewer) -> Conversation:
    """Copy the snapshot into a new conversation of the viewer's and return it."""
    messages = compare.shared_path(snapshot_messages(share))  # the path, not its columns
    copies: list[Attachment] = []
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(
                owner=viewer, title=share.title, settings=turns.default_settings(viewer)
            )
            parent = None
            for message in messages:
                fields = {name: getattr(message, name) for name in COPIED_FIELDS}
                if fields["status"] == Message.Status.STREAMING:
                    # No job streams into the copy: it stays as far as it got.
                    fields["status"] = Message.Status.INTERRUPTED
                parent = Message.objects.create(conversation=conversation, parent=parent, **fields)
                for attachment in message.shown_attachments:
                    if attachment.status != Attachment.Status.READY:
                        continue
                    copies.append(copy_attachment(attachment, viewer, parent))
            now = timezone.now()
            Conversation.objects.filter(pk=conversation.pk).update(current=parent, updated_at=now)
            conversation.current, conversation.updated_at = parent, now
    except Exception:
        for copy in copies:
            files.remove(copy)
        raise
    return conversation


@require_POST
def continue_shared(request: HttpRequest, token: str) -> HttpResponse:
    """POST /s/<token>/continue/: the snapshot becomes a new conversation of the viewer's."""
    share = live_share(token)
    if not request.user.is_authenticated:
        # A POST cannot be replayed after logging in: come back to the page, then continue.
        return redirect_to_login(share_url(share))
    conversation = fork(share, request.user)
    return redirect(conversation)
