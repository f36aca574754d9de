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
(``files_beam_would_delete``); give each run its own directory. Two runs must not
write to the same prefix at the same time.
"""
from __future__ import annotations

import logging
import os

from apache_beam.io.filesystems import FileSystems

from pipeline.summary import partial_summary_path, summary_path
from transforms.shards import (absolute, is_local, shard_glob, shard_glob_pattern, shard_pattern,
                               temp_dir_glob, temp_dir_of)
from transforms.write import OUTPUT_FORMATS

DEAD_LETTER_EXTENSIONS = ("jsonl",)


def clear_previous_run(output_prefix: str, dead_letter_prefix: str) -> list[str]:
    """Delete what earlier runs left under the two prefixes; returns the deleted paths."""
    output_prefix, dead_letter_prefix = absolute(output_prefix), absolute(dead_letter_prefix)
    summaries = [p for p in (summary_path(output_prefix), partial_summary_path(output_prefix))
                 if FileSystems.exists(p)]
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
    prefix = absolute(prefix)
    ours, beams = shard_pattern(prefix, extensions), shard_glob_pattern(prefix, extensions)
    return [path for path in _match(shard_glob(prefix))
            if beams.match(path) and not ours.match(path)]


def _shards(prefix: str, extensions: tuple[str, ...]) -> list[str]:
    pattern = shard_pattern(prefix, extensions)
    return [path for path in _match(shard_glob(prefix)) if pattern.match(path)]


def _temp_dirs(prefix: str) -> list[str]:
    """Beam's temporary directories of ``prefix``: the files in them on object stores
    (where a directory is only a name prefix), the directories themselves on local disk
    (deleted recursively; found even when a run was killed before writing into one)."""
    if not is_local(prefix):
        return [path for path in _match(temp_dir_glob(prefix)) if temp_dir_of(path, prefix)]
    directory, _ = FileSystems.split(prefix)
    if not os.path.isdir(directory):
        return []
    return [path for path in (os.path.join(directory, entry.name) for entry in os.scandir(directory)
                              if entry.is_dir())
            if temp_dir_of(os.path.join(path, ""), prefix)]


def _match(pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def _delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)
