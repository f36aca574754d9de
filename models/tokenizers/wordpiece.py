"""BERT's WordPiece tokenizer (vocab.txt), normalized the way Hugging Face does it.

``tensorflow_text.BertTokenizer(lower_case=True)`` case-folds with NFKC, which turns
"™" into "tm" and full-width "，" into ","; Hugging Face's BertNormalizer only
lower-cases and strips accents (NFD, drop combining marks). So normalization happens
here, explicitly, and tf_text's tokenizer runs with normalization switched off.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

# HF removes U+0000, U+FFFD and "other" (C*) characters except \t \n \r ...
_CONTROL = r"[\x{0}\x{fffd}]|[^\PC\t\n\r]"
# ... and turns every remaining whitespace character into a plain space.
_WHITESPACE = r"[\t\n\r\p{Zs}]"


def read_vocab(path: str) -> dict[str, int]:
    with tf.io.gfile.GFile(path, "r") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def _lower_each_character(strings: tf.Tensor) -> tf.Tensor:
    """Lower-case character by character, as Rust's char::to_lowercase does in HF.

    ``tf.strings.lower`` lower-cases in context (ICU turns a word-final "Σ" into
    "ς"); HF maps every "Σ" to "σ". Lowering single characters has no context.
    """
    chars = tf.strings.unicode_split(strings, "UTF-8")
    return tf.strings.reduce_join(
        tf.ragged.map_flat_values(tf.strings.lower, chars, encoding="utf-8"), axis=-1)


class WordpieceTokenizer(tf.Module):
    """``tokenize(strings) -> int32 RaggedTensor [batch, (tokens)]``, no special tokens."""

    def __init__(self, vocab_path: str, lower_case: bool, unk_token: str = "[UNK]"):
        super().__init__(name="wordpiece_tokenizer")
        self.vocab_file = tf.saved_model.Asset(vocab_path)
        self._lower_case = lower_case
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
        self.vocab_table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self._tokenizer = tf_text.BertTokenizer(
            self.vocab_table, token_out_type=tf.int64, unknown_token=unk_token,
            lower_case=False, normalization_form=None)

    def normalize(self, strings: tf.Tensor) -> tf.Tensor:
        strings = tf.strings.regex_replace(strings, _CONTROL, "")
        strings = tf.strings.regex_replace(strings, _WHITESPACE, " ")
        if self._lower_case:
            strings = tf_text.normalize_utf8(strings, "NFD")
            strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
            strings = _lower_each_character(strings)
        return strings

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        pieces = self._tokenizer.tokenize(self.normalize(strings))  # [batch, words, pieces]
        return tf.cast(pieces.merge_dims(-2, -1), tf.int32)
