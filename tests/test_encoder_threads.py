"""One TextEncoder, many threads: two large batches compute at once on a CPU, small
ones beside them.

Two local workers, or an SDK process's harness threads on Dataflow, share a
process's encoder. The real (tiny) graph runs; only its call is wrapped, to count
how many calls are inside it at once. Each call waits at a barrier for all three
callers: three small batches meet there; of three large ones two get in, wait in
vain (the barrier times out) and leave, and only then the third enters.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from transforms.batching import BatchShape
from transforms.constants import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS
from transforms.encode import (LARGE_BATCH_TOKENS, EmbeddingSpec, RuntimeOptions, TextEncoder,
                               large_batch_slots, takes_a_slot)
from transforms.records import Piece
from transforms.text_modules import load_encoder, load_module

WAIT = 1.0  # seconds a call waits for the others inside
CALLERS = 3


def pieces(rows: int, length: int) -> list[Piece]:
    ids = tuple(range(1000, 1000 + length - 2))  # two special tokens make `length`
    return [Piece(f"d{i}", "s", (ids,), length, False, 0, 1, None, None) for i in range(rows)]


class CountingEncoder(TextEncoder):
    """The real TextEncoder, its graph call counted."""

    def __init__(self, *args):
        super().__init__(*args)
        self.inside = self.most_inside = 0
        self.met = 0  # calls that found all the others inside with them
        count = threading.Lock()
        barrier = threading.Barrier(CALLERS, timeout=WAIT)

        def counted(call):
            def run(*args):
                nonlocal barrier
                with count:
                    self.inside += 1
                    self.most_inside = max(self.most_inside, self.inside)
                try:
                    barrier.wait()
                    self.met += 1
                except threading.BrokenBarrierError:
                    barrier = threading.Barrier(CALLERS, timeout=WAIT)
                try:
                    return call(*args)
                finally:
                    with count:
                        self.inside -= 1
            return run
        self._pack_and_encode = {n: counted(f) for n, f in self._pack_and_encode.items()}


@pytest.fixture(scope="module")
def encoder(tiny_random_model):
    return CountingEncoder(load_module(str(tiny_random_model.preprocessor)),
                           load_encoder(str(tiny_random_model.encoder), "/CPU:0"),
                           EmbeddingSpec(max_seq_length=128), RuntimeOptions(), "/CPU:0")


def from_threads(encoder: CountingEncoder, batch: list[Piece]) -> list[np.ndarray]:
    encoder.most_inside = encoder.met = 0
    out: list = [None] * CALLERS

    def work(i):
        out[i] = encoder.embed(batch)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(CALLERS)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return out


def test_two_large_batches_compute_at_once_on_a_cpu(encoder):
    batch = pieces(LARGE_BATCH_TOKENS // 64, 64)  # exactly the threshold: large
    vectors = from_threads(encoder, batch)
    assert encoder.most_inside == 2 and encoder.met == 0
    for other in vectors[1:]:
        np.testing.assert_array_equal(vectors[0], other)
    assert vectors[0].shape == (len(batch), 32)


def test_small_batches_never_wait(encoder):
    batch = pieces(LARGE_BATCH_TOKENS // 64 - 1, 64)  # one row under it
    vectors = from_threads(encoder, batch)
    assert encoder.most_inside == CALLERS and encoder.met == CALLERS
    for other in vectors[1:]:
        np.testing.assert_array_equal(vectors[0], other)


def test_a_gpu_computes_one_large_batch_at_a_time():
    assert large_batch_slots("/GPU:1") == 1 and large_batch_slots("/CPU:0") == 2


def test_a_failing_large_batch_frees_the_slot(encoder):
    """An exception inside the graph (here: a piece's id outside the vocabulary) must
    not leave the slot taken, or every later large batch would hang."""
    bad = pieces(LARGE_BATCH_TOKENS // 64, 64)
    bad[0] = bad[0]._replace(segments=((10 ** 8,) * 62,))
    with pytest.raises(Exception):
        encoder.embed(bad)
    assert encoder.embed(pieces(LARGE_BATCH_TOKENS // 64, 64)).shape == (LARGE_BATCH_TOKENS // 64, 32)


def test_every_full_batch_takes_a_slot_long_pieces_by_their_attention():
    """On a CPU's budget a full batch of 512-token pieces is 2 x 512 = 1,024 tokens,
    under LARGE_BATCH_TOKENS, but holds attention scores as large as any full
    batch's: it takes a slot all the same, as every full batch does on either
    device's budget, while a part of a batch of short pieces does not."""
    for budget in (CPU_BATCH_TOKENS, GPU_BATCH_TOKENS):
        shape = BatchShape(batch_tokens=budget, max_seq_length=512)
        for length in sorted({shape.padded_length(n) for n in range(8, 513)}):
            assert takes_a_slot(shape.batch_size(length), length), (budget, length)
    assert takes_a_slot(2, 512) and takes_a_slot(2, 448) and takes_a_slot(6, 288)
    assert not takes_a_slot(8, 128) and not takes_a_slot(1, 256) and not takes_a_slot(31, 64)
