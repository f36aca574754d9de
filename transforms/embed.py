"""``EmbedText``: Documents in, embedding rows and dead letters out.

    documents ──Tokenize (RunInference)──> pieces ──BatchByLength──> batches
      ──Encode (RunInference)──> vectors ──[chunk mode: average a document's windows]──> rows
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import RunInference

from transforms import counters
from transforms.batching import BatchByLength, BatchShape, fill_to_shape, is_filler
from transforms.constants import DEFAULT_LONG_TEXT, MAX_BATCH_SIZE, MODEL_COPIES_AUTO
from transforms.encode import (EmbeddingSpec, Encoded, EncoderModelHandler, RuntimeOptions,
                               TextEncoder)
from transforms.records import DeadLetter, Document
from transforms.tokenize import LongTextPolicy, Piece, TokenizerModelHandler, to_pieces

_DEAD = "dead_letters"


class EmbedResult(NamedTuple):
    rows: beam.PCollection          # dicts: id, embedding, n_tokens, truncated[, n_chunks, text, text_pair]
    dead_letters: beam.PCollection  # DeadLetter


def _split_tokenized(result):
    if isinstance(result, DeadLetter):
        counters.dead_lettered_counter(result.reason).inc()
        yield beam.pvalue.TaggedOutput(_DEAD, result)
        return
    yield from result


def _row(piece: Piece, vector: np.ndarray, n_tokens: int, n_chunks: int | None) -> dict:
    row = {"id": piece.doc_id, "embedding": vector.astype(np.float32), "n_tokens": n_tokens,
           "truncated": piece.truncated}
    if n_chunks is not None:
        row["n_chunks"] = n_chunks
    if piece.text is not None:
        row["text"] = piece.text
        if piece.text_pair is not None:
            row["text_pair"] = piece.text_pair
    return row


class _ToRows(beam.DoFn):
    """Single-piece documents become rows now; chunked ones are keyed for merging."""
    CHUNKS = "chunks"

    def __init__(self, chunk_mode: bool):
        self._chunk_mode = chunk_mode

    def process(self, encoded: Encoded):
        piece = encoded.piece
        if piece.n_chunks > 1:
            yield beam.pvalue.TaggedOutput(self.CHUNKS, (piece.doc_id, encoded))
        elif encoded.error is not None:
            yield _dead_letter(encoded)
        else:
            counters.counter(counters.EMBEDDED).inc()
            if piece.truncated:  # counted on rows only: a dead letter is not a truncated row
                counters.counter(counters.TRUNCATED).inc()
            yield _row(piece, encoded.vector, piece.n_tokens, 1 if self._chunk_mode else None)


def _drop_filler(encoded: Encoded):
    if not is_filler(encoded.piece):  # the encoder counted a filler as computed only
        yield encoded


def _dead_letter(encoded: Encoded, first: Optional[Piece] = None):
    """``first``: the document's first window, which carries its raw prefix."""
    piece = encoded.piece
    counters.dead_lettered_counter("inference_error").inc()
    return beam.pvalue.TaggedOutput(_DEAD, DeadLetter(
        "inference_error", encoded.error, piece.source, (first or piece).raw, piece.doc_id))


def _merge_chunks(keyed, normalize: bool):
    """Token-weighted mean of a document's window embeddings; one failed window fails
    the document (one dead letter, so the accounting stays one outcome per document)."""
    doc_id, parts = keyed
    parts = sorted(parts, key=lambda e: e.piece.chunk_index)
    failed = [e for e in parts if e.error is not None]
    if failed:
        yield _dead_letter(failed[0], parts[0].piece)
        return
    weights = np.array([e.piece.n_tokens for e in parts], np.float64)
    vector = (np.stack([e.vector for e in parts]) * weights[:, None]).sum(0) / weights.sum()
    if normalize:
        vector = vector / max(np.linalg.norm(vector), 1e-12)
    counters.counter(counters.EMBEDDED).inc()
    yield _row(parts[0].piece, vector, int(weights.sum()), len(parts))


class EmbedText(beam.PTransform):
    """Embed Documents with a TF Hub preprocessor + encoder pair.

    The tokenizer is loaded once per worker process (RunInference model sharing);
    the encoder too, or ``model_copies`` times per machine and shared by its SDK
    processes (``auto``: one copy per visible GPU, per process on CPU; 0: always per
    process). Tokenizing stays in each process either way.
    Args:
      preprocessor, encoder: TF Hub handles (URL, local or gs:// path).
      spec: pooling, layer, normalize, max_seq_length.
      long_text: "truncate" (row marked truncated), "chunk" (token-weighted mean of
        overlapping windows, n_chunks recorded) or "reject" (dead letter too_long).
      batch_tokens: padded tokens per encoder batch (None: the worker's default,
        transforms/batching.py's default_batch_tokens); max_batch_size: pieces per batch.
      keep_text: carry text (and text_pair) into the rows.
      encoder_class: the TextEncoder (sub)class workers wrap the modules in; tests
        pass one that injects faults, such as running out of memory.
      text_prefixes: prepended to text and text_pair before tokenization (e5's
        "passage: "); counted in n_tokens.
      fixed_shapes: no batch of a single piece (fill_to_shape), so vectors are
        bitwise the same whatever the bundles: for quantized output.
    Returns EmbedResult(rows, dead_letters).
    """

    def __init__(self, preprocessor: str, encoder: str, spec: EmbeddingSpec = EmbeddingSpec(),
                 long_text: str = DEFAULT_LONG_TEXT, batch_tokens: Optional[int] = None,
                 max_batch_size: int = MAX_BATCH_SIZE,
                 keep_text: bool = False, runtime: RuntimeOptions = RuntimeOptions(),
                 encoder_class: type[TextEncoder] = TextEncoder,
                 text_prefixes: tuple[str, str] = ("", ""), fixed_shapes: bool = False,
                 model_copies: int | str = MODEL_COPIES_AUTO):
        super().__init__()
        self._policy = LongTextPolicy(long_text, spec.max_seq_length)
        self._tokenizer = TokenizerModelHandler(preprocessor, self._policy, keep_text,
                                                text_prefixes=text_prefixes)
        self._encoder = EncoderModelHandler(preprocessor, encoder, spec, runtime, encoder_class,
                                            model_copies)
        self._spec = spec
        self._fixed_shapes = fixed_shapes
        self._batch_shape = BatchShape(batch_tokens, max_batch_size, spec.max_seq_length,
                                       bucketed=runtime.jit_compile, merge_small=not fixed_shapes)

    def probe(self, text: str = "probe", text_pair: Optional[str] = None) -> np.ndarray:
        """Embed one text here, in this process, the way the workers will: through the
        same tokenizer and encoder (cached per process), pooling and precision.

        Raises what the modules raise, so a launcher can check its options against the
        modules before a job starts. On the local runner, whose workers run in this
        process, it also leaves the graphs traced and optimized for them.
        """
        tokenizer = self._tokenizer.load_model()
        [pieces] = self._tokenizer.run_inference([Document("probe", text, text_pair, "probe")], tokenizer)
        if isinstance(pieces, DeadLetter):
            raise ValueError(f"the probe text became a dead letter: {pieces.reason}: {pieces.detail}")
        return self._encoder.local_model().embed(pieces)[0]

    def probe_length(self, n_tokens: Optional[int] = None, pair: bool = False) -> tuple[int, np.ndarray]:
        """Embed one input of ``n_tokens`` tokens, special tokens included (default:
        ``max_seq_length``, the longest input a worker gives the encoder, whatever the
        long-text policy: truncated texts and chunk windows are that long), one text
        or a pair trimmed round-robin as the workers trim. Returns the length embedded
        (``n_tokens`` unless the tokenizer made fewer tokens of the probe text) and the
        vector.

        Raises what the encoder raises, e.g. for a length beyond its position table.
        """
        n_tokens = n_tokens or self._spec.max_seq_length
        tokenizer = self._tokenizer.load_model()
        num_segments = 2 if pair else 1
        # Every word is at least one token for WordPiece, sentencepiece and byte BPE.
        text = " ".join(["probe"] * n_tokens)
        segments = tokenizer.tokenize([text] * num_segments)
        pieces = to_pieces(Document("probe", text, text if pair else None, "probe"), segments,
                           LongTextPolicy("truncate", n_tokens), tokenizer.special_tokens(num_segments),
                           keep_text=False)
        # Packed to exactly that length: the length classes would round it up.
        [vector] = self._encoder.local_model().embed(pieces, seq_length=pieces[0].n_tokens)
        return pieces[0].n_tokens, vector

    def expand(self, documents) -> EmbedResult:
        tokenized = (documents
                     | "Tokenize" >> RunInference(self._tokenizer)
                     | "SplitTooLong" >> beam.FlatMap(_split_tokenized).with_outputs(_DEAD, main="pieces"))
        batches = tokenized.pieces | "BatchByLength" >> BatchByLength(self._batch_shape)
        if self._fixed_shapes:
            batches = batches | "FillToShape" >> beam.Map(fill_to_shape, self._batch_shape)
        encoded = batches | "Encode" >> RunInference(self._encoder.with_no_batching())
        if self._fixed_shapes:
            encoded = encoded | "DropFillers" >> beam.FlatMap(_drop_filler)
        chunk_mode = self._policy.mode == "chunk"
        outputs = encoded | "ToRows" >> beam.ParDo(_ToRows(chunk_mode)).with_outputs(
            _DEAD, _ToRows.CHUNKS, main="rows")
        rows = outputs.rows
        if chunk_mode:
            merged = (outputs[_ToRows.CHUNKS]
                      | "GroupChunks" >> beam.GroupByKey()
                      | "MergeChunks" >> beam.FlatMap(_merge_chunks, self._spec.normalize)
                      .with_outputs(_DEAD, main="rows"))
            rows = (rows, merged.rows) | "AllRows" >> beam.Flatten()
            dead = (tokenized[_DEAD], outputs[_DEAD], merged[_DEAD])
        else:
            dead = (tokenized[_DEAD], outputs[_DEAD])
        dead = dead | "DeadLetters" >> beam.Flatten()
        return EmbedResult(rows, dead)
