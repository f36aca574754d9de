"""Tokenizing documents in the preprocessor's graph, and applying the long-text policy.

Tokenization runs once per document, before batching, so that batches can be
formed by token count. Long documents are truncated, split into overlapping
windows (``chunk``) or rejected; what comes out is a ``Piece``: the token ids of one
window, already trimmed to fit ``max_seq_length`` with the special tokens.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from transforms.constants import LONG_TEXT_POLICIES, MAX_BATCH_SIZE
from transforms.records import RAW_PREFIX_BYTES, DeadLetter, Document, Piece, raw_prefix
from transforms.text_modules import load_module
from transforms.tf_errors import error_text

# In truncate/reject mode only the first max_seq_length tokens matter, so a huge
# document is cut before tokenization. Every token covers at least one character,
# and no tokenizer here needs more than this many characters of context per token.
CHARS_PER_TOKEN_BOUND = 64


@dataclasses.dataclass(frozen=True)
class LongTextPolicy:
    mode: str
    max_seq_length: int
    chunk_overlap: int = 64

    def __post_init__(self):
        if self.mode not in LONG_TEXT_POLICIES:
            raise ValueError(f"--long_text {self.mode!r}: expected one of {', '.join(LONG_TEXT_POLICIES)}")

    def char_limit(self) -> Optional[int]:
        return None if self.mode == "chunk" else self.max_seq_length * CHARS_PER_TOKEN_BOUND


def round_robin_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """How many tokens of each segment fit in ``budget``, one token per segment in
    turn: the rule of tensorflow_text's RoundRobinTrimmer, which TF Hub packing uses.

    In closed form: the shortest segments keep everything, the rest share what is
    left equally, the earlier segments taking the remainder."""
    kept = [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    remaining = budget
    for position, i in enumerate(order):
        share = remaining // (len(lengths) - position)
        if lengths[i] > share:
            # This and every longer segment get the share; the earliest ones one more.
            rest = sorted(order[position:])
            extra = remaining - share * len(rest)
            for rank, j in enumerate(rest):
                kept[j] = share + (1 if rank < extra else 0)
            break
        kept[i] = lengths[i]
        remaining -= lengths[i]
    return kept


class TextTokenizer:
    """A loaded preprocessor plus what packing costs: its special-token counts."""

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor
        self._special_tokens: dict[int, int] = {}

    def special_tokens(self, num_segments: int) -> int:
        """Tokens packing adds to ``num_segments`` segments. Counted on first use (one
        eager call of the restored bert_pack_inputs, ~0.15 s), so single texts never
        pay for the pairs' count."""
        if num_segments not in self._special_tokens:
            self._special_tokens[num_segments] = self._count_specials(num_segments)
        return self._special_tokens[num_segments]

    def _count_specials(self, num_segments: int) -> int:
        one_token = tf.ragged.constant([[5]], dtype=tf.int32)
        packed = self.preprocessor.bert_pack_inputs([one_token] * num_segments, seq_length=16)
        return int(tf.reduce_sum(packed["input_mask"])) - num_segments

    def tokenize(self, texts: list[str]) -> list[np.ndarray]:
        ragged = self.preprocessor.tokenize(tf.constant(texts, tf.string))
        if isinstance(ragged, tf.RaggedTensor) and ragged.ragged_rank > 1:
            ragged = ragged.merge_dims(-2, -1)  # TF Hub BERT tokenizers return [batch, words, pieces]
        values = ragged.flat_values.numpy()
        splits = ragged.row_splits.numpy()
        return [values[splits[i]:splits[i + 1]] for i in range(len(texts))]


def to_pieces(doc: Document, segments: list[np.ndarray], policy: LongTextPolicy,
              special_tokens: int, keep_text: bool) -> Union[list[Piece], DeadLetter]:
    lengths = [len(s) for s in segments]
    text = doc.text if keep_text else None
    text_pair = doc.text_pair if keep_text else None
    if lengths[0] == 0 or (len(lengths) > 1 and lengths[1] == 0):
        which = "text" if lengths[0] == 0 else "text_pair"
        return DeadLetter("empty_text", f"{which} has no tokens after tokenization",
                          doc.source, _raw(doc), doc.id)
    budget = policy.max_seq_length - special_tokens
    fits = sum(lengths) <= budget
    if fits or policy.mode == "truncate":
        kept = round_robin_lengths(lengths, budget)
        trimmed = tuple(tuple(s[:k].tolist()) for s, k in zip(segments, kept))
        return [Piece(doc.id, doc.source, trimmed, sum(kept) + special_tokens, not fits, 0, 1, text,
                      text_pair, _raw(doc))]
    if policy.mode == "reject":
        return DeadLetter("too_long", f"{sum(lengths)} tokens; --max_seq_length "
                          f"{policy.max_seq_length} leaves room for {budget}",
                          doc.source, _raw(doc), doc.id)
    ids = segments[0]
    stride = max(1, budget - min(policy.chunk_overlap, budget // 2))
    starts = list(range(0, max(1, len(ids) - budget + stride), stride))
    raw = _raw(doc)
    return [Piece(doc.id, doc.source, (tuple(ids[s:s + budget].tolist()),),
                  min(budget, len(ids) - s) + special_tokens, False, i, len(starts), text, text_pair,
                  raw if i == 0 else "")
            for i, s in enumerate(starts)]


def _prefixed(prefix: str, text: str) -> str:
    """The prompt goes before the text as a string, as sentence-transformers does (a byte
    BPE tokenizes "query: x" differently from "query: " then "x"). A text of nothing
    but white space keeps no prefix: it stays an empty_text dead letter instead of
    being embedded as the prompt alone. In chunk mode the prefix opens the first
    window only: it is part of the text."""
    return prefix + text if prefix and text.strip() else text


def _raw(doc: Document) -> str:
    # A character is at least one byte: slicing first spares encoding a huge text whole.
    return raw_prefix(doc.text[:RAW_PREFIX_BYTES])


@functools.lru_cache(maxsize=8)
def text_tokenizer(preprocessor_handle: str) -> TextTokenizer:
    """One TextTokenizer per process and preprocessor, so its special-token counts are
    counted once, and on the local runner the workers use the one the launcher's
    probe already ran (see ``EmbedText.probe``)."""
    return TextTokenizer(load_module(preprocessor_handle))


class TokenizerModelHandler(ModelHandler[Document, Union[Piece, DeadLetter], TextTokenizer]):
    """RunInference handler: batches of Documents in, Pieces (or DeadLetters) out.

    The preprocessor is loaded once per worker process and shared by its threads
    (RunInference's model sharing); only ``tokenize`` and ``bert_pack_inputs`` are used.
    """

    def __init__(self, preprocessor_handle: str, policy: LongTextPolicy, keep_text: bool = False,
                 max_batch_size: int = MAX_BATCH_SIZE, text_prefixes: tuple[str, str] = ("", "")):
        # Fixed-size batches: BatchElements would otherwise start at 1 and grow slowly,
        # and a tokenizer call costs about the same for 1 text as for 100.
        super().__init__(min_batch_size=max_batch_size, max_batch_size=max_batch_size)
        self._handle = preprocessor_handle
        self._policy = policy
        self._keep_text = keep_text
        self._prefixes = text_prefixes

    def load_model(self) -> TextTokenizer:
        return text_tokenizer(self._handle)

    def get_num_bytes(self, batch) -> int:
        return sum(len(d.text) + len(d.text_pair or "") for d in batch)

    def get_metrics_namespace(self) -> str:
        return "beam_embed_tokenize"

    def run_inference(self, batch: Sequence[Document], model: TextTokenizer,
                      inference_args=None) -> Iterable[Union[list[Piece], DeadLetter]]:
        limit = self._policy.char_limit()
        clip = (lambda t: t[:limit]) if limit else (lambda t: t)
        text_prefix, pair_prefix = self._prefixes
        tokens = [[t] for t in self._tokenize_or_isolate(
            model, [clip(_prefixed(text_prefix, d.text)) for d in batch])]
        paired = [i for i, d in enumerate(batch) if d.text_pair is not None]
        if paired:
            pairs = self._tokenize_or_isolate(
                model, [clip(_prefixed(pair_prefix, batch[i].text_pair)) for i in paired])
            for i, pair in zip(paired, pairs):
                tokens[i].append(pair)
        results = []
        for doc, segments in zip(batch, tokens):
            if any(isinstance(s, Exception) for s in segments):
                error = next(s for s in segments if isinstance(s, Exception))
                detail = f"tokenizer failed: {error_text(error, 500)}"[:500]
                results.append(DeadLetter("inference_error", detail, doc.source, _raw(doc),
                                          doc.id))
                continue
            specials = model.special_tokens(len(segments))
            results.append(to_pieces(doc, segments, self._policy, specials, self._keep_text))
        return results

    @staticmethod
    def _tokenize_or_isolate(model: TextTokenizer, texts: list[str]) -> list:
        """Tokenize a batch; if the batch fails, retry one by one so only the culprit is lost."""
        try:
            return model.tokenize(texts)
        except tf.errors.OpError:
            pass
        out = []
        for text in texts:
            try:
                out.append(model.tokenize([text])[0])
            except tf.errors.OpError as e:
                out.append(e)
        return out
