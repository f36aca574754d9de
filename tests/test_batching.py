"""Batch planning: every piece once, within budget, padded little, few shapes."""
import random

import apache_beam as beam
from apache_beam.testing.util import assert_that

from transforms.batching import BatchByLength, BatchShape, plan_batches
from transforms.tokenize import Piece


def pieces(lengths):
    return [Piece(str(i), "", (), n, False, 0, 1, None, None) for i, n in enumerate(lengths)]


def lognormal_lengths(n, seed=0):
    rng = random.Random(seed)
    return [min(512, max(3, int(rng.lognormvariate(3, 0.9)))) for _ in range(n)]


def check_batches(batches, lengths, shape):
    ids = [p.doc_id for b in batches for p in b]
    assert sorted(ids) == sorted(str(i) for i in range(len(lengths)))
    real = computed = 0
    for batch in batches:
        width = shape.padded_length(max(p.n_tokens for p in batch))
        assert {shape.padded_length(p.n_tokens) for p in batch} == {width}, "one length class per batch"
        assert len(batch) <= shape.batch_size(width)
        assert len(batch) * width <= shape.batch_tokens or len(batch) == 1
        real += sum(p.n_tokens for p in batch)
        computed += len(batch) * width
    return real / computed


def test_every_piece_once_within_budget_and_padded_little():
    lengths = lognormal_lengths(3000)
    shape = BatchShape(batch_tokens=8192, max_batch_size=128, max_seq_length=512)
    batches, leftover = plan_batches(pieces(lengths), shape)
    assert leftover == []
    assert check_batches(batches, lengths, shape) >= 0.95


def test_length_classes():
    shape = BatchShape(max_seq_length=512)
    assert [shape.padded_length(n) for n in (1, 16, 17, 18, 19, 32, 33, 64, 65, 129, 257, 500)] == \
        [1, 16, 18, 18, 20, 32, 36, 64, 72, 144, 288, 512]
    assert len({shape.padded_length(n) for n in range(1, 513)}) == 56
    assert BatchShape(max_seq_length=100).padded_length(99) == 100
    # Rounding never costs more than 1/9 of a piece.
    assert all(n / shape.padded_length(n) >= 8 / 9 for n in range(1, 513))


def test_coarse_classes_for_xla():
    shape = BatchShape(max_seq_length=512, bucketed=True)
    assert [shape.padded_length(n) for n in (3, 8, 9, 16, 17, 128, 129, 500, 511)] == \
        [8, 8, 10, 16, 20, 128, 160, 512, 512]
    assert len({shape.padded_length(n) for n in range(1, 513)}) == 25


def test_incomplete_classes_wait_for_more_pieces():
    shape = BatchShape(batch_tokens=100, max_batch_size=4, max_seq_length=512)
    # Class 10 (100 // 10 = 10 per batch, capped at 4): 5 pieces -> one
    # full batch, one waiting; class 40 (2 per batch): 1 piece waiting.
    batches, leftover = plan_batches(pieces([10] * 5 + [40]), shape, complete=False)
    assert [len(b) for b in batches] == [4]
    assert sorted(p.n_tokens for p in leftover) == [10, 40]


def test_a_piece_longer_than_the_budget_goes_alone():
    shape = BatchShape(batch_tokens=100, max_batch_size=8, max_seq_length=512)
    batches, _ = plan_batches(pieces([300, 10, 10]), shape)
    assert [len(b) for b in batches] == [2, 1] and batches[1][0].n_tokens == 300


def test_a_long_stream_uses_a_bounded_set_of_shapes():
    """20,000 pieces streamed through BatchByLength's bounded buffer (20 plannings)
    give few batch shapes: each class has one full-batch shape, and partial batches
    only occur at the end of the bundle (at most one per class)."""
    shape = BatchShape(batch_tokens=8192, max_batch_size=256, max_seq_length=256)
    lengths = [min(256, n) for n in lognormal_lengths(20000, seed=1)]
    classes = len({shape.padded_length(n) for n in range(1, 257)})

    def check(found):
        padding = check_batches(found, lengths, shape)
        assert padding >= 0.95, padding
        widths = [shape.padded_length(max(x.n_tokens for x in b)) for b in found]
        partial = [w for b, w in zip(found, widths) if len(b) < shape.batch_size(w)]
        assert len(partial) == len(set(partial)) <= classes, "at most one partial batch per class"
        assert len({(len(b), w) for b, w in zip(found, widths)}) <= 2 * classes

    with beam.Pipeline(runner="FnApiRunner") as p:
        batches = (p | beam.Create(pieces(lengths), reshuffle=False)
                   | BatchByLength(shape, buffer_size=1000))
        assert_that(batches, check)


def test_long_classes_are_limited_by_attention_memory():
    """Up to 128 tokens the token budget limits a batch; beyond, batch x length^2
    (the attention scores) stays at its value for 128-token batches, so a corpus
    with enough long texts to fill such batches does not raise the peak."""
    shape = BatchShape(batch_tokens=8192, max_batch_size=256, max_seq_length=512)
    assert [shape.batch_size(n) for n in (16, 32, 64, 128, 256, 512)] == [256, 256, 128, 64, 16, 4]
    widths = {shape.padded_length(n) for n in range(1, 513)}
    assert max(shape.batch_size(w) * w * w for w in widths) <= 8192 * 128


def _pieces(n, n_tokens):
    return [Piece(f"d{i}", "s", (tuple(range(n_tokens - 2)),), n_tokens, False, 0, 1, None, None)
            for i in range(n)]


def test_fill_to_shape_tops_a_partial_batch_up_to_1024_tokens():
    from transforms.batching import FILLER_INDEX, fill_to_shape
    shape = BatchShape()  # 8,192 tokens, 256 pieces
    for n_tokens, k, want in [(64, 3, 16), (64, 15, 16), (64, 16, 16), (64, 40, 40), (10, 1, 103),
                              (4, 5, 256), (512, 1, 2), (512, 3, 3), (130, 2, 8)]:
        batch = _pieces(k, n_tokens)
        filled = fill_to_shape(batch, shape)
        assert len(filled) == want, (n_tokens, k)
        assert filled[:k] == batch  # the real pieces first, unchanged
        assert all(p.chunk_index == FILLER_INDEX and p.doc_id == batch[-1].doc_id and p.text is None
                   for p in filled[k:])
        # never past the class's full batch, so within the token and attention budgets
        assert len(filled) <= max(k, shape.batch_size(shape.padded_length(n_tokens)))


def test_fill_to_shape_keeps_two_rows_where_a_full_batch_is_small():
    from transforms.batching import fill_to_shape
    shape = BatchShape(batch_tokens=256, max_batch_size=8)
    assert len(fill_to_shape(_pieces(1, 100), shape)) == 2   # class 104: full batch 2
    assert len(fill_to_shape(_pieces(1, 200), shape)) == 1   # class 208: a piece goes alone
    assert len(fill_to_shape(_pieces(1, 20), shape)) == 8    # 1,024 tokens would be 52: capped at 8
