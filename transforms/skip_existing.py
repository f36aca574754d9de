"""``SkipExisting``: leave out the documents an earlier run already embedded the same way.

``--skip_existing GLOB`` names earlier Parquet outputs. A document is skipped when
one of those files holds its id *and* carries this run's model fingerprint in its
schema metadata (``beam_embed.fingerprint``: encoder, preprocessor, pooling, layer,
normalize, max_seq_length; see pipeline/config.py). A file with another
fingerprint, without one, or that is not Parquet at all is no evidence: its ids
are embedded again. A glob that matches nothing skips nothing.

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
from typing import Iterable, Optional

import apache_beam as beam
import pyarrow
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from transforms import counters
from transforms.records import Document
from transforms.shards import absolute, shard_pattern

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

    def __init__(self, existing_glob: str, fingerprint: str, own_output: Optional[str] = None):
        super().__init__()
        self._glob = absolute(existing_glob)  # Beam's local glob finds nothing for "emb-*"
        self._fingerprint = fingerprint
        self._own_output = own_output

    def expand(self, documents):
        done_ids = (
            documents.pipeline
            | "MatchExisting" >> fileio.MatchFiles(
                self._glob, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "NotOwnOutput" >> beam.Filter(_not_own_shard, self._own_output)
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
            | "ReadDoneIds" >> beam.ParDo(_ReadDoneIdsFn(self._fingerprint)).with_output_types(str)
            | "KeyIds" >> beam.Map(lambda doc_id: (_id_key(doc_id), doc_id))
            .with_output_types(tuple[bytes, str]))
        keyed = (documents
                 | "KeyDocuments" >> beam.Map(lambda doc: (_id_key(doc.id), doc))
                 .with_output_types(tuple[bytes, Document]))
        return ({"documents": keyed, "done": done_ids}
                | "JoinOnId" >> beam.CoGroupByKey()
                | "DropDone" >> beam.ParDo(_DropDoneFn()).with_output_types(Document))


def _not_own_shard(metadata, own_output: Optional[str]) -> bool:
    return own_output is None or not shard_pattern(
        absolute(own_output), ("parquet",)).match(absolute(metadata.path))


def _id_key(doc_id: str) -> bytes:
    # Fixed-size keys, as in DeduplicateDocuments; _DropDoneFn compares the ids
    # themselves, so a hash collision cannot skip the wrong document.
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()


class _ReadDoneIdsFn(beam.DoFn):
    """ReadableFile -> the ids it holds, if it was written with ``fingerprint``."""

    def __init__(self, fingerprint: str):
        self._fingerprint = fingerprint

    def process(self, readable_file: fileio.ReadableFile) -> Iterable[str]:
        import pyarrow.parquet as pq

        path = readable_file.metadata.path
        with readable_file.open(compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            try:
                parquet_file = pq.ParquetFile(stream)
            except pyarrow.ArrowInvalid:
                logging.warning("--skip_existing: %s is not a Parquet file; ignored", path)
                return
            metadata = parquet_file.schema_arrow.metadata or {}
            found = metadata.get(FINGERPRINT_KEY.encode(), b"").decode("utf-8", "replace")
            if found != self._fingerprint:
                logging.info("--skip_existing: %s was embedded with fingerprint %r, this run "
                             "uses %r; its ids are embedded again", path, found or None,
                             self._fingerprint)
                return
            if "id" not in parquet_file.schema_arrow.names:
                logging.warning("--skip_existing: %s has no id column; ignored", path)
                return
            for batch in parquet_file.iter_batches(batch_size=_ID_BATCH_ROWS, columns=["id"]):
                yield from (doc_id for doc_id in batch.column(0).to_pylist() if doc_id is not None)


class _DropDoneFn(beam.DoFn):
    def setup(self):
        self._skipped = counters.counter(counters.SKIPPED_EXISTING)

    def process(self, element):
        _, grouped = element
        done = set(grouped["done"])
        for document in grouped["documents"]:
            if document.id in done:
                self._skipped.inc()
            else:
                yield document
