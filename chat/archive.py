"""Conversations out and in: a Markdown transcript to read, a zip archive to restore.

Views
-----
- `GET /c/<id>/export.md`: the branch being shown (the path up to `Conversation.current`) as
  Markdown, downloaded as `<title>.md` (`text/markdown; charset=utf-8`).
- `GET /c/<id>/export.zip`: the whole conversation, every branch and file, as a zip (below).
- `POST /import/` (multipart, field `archive`): restores such a zip as a new conversation of the
  person importing it and redirects there (`HX-Redirect` for htmx). A refused archive answers
  400 (malformed or hostile), 413 (too large) or 507 (no disk space) with an HTML fragment
  carrying `data-testid="error"` (htmx) or a page saying why; nothing of it is kept.
All of them belong to the conversation's owner; anyone else gets a 404.

The archive (format "omni-playground-conversation", version 1)
---------------------------------------------------------------
A zip holding:

- `conversation.json`: the conversation, described below (UTF-8 JSON).
- `conversation.md`: the same transcript `export.md` gives. Informational: import ignores it.
- `media/<key>-<name>`: each attachment's original file (`<name>` is its original name reduced
  to ASCII letters, digits, `.`, `_` and `-`); `media/<key>.derived<.ext>`: the converted file
  sent to the API, when there is one; `media/<key>.poster<.ext>`: its still picture, when there
  is one. `<key>` is the attachment's key on the exporting server; it means nothing elsewhere.

`conversation.json`::

    {
      "format": "omni-playground-conversation",
      "version": 1,
      "exported_at": "2026-05-01T10:00:00.123456+00:00",
      "conversation": {
        "title": "…", "settings": {…}, "created_at": "<time>", "pinned": false,
        "current": 7                        // the id of the last message of the branch shown,
      },                                    // or null
      "messages": [                         // ALL messages of the tree, in the order they
                                            // were made (parents before children)
        {
          "id": 1,                          // local to this file: 1, 2, 3…
          "parent": null,                   // the id of the message it follows, or null
          "role": "system" | "user" | "assistant" | "tool",
          "content": "…", "reasoning": "…",
          "status": "complete" | "stopped" | "error" | "interrupted",
          "model": "…", "finish_reason": "…", "tool_call_id": "…",
          "error": {kind, status, message, hint, retry_after} | null,
          "usage": {prompt_tokens, completion_tokens, *_tokens_details…} | null,
          "cost": {usd_spent, …} | null,
          "request": {the request body, media elided} | null,
          "tool_calls": [{id, type, function: {name, arguments}}] | null,
          "logprobs": [{token, logprob, top_logprobs: [{token, logprob}]}] | null,
          "created_at": "<time>", "started_at": "<time>" | null,
          "first_token_at": "<time>" | null, "finished_at": "<time>" | null
        }
      ],
      "attachments": [
        {
          "message": 3,                     // the id of the message it was sent with
          "kind": "image" | "audio" | "video",
          "original_name": "clip.mp4",
          "content_type": "video/mp4",      // of the original, sniffed from its bytes
          "size": 123456, "sha256": "<64 hex digits>",       // of the original
          "width": 640 | null, "height": 480 | null, "duration": 1.5 | null,
          "codecs": {"container": "mov,mp4", "video": "h264", "audio": "aac"},
          "derived_content_type": "video/mp4" | "",          // of the derived file
          "created_at": "<time>",
          "files": {"original": "media/…", "derived": "media/…" | null,
                    "poster": "media/…" | null}
        }
      ]
    }

Times are ISO 8601 with a UTC offset. Settings are stored as the settings panel stores them
(`SettingsForm.to_settings`). A reply that was still streaming when exported is written as
"interrupted". Message HTML is not stored: it is rendered again from `content` on import.
Readers ignore keys they do not know; a change that old readers would misread gets a new version.

Import checks, in this order, and refuses with a sentence saying what is wrong:
1. the upload: at most PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES (256 MB). Daphne holds a request body
   in memory, so an htmx post (CSRF token in a header) is refused by its Content-Length before
   its body is parsed; a plain form post has been parsed (into a temporary file) by the CSRF
   check already;
2. the zip's directory: a zip at all; at most MAX_MEMBERS members; every name relative and plain
   (no `..`, leading `/`, backslash, drive letter, control character), none twice; no symlinks or
   other special files; no encryption; only stored or deflated members; declared sizes adding up
   to at most PLAYGROUND_MAX_IMPORT_BYTES (1 GB: four times the upload limit, more than media,
   which is already compressed, ever unpacks to); no member over 1 MB that unpacks to more than
   MAX_RATIO times its compressed size;
3. `conversation.json`: present, at most MAX_JSON_BYTES, UTF-8 JSON without NaN/Infinity, nesting
   at most MAX_JSON_DEPTH, no NUL characters; the format and version; every field's type and
   range; settings the settings panel accepts; ids used once; parents and `current` referring to
   messages in the file; no parent cycles; file paths plain, under `media/`, present in the zip
   and used once;
4. every file, while it is unpacked (counting the bytes actually produced against both its
   declared size and the total cap): the original's size and sha256 as claimed, then
   `chat.media.probe` on each file: what the bytes are (kind, content type, and for the original
   its width, height and duration) must be what the record says.
Both limits are settings (environment variables of the same name) and default as above when
settings.py does not define them.
Member names are only ever looked up, never used as paths on disk: files are unpacked into new
attachment folders under generated names (new keys), and the rows are written in one
transaction at the end; on any refusal or error the folders (and what the storage got of
them, see chat.files) are removed and no row remains.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import branches, files, media
from .attachments import (
    ORIGINAL_NAME,
    POSTER_TYPES,
    FileRangeResponse,
    _clean_name,
    content_disposition,
    has_room_for,
    human_bytes,
)
from .models import Attachment, Conversation, Message, attachment_path
from .rendering import render_markdown
from .settings_form import SettingsForm, initial_from_settings

logger = logging.getLogger(__name__)

FORMAT = "omni-playground-conversation"
VERSION = 1
JSON_NAME = "conversation.json"
MARKDOWN_NAME = "conversation.md"
MEDIA_PREFIX = "media/"

MB = 1024 * 1024
BLOCK_BYTES = 1 * MB
MAX_MEMBERS = 10_000
MAX_MESSAGES = 10_000
MAX_ATTACHMENTS = 2_000
MAX_JSON_BYTES = 32 * MB  # parsed in memory; a long reply with log-probabilities is a few MB
MAX_JSON_DEPTH = 64
MAX_RATIO = 100  # media barely compress; JSON and Markdown compress ~10x
RATIO_FLOOR = 1 * MB  # smaller members may compress as well as they like
MAX_NAME_LENGTH = 500
# A multipart body is the file plus boundaries and the CSRF token.
FORM_OVERHEAD = 64 * 1024
DURATION_TOLERANCE = 0.05  # seconds; durations are floats measured by the same probe

READABLE_STATUSES = [s for s in Message.Status.values if s != Message.Status.STREAMING]
ROLE_HEADINGS = {
    Message.Role.USER: "You",
    Message.Role.ASSISTANT: "Assistant",
    Message.Role.TOOL: "Tool result",
    Message.Role.SYSTEM: "System",
}


def max_upload_bytes() -> int:
    """PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES: the largest archive accepted for import."""
    return settings.PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES


def max_unpacked_bytes() -> int:
    """PLAYGROUND_MAX_IMPORT_BYTES: the most an imported archive may unpack to."""
    return settings.PLAYGROUND_MAX_IMPORT_BYTES


class ArchiveRefused(Exception):
    """An archive that cannot be imported. `message` is for the person; `status` is HTTP's."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# Shared ----------------------------------------------------------------------------------------


def parents_first[T](
    nodes: list[T], ident: Callable[[T], Any], parent: Callable[[T], Any]
) -> list[T]:
    """`nodes` reordered so that each comes after its parent, otherwise in the order given.
    Nodes on a parent cycle, and those below one, are left out. Pure."""
    index = {ident(node): i for i, node in enumerate(nodes)}
    children: dict[Any, list[int]] = defaultdict(list)
    ready = []
    for i, node in enumerate(nodes):
        above = parent(node)
        if above is not None and above in index:
            children[above].append(i)
        else:
            ready.append(i)
    heapq.heapify(ready)
    ordered = []
    while ready:
        i = heapq.heappop(ready)
        ordered.append(nodes[i])
        for child in children[ident(nodes[i])]:
            heapq.heappush(ready, child)
    return ordered


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# Export ----------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What an export reads from the database, gathered once."""

    conversation: Conversation
    messages: list[Message]  # the whole tree, parents first
    attachments: list[Attachment]  # ready ones whose original is on disk, oldest first
    exported_at: datetime


def snapshot(conversation: Conversation) -> Snapshot:
    # In the order they were made: siblings are ordered by id (chat.branches), and import
    # creates them in this order again.
    messages = sorted(conversation.messages.all(), key=lambda m: m.pk)
    messages = parents_first(messages, lambda m: m.pk, lambda m: m.parent_id)
    found = Attachment.objects.filter(
        message__conversation=conversation, status=Attachment.Status.READY
    ).order_by("created_at", "id")
    kept = []
    for attachment in found:
        if not files.exists(attachment.file.name):
            logger.warning("Attachment %s has no stored original; left out", attachment.key)
            continue
        # The record must list only what the zip holds (this copy is never saved).
        for variant in ("derived", "poster"):
            if not files.exists(getattr(attachment, variant).name):
                setattr(attachment, variant, "")
        if not attachment.derived:
            attachment.derived_content_type = ""
        kept.append(attachment)
    return Snapshot(conversation, messages, kept, timezone.now())


def _safe_file_name(name: str) -> str:
    """'café clip (1).mp4' -> 'cafe-clip-1-.mp4': fit for a zip member and a Markdown link."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip(".-")[:120] or "file"


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def media_names(attachment: Attachment) -> dict[str, str | None]:
    """Where an attachment's files go inside the zip. Pure."""
    key = attachment.key
    return {
        "original": f"{MEDIA_PREFIX}{key}-{_safe_file_name(attachment.original_name)}",
        "derived": (
            f"{MEDIA_PREFIX}{key}.derived{_suffix(attachment.derived.name)}"
            if attachment.derived
            else None
        ),
        "poster": (
            f"{MEDIA_PREFIX}{key}.poster{_suffix(attachment.poster.name)}"
            if attachment.poster
            else None
        ),
    }


def message_record(message: Message, refs: dict[int, int]) -> dict[str, Any]:
    """One message as conversation.json holds it. Pure."""
    status = message.status
    if status == Message.Status.STREAMING:
        status = Message.Status.INTERRUPTED  # nothing will finish it on the importing server
    return {
        "id": refs[message.pk],
        "parent": refs.get(message.parent_id),
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "status": status,
        "model": message.model,
        "finish_reason": message.finish_reason,
        "error": message.error,
        "usage": message.usage,
        "cost": message.cost,
        "request": message.request,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "logprobs": message.logprobs,
        "created_at": _iso(message.created_at),
        "started_at": _iso(message.started_at),
        "first_token_at": _iso(message.first_token_at),
        "finished_at": _iso(message.finished_at),
    }


def attachment_record(attachment: Attachment, refs: dict[int, int]) -> dict[str, Any]:
    """One attachment as conversation.json holds it. Pure."""
    return {
        "message": refs[attachment.message_id],
        "kind": attachment.kind,
        "original_name": attachment.original_name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "width": attachment.width,
        "height": attachment.height,
        "duration": attachment.duration,
        "codecs": attachment.codecs,
        "derived_content_type": attachment.derived_content_type,
        "created_at": _iso(attachment.created_at),
        "files": media_names(attachment),
    }


def conversation_json(snap: Snapshot) -> dict[str, Any]:
    """The whole of conversation.json. Pure."""
    refs = {message.pk: number for number, message in enumerate(snap.messages, 1)}
    conversation = snap.conversation
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _iso(snap.exported_at),
        "conversation": {
            "title": conversation.title,
            "settings": conversation.settings,
            "created_at": _iso(conversation.created_at),
            "pinned": conversation.pinned,
            "current": refs.get(conversation.current_id),
        },
        "messages": [message_record(message, refs) for message in snap.messages],
        "attachments": [
            attachment_record(a, refs) for a in snap.attachments if a.message_id in refs
        ],
    }


def _fence(text: str, language: str = "") -> str:
    """A fenced code block that the text itself cannot close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{text}\n{ticks}"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines() or [""])


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _link_text(name: str) -> str:
    return re.sub(r"([\\\[\]])", r"\\\1", name)


def settings_summary(stored: dict[str, Any]) -> list[str]:
    """Generation settings in a few words each, for a reader. Pure; tolerates odd shapes."""
    parts = []
    for key, value in stored.items():
        if key in ("system_prompt", "model"):
            continue
        label = key.replace("_", " ")
        if key == "tools" and isinstance(value, list):
            names = [
                str((tool.get("function") or {}).get("name", "?"))
                for tool in value
                if isinstance(tool, dict)
            ]
            parts.append(f"tools: {', '.join(names)}")
        elif key == "response_format" and isinstance(value, dict):
            parts.append(f"response format: {value.get('type', '?')}")
        elif key == "audio" and isinstance(value, dict):
            parts.append(f"voice: {value.get('voice', '?')}")
        elif key == "modalities" and isinstance(value, list):
            parts.append(f"output: {', '.join(map(str, value))}")
        elif isinstance(value, bool):
            parts.append(f"{label}: {'on' if value else 'off'}")
        elif isinstance(value, str | int | float):
            parts.append(f"{label}: {value}")
        else:
            parts.append(f"{label}: {json.dumps(value, ensure_ascii=False)}")
    return parts


def _reply_meta(message: Message) -> str:
    parts = [message.model] if message.model else []
    usage = message.usage or {}
    if isinstance(usage, dict) and "prompt_tokens" in usage:
        parts.append(f"{usage.get('prompt_tokens')} → {usage.get('completion_tokens')} tokens")
    if message.duration is not None:
        parts.append(f"{message.duration:.1f} s")
    if message.usd_spent:
        parts.append(f"${message.usd_spent}")
    if message.finish_reason and message.finish_reason != "stop":
        parts.append(f"finish: {message.finish_reason}")
    if message.status != Message.Status.COMPLETE:
        parts.append(f"status: {message.status}")
    return f"*{' · '.join(parts)}*" if parts else ""


MEDIA_LEFT_OUT = (
    "Media files are not in this Markdown file: the zip export (Export zip, with media) holds "
    "them, and its own conversation.md links them."
)


def conversation_markdown(snap: Snapshot, with_media: bool = False) -> str:
    """The branch shown, as Markdown to read. Pure. `with_media`: it goes into the zip beside
    the media files, so it links them; on its own it names them and says where they are."""
    conversation = snap.conversation
    stored = conversation.settings if isinstance(conversation.settings, dict) else {}
    path = branches.shown_path(snap.messages, conversation.current_id)
    files: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in snap.attachments:
        files[attachment.message_id].append(attachment)

    title = " ".join(conversation.title.split()) or "New chat"
    lines = [f"# {title}", ""]
    lines.append(f"- Created: {_when(conversation.created_at)}")
    lines.append(f"- Exported: {_when(snap.exported_at)}")
    lines.append(f"- Model: {stored.get('model') or settings.PLAYGROUND_MODEL}")
    summary = settings_summary(stored)
    if summary:
        lines.append(f"- Settings: {'; '.join(summary)}")
    shown = f"- Messages: {len(path)}"
    if len(path) != len(snap.messages):
        shown += f" on the branch shown, of {len(snap.messages)} in all branches"
    lines += [shown, ""]
    if snap.attachments and not with_media:
        lines += [f"*{MEDIA_LEFT_OUT}*", ""]
    if stored.get("system_prompt"):
        lines += [_quote(f"**System prompt**\n\n{stored['system_prompt']}"), ""]

    for message in path:
        heading = ROLE_HEADINGS.get(message.role, message.role.title())
        if message.role == Message.Role.TOOL and message.tool_call_id:
            heading += f" (`{message.tool_call_id}`)"
        lines += ["---", "", f"## {heading}", ""]
        if message.reasoning:
            lines += [_quote(f"**Thinking**\n\n{message.reasoning}"), ""]
        if message.content:
            lines += [message.content.rstrip(), ""]
        for attachment in files.get(message.pk, []):
            name = _link_text(attachment.original_name or "file")
            if with_media:
                target = media_names(attachment)["original"]
                bang = "!" if attachment.kind == Attachment.Kind.IMAGE else ""
                lines += [f"{bang}[{name}]({target})", ""]
            else:
                lines += [f"*{attachment.kind}: {name} (in the zip export, not in this file)*", ""]
        if message.tool_calls:
            calls = json.dumps(message.tool_calls, indent=2, ensure_ascii=False)
            lines += ["**Tool calls**", "", _fence(calls, "json"), ""]
        if isinstance(message.error, dict) and message.error.get("message"):
            lines += [_quote(f"**Error:** {message.error['message']}"), ""]
        if message.role == Message.Role.ASSISTANT:
            meta = _reply_meta(message)
            if meta:
                lines += [meta, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_zip(snap: Snapshot, target: IO[bytes]) -> None:
    """The archive, written to `target`; files are copied a block at a time."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        record = conversation_json(snap)
        archive.writestr(JSON_NAME, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        archive.writestr(MARKDOWN_NAME, conversation_markdown(snap, with_media=True))
        for attachment in snap.attachments:
            names = media_names(attachment)
            for variant, file_field in (
                ("original", attachment.file),
                ("derived", attachment.derived),
                ("poster", attachment.poster),
            ):
                if file_field and names[variant]:
                    _write_member(archive, names[variant], file_field.name)


def _write_member(archive: zipfile.ZipFile, member: str, name: str) -> None:
    """Copy a stored file into the archive as `member`, a block at a time. Media are compressed
    already: deflating them again only costs time."""
    info = zipfile.ZipInfo(member, date_time=timezone.localtime().timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    with files.open_stored(name) as source, archive.open(info, "w", force_zip64=True) as out:
        shutil.copyfileobj(source, out, BLOCK_BYTES)


def _download_name(conversation: Conversation, extension: str) -> str:
    stem = re.sub(r'[\x00-\x1f/\\:*?"<>|]+', "-", " ".join(conversation.title.split()))
    return (stem.strip(" .-")[:100] or "conversation") + extension


class TemporaryFileResponse(FileRangeResponse):
    """Streams a file made for this one response and deletes it once the response is closed."""

    def __init__(self, path: Path, **kwargs) -> None:
        self._temporary = path
        super().__init__(functools.partial(open, path, "rb"), 0, path.stat().st_size, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._temporary.unlink(missing_ok=True)


@require_GET
@login_required
def export_markdown(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """GET /c/<id>/export.md: the branch shown, as a Markdown download."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    text = conversation_markdown(snapshot(conversation))
    response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = content_disposition(
        False, _download_name(conversation, ".md")
    )
    return response


@require_GET
@login_required
def export_zip(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """GET /c/<id>/export.zip: the whole conversation with its files, as a zip download."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    handle, name = tempfile.mkstemp(suffix=".zip", dir=settings.FILE_UPLOAD_TEMP_DIR)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as target:
            write_zip(snapshot(conversation), target)
        return TemporaryFileResponse(
            path,
            content_type="application/zip",
            headers={
                "Content-Disposition": content_disposition(
                    False, _download_name(conversation, ".zip")
                ),
                "Cache-Control": "private, no-store",
            },
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# Import: the zip's directory -------------------------------------------------------------------


def _shown(name: str) -> str:
    name = "".join(c if c.isprintable() else "?" for c in name)
    return name if len(name) <= 80 else name[:38] + "…" + name[-38:]


def _check_path(name: str) -> str | None:
    """What is wrong with a path inside the archive, or None when it is a plain relative one."""
    if not name:
        return _("The archive holds “%(name)s”, which has no name.")
    if len(name) > MAX_NAME_LENGTH:
        return _("The archive holds “%(name)s”, which has a name that is too long.")
    if any(not c.isprintable() for c in name):
        return _("The archive holds “%(name)s”, which has a control character in its name.")
    if "\\" in name:
        return _("The archive holds “%(name)s”, which has a backslash in its name.")
    if name.startswith("/"):
        return _("The archive holds “%(name)s”, which is an absolute path.")
    if re.match(r"[A-Za-z]:", name):
        return _("The archive holds “%(name)s”, which starts with a drive letter.")
    parts = name.removesuffix("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return _("The archive holds “%(name)s”, which has an empty, “.” or “..” part in its path.")
    return None


def _unsafe(name: str, problem: str) -> ArchiveRefused:
    """`problem`: what _check_path says, a sentence naming the entry as %(name)s."""
    rule = _(
        "Archives may only hold plain relative paths (no “..”, leading “/”, backslash or drive "
        "letter); nothing was imported."
    )
    return ArchiveRefused(f"{problem % {'name': _shown(name)}} {rule}")


def read_directory(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's files by name, after checking every entry (module docstring, step 2)."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveRefused(
            _("The archive holds %(count)s entries; at most %(limit)s are read.")
            % {"count": len(infos), "limit": MAX_MEMBERS}
        )
    members: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    total = 0
    for info in infos:
        # zipfile cuts names at a NUL byte; the name as stored is checked too.
        for name in {info.filename, info.orig_filename}:
            problem = _check_path(name)
            if problem:
                raise _unsafe(name, problem)
        name = info.filename
        if name in seen:
            raise ArchiveRefused(_("The archive holds “%(name)s” twice.") % {"name": _shown(name)})
        seen.add(name)
        mode = stat.S_IFMT(info.external_attr >> 16)
        if mode == stat.S_IFLNK:
            raise ArchiveRefused(
                _("The archive holds “%(name)s” as a symbolic link; links are refused.")
                % {"name": _shown(name)}
            )
        if mode not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveRefused(
                _("The archive holds “%(name)s” as a special file; only files are read.")
                % {"name": _shown(name)}
            )
        if info.flag_bits & 0x1:
            raise ArchiveRefused(
                _("“%(name)s” is encrypted; encrypted archives are refused.")
                % {"name": _shown(name)}
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveRefused(
                _(
                    "“%(name)s” uses a compression method this playground does not read; only "
                    "stored and deflated files are."
                )
                % {"name": _shown(name)}
            )
        if info.is_dir():
            if info.file_size:
                raise ArchiveRefused(
                    _("The folder entry “%(name)s” holds data.") % {"name": _shown(name)}
                )
            continue
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
            raise ArchiveRefused(
                _(
                    "“%(name)s” would unpack to %(size)s from %(compressed)s; more than "
                    "%(ratio)s times smaller is refused as a zip bomb."
                )
                % {
                    "name": _shown(name),
                    "size": human_bytes(info.file_size),
                    "compressed": human_bytes(info.compress_size),
                    "ratio": MAX_RATIO,
                }
            )
        total += info.file_size
        members[name] = info
    limit = max_unpacked_bytes()
    if total > limit:
        raise ArchiveRefused(
            _("This archive unpacks to %(size)s; at most %(limit)s can be imported.")
            % {"size": human_bytes(total), "limit": human_bytes(limit)},
            413,
        )
    return members


@dataclass
class Budget:
    """Bytes the whole import may still unpack, counted as they are produced."""

    left: int

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            limit = human_bytes(max_unpacked_bytes())
            raise ArchiveRefused(
                _("This archive unpacks to more than %(limit)s; at most %(limit)s can be imported.")
                % {"limit": limit},
                413,
            )


def _unpack(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes], budget: Budget
) -> tuple[int, str]:
    """Copy one member into `out`; (bytes, sha256). Never more than it declared, nor than the
    budget allows, whatever its header says."""
    digest = hashlib.sha256()
    written = 0
    try:
        with archive.open(info) as source:
            while block := source.read(BLOCK_BYTES):
                written += len(block)
                if written > info.file_size:
                    raise ArchiveRefused(
                        _("“%(name)s” unpacks to more bytes than its header says.")
                        % {"name": _shown(info.filename)}
                    )
                budget.spend(len(block))
                digest.update(block)
                out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        raise ArchiveRefused(
            _("“%(name)s” is damaged in the archive (%(error)s); nothing was imported.")
            % {"name": _shown(info.filename), "error": error}
        ) from error
    if written != info.file_size:
        raise ArchiveRefused(
            _("“%(name)s” is shorter than its header says.") % {"name": _shown(info.filename)}
        )
    return written, digest.hexdigest()


def read_document(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], budget: Budget
) -> dict:
    """conversation.json, parsed, with its format and version checked."""
    info = members.get(JSON_NAME)
    if info is None:
        raise ArchiveRefused(
            _(
                "The archive has no %(file)s: it is not a conversation exported from Omni "
                "Playground."
            )
            % {"file": JSON_NAME}
        )
    if info.file_size > MAX_JSON_BYTES:
        raise ArchiveRefused(
            _("%(file)s is %(size)s; at most %(limit)s is read.")
            % {
                "file": JSON_NAME,
                "size": human_bytes(info.file_size),
                "limit": human_bytes(MAX_JSON_BYTES),
            },
            413,
        )
    memory = io.BytesIO()
    _unpack(archive, info, memory, budget)

    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        document = json.loads(memory.getvalue().decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError:
        raise ArchiveRefused(_("%(file)s is not UTF-8 text.") % {"file": JSON_NAME}) from None
    except (ValueError, RecursionError) as error:
        raise ArchiveRefused(
            _("%(file)s is not valid JSON (%(error)s).") % {"file": JSON_NAME, "error": error}
        ) from None
    if not isinstance(document, dict):
        raise ArchiveRefused(_("%(file)s must hold a JSON object.") % {"file": JSON_NAME})
    if document.get("format") != FORMAT:
        raise ArchiveRefused(
            _(
                "%(file)s is not an Omni Playground conversation (its format is %(found)s; this "
                "playground reads “%(format)s”)."
            )
            % {
                "file": JSON_NAME,
                "found": json.dumps(document.get("format"))[:80],
                "format": FORMAT,
            }
        )
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        shown = version if isinstance(version, int) else json.dumps(version)[:40]
        raise ArchiveRefused(
            _("This archive is version %(found)s; this playground reads version %(version)s.")
            % {"found": shown, "version": VERSION}
        )
    _check_tree(document)
    return document


NUL_REFUSAL = gettext_lazy("%(file)s holds a NUL character.")


def _check_tree(document: Any) -> None:
    """No NUL characters (PostgreSQL refuses them) and no deep nesting anywhere."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ArchiveRefused(
                _("%(file)s nests deeper than %(depth)s levels.")
                % {"file": JSON_NAME, "depth": MAX_JSON_DEPTH}
            )
        if isinstance(value, str):
            if "\x00" in value:
                raise ArchiveRefused(NUL_REFUSAL % {"file": JSON_NAME})
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise ArchiveRefused(NUL_REFUSAL % {"file": JSON_NAME})
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


# Import: conversation.json's fields ------------------------------------------------------------


def _invalid(where: str, sentence: str, **values: Any) -> ArchiveRefused:
    """`sentence`, translated, names the file as %(file)s and the field as %(field)s."""
    return ArchiveRefused(sentence % {"file": JSON_NAME, "field": where, **values})


_MISSING = object()


def _get(record: dict, key: str, where: str, check: Callable[[Any, str], Any], default=_MISSING):
    here = f"{where}.{key}" if where else key
    if key not in record:
        if default is _MISSING:
            raise _invalid(here, _("%(file)s is not valid: %(field)s is missing."))
        return default
    return check(record[key], here)


def _text(max_length: int | None = None) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _invalid(where, _("%(file)s is not valid: %(field)s must be text."))
        if max_length is not None and len(value) > max_length:
            raise _invalid(
                where,
                ngettext(
                    "%(file)s is not valid: %(field)s is longer than %(count)s character.",
                    "%(file)s is not valid: %(field)s is longer than %(count)s characters.",
                    max_length,
                ),
                count=max_length,
            )
        return value

    return check


def _choice(options: Iterable[str]) -> Callable[[Any, str], str]:
    options = list(options)

    def check(value: Any, where: str) -> str:
        if value not in options:
            raise _invalid(
                where,
                _("%(file)s is not valid: %(field)s must be one of %(options)s."),
                options=", ".join(options),
            )
        return value

    return check


def _ref(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(
            where,
            _("%(file)s is not valid: %(field)s must be a message id (a whole number from 1)."),
        )
    return value


def _optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else check(value, where)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be true or false."))
    return value


def _whole(minimum: int) -> Callable[[Any, str], int]:
    def check(value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise _invalid(
                where,
                _("%(file)s is not valid: %(field)s must be a whole number from %(minimum)s."),
                minimum=minimum,
            )
        return value

    return check


def _number(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a number from 0."))
    return value


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a time (ISO 8601 text)."))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(
            where, _("%(file)s is not valid: %(field)s must be a time (ISO 8601 text).")
        ) from None
    if moment.tzinfo is None:
        raise _invalid(where, _("%(file)s is not valid: %(field)s must say its UTC offset."))
    return moment


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a JSON object."))
    return value


def _sha256(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise _invalid(
            where, _("%(file)s is not valid: %(field)s must be 64 lowercase hex digits.")
        )
    return value


def _codecs(value: Any, where: str) -> dict:
    if not isinstance(value, dict) or len(value) > 20:
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a JSON object of names."))
    if not all(isinstance(v, str) and len(v) <= 100 for v in value.values()):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must map names to text."))
    return value


def _number_field(record: dict, key: str, where: str) -> None:
    value = record.get(key)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise _invalid(f"{where}.{key}", _("%(file)s is not valid: %(field)s must be a number."))


def _usage(value: Any, where: str) -> dict:
    """The page adds token counts up and lists the details: they must be what it expects."""
    _object(value, where)
    for key in ("prompt_tokens", "completion_tokens"):
        _number_field(value, key, where)
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        if value.get(key) is not None:
            _object(value[key], f"{where}.{key}")
    return value


def _tool_calls(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a list."))
    for number, call in enumerate(value):
        here = f"{where}[{number}]"
        _object(call, here)
        _get(call, "id", here, _text(200))
        function = _get(call, "function", here, _object)
        _get(function, "name", f"{here}.function", _text(200))
        _get(function, "arguments", f"{here}.function", _text(), "")
    return value


def _logprobs(value: Any, where: str) -> list:
    def entry(item: Any, here: str) -> None:
        _object(item, here)
        _get(item, "token", here, _text(), "")
        logprob = item.get("logprob", -9999)
        # The page shows exp(logprob) as a percentage: a large one would overflow.
        if not isinstance(logprob, int | float) or isinstance(logprob, bool) or logprob > 1e-6:
            raise _invalid(
                f"{here}.logprob",
                _(
                    "%(file)s is not valid: %(field)s must be a log-probability (a number of at "
                    "most 0)."
                ),
            )

    if not isinstance(value, list):
        raise _invalid(where, _("%(file)s is not valid: %(field)s must be a list."))
    for number, item in enumerate(value):
        here = f"{where}[{number}]"
        entry(item, here)
        alternatives = item.get("top_logprobs") or []
        if not isinstance(alternatives, list):
            raise _invalid(
                f"{here}.top_logprobs", _("%(file)s is not valid: %(field)s must be a list.")
            )
        for other, alternative in enumerate(alternatives):
            entry(alternative, f"{here}.top_logprobs[{other}]")
    return value


def _settings(value: Any, where: str) -> dict:
    """Settings the settings panel would store: they go back into it and into requests."""
    _object(value, where)
    try:
        data = initial_from_settings(value)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise _invalid(
            where, _("%(file)s is not valid: %(field)s are not settings this playground can use.")
        ) from None
    form = SettingsForm(data)
    model = value.get("model")
    if isinstance(model, str) and model and model not in dict(form.fields["model"].choices):
        # A model offered on the exporting server: kept, as a conversation may name any.
        form.fields["model"].choices = [*form.fields["model"].choices, (model, model)]
    if not form.is_valid():
        name, errors = next(iter(form.errors.items()))
        raise _invalid(
            where,
            _("%(file)s is not valid: %(field)s are not valid: %(setting)s: %(errors)s."),
            setting=name,
            errors=" ".join(errors).rstrip("."),
        )
    clean = form.to_settings()
    if clean != value:
        odd = sorted(k for k in {*clean, *value} if clean.get(k, _MISSING) != value.get(k))
        raise _invalid(
            where,
            _(
                "%(file)s is not valid: %(field)s hold values the settings panel would not "
                "store: %(names)s."
            ),
            names=", ".join(odd),
        )
    return value


MESSAGE_FIELDS: dict[str, tuple[Callable[[Any, str], Any], Any]] = {
    # name: (check, default when absent)
    "content": (_text(), ""),
    "reasoning": (_text(), ""),
    "status": (_choice(READABLE_STATUSES), Message.Status.COMPLETE),
    "model": (_text(200), ""),
    "finish_reason": (_text(32), ""),
    "error": (_optional(_object), None),
    "usage": (_optional(_usage), None),
    "cost": (_optional(_object), None),
    "request": (_optional(_object), None),
    "tool_calls": (_optional(_tool_calls), None),
    "tool_call_id": (_text(200), ""),
    "logprobs": (_optional(_logprobs), None),
    "started_at": (_optional(_time), None),
    "first_token_at": (_optional(_time), None),
    "finished_at": (_optional(_time), None),
}


@dataclass
class MessagePlan:
    ref: int
    parent: int | None
    fields: dict[str, Any]


@dataclass
class AttachmentPlan:
    message: int
    fields: dict[str, Any]
    files: dict[str, str | None]  # variant -> member name
    where: str


@dataclass
class Plan:
    """A checked conversation.json: what import will create, messages parents first."""

    conversation: dict[str, Any]
    current: int | None
    messages: list[MessagePlan] = field(default_factory=list)
    attachments: list[AttachmentPlan] = field(default_factory=list)


def _list(document: dict, key: str, limit: int) -> list:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise _invalid(key, _("%(file)s is not valid: %(field)s must be a list."))
    if len(value) > limit:
        raise ArchiveRefused(
            _("%(file)s lists %(count)s %(field)s; at most %(limit)s are read.")
            % {"file": JSON_NAME, "count": len(value), "field": key, "limit": limit}
        )
    return value


def _plan_message(item: Any, where: str) -> MessagePlan:
    _object(item, where)
    fields = {
        "role": _get(item, "role", where, _choice(Message.Role.values)),
        "created_at": _get(item, "created_at", where, _time),
    }
    for name, (check, default) in MESSAGE_FIELDS.items():
        fields[name] = _get(item, name, where, check, default)
    parent = _get(item, "parent", where, _optional(_ref), None)
    return MessagePlan(_get(item, "id", where, _ref), parent, fields)


def _plan_attachment(item: Any, where: str, members: dict[str, zipfile.ZipInfo]) -> AttachmentPlan:
    _object(item, where)
    fields = {
        "kind": _get(item, "kind", where, _choice(Attachment.Kind.values)),
        "original_name": _clean_name(_get(item, "original_name", where, _text(255), "")),
        "content_type": _get(item, "content_type", where, _text(100)),
        "size": _get(item, "size", where, _whole(1)),
        "sha256": _get(item, "sha256", where, _sha256),
        "width": _get(item, "width", where, _optional(_whole(1)), None),
        "height": _get(item, "height", where, _optional(_whole(1)), None),
        "duration": _get(item, "duration", where, _optional(_number), None),
        "codecs": _get(item, "codecs", where, _codecs, {}),
        "derived_content_type": _get(item, "derived_content_type", where, _text(100), ""),
        "created_at": _get(item, "created_at", where, _time, None) or timezone.now(),
    }
    files_at = f"{where}.files"
    listed = _get(item, "files", where, _object)
    files: dict[str, str | None] = {"original": _get(listed, "original", files_at, _text())}
    for variant in ("derived", "poster"):
        files[variant] = _get(listed, variant, files_at, _optional(_text()), None)
    for variant, name in files.items():
        if name is None:
            continue
        here = f"{files_at}.{variant}"
        problem = _check_path(name)
        if problem or not name.startswith(MEDIA_PREFIX) or name.endswith("/"):
            raise ArchiveRefused(
                f"{JSON_NAME} is not valid: {here} is “{_shown(name)}”; files must be plain "
                f"paths under {MEDIA_PREFIX} (no “..”, leading “/”, backslash or drive letter)."
            )
        if name not in members:
            raise ArchiveRefused(
                f"{here} names “{_shown(name)}”, which is not in the archive; nothing was imported."
            )
    if bool(files["derived"]) != bool(fields["derived_content_type"]):
        raise _invalid(
            where,
            _(
                "%(file)s is not valid: %(field)s must give derived_content_type exactly when it "
                "has a derived file."
            ),
        )
    if files["poster"] and _suffix(files["poster"]) not in POSTER_TYPES:
        raise _invalid(
            f"{files_at}.poster",
            _("%(file)s is not valid: %(field)s must end in %(suffixes)s."),
            suffixes=", ".join(POSTER_TYPES),
        )
    return AttachmentPlan(_get(item, "message", where, _ref), fields, files, where)


NOT_IN_ARCHIVE = gettext_lazy(
    "%(file)s is not valid: %(field)s refers to message %(id)s, which is not in the archive."
)


def plan(document: dict, members: dict[str, zipfile.ZipInfo]) -> Plan:
    """Check every field of conversation.json against what this playground stores."""
    head = _get(document, "conversation", "", _object)
    where = "conversation"
    conversation = {
        "title": _get(head, "title", where, _text(200), ""),
        "settings": _get(head, "settings", where, _settings, {}),
        "created_at": _get(head, "created_at", where, _time, None) or timezone.now(),
        "pinned": _get(head, "pinned", where, _boolean, False),
    }
    current = _get(head, "current", where, _optional(_ref), None)

    messages = [
        _plan_message(item, f"messages[{n}]")
        for n, item in enumerate(_list(document, "messages", MAX_MESSAGES))
    ]
    refs = set()
    for n, message in enumerate(messages):
        if message.ref in refs:
            raise _invalid(
                f"messages[{n}].id",
                _("%(file)s is not valid: %(field)s repeats id %(id)s."),
                id=message.ref,
            )
        refs.add(message.ref)
    for n, message in enumerate(messages):
        if message.parent is not None and message.parent not in refs:
            raise _invalid(f"messages[{n}].parent", NOT_IN_ARCHIVE, id=message.parent)
    ordered = parents_first(messages, lambda m: m.ref, lambda m: m.parent)
    if len(ordered) != len(messages):
        placed = {m.ref for m in ordered}
        stuck = min(m.ref for m in messages if m.ref not in placed)
        raise ArchiveRefused(
            _(
                "%(file)s is not valid: the messages' parents form a cycle (message %(id)s "
                "descends from itself)."
            )
            % {"file": JSON_NAME, "id": stuck}
        )
    if current is not None and current not in refs:
        raise _invalid("conversation.current", NOT_IN_ARCHIVE, id=current)

    attachments = [
        _plan_attachment(item, f"attachments[{n}]", members)
        for n, item in enumerate(_list(document, "attachments", MAX_ATTACHMENTS))
    ]
    used: set[str] = set()
    for attachment in attachments:
        if attachment.message not in refs:
            raise _invalid(f"{attachment.where}.message", NOT_IN_ARCHIVE, id=attachment.message)
        for name in filter(None, attachment.files.values()):
            if name in used:
                raise _invalid(
                    attachment.where,
                    _("%(file)s is not valid: %(field)s uses “%(name)s”, which another file uses."),
                    name=_shown(name),
                )
            used.add(name)
    return Plan(conversation, current, ordered, attachments)


# Import: files and rows ------------------------------------------------------------------------


def _probe(path: Path, name: str, member: str) -> media.Probe:
    try:
        return media.probe(path, name)
    except media.MediaRefused as refused:
        raise ArchiveRefused(
            _("“%(name)s” cannot be imported: %(reason)s")
            % {"name": _shown(member), "reason": refused.message}
        ) from None


def _claims(member: str, found: dict[str, Any], claimed: dict[str, Any]) -> None:
    for label, value in claimed.items():
        seen = found[label]
        if label == "duration" and value is not None and seen is not None:
            same = abs(seen - value) <= max(DURATION_TOLERANCE, 0.01 * value)
        else:
            same = seen == value
        if not same:
            raise ArchiveRefused(
                _(
                    "“%(name)s” is not what %(file)s says it is: its %(field)s is %(found)s, not "
                    "%(claimed)s."
                )
                % {
                    "name": _shown(member),
                    "file": JSON_NAME,
                    "field": label,
                    "found": seen if seen is not None else pgettext("an absent value", "none"),
                    "claimed": value,
                }
            )


def _store_files(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    owner,
    item: AttachmentPlan,
    budget: Budget,
    made: list[Attachment],
) -> Attachment:
    """Unpack one attachment's files into a new upload folder, check them and hand them to the
    storage; the row is not saved yet."""
    attachment = Attachment(
        owner=owner,
        key=secrets.token_urlsafe(16),
        status=Attachment.Status.READY,
        progress=1.0,
        declared_size=item.fields["size"],
        received=item.fields["size"],
        **item.fields,
    )
    folder = files.working_dir(attachment)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    made.append(attachment)

    def unpack(variant: str, filename: str) -> tuple[Path, int, str]:
        member = members[item.files[variant]]
        path = folder / filename
        with open(path, "xb") as out:
            size, digest = _unpack(archive, member, out, budget)
        return path, size, digest

    member = item.files["original"]
    path, size, digest = unpack("original", ORIGINAL_NAME)
    if size != attachment.size or digest != attachment.sha256:
        raise ArchiveRefused(
            _(
                "“%(name)s” does not match its checksum in %(file)s (sha256 or size differ): the "
                "archive was changed or damaged."
            )
            % {"name": _shown(member), "file": JSON_NAME}
        )
    found = _probe(path, attachment.original_name, member)
    _claims(
        member,
        {
            "kind": found.kind,
            "content type": found.content_type,
            "width": found.width,
            "height": found.height,
            "duration": found.duration,
        },
        {
            "kind": attachment.kind,
            "content type": attachment.content_type,
            "width": attachment.width,
            "height": attachment.height,
            "duration": attachment.duration,
        },
    )
    attachment.file.name = attachment_path(attachment, ORIGINAL_NAME)

    if item.files["derived"]:
        member = item.files["derived"]
        path, _size, _digest = unpack("derived", "derived" + _suffix(member))
        found = _probe(path, "", member)
        _claims(
            member,
            {"kind": found.kind, "content type": found.content_type},
            {"kind": attachment.kind, "content type": attachment.derived_content_type},
        )
        attachment.derived.name = attachment_path(attachment, path.name)
    if item.files["poster"]:
        member = item.files["poster"]
        suffix = _suffix(member)
        path, _size, _digest = unpack("poster", "poster" + suffix)
        found = _probe(path, "", member)
        _claims(
            member,
            {"kind": found.kind, "content type": found.content_type},
            {"kind": "image", "content type": POSTER_TYPES[suffix]},
        )
        attachment.poster.name = attachment_path(attachment, path.name)
    files.publish(attachment)
    return attachment


@transaction.atomic
def _create_rows(owner, checked: Plan, stored: list[Attachment]) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, updated_at=timezone.now(), **checked.conversation
    )
    made: dict[int, Message] = {}
    for item in checked.messages:
        fields = item.fields
        html = ""
        if fields["role"] == Message.Role.ASSISTANT and fields["content"]:
            html = render_markdown(fields["content"])
        made[item.ref] = Message.objects.create(
            conversation=conversation, parent=made.get(item.parent), html=html, **fields
        )
    if checked.current is not None:
        conversation.current = made[checked.current]
        conversation.save(update_fields=["current"])
    for attachment, item in zip(stored, checked.attachments, strict=True):
        attachment.conversation = conversation
        attachment.message = made[item.message]
        attachment.save()
    return conversation


def import_archive(owner, source: IO[bytes]) -> Conversation:
    """Restore an exported zip (a seekable binary file) as a new conversation of `owner`.

    Raises ArchiveRefused, leaving no row and no file behind, when anything is off.
    """
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise ArchiveRefused(
            _("This file is not a zip archive. Import a .zip exported from Omni Playground.")
        ) from None
    made: list[Attachment] = []
    try:
        with archive:
            members = read_directory(archive)
            budget = Budget(max_unpacked_bytes())
            checked = plan(read_document(archive, members, budget), members)
            _check_disk_space(checked, members)
            stored = [
                _store_files(archive, members, owner, item, budget, made)
                for item in checked.attachments
            ]
            conversation = _create_rows(owner, checked, stored)
    except BaseException:
        for attachment in made:
            files.remove(attachment)
        raise
    for attachment in made:
        files.drop_working_copy(attachment)
    return conversation


def _check_disk_space(checked: Plan, members: dict[str, zipfile.ZipInfo]) -> None:
    needed = sum(
        members[name].file_size for a in checked.attachments for name in a.files.values() if name
    )
    if not needed:
        return
    root = Path(settings.MEDIA_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    if not has_room_for(root, needed):
        raise ArchiveRefused(
            _("The server does not have enough free disk space for this archive."), 507
        )


def _refused(request: HttpRequest, refused: ArchiveRefused) -> HttpResponse:
    template = (
        "chat/archive.html#refusal" if getattr(request, "htmx", False) else "chat/archive.html"
    )
    return render(request, template, {"message": refused.message}, status=refused.status)


def too_big(size: int | None) -> ArchiveRefused:
    """The refusal of an archive of `size` bytes (None: larger than the limit, size unknown)."""
    limit = max_upload_bytes()
    allowed = human_bytes(limit)
    shown = human_bytes(size) if size is not None else allowed
    if shown == allowed:
        text = _(
            "This archive is more than %(size)s; archives of up to %(limit)s can be imported. "
            "Export the conversation without its largest files, or raise "
            "PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES."
        )
    else:
        text = _(
            "This archive is %(size)s; archives of up to %(limit)s can be imported. Export the "
            "conversation without its largest files, or raise PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES."
        )
    return ArchiveRefused(text % {"size": shown, "limit": allowed}, 413)


@require_POST
@login_required
def import_conversation(request: HttpRequest) -> HttpResponse:
    """POST /import/: a zip from export.zip becomes a new conversation of the person."""
    limit = max_upload_bytes()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    # Refused before the body is parsed: its size is all that is known, and all that is needed.
    if length > limit + FORM_OVERHEAD:
        return _refused(request, too_big(length))
    upload = request.FILES.get("archive")
    if upload is None:
        return _refused(
            request, ArchiveRefused(_("Choose a conversation archive (.zip) to import."))
        )
    if upload.size > limit:
        return _refused(request, too_big(upload.size))
    try:
        conversation = import_archive(request.user, upload.file)
    except ArchiveRefused as refused:
        return _refused(request, refused)
    finally:
        upload.close()
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(conversation.get_absolute_url())
    return redirect(conversation)
