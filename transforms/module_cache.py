"""Model handles on Cloud Storage: copied to local disk once per machine, loaded from there.

``--preprocessor gs://bucket/models/preprocessor`` names a SavedModel directory. It
is not handed to ``hub.load`` as it is, because ``hub.load`` would read it through
TensorFlow's own gs:// file system, which is not the one the rest of the pipeline
uses: its endpoints are compiled in (``https://www.googleapis.com/storage/v1/`` and
``storage.googleapis.com``; it ignores ``STORAGE_EMULATOR_HOST`` and
``CLOUD_STORAGE_EMULATOR_ENDPOINT``, so it cannot be tested offline), and it looks up
credentials by its own rules. Instead the directory is copied through Beam's
FileSystems, like every other path of a run, into
``$BEAM_EMBED_CACHE/modules/<key>-<name>/`` and loaded from there.

- The key hashes the handle and the listing (relative names, sizes, modification
  times), so a module replaced under the same handle is copied again, not served
  stale.
- Each copy is written into a ``.partial-*`` directory beside it and renamed into
  place whole: several worker processes of one machine may copy at once, and none
  ever loads a half-copied module. The first rename wins; the others discard their
  copy.
- Handles that are URLs (tfhub.dev, Kaggle) or local paths are returned unchanged:
  TF Hub has its own download cache for URLs.
- The embedded default model's symbolic handles (``beam-embed:<model id>/<part>``)
  are resolved in this process's own cache (models/default_model.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_COPY_BUFFER = 8 << 20
_NOT_BEAM_SCHEMES = (None, "http", "https", "file")


def is_remote(handle: str) -> bool:
    """Whether ``handle`` lies on one of Beam's non-local file systems (gs://, s3://...)."""
    if FileSystems.get_scheme(handle) in _NOT_BEAM_SCHEMES:
        return False
    try:
        from apache_beam.io.localfilesystem import LocalFileSystem
        return not isinstance(FileSystems.get_filesystem(handle), LocalFileSystem)
    except ValueError:  # a scheme Beam has no file system for: TF Hub's business
        return False


def cache_dir() -> str:
    from models.default_model import cache_root
    return os.path.join(cache_root(), "modules")


def local_module_dir(handle: str, cache: Optional[str] = None) -> str:
    """A path ``hub.load`` can read for ``handle``: the handle itself unless it is remote
    or symbolic, else a complete local copy of the SavedModel directory (made now if
    need be)."""
    from models.default_model import is_embedded_handle, resolve_handle
    if is_embedded_handle(handle):
        return resolve_handle(handle)
    if not is_remote(handle):
        return handle
    prefix = handle.rstrip("/") + "/"
    files = _listing(handle, prefix)
    cache = cache or cache_dir()
    target = os.path.join(cache, f"{_key(handle, files)}-{_name(handle)}")
    if os.path.isdir(target):
        return target
    os.makedirs(cache, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".partial-{os.path.basename(target)}-", dir=cache)
    try:
        logging.info("copying %d files (%d bytes) of %s to %s", len(files),
                     sum(size for _, size, _ in files), handle, target)
        for relative, size, _ in files:
            _copy(prefix + relative, os.path.join(staging, relative), size)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isdir(target):  # not another process that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _listing(handle: str, prefix: str) -> list[tuple[str, int, float]]:
    """(name relative to the handle, size, modification time) of every object under it."""
    found = FileSystems.match([prefix + "**"])[0].metadata_list
    # Zero-byte "folder/" placeholders (the Cloud Console makes them) hold nothing.
    files = sorted((m.path[len(prefix):], m.size_in_bytes, m.last_updated_in_seconds)
                   for m in found if not m.path.endswith("/"))
    if not files:
        if FileSystems.exists(handle.rstrip("/")):
            raise ValueError(f"{handle} is a file; a {FileSystems.get_scheme(handle)}:// "
                             "module handle must be a SavedModel directory (unpack archives)")
        raise FileNotFoundError(f"{handle} holds no files")
    if not any(name in ("saved_model.pb", "saved_model.pbtxt") for name, _, _ in files):
        raise ValueError(f"{handle} is not a SavedModel directory: it has no saved_model.pb")
    return files


def _key(handle: str, files: list[tuple[str, int, float]]) -> str:
    return hashlib.sha256(json.dumps([handle, files]).encode("utf-8")).hexdigest()[:16]


def _name(handle: str) -> str:
    """The handle's last path component, readable in the cache's directory listing."""
    name = handle.rstrip("/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64] or "module"


def _copy(source: str, destination: str, size: int) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    # UNCOMPRESSED: bytes as stored, even for a name that ends in .gz.
    with FileSystems.open(source, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
            open(destination, "wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_BUFFER)
    copied = os.path.getsize(destination)
    if copied != size:
        raise IOError(f"copying {source}: got {copied} bytes, the listing says {size}")
