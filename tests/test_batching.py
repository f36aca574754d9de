"""Batch planning: every piece once, within budget, padded little."""
import random

from transforms.batching import BatchShape, plan_batches
from transforms.tokenize import Piece


def pieces(lengths):
    return [Piece(str(i), "", (), n, False, 0, 1, None, None) for i, n in enumerate(lengths)]


def test_every_piece_once_within_budget_and_sorted():
    rng = random.Random(0)
    lengths = [min(512, max(3, int(rng.lognormvariate(3, 0.9)))) for _ in range(3000)]
    shape = BatchShape(batch_tokens=8192, max_batch_size=128, max_seq_length=512)
    batches = plan_batches(pieces(lengths), shape)
    ids = [p.doc_id for b in batches for p in b]
    assert sorted(ids) == sorted(str(i) for i in range(len(lengths)))
    real = computed = 0
    for batch in batches:
        width = max(p.n_tokens for p in batch)
        assert len(batch) <= 128
        assert len(batch) * width <= 8192 or len(batch) == 1
        real += sum(p.n_tokens for p in batch)
        computed += len(batch) * width
    assert real / computed >= 0.9


def test_bucketed_lengths_for_xla():
    shape = BatchShape(max_seq_length=512, bucketed=True)
    assert [shape.padded_length(n) for n in (3, 8, 9, 128, 129, 500, 511)] == [8, 8, 16, 128, 160, 512, 512]
    assert BatchShape(max_seq_length=512).padded_length(21) == 21


def test_a_piece_longer_than_the_budget_goes_alone():
    shape = BatchShape(batch_tokens=100, max_batch_size=8, max_seq_length=512)
    batches = plan_batches(pieces([300, 10, 10]), shape)
    assert [len(b) for b in batches] == [2, 1] and batches[1][0].n_tokens == 300
