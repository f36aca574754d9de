"""``SkipExisting``: leave out the documents an earlier run already embedded the same way.

``--skip_existing GLOB`` names earlier Parquet outputs. A document is skipped when
one of those files holds its id *and* carries this run's model fingerprint in its
schema metadata (``beam_embed.fingerprint``: encoder, preprocessor, pooling, layer,
normalize, max_seq_length; see pipeline/config.py). A file with another
fingerprint, without one, that is not Parquet at all, or that cannot be read
whole (damaged, cut short, not readable, a directory, an ``id`` column that is not
non-null strings) is no evidence: its ids are embedded again, and the unreadable
ones are logged by name and counted (``skip_existing_ignored_files`` in the
summary). A glob that matches nothing skips nothing.

This run's own output shards are never evidence either: the run replaces them
(pipeline/outputs.py clears them before it starts). So a glob that also covers
``--output`` (``out/*/emb-*.parquet`` with ``--output out/2024-05-02/emb``) works,
and re-running the same command re-embeds what that prefix held instead of
skipping it and leaving an empty output.

Only the ``id`` column is read (Parquet is columnar), through Beam's fileio, so the
glob may be local or ``gs://``. Existing ids and documents meet in a CoGroupByKey
on the id, so neither side has to fit in a worker's memory.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from typing import Iterable, Optional

import apache_beam as beam
import pyarrow
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from transforms import counters
from transforms.progress import PROGRESS
from transforms.records import Document
from transforms.shards import absolute, is_local, shard_pattern

FINGERPRINT_KEY = "beam_embed.fingerprint"
_ID_BATCH_ROWS = 65536


class SkipExisting(beam.PTransform):
    """PCollection[Document] (unique ids) -> the Documents not embedded yet.

    Args:
      existing_glob: earlier Parquet outputs (local or gs:// glob).
      fingerprint: this run's model fingerprint; only files carrying it count.
      own_output: this run's ``--output`` prefix, whose shards are ignored.
    Each skipped document increments the ``skipped_existing`` counter, so that
    read == embedded + dead_lettered + duplicates + skipped_existing.
    """

    def __init__(self, existing_glob: str, fingerprint: str, own_output: Optional[str] = None,
                 own_run: str = "", table_options: Optional[dict] = None):
        super().__init__()
        from transforms.sinks import table_sink_class
        self._table_sink = table_sink_class(existing_glob)
        self._url = existing_glob
        # Beam's local glob finds nothing for "emb-*": made absolute.
        self._glob = None if self._table_sink else absolute(existing_glob)
        self._fingerprint = fingerprint
        self._own_output = own_output
        self._own_run = own_run
        self._table_options = dict(table_options or {})

    def expand(self, documents):
        if self._table_sink is not None:  # a table: its rows with this fingerprint, not this run's
            done_ids = (documents.pipeline
                        | "ReadTableIds" >> self._table_sink.done_ids(
                            self._url, self._fingerprint, self._own_run, **self._table_options)
                        | "KeyTableIds" >> beam.Map(lambda doc_id: (_id_key(doc_id), doc_id))
                        .with_output_types(tuple[bytes, str]))
        else:
            done_ids = self._done_file_ids(documents.pipeline)
        keyed = (documents
                 | "KeyDocuments" >> beam.Map(lambda doc: (_id_key(doc.id), doc))
                 .with_output_types(tuple[bytes, Document]))
        return ({"documents": keyed, "done": done_ids}
                | "JoinOnId" >> beam.CoGroupByKey()
                | "DropDone" >> beam.ParDo(_DropDoneFn()).with_output_types(Document))

    def _done_file_ids(self, pipeline):
        return (
            pipeline
            | "MatchExisting" >> fileio.MatchFiles(
                self._glob, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "NotOwnOutput" >> beam.Filter(_not_own_shard, self._own_output)
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
            | "ReadDoneIds" >> beam.ParDo(_ReadDoneIdsFn(self._fingerprint)).with_output_types(str)
            | "KeyIds" >> beam.Map(lambda doc_id: (_id_key(doc_id), doc_id))
            .with_output_types(tuple[bytes, str]))


def _not_own_shard(metadata, own_output: Optional[str]) -> bool:
    return own_output is None or not shard_pattern(
        absolute(own_output), ("parquet",)).match(absolute(metadata.path))


def _id_key(doc_id: str) -> bytes:
    # Fixed-size keys, as in DeduplicateDocuments; _DropDoneFn compares the ids
    # themselves, so a hash collision cannot skip the wrong document.
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()


class _ReadDoneIdsFn(beam.DoFn):
    """ReadableFile -> the ids it holds, if it was written with ``fingerprint``.

    A file is evidence whole or not at all: its id column is read completely before
    any id is emitted, so a file damaged half-way (a corrupt data page, cut short,
    deleted or replaced while being read) skips nothing, and its ids are embedded
    again. Such a file, and one that is not Parquet or whose ``id`` column is not
    non-null strings, is logged by name and counted in ``skip_existing_ignored_files``;
    nothing about it fails the run. Only the id column is held: about 70 bytes an id
    for the file being read, never the embeddings.
    """

    def __init__(self, fingerprint: str):
        self._fingerprint = fingerprint

    def setup(self):
        self._ignored = counters.counter(counters.SKIP_EXISTING_IGNORED_FILES)

    def process(self, readable_file: fileio.ReadableFile) -> Iterable[str]:
        path = readable_file.metadata.path
        try:
            ids = self._read_ids(readable_file)
        except Exception as error:  # OSError, pyarrow's errors, a stream's own: all are damage
            reason = error.reason if isinstance(error, _NoEvidence) else (
                f"cannot be read ({type(error).__name__}: {error})"[:300])
            self._ignored.inc()
            logging.warning("--skip_existing: %s %s; ignored, its ids are embedded again",
                            path, reason)
            return
        for chunk in ids.iterchunks() if ids is not None else ():
            yield from chunk.to_pylist()

    def _read_ids(self, readable_file: fileio.ReadableFile):
        """The whole id column (a pyarrow ChunkedArray); None for another fingerprint."""
        import pyarrow.parquet as pq

        path = readable_file.metadata.path
        if is_local(path) and not stat.S_ISREG(os.stat(path).st_mode):
            # Beam's local listing yields every non-directory: opening a named pipe
            # would wait forever for a writer.
            raise _NoEvidence("is not a regular file")
        with readable_file.open(compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            try:
                parquet_file = pq.ParquetFile(stream)
            except pyarrow.ArrowInvalid:
                raise _NoEvidence("is not a Parquet file") from None
            schema = parquet_file.schema_arrow
            found = (schema.metadata or {}).get(FINGERPRINT_KEY.encode(), b"").decode("utf-8", "replace")
            if found != self._fingerprint:
                logging.info("--skip_existing: %s was embedded with fingerprint %r, this run "
                             "uses %r; its ids are embedded again", path, found or None,
                             self._fingerprint)
                return None
            if schema.get_all_field_indices("id") == []:
                raise _NoEvidence("has no id column")
            id_type = schema.field("id").type  # KeyError for two id columns: damage too
            if not (pyarrow.types.is_string(id_type) or pyarrow.types.is_large_string(id_type)):
                raise _NoEvidence(f"has an id column of type {id_type}, not string")
            ids = pyarrow.chunked_array(
                [batch.column(0) for batch in parquet_file.iter_batches(
                    batch_size=_ID_BATCH_ROWS, columns=["id"])], type=id_type)
            if ids.null_count:
                raise _NoEvidence(f"has {ids.null_count} null ids")
            try:  # Parquet strings need not be UTF-8: check before any id is used
                ids.validate(full=True)
            except pyarrow.ArrowInvalid as error:
                raise _NoEvidence(f"has ids that are not UTF-8 ({error})") from None
            return ids


class _NoEvidence(Exception):
    """Why a file cannot count as evidence (the end of a warning naming it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _DropDoneFn(beam.DoFn):
    def setup(self):
        self._skipped = counters.counter(counters.SKIPPED_EXISTING)

    def process(self, element):
        _, grouped = element
        done = set(grouped["done"])
        for document in grouped["documents"]:
            if document.id in done:
                self._skipped.inc()
                PROGRESS.settle(1)
            else:
                yield document
