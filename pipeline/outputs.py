"""A prefix holds the output of one run: clearing what an earlier run left there.

Re-running a command must give the same files as running it once, even when the
earlier run was killed half-way or wrote a different number of shards. Before the
pipeline starts, the launcher deletes, through FileSystems (local or gs://):

1. ``OUTPUT-summary.json`` first. The summary is written last, once every shard is
   in place, so it marks a complete output; from this moment until the new run
   finishes there is none, and a reader can tell.
2. Every shard of the prefixes, whatever its shard count:
   ``OUTPUT-SSSSS-of-NNNNN.parquet|.tfrecord`` and ``DEAD_LETTER-SSSSS-of-NNNNN.jsonl``.
   Beam's sink only replaces shards with the count it writes itself, so an old
   ``-of-00002`` set would stay next to a new ``-of-00001`` one and double ids.
3. Beam's temporary directories of both prefixes (``beam-temp-<name>-<hex>``),
   which a killed run leaves behind.

Only exact shard names of the two prefixes are touched: ``out/emb.parquet`` or
``out/emb-v2-00000-of-00001.parquet`` next to ``--output out/emb`` are other files.
Beam's own sink is less careful: when it finalizes, it deletes every
``PREFIX-*-of-NNNNN.<ext>``, which includes ``out/emb-v2-00000-of-00001.parquet``. So
a run refuses to start while such files of another output exist
(``files_beam_would_delete``); give each run its own directory. Two runs cannot
use one prefix at the same time: the run holds ``PREFIX.lock`` while it clears
and writes (pipeline/prefix_lock.py).

Prefixes hold no glob character (``prefix_problem`` in transforms/shards.py), and on
local disks this module lists directories and deletes files literally (``os.scandir``,
``os.remove``), never through ``FileSystems.match`` or ``FileSystems.delete``, which
expand every path as a pattern: a working directory like ``/home/me/run[1]`` must not
turn ``out/emb`` into a pattern. Paths are used as given (relative ones against the
working directory, as Beam uses them), so a symbolic link or ``..`` in the prefix leads
this module where it leads Beam. Entries that are symbolic links to directories are
left alone: Beam's temporary directories are real ones.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid

from apache_beam.io.filesystems import FileSystems

from pipeline import conditional_files
from pipeline.summary import partial_summary_path, summary_path
from transforms.shards import (example_temp_file, is_local, shard_glob, shard_glob_pattern,
                               shard_pattern, temp_dir_glob, temp_dir_of, temp_dir_name_pattern)
from transforms.constants import OUTPUT_FORMATS

DEAD_LETTER_EXTENSIONS = ("jsonl",)
PROBE_NAME = ".beam-embed-write-probe-"


def clear_previous_run(output_prefix: str, dead_letter_prefix: str) -> list[str]:
    """Delete what earlier runs left under the two prefixes; returns the deleted paths.
    The caller holds both prefixes' locks."""
    summaries = [p for p in (summary_path(output_prefix), partial_summary_path(output_prefix))
                 if _exists(p)]
    _delete(summaries)
    shards = (_shards(output_prefix, OUTPUT_FORMATS)
              + _shards(dead_letter_prefix, DEAD_LETTER_EXTENSIONS))
    _delete(shards)
    temp = _temp_dirs(output_prefix) + _temp_dirs(dead_letter_prefix)
    _delete(temp)
    deleted = summaries + shards + temp
    if deleted:
        logging.info("cleared %d files of an earlier run under %s and %s (%d shards, "
                     "%d temporary directories)", len(deleted), output_prefix,
                     dead_letter_prefix, len(shards), len(temp))
    return deleted


def files_beam_would_delete(prefix: str, extensions: tuple[str, ...]) -> list[str]:
    """Other outputs' files that Beam's sink would delete when this run finalizes:
    matched by its ``PREFIX-*-of-NNNNN.<ext>`` glob without being shards of PREFIX."""
    return [path for path in _shards(prefix, extensions, shard_glob_pattern)
            if path not in _shards(prefix, extensions)]


def probe_writable(prefix: str, extensions: tuple[str, ...] = OUTPUT_FORMATS) -> None:
    """Create and delete a probe file where ``prefix``'s files will go; raise
    ValueError saying why not. Nothing else is created: locally the probe goes into
    the deepest directory that exists on the way (the run creates the others), and its
    name is unique and created exclusively, so it never replaces anything. Locally,
    the names the run will create there must also fit the file system's limits."""
    if is_local(prefix):
        directory = _deepest_existing_directory(prefix)
        _check_name_lengths(prefix, directory, extensions)
        where = directory
    else:
        directory, where = prefix.rpartition("/")[0], prefix.rpartition("/")[0] + "/"
    probe = f"{directory}/{PROBE_NAME}{uuid.uuid4().hex}" if directory else (
        f"{PROBE_NAME}{uuid.uuid4().hex}")
    try:
        version = conditional_files.create(probe, b"probe")
        if version is None or not conditional_files.delete(probe, version):
            raise OSError(f"the probe file {probe} was changed by someone else")
    except OSError as e:
        raise ValueError(f"cannot write in {where or '.'}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - the storage client raises its own types
        raise ValueError(f"cannot write in {where}: {getattr(e, 'message', e)}") from None


def _check_name_lengths(prefix: str, directory: str, extensions: tuple[str, ...]) -> None:
    """The longest names a run makes from ``prefix`` (Beam's temporary directory and the
    files in it, which are longer than the shards, the summary and the lock), and the
    directories it will create, must fit NAME_MAX and PATH_MAX where they go: a
    250-byte name failed with ENAMETOOLONG and a traceback after the model loaded."""
    def limit(name: str, default: int) -> int:
        try:
            return os.pathconf(directory or ".", name)
        except (OSError, ValueError):
            return default
    name_max, path_max = limit("PC_NAME_MAX", 255), limit("PC_PATH_MAX", 4096)
    missing = os.path.relpath(os.path.dirname(prefix) or ".", directory or ".")
    names = [] if missing == "." else missing.split(os.sep)
    longest_paths = [example_temp_file(prefix, ext) for ext in extensions]
    for path in longest_paths:
        temp_dir, temp_file = os.path.split(path)
        names += [os.path.basename(temp_dir), temp_file]
    for name in names:
        if len(os.fsencode(name)) > name_max:
            raise ValueError(f"a file name the run makes is {len(os.fsencode(name))} bytes long "
                             f"({name[:40]}...), and the file system takes at most {name_max}; "
                             "use a shorter prefix")
    longest = max(len(os.fsencode(os.path.abspath(path))) for path in longest_paths)
    if longest >= path_max:
        raise ValueError(f"the paths the run makes are up to {longest} bytes long, and the "
                         f"file system takes less than {path_max}; use a shorter path")


def _deepest_existing_directory(prefix: str) -> str:
    path = os.path.dirname(prefix)
    while path and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if path and not os.path.isdir(path):
        what = "a broken symbolic link" if os.path.islink(path) else "not a directory"
        raise ValueError(f"{path} is {what}, so nothing can be written under it")
    return path


def _shards(prefix: str, extensions: tuple[str, ...], pattern=shard_pattern) -> list[str]:
    """Files next to ``prefix`` whose names ``pattern(prefix)`` matches (shard_pattern:
    its own shards; shard_glob_pattern: what Beam's finalize glob matches)."""
    if is_local(prefix):  # what Beam's local glob lists: files (and links to files)
        directory, name = os.path.split(prefix)
        regex = pattern(name, extensions)
        return sorted(os.path.join(directory, e.name) for e in _scan(directory)
                      if regex.match(e.name) and not e.is_dir())
    regex = pattern(prefix, extensions)
    return sorted(path for path in _match(shard_glob(prefix)) if regex.match(path))


def _temp_dirs(prefix: str) -> list[str]:
    """Beam's temporary directories of ``prefix``: the files in them on object stores
    (where a directory is only a name prefix), the directories themselves on local disk
    (deleted recursively; found even when a run was killed before writing into one)."""
    if not is_local(prefix):
        return [path for path in _match(temp_dir_glob(prefix)) if temp_dir_of(path, prefix)]
    directory, name = os.path.split(prefix)
    regex = temp_dir_name_pattern(name)
    return sorted(os.path.join(directory, e.name) for e in _scan(directory)
                  if regex.match(e.name) and e.is_dir(follow_symlinks=False))


def _scan(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory or ".") as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _match(pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def _exists(path: str) -> bool:
    return os.path.lexists(path) if is_local(path) else FileSystems.exists(path)


def _delete(paths: list[str]) -> None:
    if not paths:
        return
    if not is_local(paths[0]):
        FileSystems.delete(paths)  # gs:// paths of prefixes without glob characters
        return
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
