"""Small files written only if nobody else did: create-if-absent, and replace or delete
only the version one read, on local disks and on Cloud Storage.

Beam's ``FileSystems`` has no exclusive create (``create`` overwrites whatever is
there, on every file system), so the locks and write probes that need one go around
it: ``os.open`` with ``O_CREAT | O_EXCL`` on local disks, and on ``gs://`` the
google-cloud-storage client (which Beam's GcsIO is built on) with a generation
precondition: ``if_generation_match=0`` creates only if no live object has the
name, ``if_generation_match=G`` replaces or deletes only generation ``G``. Cloud
Storage answers 412 otherwise, atomically, however many writers race.

A version is what a later conditional replace or delete must match: the object's
generation on Cloud Storage; on local disks, the bytes read (a local replace is a
read, compare and ``os.replace``: atomic for readers, though two replacers racing
within microseconds are not excluded the way a generation precondition excludes them).
"""
from __future__ import annotations

import errno
import os
import uuid
from typing import Optional, Union

Version = Union[int, bytes]


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def create(path: str, data: bytes) -> Optional[Version]:
    """Write ``data`` at ``path`` only if nothing is there; its version, or None if
    something already was. Local parent directories are created."""
    return _gcs_create(path, data) if is_gcs(path) else _local_create(path, data)


def read(path: str) -> Optional[tuple[bytes, Version]]:
    """``(data, version)``, or None if nothing is at ``path``. Raises OSError for a
    local path that is not a regular file (a directory, a symbolic link)."""
    return _gcs_read(path) if is_gcs(path) else _local_read(path)


def replace(path: str, data: bytes, version: Version) -> Optional[Version]:
    """Replace what is at ``path`` if it still has ``version``; the new version, or None."""
    return _gcs_replace(path, data, version) if is_gcs(path) else _local_replace(path, data, version)


def delete(path: str, version: Version) -> bool:
    """Delete ``path`` if it still has ``version``; whether it was deleted."""
    return _gcs_delete(path, version) if is_gcs(path) else _local_delete(path, version)


# Local disks.

def _local_create(path: str, data: bytes) -> Optional[bytes]:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    try:  # O_NOFOLLOW: a symbolic link planted at the name is "something there" too
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return data


def _local_read(path: str) -> Optional[tuple[bytes, bytes]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise OSError(e.errno, "is a symbolic link, not a file this tool wrote") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise OSError(errno.EISDIR, "is a directory, not a file this tool wrote") from None
    return data, data


def _local_replace(path: str, data: bytes, version: bytes) -> Optional[bytes]:
    current = _local_read(path)
    if current is None or current[1] != version:
        return None
    aside = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(aside, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(aside, path)  # readers see the old file or the new one, never half of one
    return data


def _local_delete(path: str, version: bytes) -> bool:
    current = _local_read(path)
    if current is None or current[1] != version:
        return False
    os.remove(path)
    return True


# Cloud Storage.

TIMEOUT = (5, 30)  # seconds to connect, to read an answer


def _blob(path: str):
    from pipeline.storage_access import storage_client
    bucket, _, name = path[len("gs://"):].partition("/")
    return storage_client().bucket(bucket).blob(name)


def _gcs_create(path: str, data: bytes) -> Optional[int]:
    from google.api_core.exceptions import PreconditionFailed
    blob = _blob(path)
    try:
        blob.upload_from_string(data, if_generation_match=0, timeout=TIMEOUT)
    except PreconditionFailed:
        # Also what a retried request whose first attempt did succeed sees: callers
        # that need to tell compare the content with what they wrote.
        return None
    return blob.generation


def _gcs_read(path: str) -> Optional[tuple[bytes, int]]:
    from google.api_core.exceptions import NotFound, PreconditionFailed
    blob = _blob(path)
    try:
        blob.reload(timeout=TIMEOUT)
        generation = int(blob.generation)
        data = blob.download_as_bytes(if_generation_match=generation, timeout=TIMEOUT)
    except NotFound:
        return None
    except PreconditionFailed:  # replaced between the two requests: read the new one
        return _gcs_read(path)
    return data, generation


def _gcs_replace(path: str, data: bytes, version: int) -> Optional[int]:
    from google.api_core.exceptions import NotFound, PreconditionFailed
    blob = _blob(path)
    try:
        blob.upload_from_string(data, if_generation_match=version, timeout=TIMEOUT)
    except (PreconditionFailed, NotFound):
        return None
    return blob.generation


def _gcs_delete(path: str, version: int) -> bool:
    from google.api_core.exceptions import NotFound, PreconditionFailed
    try:
        _blob(path).delete(if_generation_match=version, timeout=TIMEOUT)
    except (PreconditionFailed, NotFound):
        return False
    return True
