"""DeduplicateDocuments on FnApiRunner."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import counters
from transforms.dedupe import DeduplicateDocuments, _ResolveIdFn
from transforms.records import DeadLetter, Document


def doc(doc_id, text, source, text_pair=None):
    return Document(doc_id, text, text_pair, source)


def test_identical_copies_merge_and_conflicts_are_all_dead_lettered():
    documents = [
        doc("a", "same", "f:3"), doc("a", "same", "f:1"), doc("a", "same", "g:9"),
        doc("b", "one", "f:4"), doc("b", "two", "f:5"), doc("b", "one", "f:6"),
        doc("c", "q", "f:7", text_pair="p1"), doc("c", "q", "f:8", text_pair="p2"),
        doc("d", "alone", "f:10"),
    ]
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        result = (pipeline | beam.Create(documents) | DeduplicateDocuments())
        assert_that(result.documents, equal_to([
            doc("a", "same", "f:1"),  # the smallest source is kept
            doc("d", "alone", "f:10"),
        ]), label="Documents")
        conflict_b = "3 records share this id but not the same text; none of them is kept"
        conflict_c = "2 records share this id but not the same text; none of them is kept"
        assert_that(result.dead_letters, equal_to([
            DeadLetter("duplicate_id", conflict_b, "f:4", "one", "b"),
            DeadLetter("duplicate_id", conflict_b, "f:5", "two", "b"),
            DeadLetter("duplicate_id", conflict_b, "f:6", "one", "b"),
            DeadLetter("duplicate_id", conflict_c, "f:7", "q", "c"),
            DeadLetter("duplicate_id", conflict_c, "f:8", "q", "c"),
        ]), label="DeadLetters")
    counts = counters.committed_counters(pipeline.result)
    assert counts[counters.DUPLICATES] == 2
    assert counts[counters.DEAD_LETTERED["duplicate_id"]] == 5
    assert len(documents) == 2 + 5 + counts[counters.DUPLICATES]


def test_empty_input():
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        result = (pipeline | beam.Create([], reshuffle=False).with_output_types(Document)
                  | DeduplicateDocuments())
        assert_that(result.documents, equal_to([]), label="Documents")
        assert_that(result.dead_letters, equal_to([]), label="DeadLetters")


def test_output_types_are_declared():
    pipeline = beam.Pipeline(runner="FnApiRunner")
    result = (pipeline | beam.Create([doc("a", "t", "f:1")]) | DeduplicateDocuments())
    assert result.documents.element_type is Document
    assert result.dead_letters.element_type is DeadLetter


class _Counter:
    def __init__(self):
        self.value = 0

    def inc(self, n=1):
        self.value += n


def resolve(documents):
    """_ResolveIdFn on one group, outside Beam: (documents, dead letters, dups)."""
    fn = _ResolveIdFn()
    fn._duplicates, fn._dead_lettered = _Counter(), _Counter()
    kept, dead = [], []
    for output in fn.process((b"key", documents)):
        if isinstance(output, beam.pvalue.TaggedOutput):
            dead.append(output.value)
        else:
            kept.append(output)
    assert fn._dead_lettered.value == len(dead)
    return kept, dead, fn._duplicates.value


def test_ids_that_share_a_hash_key_are_still_resolved_separately():
    kept, dead, duplicates = resolve([
        doc("x", "1", "f:1"), doc("y", "2", "f:2"), doc("x", "1", "f:3"),
        doc("y", "3", "f:4")])
    assert kept == [doc("x", "1", "f:1")]
    assert sorted(d.source for d in dead) == ["f:2", "f:4"]
    assert duplicates == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xy"),
                          st.sampled_from([None, "p"])), max_size=12))
def test_every_record_ends_up_once(records):
    documents = [doc(i, text, f"f:{n}", pair)
                 for n, (i, text, pair) in enumerate(records)]
    kept, dead, duplicates = resolve(documents)
    assert len(documents) == len(kept) + len(dead) + duplicates
    assert len({d.id for d in kept}) == len(kept)
    assert not {d.id for d in kept} & {d.id for d in dead}
    for document in kept:
        variants = {(d.text, d.text_pair) for d in documents if d.id == document.id}
        assert variants == {(document.text, document.text_pair)}
    for dead_letter in dead:
        variants = {(d.text, d.text_pair) for d in documents if d.id == dead_letter.id}
        assert len(variants) > 1
