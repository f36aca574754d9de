"""Making document ids unique before embedding.

Copies of the same record (same id, text and text pair) are harmless: they merge
into one Document. Records that share an id but disagree on the text are not: no
choice between them would be right, so all of them are dead-lettered.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import apache_beam as beam

from transforms import counters
from transforms.progress import PROGRESS
from transforms.records import (DEAD_LETTERS_TAG, DOCUMENTS_TAG, DeadLetter, Document, ReadResult,
                                raw_prefix)


class DeduplicateDocuments(beam.PTransform):
    """PCollection[Document] -> ``ReadResult(documents, dead_letters)``.

    Output documents have unique ids. Identical records merge into one, keeping the
    copy with the smallest ``source`` (so the result does not depend on shuffle
    order); each extra copy increments the ``duplicates`` counter. When records
    share an id but differ in text or text_pair, every one of them becomes a
    DeadLetter ``duplicate_id`` (and increments ``dead_lettered_duplicate_id``).
    Together with ReadCorpus's counters:
    read == documents + dead letters + duplicates.
    """

    def expand(self, documents) -> ReadResult:
        grouped = (
            documents
            | "KeyByIdHash" >> beam.Map(_keyed_by_id_hash)
            .with_output_types(tuple[bytes, Document])
            | "GroupById" >> beam.GroupByKey())
        result = grouped | "Resolve" >> beam.ParDo(_ResolveIdFn()).with_output_types(
            Document, **{DEAD_LETTERS_TAG: DeadLetter}).with_outputs(
                DEAD_LETTERS_TAG, main=DOCUMENTS_TAG)
        return ReadResult(result[DOCUMENTS_TAG], result[DEAD_LETTERS_TAG])


def _keyed_by_id_hash(document: Document) -> tuple[bytes, Document]:
    # A fixed-size key: ids from JSONL/CSV/Parquet can be arbitrarily long, and the
    # shuffle compares and stores keys. 128 bits make a collision between two
    # different ids practically impossible; _ResolveIdFn stays correct even then.
    digest = hashlib.blake2b(document.id.encode("utf-8"), digest_size=16).digest()
    return digest, document


class _IdState:
    """What the first pass over a key's records learns about one id."""
    __slots__ = ("first", "count", "conflict")

    def __init__(self, document: Document):
        self.first = document  # the copy to keep: smallest source
        self.count = 1
        self.conflict = False

    def add(self, document: Document):
        self.count += 1
        if (document.text, document.text_pair) != (self.first.text,
                                                   self.first.text_pair):
            self.conflict = True
        elif document.source < self.first.source:
            self.first = document


class _ResolveIdFn(beam.DoFn):
    """(id hash, records) -> one Document per id, or dead letters for all of an
    id's records when they conflict.

    Memory per key is one record per distinct id under the key (one, barring hash
    collisions), not per record: Beam's grouped values are re-iterable, and on
    Dataflow large groups are paged in lazily, so the records are streamed twice
    (first to find conflicts, then, only for a conflicting id, to dead-letter each
    record) instead of being held in a list.
    """

    def setup(self):
        self._duplicates = counters.counter(counters.DUPLICATES)
        self._dead_lettered = counters.dead_lettered_counter("duplicate_id")

    def process(self, element: tuple[bytes, Iterable[Document]]):
        _, documents = element
        states: dict[str, _IdState] = {}
        for document in documents:
            state = states.get(document.id)
            if state is None:
                states[document.id] = _IdState(document)
            else:
                state.add(document)

        conflicting = {}
        for doc_id, state in states.items():
            if state.conflict:
                conflicting[doc_id] = state.count
            else:
                self._duplicates.inc(state.count - 1)
                PROGRESS.settle(state.count - 1)
                yield state.first
        if not conflicting:
            return
        for document in documents:
            count = conflicting.get(document.id)
            if count is None:
                continue
            self._dead_lettered.inc()
            PROGRESS.settle(1)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS_TAG, DeadLetter(
                "duplicate_id",
                f"{count} records share this id but not the same text; "
                "none of them is kept",
                document.source, raw_prefix(document.text), document.id))
