"""Uploads (resumable, in chunks) and serving attachment files to those who may see them.

Daphne keeps each request body in memory, so a file is sent as a series of small requests
(`PLAYGROUND_UPLOAD_CHUNK_BYTES`, 8 MiB by default). Each chunk is streamed to disk at its offset,
in the upload's working folder (chat.files); nothing here holds more than one read block (1 MiB)
of a file in memory, and the hashing and probing of the finished file happen in
`chat.media.prepare`, in a worker thread. Once ready, the files are handed to the storage.

Upload protocol
---------------
All endpoints answer JSON and belong to the logged-in owner. Unsafe methods need Django's CSRF
token in an `X-CSRFToken` header (the `csrftoken` cookie). Not logged in: 403
`{"error": "Log in first."}`. Someone else's key, or no such key: 404
`{"error": "No such upload."}`.
Every error answer is `{"error": "<a sentence for a person>", ...}`.

1. `POST /uploads/` with form fields `name` (the file's name, shown to people only), `size` (bytes)
   and `type` (the browser's guess; not trusted, not stored).
   -> 201 `{"key", "chunk_size", "received": 0, "upload_url": "/uploads/<key>/", "status":
   "uploading"}`. A size that is not a whole number, 0, or above PLAYGROUND_MAX_UPLOAD_BYTES
   -> 400 saying what is allowed; not enough free disk -> 507.

2. `PUT <upload_url>` with header `Upload-Offset: <n>` and the next bytes of the file as the raw
   body (`Content-Length` required; at most `chunk_size` bytes; any Content-Type).
   - n == received: the bytes are written at n -> 200 `{"received", "status"}`; status stays
     "uploading" until the last byte arrives, then it is "processing" and processing starts.
   - the exact chunk that ended at `received` sent again (n < received, n + length == received):
     nothing is written -> 200 `{"received", "status"}` (a retry after a lost answer is harmless).
   - any other n, or the upload is no longer accepting bytes -> 409
     `{"error", "received", "status"}`: resume by sending from `received` (when "uploading").
   - bytes past the declared size, an empty body, a bad header -> 400; body > chunk_size -> 413;
     no Content-Length -> 411.
   Send chunks one at a time, in order; on a network error, GET the status (or just resend the
   chunk: the answer tells where to go on).

3. `GET <upload_url>` -> 200 `{"key", "status", "received", "size", "progress", "error", "kind",
   "name", "content_type", "width", "height", "duration", "chunk_size", "upload_url",
   "original_url", "sent_url", "poster_url"}`.
   status: "uploading" (chunks still missing) -> "processing" (probing/converting; `progress`
   goes 0..1) -> "ready" (may be sent with a message) or "failed" (`error` says why, for a person;
   the files are gone already). Poll about once a second while "processing". `size` is the
   declared size in bytes; `kind` is "image"/"audio"/"video" once known, else "";
   `content_type`, `width`, `height` (pixels), `duration` (seconds) are null/"" until ready;
   the three `*_url` are null until ready (`poster_url` also when there is no poster).

4. `DELETE <upload_url>` (or `POST <upload_url>delete/`) -> 204: the upload, its row and files
   are gone. An attachment already sent with a message -> 409 (it belongs to the conversation).

Serving files
-------------
`GET /media/<key>/<variant>/` where variant is `original`, `sent` (the converted file the API
receives, or the original when there is none) or `poster` (a still image; images and videos).
Only people `can_view` may see an attachment (now: its owner); anyone else gets a 404, as do
attachments that are not ready. Answers stream from the storage with `X-Content-Type-Options:
nosniff`, a Content-Type from an allow-list (else application/octet-stream),
`Content-Disposition: inline` for images/audio/video of allowed types and `attachment` for
anything else or with `?download=1`, `Cache-Control: private, max-age=3600`, an ETag and
`Accept-Ranges: bytes`. A store with signed links of its own (S3) gets a redirect there instead
(`Cache-Control: private, no-store`); the link carries the same type and disposition.
A single `Range: bytes=...` gets a 206 (416 when it starts past the end); several ranges, or an
`If-Range` that no longer matches, get the whole file. A 206 carries at most RANGE_WINDOW_BYTES
(16 MiB): the Content-Range says which bytes came, and media elements ask for the rest.

Memory
------
Daphne writes whatever the app sends into Twisted's buffer at once, however slowly the client
reads; `paced_http` (wrap the ASGI app with it) makes response bodies wait for the connection's
buffer to drain, so a full download of a 2 GB original does not sit in the server's memory.

Housekeeping
------------
`discard_stale_uploads(older_than)` removes unfinished or failed uploads never sent with a message.
Processing holds a lease: the thread doing it renews `processing_at` every
PLAYGROUND_CHECKPOINT_SECONDS. An upload whose process died while processing it (its lease older
than PLAYGROUND_LEASE_SECONDS) is taken over by whichever process is next asked for its status,
and processed again from its original, which every process can read in the shared data dir
(an upload in progress is in its working folder, whatever the storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import mimetypes
import re
import secrets
import shutil
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.db import close_old_connections, connections
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import number_format
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST, require_safe

from . import files
from .models import Attachment, attachment_path

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# How much of a request body or a file is read at once.
BLOCK_BYTES = 1 * MB
# How long a store's own link to a file (see files.direct_url) is valid.
DIRECT_URL_SECONDS = 3600
# Blocks of a served file (each one read in a worker thread when served over ASGI).
SERVE_BLOCK_BYTES = 256 * 1024
# The most one 206 answer carries (see the module docstring).
RANGE_WINDOW_BYTES = 16 * MB
# Processing progress is written to the database at most this often.
PROGRESS_INTERVAL = 0.25
# Uploads and imports leave at least this much of the disk free.
FREE_MARGIN = 64 * MB
ORIGINAL_NAME = "original"
WORK_DIR = "work"
GENERIC_FAILURE = gettext_lazy(
    "Something went wrong while processing this file. Try again, or try another file."
)

# Types served as themselves and shown inline; anything else is a download of octet-stream.
INLINE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "audio/mpeg",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/ogg",
        "audio/webm",
        "audio/mp4",
        "audio/aac",
        "audio/flac",
        "audio/x-flac",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
    }
)
POSTER_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
VARIANTS = ("original", "sent", "poster")

# Processing threads still running (a reference keeps each one until it ends).
_workers: set[threading.Thread] = set()
_workers_lock = threading.Lock()


def number_text(number: float, decimals: int) -> str:
    """`number` rounded to `decimals`, trailing zeros dropped, in the active language's number
    format (a decimal comma in Arabic): 2.50 -> '2.5', 3.0 -> '3'."""
    text = f"{number:.{decimals}f}"
    return number_format(Decimal(text.rstrip("0").rstrip(".") if "." in text else text))


def human_bytes(size: float, extra: int = 0) -> str:
    """A size for a person, in the active language: 2147483648 -> '2 GB', 8388608 -> '8 MB',
    1536 -> '1.5 KB', 1 -> '1 byte'. One decimal under 10 of a unit, none from 10 up; `extra`
    more decimals (media._two: "256.3 MB" against a limit of "256 MB")."""
    if size < 1024:
        count = int(size)
        return ngettext("%(size)s byte", "%(size)s bytes", count) % {"size": number_format(count)}
    if size >= 1024**3:
        value, unit = size / 1024**3, _("%(size)s GB")
    elif size >= MB:
        value, unit = size / MB, _("%(size)s MB")
    else:
        value, unit = size / 1024, _("%(size)s KB")
    return unit % {"size": number_text(value, (0 if value >= 10 else 1) + extra)}


def _error(message: str, http_status: int, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=http_status)


def _not_found() -> JsonResponse:
    return _error(_("No such upload."), 404)


def _json_login_required(view: Callable) -> Callable:
    """Like login_required, but a JSON 403 instead of a redirect to the log-in page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return _error(_("Log in first."), 403)
        return view(request, *args, **kwargs)

    return wrapper


# Files ----------------------------------------------------------------------------------------


def copy_attachment(original: Attachment, owner, message) -> Attachment:
    """A copy of a ready attachment for `message`, owned by `owner`, under a new key, files
    included (same names inside its folder: `original`, `work/...`)."""
    values = {f.attname: getattr(original, f.attname) for f in Attachment._meta.fields}
    # Names, not the original's FieldFile objects, which the copy would share (and rename).
    values.update({name: getattr(original, name).name for name in files.FILE_FIELDS})
    copy = Attachment(**values)
    copy.pk = None
    copy.key = secrets.token_urlsafe(16)
    copy.owner = owner
    copy.message = message
    copy.conversation_id = message.conversation_id
    copy.created_at = timezone.now()
    prefix = attachment_path(original, "")
    try:
        for name in files.FILE_FIELDS:
            field = getattr(original, name)
            if not field:
                continue
            # Out of its usual folder, a file keeps its own name.
            inside = field.name.startswith(prefix)
            relative = field.name.removeprefix(prefix) if inside else Path(field.name).name
            target = attachment_path(copy, relative)
            getattr(copy, name).name = target
            files.copy(field.name, target)
        copy.save()
    except BaseException:
        files.remove(copy)
        raise
    return copy


def _media_name(path: Path) -> str:
    """A FileField name: the path relative to MEDIA_ROOT."""
    return path.resolve().relative_to(Path(settings.MEDIA_ROOT).resolve()).as_posix()


def _clean_name(name: str) -> str:
    """A file name fit for display: last path segment, no control characters, at most 255."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return " ".join(name.split())[:255]


# Creating and receiving -----------------------------------------------------------------------


@require_POST
@_json_login_required
def start(request: HttpRequest) -> JsonResponse:
    """POST /uploads/: announce a file; answers where and in what pieces to send it."""
    limit = settings.PLAYGROUND_MAX_UPLOAD_BYTES
    allowed = {"limit": human_bytes(limit)}
    try:
        size = int(request.POST.get("size", ""))
        if size < 0:
            raise ValueError
    except ValueError:
        return _error(
            _(
                "Say how big the file is (size, in bytes). Files from 1 byte up to %(limit)s can "
                "be uploaded."
            )
            % allowed,
            400,
        )
    if size == 0:
        return _error(
            _("This file is empty. Files from 1 byte up to %(limit)s can be uploaded.") % allowed,
            400,
        )
    if size > limit:
        shown = human_bytes(size)
        if shown == allowed["limit"]:
            text = _(
                "This file is more than %(size)s. Files from 1 byte up to %(limit)s can be "
                "uploaded."
            )
        else:
            text = _("This file is %(size)s. Files from 1 byte up to %(limit)s can be uploaded.")
        return _error(text % {"size": shown, **allowed}, 400)
    name = _clean_name(request.POST.get("name", ""))
    attachment = Attachment(owner=request.user, key=secrets.token_urlsafe(16), original_name=name)
    attachment.declared_size = size
    attachment.file.name = attachment_path(attachment, ORIGINAL_NAME)
    folder = files.working_dir(attachment)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not has_room_for(folder.parent, size):
        return _error(_("The server does not have enough free disk space for this file."), 507)
    folder.mkdir()
    (folder / ORIGINAL_NAME).touch()
    attachment.save()
    return JsonResponse(
        {
            "key": attachment.key,
            "chunk_size": settings.PLAYGROUND_UPLOAD_CHUNK_BYTES,
            "received": 0,
            "upload_url": reverse("upload", args=[attachment.key]),
            "status": attachment.status,
        },
        status=201,
    )


@_json_login_required
def upload(request: HttpRequest, key: str) -> HttpResponse:
    """/uploads/<key>/: PUT a chunk, GET the status, DELETE the upload."""
    if request.method == "PUT":
        return _receive_chunk(request, key)
    if request.method in ("GET", "HEAD"):
        attachment = Attachment.objects.filter(key=key, owner=request.user).first()
        if attachment is None:
            return _not_found()
        take_over_if_abandoned(attachment)
        return JsonResponse(status_json(attachment))
    if request.method == "DELETE":
        return _delete(request, key)
    response = _error(_("Use GET, PUT or DELETE."), 405)
    response["Allow"] = "GET, HEAD, PUT, DELETE"
    return response


@require_POST
@_json_login_required
def delete(request: HttpRequest, key: str) -> HttpResponse:
    """POST /uploads/<key>/delete/: the same as DELETE /uploads/<key>/."""
    return _delete(request, key)


def _delete(request: HttpRequest, key: str) -> HttpResponse:
    attachment = Attachment.objects.filter(key=key, owner=request.user).first()
    if attachment is None:
        return _not_found()
    unsent = Attachment.objects.filter(
        pk=attachment.pk, message__isnull=True, conversation__isnull=True
    )
    deleted, _kinds = unsent.delete()
    if not deleted:
        return _error(_("This file was sent with a message; it stays with the conversation."), 409)
    files.remove(attachment)
    return HttpResponse(status=204)


def _state(attachment: Attachment) -> dict:
    return {"received": attachment.received, "status": attachment.status}


def _receive_chunk(request: HttpRequest, key: str) -> JsonResponse:
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
        if offset < 0:
            raise ValueError
    except ValueError:
        return _error(_("Send the chunk's position in an Upload-Offset header (bytes)."), 400)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length < 0:
        return _error(_("Send the chunk with a Content-Length header."), 411)
    attachment = Attachment.objects.filter(key=key, owner=request.user).first()
    if attachment is None:
        return _not_found()
    chunk_size = settings.PLAYGROUND_UPLOAD_CHUNK_BYTES
    if length > chunk_size:
        return _error(
            ngettext(
                "Send at most %(count)s byte at a time.",
                "Send at most %(count)s bytes at a time.",
                chunk_size,
            )
            % {"count": chunk_size},
            413,
            **_state(attachment),
        )
    received = attachment.received
    if length and offset < received and offset + length == received:
        return JsonResponse(_state(attachment))  # the last chunk again: it is already here
    if attachment.status != Attachment.Status.UPLOADING:
        return _error(_("This upload takes no more bytes."), 409, **_state(attachment))
    if offset != received:
        return _error(
            _("Expected the bytes from %(offset)s on.") % {"offset": received},
            409,
            **_state(attachment),
        )
    if length == 0:
        return _error(_("The chunk is empty."), 400, **_state(attachment))
    if offset + length > attachment.declared_size:
        return _error(
            ngettext(
                "This goes past the file's declared size of %(size)s byte.",
                "This goes past the file's declared size of %(size)s bytes.",
                attachment.declared_size,
            )
            % {"size": attachment.declared_size},
            400,
            **_state(attachment),
        )
    try:
        written = _write_at(files.working_dir(attachment) / ORIGINAL_NAME, offset, request, length)
    except FileNotFoundError:
        return _not_found()  # deleted meanwhile
    if written != length:
        return _error(_("The chunk arrived cut short; send it again."), 400, **_state(attachment))
    new_received = offset + length
    complete = new_received == attachment.declared_size
    status = Attachment.Status.PROCESSING if complete else Attachment.Status.UPLOADING
    # Only the request that still sees `received == offset` moves it on.
    moved = Attachment.objects.filter(
        pk=attachment.pk, received=offset, status=Attachment.Status.UPLOADING
    ).update(received=new_received, status=status, progress=0, processing_at=timezone.now())
    if not moved:
        attachment.refresh_from_db(fields=["received", "status"])
        return _error(_("Another request moved this upload on."), 409, **_state(attachment))
    if complete:
        start_processing(attachment.pk)
    return JsonResponse({"received": new_received, "status": status})


def _write_at(path: Path, offset: int, source, length: int) -> int:
    """Copy `length` bytes from `source` into the file at `offset`, a block at a time."""
    written = 0
    with open(path, "r+b") as out:
        out.seek(offset)
        while written < length:
            block = source.read(min(BLOCK_BYTES, length - written))
            if not block:
                break
            out.write(block)
            written += len(block)
    return written


def status_json(attachment: Attachment) -> dict:
    """What GET /uploads/<key>/ answers."""
    ready = attachment.status == Attachment.Status.READY

    def url(variant: str) -> str | None:
        return reverse("attachment_media", args=[attachment.key, variant]) if ready else None

    return {
        "key": attachment.key,
        "status": attachment.status,
        "received": attachment.received,
        "size": attachment.declared_size,
        "progress": attachment.progress,
        "error": attachment.error or None,
        "kind": attachment.kind,
        "name": attachment.original_name,
        "content_type": attachment.content_type,
        "width": attachment.width,
        "height": attachment.height,
        "duration": attachment.duration,
        "chunk_size": settings.PLAYGROUND_UPLOAD_CHUNK_BYTES,
        "upload_url": reverse("upload", args=[attachment.key]),
        "original_url": url("original"),
        "sent_url": url("sent"),
        "poster_url": url("poster") if attachment.poster else None,
    }


def save_whole(user, name: str, data: bytes, quick: bool = False) -> Attachment:
    """A file that arrived whole in one request (a call's utterance), saved and processed here
    and now, as an upload's last chunk would start it: the attachment, `ready`, or `failed`
    with the reason in `error`. Blocking: run it in a worker thread."""
    attachment = Attachment(
        owner=user,
        key=secrets.token_urlsafe(16),
        original_name=_clean_name(name),
        declared_size=len(data),
        received=len(data),
        status=Attachment.Status.PROCESSING,
        processing_at=timezone.now(),
    )
    attachment.file.name = attachment_path(attachment, ORIGINAL_NAME)
    folder = files.working_dir(attachment)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not has_room_for(folder.parent, len(data)):
        attachment.status = Attachment.Status.FAILED
        attachment.error = _("The server does not have enough free disk space for this recording.")
        return attachment
    folder.mkdir()
    (folder / ORIGINAL_NAME).write_bytes(data)
    attachment.save()
    process(attachment.pk, quick=quick)
    attachment.refresh_from_db()
    return attachment


# Processing ------------------------------------------------------------------------------------


def start_processing(pk: int) -> threading.Thread:
    """Probe and convert an upload in a worker thread; the request does not wait for it. What
    it refuses is said in the language of the request that finished the upload."""
    language = translation.get_language()
    thread = threading.Thread(target=_run_processing, args=(pk, language), name=f"attachment-{pk}")
    thread.daemon = True
    with _workers_lock:
        _workers.add(thread)
    thread.start()
    return thread


def wait_for_processing(timeout: float | None = None) -> bool:
    """Wait for the processing threads of this process to end; False if some still run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _workers_lock:
        running = list(_workers)
    for thread in running:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in running)


def _run_processing(pk: int, language: str | None = None) -> None:
    if language:
        translation.activate(language)  # a new thread starts with the default language
    done = threading.Event()
    lease = threading.Thread(target=_keep_lease, args=(pk, done), name=f"attachment-{pk}-lease")
    lease.daemon = True
    lease.start()
    try:
        close_old_connections()
        process(pk)
    finally:
        done.set()
        lease.join()
        connections.close_all()
        with _workers_lock:
            _workers.discard(threading.current_thread())


def _keep_lease(pk: int, done: threading.Event) -> None:
    """Say this process is still processing `pk`, until it is done."""
    try:
        while not done.wait(settings.PLAYGROUND_CHECKPOINT_SECONDS):
            try:
                Attachment.objects.filter(pk=pk, status=Attachment.Status.PROCESSING).update(
                    processing_at=timezone.now()
                )
            except Exception:  # a missed renewal is retried; the lease allows several
                logger.warning("Could not renew the lease of attachment %s", pk, exc_info=True)
    finally:
        connections.close_all()


def take_over_if_abandoned(attachment: Attachment) -> None:
    """Process an upload again here if the process that was processing it has died (its lease
    ran out). Only one process wins the take-over. `attachment` is updated in place."""
    if attachment.status != Attachment.Status.PROCESSING:
        return
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.PLAYGROUND_LEASE_SECONDS)
    if attachment.processing_at is not None and attachment.processing_at >= cutoff:
        return
    taken = Attachment.objects.filter(
        pk=attachment.pk,
        status=Attachment.Status.PROCESSING,
        processing_at=attachment.processing_at,
    ).update(processing_at=now, progress=0)
    if not taken:
        return
    logger.warning("Processing attachment %s again: its process stopped", attachment.pk)
    attachment.processing_at, attachment.progress = now, 0
    start_processing(attachment.pk)


def _progress_reporter(pk: int) -> Callable[[float], None]:
    last = 0.0

    def report(fraction: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL:
            return
        last = now
        try:
            value = max(0.0, min(1.0, float(fraction)))
            Attachment.objects.filter(pk=pk, status=Attachment.Status.PROCESSING).update(
                progress=value
            )
        except Exception:  # progress is a nicety; never let it stop the work
            logger.warning("Could not record progress of attachment %s", pk, exc_info=True)

    return report


def process(pk: int, quick: bool = False) -> None:
    """Run `media.prepare` on a finished upload and record the outcome (blocking). `quick`: a
    call's recording, converted for speed and size (media.prepare)."""
    attachment = Attachment.objects.filter(pk=pk, status=Attachment.Status.PROCESSING).first()
    if attachment is None:
        return
    try:
        from . import media  # imported here: a heavy import that only processing needs
    except ImportError:
        logger.exception("No media module: attachment %s cannot be processed", pk)
        _fail(attachment, str(GENERIC_FAILURE))
        return
    folder = files.working_dir(attachment)
    workdir = folder / WORK_DIR
    shutil.rmtree(workdir, ignore_errors=True)  # what an earlier, interrupted run left
    try:
        prepared = media.prepare(
            folder / ORIGINAL_NAME,
            workdir,
            name=attachment.original_name,
            progress=_progress_reporter(pk),
            quick=quick,
        )
        fields = _prepared_fields(prepared, folder)
        attachment.derived.name, attachment.poster.name = fields["derived"], fields["poster"]
        files.publish(attachment)
    except media.MediaRefused as refused:
        _fail(attachment, str(getattr(refused, "message", "") or refused or GENERIC_FAILURE))
        return
    except Exception:
        logger.exception("Processing attachment %s (%s) failed", pk, attachment.key)
        _fail(attachment, str(GENERIC_FAILURE))
        return
    saved = Attachment.objects.filter(pk=pk, status=Attachment.Status.PROCESSING).update(
        status=Attachment.Status.READY, progress=1.0, error="", **fields
    )
    if not saved:  # deleted while it was being processed
        files.remove(attachment)
        return
    files.drop_working_copy(attachment)


def _prepared_fields(prepared, folder: Path) -> dict:
    """Model fields from media.prepare's result; files outside the upload's folder move in."""
    probe = prepared.probe
    codecs = dict(probe.codecs or {})
    if getattr(probe, "container", None):
        codecs.setdefault("container", probe.container)
    fields = {
        "kind": probe.kind or "",
        "content_type": probe.content_type or "",
        "size": probe.size or 0,
        "sha256": probe.sha256 or "",
        "width": probe.width,
        "height": probe.height,
        "duration": probe.duration,
        "codecs": codecs,
        "derived": "",
        "derived_content_type": "",
        "poster": "",
    }
    if prepared.derived:
        fields["derived"] = _media_name(_keep_inside(Path(prepared.derived), folder, "derived"))
        fields["derived_content_type"] = prepared.derived_content_type or ""
    if prepared.poster:
        fields["poster"] = _media_name(_keep_inside(Path(prepared.poster), folder, "poster"))
    return fields


def _keep_inside(path: Path, folder: Path, stem: str) -> Path:
    if path.resolve().is_relative_to(folder.resolve()):
        return path
    target = folder / f"{stem}{path.suffix.lower()}"
    shutil.move(path, target)
    return target


def _fail(attachment: Attachment, message: str) -> None:
    """Record why, and leave nothing of the upload on disk."""
    files.remove(attachment)
    Attachment.objects.filter(pk=attachment.pk).update(
        status=Attachment.Status.FAILED,
        error=message,
        progress=0,
        file="",
        derived="",
        derived_content_type="",
        poster="",
    )


def discard_stale_uploads(older_than: timedelta) -> int:
    """Remove uploads older than `older_than` that never finished (uploading, processing or
    failed) and were never sent with a message, with their files. Returns how many."""
    cutoff = timezone.now() - older_than
    stale = Attachment.objects.filter(
        created_at__lt=cutoff,
        message__isnull=True,
        status__in=[
            Attachment.Status.UPLOADING,
            Attachment.Status.PROCESSING,
            Attachment.Status.FAILED,
        ],
    )
    count = 0
    for attachment in stale.iterator():
        deleted, _kinds = Attachment.objects.filter(pk=attachment.pk, message__isnull=True).delete()
        if deleted:
            files.remove(attachment)
            count += 1
    return count


# Serving ---------------------------------------------------------------------------------------


def can_view(user, attachment: Attachment) -> bool:
    """Whether `user` may see this attachment's files. For now: its owner only."""
    return bool(user.is_authenticated and attachment.owner_id == user.pk)


@dataclass
class _Variant:
    name: str  # the stored name
    content_type: str
    filename: str


def _variant(attachment: Attachment, variant: str) -> _Variant | None:
    stem = Path(attachment.original_name).stem or "attachment"
    if variant == "original":
        field, content_type = attachment.file, attachment.content_type
        filename = attachment.original_name or "attachment"
    elif variant == "sent":
        if attachment.derived:
            field, content_type = attachment.derived, attachment.derived_content_type
            extension = mimetypes.guess_extension(content_type) or Path(field.name).suffix
            filename = stem + extension
        else:
            field, content_type = attachment.file, attachment.content_type
            filename = attachment.original_name or "attachment"
    elif variant == "poster":
        field = attachment.poster
        suffix = Path(field.name).suffix.lower()
        content_type = POSTER_TYPES.get(suffix, "")
        filename = f"{stem}-poster{suffix}"
    else:
        return None
    return _Variant(field.name, content_type, filename) if field else None


def has_room_for(folder: Path, size: int) -> bool:
    """Whether the disk under `folder` can take `size` more bytes and keep a margin free."""
    return shutil.disk_usage(folder).free >= size + FREE_MARGIN


def _ascii_name(name: str) -> str:
    """'café 東京.png' -> 'cafe.png'; '東京.png' -> 'attachment.png'."""

    def ascii_only(text: str) -> str:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^A-Za-z0-9._ -]+", "_", text)

    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    suffix = ascii_only(suffix).strip(" ._")[:16]
    stem = ascii_only(stem).strip(" .")[:150] or "attachment"
    return f"{stem}.{suffix}" if suffix else stem


def content_disposition(inline: bool, filename: str) -> str:
    if inline:
        return "inline"
    safe = _ascii_name(filename)
    header = f'attachment; filename="{safe}"'
    if safe != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """One `bytes=` range as (first, last) inclusive; None to ignore the header (malformed or
    several ranges); "unsatisfiable" when it asks for nothing this file has."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or not (match[1] or match[2]):
        return None
    if match[1]:
        first = int(match[1])
        last = int(match[2]) if match[2] else size - 1
        if match[2] and last < first:
            return None  # malformed: ignored
        if first >= size:
            return "unsatisfiable"
        return first, min(last, size - 1)
    suffix = int(match[2])
    if suffix == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


class FileRangeResponse(StreamingHttpResponse):
    """Streams bytes [start, start + length) of a file, a block at a time; `source` opens it
    (a binary file that can seek: on disk, or from the storage).

    Django's FileResponse would be read whole into memory under ASGI (its iterator is
    synchronous); this one reads each block in a worker thread there, and plainly under WSGI.
    """

    def __init__(self, source: Callable[[], IO[bytes]], start: int, length: int, **kwargs):
        self._source, self._start, self._length = source, start, length
        super().__init__(self._blocks(), **kwargs)
        self["Content-Length"] = str(length)

    def _blocks(self) -> Iterator[bytes]:
        with self._source() as source:
            source.seek(self._start)
            left = self._length
            while left > 0:
                block = source.read(min(SERVE_BLOCK_BYTES, left))
                if not block:
                    return
                left -= len(block)
                yield block

    async def __aiter__(self) -> AsyncIterator[bytes]:
        source = await asyncio.to_thread(self._source)
        try:
            await asyncio.to_thread(source.seek, self._start)
            left = self._length
            while left > 0:
                block = await asyncio.to_thread(source.read, min(SERVE_BLOCK_BYTES, left))
                if not block:
                    return
                left -= len(block)
                yield block
        finally:
            source.close()


@require_safe
def serve(request: HttpRequest, key: str, variant: str) -> HttpResponse:
    """GET /media/<key>/<variant>/: an attachment's file, for those who may see it."""
    attachment = Attachment.objects.filter(key=key, status=Attachment.Status.READY).first()
    if attachment is None or not can_view(request.user, attachment):
        raise Http404("No such file")
    return _serve_file(request, attachment, variant)


SIGNED_SALT = "chat.attachments.signed"


def signed_url(attachment: Attachment) -> str:
    """A link the API's servers can fetch the sent file from, valid for
    PLAYGROUND_MEDIA_URL_SECONDS, on PLAYGROUND_PUBLIC_URL. Signed, so it names one file and
    cannot be forged or extended."""
    token = signing.dumps(attachment.key, salt=SIGNED_SALT)
    return settings.PLAYGROUND_PUBLIC_URL + reverse("signed_media", args=[token])


@require_safe
def serve_signed(request: HttpRequest, token: str) -> HttpResponse:
    """GET /media/signed/<token>/: the sent file of the attachment the token names, to anyone
    holding an unexpired token (the API fetching media by URL)."""
    try:
        key = signing.loads(token, salt=SIGNED_SALT, max_age=settings.PLAYGROUND_MEDIA_URL_SECONDS)
    except signing.BadSignature:  # also SignatureExpired
        raise Http404("No such file") from None
    attachment = Attachment.objects.filter(key=key, status=Attachment.Status.READY).first()
    if attachment is None:
        raise Http404("No such file")
    return _serve_file(request, attachment, "sent")


def _serve_file(request: HttpRequest, attachment: Attachment, variant: str) -> HttpResponse:
    found = _variant(attachment, variant)
    if found is None:
        raise Http404("No such file")
    inline = found.content_type in INLINE_TYPES and request.GET.get("download") != "1"
    content_type = (
        found.content_type if found.content_type in INLINE_TYPES else "application/octet-stream"
    )
    disposition = content_disposition(inline, found.filename)

    path = files.local_path(found.name)
    if path is None:
        # A store that serves files itself (S3's signed links) sends them: access is checked.
        url = files.direct_url(found.name, content_type, disposition, DIRECT_URL_SECONDS)
        if url is not None:
            response = HttpResponseRedirect(url)
            response["Cache-Control"] = "private, no-store"
            return response
    try:
        if path is not None:
            stat = path.stat()
            size, modified = stat.st_size, stat.st_mtime
        else:
            size, modified = files.size(found.name), files.modified_at(found.name)
    except FileNotFoundError:
        raise Http404("No such file") from None
    etag = f'"{attachment.key}-{variant}-{size:x}-{int(modified or 0):x}"'

    headers = {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": disposition,
        "Cache-Control": "private, max-age=3600",
        "Accept-Ranges": "bytes",
        "ETag": etag,
    }
    if modified is not None:
        headers["Last-Modified"] = http_date(modified)
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
        for name in ("ETag", "Cache-Control", "Last-Modified"):
            if name in headers:
                response[name] = headers[name]
        return response

    first, length, status = 0, size, 200
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted and (if_range is None or if_range.strip() == etag):
        chosen = parse_range(wanted, size)
        if chosen == "unsatisfiable":
            response = HttpResponse(status=416, headers={**headers, "Content-Type": "text/plain"})
            response["Content-Range"] = f"bytes */{size}"
            return response
        if chosen is not None:
            first, last = chosen
            last = min(last, first + RANGE_WINDOW_BYTES - 1)
            length, status = last - first + 1, 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    if request.method == "HEAD":
        response = HttpResponse(status=status, headers=headers)
        response["Content-Length"] = str(length)
        return response
    if path is not None:
        source = functools.partial(open, path, "rb")
    else:
        source = functools.partial(files.open_stored, found.name)
    return FileRangeResponse(source, first, length, status=status, headers=headers)


# Backpressure under daphne ---------------------------------------------------------------------


class _Pacer:
    """A Twisted push producer: the connection pauses it while its send buffer is full."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()

    def pauseProducing(self) -> None:  # Twisted names
        self.writable.clear()

    def resumeProducing(self) -> None:
        self.writable.set()

    def stopProducing(self) -> None:
        self.writable.set()  # the connection is going away: stop waiting


def paced_http(application):
    """ASGI middleware: a response body goes out no faster than the client reads it.

    Daphne writes whatever the app sends into Twisted's buffer at once, so a 1 GB download to
    a slow client would sit in memory. Daphne's `send` is `partial(server.handle_reply,
    protocol)`, where `protocol` is the Twisted request; registering a push producer on it makes
    Twisted say when its buffer is full, and the body waits for it to drain. Under any other
    server (or a daphne that changes this), messages pass through untouched.
    """

    async def app(scope, receive, send):
        protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
        if scope["type"] != "http" or not hasattr(protocol, "registerProducer"):
            return await application(scope, receive, send)
        pacer: _Pacer | None = None

        def release() -> None:
            nonlocal pacer
            if pacer is not None:
                pacer = None
                with contextlib.suppress(Exception):  # the connection may be gone already
                    protocol.unregisterProducer()

        async def paced_send(message):
            nonlocal pacer
            streaming = message["type"] == "http.response.body" and message.get("more_body")
            if not streaming:
                release()  # before the last message: Twisted finishes the request with it
                return await send(message)
            if pacer is None:
                try:
                    pacer = _Pacer()
                    protocol.registerProducer(pacer, True)
                except Exception:
                    logger.debug("No backpressure for this response", exc_info=True)
                    pacer = None
                    return await send(message)
            await send(message)
            if pacer is not None:
                await pacer.writable.wait()

        try:
            return await application(scope, receive, paced_send)
        finally:
            release()

    return app
