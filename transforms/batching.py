"""Length-bucketed, token-budgeted batches of encoder inputs.

Each batch is padded to its own sequence length, rounded up to a multiple of 8
up to 128 tokens and of 32 beyond (at most 28 shapes up to 512, so few graph
shapes are traced, while short texts, the bulk of most corpora, waste little
padding), and holds as many pieces as fit in
``batch_tokens`` padded tokens (at most ``max_batch_size``).

Why not Beam's ``SortAndBatchElements``: it buffers a whole bundle before sorting
(on the FnApiRunner a bundle can be the whole corpus, so memory grows with it),
and it weighs a batch by the sum of its element sizes, not by the padded
``batch_size x longest`` that the encoder computes. ``RunInference``'s own length
bucketing only acts on the streaming path in Beam 2.77, and
``ModelHandler(max_batch_weight=...)`` crashes it (see FACTS.md).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.tokenize import Piece


def padded_length(n_tokens: int, max_seq_length: int) -> int:
    step = 8 if n_tokens <= 128 else 32
    return min(max_seq_length, -(-n_tokens // step) * step)


def plan_batches(pieces: list[Piece], batch_tokens: int, max_batch_size: int, max_seq_length: int) -> list[list[Piece]]:
    """Sort by length and cut greedily under the padded-token budget."""
    batches, current = [], []
    for piece in sorted(pieces, key=lambda p: p.n_tokens):
        width = padded_length(piece.n_tokens, max_seq_length)
        if current and ((len(current) + 1) * width > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(piece)
    if current:
        batches.append(current)
    return batches


class _BatchByLengthFn(beam.DoFn):
    def __init__(self, batch_tokens, max_batch_size, max_seq_length, buffer_size):
        self._plan = dict(batch_tokens=batch_tokens, max_batch_size=max_batch_size,
                          max_seq_length=max_seq_length)
        self._buffer_size = buffer_size

    def start_bundle(self):
        self._buffer = []

    def process(self, piece: Piece):
        self._buffer.append(piece)
        if len(self._buffer) >= self._buffer_size:
            yield from self._flush()

    def finish_bundle(self):
        for batch in self._flush():
            yield GlobalWindows.windowed_value(batch)

    def _flush(self):
        batches = plan_batches(self._buffer, **self._plan)
        self._buffer = []
        return batches


class BatchByLength(beam.PTransform):
    """PCollection[Piece] -> PCollection[list[Piece]], sorted within a bounded buffer.

    ``buffer_size`` pieces are sorted together: large enough that batches are
    nearly padding-free, small enough that memory does not grow with the corpus.
    Batch pipelines only (global window).
    """

    def __init__(self, batch_tokens: int, max_batch_size: int, max_seq_length: int,
                 buffer_size: int = 4096):
        super().__init__()
        self._args = (batch_tokens, max_batch_size, max_seq_length, buffer_size)

    def expand(self, pieces):
        return pieces | beam.ParDo(_BatchByLengthFn(*self._args))
