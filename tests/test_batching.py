"""Batch planning: every piece once, within budget, padded little, few shapes."""
import pickle
import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from transforms.batching import (MERGE_PADDING, MIN_BATCH_TOKENS, BatchByLength, BatchShape,
                                 merge_small_batches, plan_batches)
from transforms.constants import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS
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
        classes = [shape.padded_length(p.n_tokens) for p in batch]
        if len(set(classes)) > 1:  # a bundle's small partial batches, merged
            assert len(batch) * width <= MERGE_PADDING * sum(classes) + 1e-9
        assert len(batch) <= shape.batch_size(width)
        assert len(batch) * width <= shape.tokens or len(batch) == 1
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
    batches.sort(key=len)
    assert [len(b) for b in batches] == [1, 2] and batches[0][0].n_tokens == 300


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
    shape = BatchShape(batch_tokens=8192)  # 256 pieces
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


def test_small_partial_batches_merge_with_their_neighbours():
    shape = BatchShape(batch_tokens=8192)  # 256 pieces
    lengths = lognormal_lengths(100, seed=3)
    batches, _ = plan_batches(pieces(lengths), shape)
    apart, _ = plan_batches(pieces(lengths), BatchShape(batch_tokens=8192, merge_small=False))
    assert len(apart) >= 20 and len(batches) <= len(apart) // 2
    real = check_batches(batches, lengths, shape)
    assert real >= check_batches(apart, lengths, shape) / MERGE_PADDING
    # a merged batch stops growing once it reaches MIN_BATCH_TOKENS
    for batch in batches:
        classes = sorted({shape.padded_length(p.n_tokens) for p in batch})
        if len(classes) > 1:
            without_longest = [p for p in batch if shape.padded_length(p.n_tokens) != classes[-1]]
            assert len(without_longest) * classes[-2] < MIN_BATCH_TOKENS


def test_batches_big_enough_or_of_other_shapes_stay_apart():
    shape = BatchShape(batch_tokens=8192)
    # a full class (36 tokens: 227 pieces) and a partial one of 1,024+ tokens: untouched
    full_and_big = pieces([36] * 227 + [40] * 30)
    batches, _ = plan_batches(full_and_big, shape)
    assert sorted(len(b) for b in batches) == [30, 227]
    # two small batches whose merge would pad too much: apart
    far = pieces([10, 11, 500])
    assert sorted(len(b) for b in merge_small_batches([far[:2], far[2:]], shape)) == [1, 2]
    # no merge for quantized output (fixed shapes) or XLA's buckets
    for kept in (BatchShape(merge_small=False), BatchShape(bucketed=True)):
        batches, _ = plan_batches(pieces([10, 20, 30]), kept)
        assert len(batches) == 3


def test_a_merged_batch_stays_within_its_longest_class_budget():
    shape = BatchShape(batch_tokens=1024, max_batch_size=16)
    small = [pieces([100] * 3)] + [[p._replace(doc_id=f"b{i}")] for i, p in enumerate(pieces([104] * 3))]
    for batch in merge_small_batches(small, shape):
        length = shape.padded_length(max(p.n_tokens for p in batch))
        assert len(batch) <= shape.batch_size(length)


@pytest.fixture
def device(monkeypatch):
    """Sets the device the encoder would go on ("/CPU:0", "/GPU:0"), whatever this
    machine has; the budget's per-process cache is cleared before and after."""
    from transforms import batching, text_modules

    def use(name: str):
        batching.default_batch_tokens.cache_clear()
        monkeypatch.setattr(text_modules, "encoder_device", lambda: name)
    yield use
    batching.default_batch_tokens.cache_clear()


def test_without_a_budget_the_worker_takes_its_devices_default(device):
    """No --batch_tokens: the budget is decided where the batches are cut, on the
    worker (a launcher may have no GPU while its workers do): CPU_BATCH_TOKENS on a
    CPU, GPU_BATCH_TOKENS on a GPU. A budget given is kept on either."""
    shape = BatchShape(max_seq_length=512)
    assert pickle.loads(pickle.dumps(shape)).batch_tokens is None  # not fixed where it was built
    device("/CPU:0")
    assert shape.tokens == CPU_BATCH_TOKENS == 4096
    assert [shape.batch_size(n) for n in (8, 16, 64, 128, 256, 512)] == [256, 256, 64, 32, 8, 2]
    assert BatchShape(max_seq_length=8192).batch_size(8192) == 1  # longer than the budget: alone
    assert BatchShape(batch_tokens=8192).tokens == 8192
    device("/GPU:0")
    assert BatchShape().tokens == GPU_BATCH_TOKENS == 8192
    assert BatchShape().batch_size(256) == 16
    assert BatchShape(batch_tokens=2048).tokens == 2048


def test_a_budget_must_be_positive():
    """0 is not "the default" (the CLI refuses it too: --batch_tokens >= --max_seq_length)."""
    for bad in (0, -4096):
        with pytest.raises(ValueError, match="must be positive"):
            BatchShape(batch_tokens=bad)


def test_a_pipeline_without_a_budget_cuts_batches_at_the_cpu_default(device):
    """The default reaches the DoFn that cuts batches: 3,000 pieces of 64 tokens
    come out in full batches of 4,096 tokens (64 pieces), none larger."""
    device("/CPU:0")  # the FnApiRunner's workers are this process
    lengths = [64] * 3000

    def check(batches):
        sizes = sorted(len(b) for b in batches)
        assert sum(sizes) == 3000
        assert sizes[-1] == CPU_BATCH_TOKENS // 64
        assert sizes.count(CPU_BATCH_TOKENS // 64) >= 3000 // 64 - 1

    with beam.Pipeline("FnApiRunner") as p:
        batches = (p | beam.Create(pieces(lengths), reshuffle=False)
                   | BatchByLength(BatchShape(max_seq_length=512), buffer_size=1000))
        assert_that(batches, check)
