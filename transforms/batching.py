"""Length-sorted, token-budgeted batches of encoder inputs.

Pieces are sorted by length within a bounded buffer and cut into batches so that
each batch (a) stays within ``batch_tokens`` padded tokens and ``max_batch_size``
pieces, and (b) keeps at least ``min_fill`` of its computed tokens real, i.e. it is
padded to its own longest piece and little beyond. A batch is padded to that exact
length: the restored encoder's signature has dynamic dimensions, so new lengths
cost no retracing. Only with XLA (``--jit_compile``), which compiles once per
shape, are lengths rounded up to a small set (multiples of 8 up to 128, of 32
beyond: at most 28 shapes up to 512).

Why not Beam's ``SortAndBatchElements``: it buffers a whole bundle before sorting
(on the FnApiRunner a bundle can be the whole corpus, so memory grows with it),
and it weighs a batch by the sum of its element sizes, not by the padded
``batch_size x longest`` that the encoder computes. ``RunInference``'s own length
bucketing only acts on the streaming path in Beam 2.77, and
``ModelHandler(max_batch_weight=...)`` crashes it (see FACTS.md).
"""
from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.tokenize import Piece


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """How batches are cut and padded."""
    batch_tokens: int = 8192
    max_batch_size: int = 256
    max_seq_length: int = 512
    bucketed: bool = False   # round lengths up (for XLA), else pad to the longest piece
    min_fill: float = 0.95   # real / computed tokens a batch may not fall below...
    min_batch_size: int = 8  # ...once it holds this many pieces

    def padded_length(self, n_tokens: int) -> int:
        if not self.bucketed:
            return min(n_tokens, self.max_seq_length)
        step = 8 if n_tokens <= 128 else 32
        return min(self.max_seq_length, -(-n_tokens // step) * step)


def plan_batches(pieces: list[Piece], shape: BatchShape) -> list[list[Piece]]:
    """Sort by length and cut greedily: under the budget, above the fill ratio."""
    batches, current, real = [], [], 0
    # Ties broken by id: the shuffle delivers pieces in any order, and the same pieces
    # must form the same batches on a re-run for float32 results to be bitwise equal.
    for piece in sorted(pieces, key=lambda p: (p.n_tokens, p.doc_id, p.chunk_index)):
        width = shape.padded_length(piece.n_tokens)
        size = len(current) + 1
        if current and (size * width > shape.batch_tokens
                        or len(current) >= shape.max_batch_size
                        or (len(current) >= shape.min_batch_size
                            and (real + piece.n_tokens) / (size * width) < shape.min_fill)):
            batches.append(current)
            current, real = [], 0
        current.append(piece)
        real += piece.n_tokens
    if current:
        batches.append(current)
    return batches


class _BatchByLengthFn(beam.DoFn):
    def __init__(self, shape: BatchShape, buffer_size: int):
        self._shape = shape
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
        batches = plan_batches(self._buffer, self._shape)
        self._buffer = []
        return batches


class BatchByLength(beam.PTransform):
    """PCollection[Piece] -> PCollection[list[Piece]], sorted within a bounded buffer.

    ``buffer_size`` pieces are sorted together: large enough that batches are
    nearly padding-free, small enough that memory does not grow with the corpus.
    Batch pipelines only (global window).
    """

    def __init__(self, shape: BatchShape, buffer_size: int = 4096):
        super().__init__()
        self._shape = shape
        self._buffer_size = buffer_size

    def expand(self, pieces):
        return pieces | beam.ParDo(_BatchByLengthFn(self._shape, self._buffer_size))
