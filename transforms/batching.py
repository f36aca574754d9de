"""Length-bucketed, token-budgeted batches of encoder inputs.

Every piece is padded up to a *length class*: exact up to 16 tokens, then eight
steps per octave (18, 20, ... 32, 36, ... 64, 72, ... 128, 144, ...), so rounding
costs at most 1/9 of a piece and about 3% on a typical mix. Each class has one
full batch size (``BatchShape.batch_size``: within the token budget, and beyond 128
tokens within an attention budget). Pieces are sorted within a bounded buffer,
grouped by class, and full batches are emitted; what does not fill a batch waits
for the next buffer, and only the end of a bundle emits partial batches (one per
class at most, the smallest of neighbouring classes merged into one).

So a long run sees a small, fixed set of batch shapes (about one per class), not a
new ``batch x length`` with nearly every batch. That matters for memory: oneDNN
(TF's CPU kernels) JIT-compiles and caches kernels per shape, about 2 MB a shape
here, up to a cap of 1024 primitives per thread, and with a shape per batch that
cache grew with the corpus until the cap (+280 MB on 40,000 documents; what a
local run's peak still gains with the corpus: pipeline/local_memory.py). It also
suits XLA (``--jit_compile``), which compiles once per shape: there the classes
are coarser (at least 8, four steps per octave: 25 lengths up to 512).

``tf.data``'s ``bucket_by_sequence_length`` does the same bucketing for a tf.data input;
here the elements are Beam elements, and Beam's ``SortAndBatchElements`` buffers a
whole bundle before sorting (on the FnApiRunner a bundle can be the whole corpus,
so memory grows with it) and weighs a batch by the sum of its element sizes, not by
the padded ``batch_size x length`` that the encoder computes. ``RunInference``'s
own length bucketing only acts on the streaming path in Beam 2.77, and
``ModelHandler(max_batch_weight=...)`` crashes it (see FACTS.md).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.constants import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, MAX_BATCH_SIZE, MAX_SEQ_LENGTH
from transforms.records import Piece


# Up to this length a batch is limited by its token budget; beyond, by its
# attention scores (see BatchShape.batch_size).
ATTENTION_LENGTH = 128


@functools.cache
def default_batch_tokens() -> int:
    """The token budget of a batch when none is given: GPU_BATCH_TOKENS where this
    process's encoder goes on a GPU, CPU_BATCH_TOKENS (half) on a CPU. Decided where
    the batches are cut, on the worker, which is the machine that has the GPU or not.

    On a CPU a batch of 4,096 padded tokens already runs the encoder's products at
    full speed, and a larger one only holds more activations (2-core AMD EPYC,
    AVX-512, MiniLM, two threads, 4,096 against 8,192 tokens):

    * lengths 12 to 256: the same tokens/s within the 5% of run-to-run noise;
    * lengths 384 and 512, where the attention budget makes batches of 3 and 2
      pieces instead of 7 and 4: 5,679-6,027 against 5,712-5,998 tokens/s;
    * bench's 10x corpus (40,000 documents, full batches): 187 and 193 s against
      188 s, peak RSS 1,476 and 1,478 MiB against 1,638 MiB.

    A full 8,192-token MiniLM batch allocates ~120 MB of activations over the
    weights (TensorFlow's peak-memory counter), and two compute at once
    (transforms/encode.py). A GPU keeps gaining from larger batches; its default
    stays 8,192 (not measured here: no GPU).
    """
    from transforms.text_modules import encoder_device
    return GPU_BATCH_TOKENS if encoder_device().startswith("/GPU") else CPU_BATCH_TOKENS


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """How batches are cut and padded."""
    batch_tokens: Optional[int] = None  # None: default_batch_tokens(), for this machine
    max_batch_size: int = MAX_BATCH_SIZE
    max_seq_length: int = MAX_SEQ_LENGTH
    bucketed: bool = False   # coarse length classes, for XLA
    # A bundle's last, partial batches under MIN_BATCH_TOKENS merge with their
    # neighbours' (merge_small_batches); off where a piece's padded length must not
    # depend on the bundle (quantized output, XLA's fixed shapes).
    merge_small: bool = True

    def __post_init__(self):
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ValueError(f"batch_tokens {self.batch_tokens} must be positive (or None: the device's default)")

    @property
    def tokens(self) -> int:
        """The token budget of a full batch."""
        return default_batch_tokens() if self.batch_tokens is None else self.batch_tokens

    def padded_length(self, n_tokens: int) -> int:
        """The length class of a piece of ``n_tokens`` tokens."""
        if self.bucketed:
            length = _rounded_up(max(n_tokens, 8), steps_per_octave=4)
        else:
            length = _rounded_up(n_tokens, steps_per_octave=8)
        return min(length, self.max_seq_length)

    def batch_length(self, batch) -> int:
        """The length a batch is packed to: its longest piece's class."""
        return self.padded_length(max(p.n_tokens for p in batch))

    def batch_size(self, padded_length: int) -> int:
        """How many pieces of a length class make a full batch: within the token
        budget, and within the attention budget (a piece longer than the budgets
        goes alone).

        Attention scores take ``batch x heads x length^2`` floats, so under a token
        budget alone a batch of 256-token pieces would need twice the memory of
        one of 128-token pieces, and the peak would depend on whether a corpus has
        enough long texts to fill such a batch. Beyond ATTENTION_LENGTH tokens the
        batch shrinks so that ``batch x length^2`` stays at the budget's value there.
        """
        tokens = self.tokens
        size = min(self.max_batch_size, tokens // padded_length,
                   tokens * ATTENTION_LENGTH // padded_length ** 2)
        return max(1, size)


def _rounded_up(n: int, steps_per_octave: int) -> int:
    """n itself up to 2 * steps_per_octave, then the next of ``steps_per_octave``
    evenly spaced values per power of two."""
    if n <= 2 * steps_per_octave:
        return n
    step = 1 << ((n - 1).bit_length() - 1 - (steps_per_octave.bit_length() - 1))
    return -(-n // step) * step


def plan_batches(pieces: Iterable[Piece], shape: BatchShape,
                 complete: bool = True) -> tuple[list[list[Piece]], list[Piece]]:
    """Group pieces by length class and cut each class into full batches.

    Returns ``(batches, leftover)``. With ``complete``, each class's remainder is a
    last, partial batch (small ones merged with their neighbours', see
    merge_small_batches) and ``leftover`` is empty; without, the remainders are
    returned as ``leftover`` to be planned again with more pieces.
    """
    by_class: dict[int, list[Piece]] = {}
    # Sorted, ties broken by id: the shuffle delivers pieces in any order, and the
    # same pieces must form the same batches for float32 results to be bitwise equal.
    for piece in sorted(pieces, key=lambda p: (p.n_tokens, p.doc_id, p.chunk_index)):
        by_class.setdefault(shape.padded_length(piece.n_tokens), []).append(piece)
    batches, leftover, partial = [], [], []
    for length, members in by_class.items():
        size = shape.batch_size(length)
        batches.extend(members[i:i + size] for i in range(0, len(members), size))
        if len(batches[-1]) < size:
            remainder = batches.pop()
            if complete:
                partial.append(remainder)
            else:
                leftover.extend(remainder)
    if shape.merge_small and not shape.bucketed:
        partial = merge_small_batches(partial, shape)
    return batches + partial, leftover


# Below this many padded tokens oneDNN runs a product on one thread (2-core AMD EPYC
# with AVX2: [M, 1024] x [1024, 4096] at 30-60 GFLOP/s for M up to ~370, 105-124
# from 384 on) and gives a row other bits than a full batch does (fill_to_shape).
MIN_BATCH_TOKENS = 1024
# What merging may cost: a merged batch computes at most this many times the padded
# tokens its parts would have computed apart.
MERGE_PADDING = 1.25


def merge_small_batches(batches: list[list[Piece]], shape: BatchShape) -> list[list[Piece]]:
    """A bundle's partial batches (at most one per length class), with each run of
    neighbouring classes' batches under MIN_BATCH_TOKENS merged into one, padded to
    its longest class, while that adds at most MERGE_PADDING's share of padding and
    stays within the longest class's full batch (its token and attention budgets).

    A small corpus, or a runner that cuts small bundles, leaves a partial batch in
    each of ~40 length classes: on the XLM-R-large shape, 300 documents made 40
    batches of ~270 tokens, each a product too small for two threads."""
    merged, small = [], []
    for batch in batches:
        (small if _padded_tokens(batch, shape) < MIN_BATCH_TOKENS else merged).append(batch)
    small.sort(key=lambda b: b[-1].n_tokens)
    group: list[Piece] = []
    apart = 0  # the padded tokens of group's parts, each at its own class
    for batch in small:
        joined, own = group + batch, _padded_tokens(batch, shape)
        length = shape.padded_length(joined[-1].n_tokens)
        if group and (len(joined) > shape.batch_size(length)
                      or len(joined) * length > MERGE_PADDING * (apart + own)):
            merged.append(group)
            group, apart = list(batch), own
        else:
            group, apart = joined, apart + own
        if _padded_tokens(group, shape) >= MIN_BATCH_TOKENS:
            merged.append(group)
            group, apart = [], 0
    if group:
        merged.append(group)
    return merged


def _padded_tokens(batch: list[Piece], shape: BatchShape) -> int:
    return len(batch) * shape.batch_length(batch)


class _BatchByLengthFn(beam.DoFn):
    def __init__(self, shape: BatchShape, buffer_size: int):
        self._shape = shape
        self._buffer_size = buffer_size

    def start_bundle(self):
        self._buffer = []
        self._new = 0

    def process(self, piece: Piece):
        self._buffer.append(piece)
        self._new += 1
        if self._new >= self._buffer_size:
            batches, self._buffer = plan_batches(self._buffer, self._shape, complete=False)
            self._new = 0
            yield from batches

    def finish_bundle(self):
        batches, _ = plan_batches(self._buffer, self._shape)
        self._buffer = []
        for batch in batches:
            yield GlobalWindows.windowed_value(batch)


class BatchByLength(beam.PTransform):
    """PCollection[Piece] -> PCollection[list[Piece]], bucketed by length class.

    Every ``buffer_size`` new pieces, the buffer is planned and its full batches
    emitted. Memory stays bounded: the buffer plus, per length class, less than
    one batch waiting to fill (at most ``classes x batch_tokens`` tokens).
    Batch pipelines only (global window).
    """

    def __init__(self, shape: BatchShape, buffer_size: int = 4096):
        super().__init__()
        self._shape = shape
        self._buffer_size = buffer_size

    def expand(self, pieces):
        return pieces | beam.ParDo(_BatchByLengthFn(self._shape, self._buffer_size))


# A filler piece's chunk_index: a copy of a real piece that only keeps its batch off
# the small-batch kernels; its vector is dropped after encoding (see fill_to_shape).
FILLER_INDEX = -1
# Batches of fewer pieces than this, or than MIN_BATCH_TOKENS, are topped up with fillers.
MIN_BATCH_ROWS = 2


def is_filler(piece: Piece) -> bool:
    """A copy made by fill_to_shape: computed with its batch, neither embedded nor counted."""
    return piece.chunk_index == FILLER_INDEX


def fill_to_shape(batch: list[Piece], shape: BatchShape) -> list[Piece]:
    """A partial batch topped up with copies of its last piece (marked FILLER_INDEX) to
    at least MIN_BATCH_ROWS pieces and MIN_BATCH_TOKENS padded tokens, never past its
    class's full batch: for quantized output, whose bits must not depend on where
    the runner cut bundles.

    TF's CPU kernels take other paths for small products, and a row's float bits
    change with them. Eigen's: a single row came out ~1e-7 different alone than in
    a batch (MiniLM and the tiny test model, lengths 8-144); with two workers one
    int8 value in 1,200 fell in another bucket. oneDNN's (models/cpu_kernels.py):
    on MiniLM at lengths 16-128 every row of a batch under 1,024 padded tokens
    differed from the same row in a full batch, and every row from 1,024 tokens on
    was bitwise equal (a 2-core AMD EPYC with AVX2). Which pieces end up in a
    partial batch depends on the bundles. Padding every partial batch to its
    class's full shape also worked, but cost many times the corpus's compute when
    bundles are small (a 1,000-document run went from seconds to minutes); 1,024
    tokens is an eighth of a full batch."""
    length = shape.batch_length(batch)
    wanted = min(max(MIN_BATCH_ROWS, -(-MIN_BATCH_TOKENS // length)), shape.batch_size(length))
    if len(batch) >= wanted:
        return batch
    filler = batch[-1]._replace(chunk_index=FILLER_INDEX, text=None, text_pair=None, raw="")
    return list(batch) + [filler] * (wanted - len(batch))
