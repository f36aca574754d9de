"""Which paths --input may name: checked before the run, each refusal naming --input.

Beam's own matching accepts a directory named outright (and a worker then fails
with IsADirectoryError), blocks on a FIFO, and skips directories and dangling
links in a glob without a word. These checks give each input kind a defined
outcome before anything runs (the README's "Damaged and foreign-encoded inputs").
"""
from __future__ import annotations

import glob
import itertools
import logging
import os
import stat
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from transforms.records import encodable
from transforms.shards import absolute


def check_pattern_matches(file_pattern: str) -> None:
    """Raises ValueError, naming ``--input``, unless the pattern matches at least one
    file and every match is something ReadCorpus can read: a regular file (or a link
    to one), readable. Directories, FIFOs, devices and sockets are refused, because
    a worker would fail on them after the job started (or block on a FIFO forever).
    Empty files are accepted (they hold no records) and logged."""
    check_not_a_directory(file_pattern)
    if (_is_local(file_pattern) and os.path.islink(file_pattern)
            and not os.path.exists(file_pattern)):
        raise ValueError(f"--input {file_pattern!r} is a symbolic link that leads nowhere "
                         "(its target is missing, or the links form a loop)")
    try:
        matched = FileSystems.match([absolute(file_pattern)])[0].metadata_list
    except Exception as error:  # BeamIOError for a missing bucket or path, etc.
        raise ValueError(
            f"--input {file_pattern!r} cannot be matched: {error}") from error
    if not matched:
        raise ValueError(f"--input {file_pattern!r} matches no files")
    _warn_about_what_the_glob_skips(file_pattern)
    for metadata in matched:
        problem = _unreadable_kind(metadata.path)
        if problem:
            raise ValueError(f"--input {file_pattern!r} matches {encodable(metadata.path)!r}, "
                             f"{problem}")
    empty = [m.path for m in matched if m.size_in_bytes == 0]
    if empty:
        logging.warning("--input %r: %d of the %d matched files are empty (no records): %s",
                        file_pattern, len(empty), len(matched),
                        ", ".join(repr(encodable(p)) for p in empty[:5]))


def matched_bytes(file_pattern: str) -> Optional[int]:
    """The total size of the files the pattern matches (the progress display's
    measure of the input), or None when they cannot be listed from here."""
    try:
        matched = FileSystems.match([absolute(file_pattern)])[0].metadata_list
    except Exception:  # noqa: BLE001 - check_pattern_matches reports why
        return None
    return sum(m.size_in_bytes for m in matched)


def _warn_about_what_the_glob_skips(file_pattern: str) -> None:
    """Beam's local glob lists files only (os.walk): directories, and links that lead
    nowhere, are skipped without a word. Name them, since the user may have meant
    them to be read."""
    pattern = absolute(file_pattern)
    if not _is_local(pattern) or not any(c in pattern for c in "*?["):
        return
    # Python's glob is close enough to Beam's for a warning; bounded, since a huge
    # tree under a "**" must not delay the launch for a message.
    skipped = [path for path in itertools.islice(glob.iglob(pattern, recursive=True), 100_000)
               if not os.path.isfile(path)]
    if skipped:
        logging.warning(
            "--input %r also matches %s, which %s not read: a glob reads regular files only "
            "(a directory's files need their own glob, e.g. DIR/*)",
            file_pattern, ", ".join(repr(encodable(p)) for p in skipped[:5]),
            "is" if len(skipped) == 1 else "are")


def check_not_a_directory(file_pattern: str) -> None:
    if _is_local(file_pattern) and os.path.isdir(file_pattern):
        every, jsonl = os.path.join(file_pattern, "*"), os.path.join(file_pattern, "*.jsonl")
        raise ValueError(
            f"--input {file_pattern!r} is a directory; give a glob of the files in it, "
            f"e.g. --input {every!r} with --input_format, or {jsonl!r}")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _unreadable_kind(path: str) -> Optional[str]:
    """Why a matched local path cannot be read as a file, or None. Remote objects are
    files by construction; a console's "folder" placeholder (an empty object whose
    name ends in "/") reads as an empty file."""
    if not _is_local(path):
        return None
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a file is a file
    except OSError as error:  # a dangling link, a link loop, a path that vanished
        return f"which cannot be opened: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return ("a directory: the glob must match files only (narrow it, e.g. with an "
                "extension, or add '/*' to read the directory's files)")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        return (f"{kind}: only regular files can be read (a worker may read a file more than "
                "once, and a pipe or device gives different bytes each time)")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        return f"which cannot be read: {error.strerror or error}"
    return None
