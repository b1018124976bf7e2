"""Where attachment files are kept: a local working folder while an upload is made, then the
storage Django's STORAGES["default"] names (the attachments' FileFields use it).

An upload's files are made in its working folder, MEDIA_ROOT/attachments/<owner>/<key>/: chunks
are written into it at their offsets, and PyAV reads and writes plain files there. Once the files
are final (processing done, an archive's files checked), `publish` hands them to the storage
under the same names:

- Django's FileSystemStorage over MEDIA_ROOT (the default) keeps files in that very folder, so
  publishing moves nothing.
- Any other storage, e.g. django-storages' S3Storage for an S3-compatible store, gets a copy of
  each file and the working folder is removed.

Whatever reads a ready attachment's files goes through this module: `local_path` where the
storage keeps them on this machine's disk, `open_stored` (a binary file from the storage) otherwise.
`direct_url` is a link the storage itself serves (S3's signed, expiring URLs), so a browser can
fetch a large video from the store, after the app has checked who may see it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

from .models import Attachment, attachment_path

logger = logging.getLogger(__name__)

FILE_FIELDS = ("file", "derived", "poster")


def storage() -> Storage:
    """The storage attachment files are kept in (the FileFields' own)."""
    return Attachment._meta.get_field("file").storage


def working_dir(attachment: Attachment) -> Path:
    """The folder an upload's files are made in: MEDIA_ROOT/attachments/<owner>/<key>/."""
    return Path(settings.MEDIA_ROOT) / Path(attachment_path(attachment, "-")).parent


def working_path(name: str) -> Path:
    """Where a stored name's file is (or was) made: MEDIA_ROOT/<name>."""
    return Path(settings.MEDIA_ROOT) / name


def on_disk() -> bool:
    """Whether the storage keeps files on this machine's disk. (Not "has a `path`": Django's
    in-memory storage answers one too.)"""
    return isinstance(storage(), FileSystemStorage)


def kept_in_place() -> bool:
    """Whether the storage keeps files in the working folders themselves (FileSystemStorage
    over MEDIA_ROOT): then publishing and removing work on those folders alone."""
    if not on_disk():
        return False
    kept = Path(storage().path("attachments"))
    return kept.resolve() == working_path("attachments").resolve()


def names(attachment: Attachment) -> list[str]:
    """The stored names of an attachment's files."""
    return [field.name for field in (getattr(attachment, f) for f in FILE_FIELDS) if field]


def local_path(name: str) -> Path | None:
    """The file behind a stored name on this machine's disk, if the storage keeps files on
    disk and this one is there (and inside the storage's folder)."""
    if not name or not on_disk():
        return None
    try:
        path = Path(storage().path(name))
    except SuspiciousFileOperation:
        return None
    return path if path.is_file() else None


def exists(name: str) -> bool:
    if not name:
        return False
    try:
        return storage().exists(name)
    except SuspiciousFileOperation:
        return False


def open_stored(name: str) -> IO[bytes]:
    """A stored file, opened for reading in binary."""
    return storage().open(name, "rb")


def size(name: str) -> int:
    return storage().size(name)


def modified_at(name: str) -> float | None:
    """When the stored file was last written (a Unix time), if the storage knows."""
    try:
        return storage().get_modified_time(name).timestamp()
    except NotImplementedError:
        return None


def direct_url(name: str, content_type: str, disposition: str, seconds: int) -> str | None:
    """A link the storage serves the file from itself, valid for about `seconds`, with these
    response headers where the storage can set them; None when the storage has no such link
    (files on disk, in memory: the app serves those)."""
    if on_disk():
        return None
    kept = storage()
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        S3Storage = None  # noqa: N806
    if S3Storage is not None and isinstance(kept, S3Storage):
        # A signed URL names the headers the store answers with (S3's response-* parameters).
        parameters = {
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
            "ResponseCacheControl": f"private, max-age={seconds}",
        }
        return kept.url(name, parameters=parameters, expire=seconds)
    url = kept.url(name)
    # Only a store's own absolute address is handed out; a relative one would be MEDIA_URL,
    # which nothing serves (files are served by views that check access).
    return url if url.startswith(("https://", "http://")) else None


def direct_origin() -> str | None:
    """Where the store's own links point (scheme://host[:port]), or None without such links:
    the chat page's Content-Security-Policy must allow media from there."""
    url = direct_url("attachments/origin", "application/octet-stream", "inline", 60)
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def publish(attachment: Attachment) -> None:
    """Hand an attachment's finished files from its working folder to the storage, under the
    names its fields hold. The working folder stays until `drop_working_copy`: until the row
    says the files are stored, a process taking the work over needs the original there."""
    if kept_in_place():
        return
    for name in names(attachment):
        with working_path(name).open("rb") as source:
            _save_as(name, source)


def drop_working_copy(attachment: Attachment) -> None:
    """Remove the working folder of a published attachment (unless the storage is that folder)."""
    if not kept_in_place():
        shutil.rmtree(working_dir(attachment), ignore_errors=True)


def remove(attachment: Attachment) -> None:
    """Delete an attachment's files: its working folder and what the storage holds of it."""
    folder = working_dir(attachment)
    if folder.name == attachment.key and attachment.key:
        shutil.rmtree(folder, ignore_errors=True)
    if kept_in_place():
        return
    kept = storage()
    for name in names(attachment):
        try:
            kept.delete(name)
        except Exception:  # the row goes anyway; an orphan file is logged, never fatal
            logger.warning("Could not delete stored file %s", name, exc_info=True)


def copy(source_name: str, target_name: str) -> None:
    """Store a copy of a stored file under another name.

    Stored files never change, so on disk a hard link is a copy that costs no space and no time
    (a 1 GB video); across file systems, or where links are refused, the bytes are copied.
    Either way each name has its own file: deleting one leaves the other whole."""
    source = local_path(source_name)
    if source is not None:
        target = Path(storage().path(target_name))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return
    with open_stored(source_name) as stored:
        _save_as(target_name, stored)


def _save_as(name: str, source: IO[bytes]) -> None:
    """Store `source` under exactly `name`. Names are under a new key's folder, so nothing is
    there yet; a storage that would keep the file under another name is refused."""
    kept = storage()
    saved = kept.save(name, File(source, name=Path(name).name))
    if saved != name:
        kept.delete(saved)
        raise RuntimeError(f"The storage kept {name!r} as {saved!r}")
