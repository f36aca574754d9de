"""XLM-R's sentencepiece tokenizer with fairseq's id mapping.

XLM-R's ``sentencepiece.bpe.model`` numbers ``<unk>``=0, ``<s>``=1, ``</s>``=2 and the
pieces from 3. fairseq's dictionary, which the model's embeddings use, puts
``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 first and shifts every piece by one
(``spm id + 1``), with ``<mask>`` appended last. Hence 'Hello world!' ->
[0, 35378, 8999, 38, 2] with the real vocabulary.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

FAIRSEQ_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
FAIRSEQ_OFFSET = 1


def fairseq_vocab_size(spm_piece_count: int) -> int:
    """spm pieces (3 of them specials) shifted by one, 4 specials, plus <mask>."""
    return spm_piece_count + FAIRSEQ_OFFSET + 1


class SentencepieceTokenizer(tf.Module):
    """``tokenize(strings) -> int32 RaggedTensor [batch, (tokens)]`` in fairseq ids."""

    def __init__(self, model_path: str):
        super().__init__(name="sentencepiece_tokenizer")
        self.model_file = tf.saved_model.Asset(model_path)
        with tf.io.gfile.GFile(model_path, "rb") as f:
            model = f.read()
        self._spm = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)
        self.spm_piece_count = int(self._spm.vocab_size())
        self._spm_unk_id = int(self._spm.string_to_id("<unk>"))

    @property
    def vocab_size(self) -> int:
        return fairseq_vocab_size(self.spm_piece_count)

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        spm_ids = self._spm.tokenize(strings)
        return tf.ragged.map_flat_values(
            lambda ids: tf.where(ids == self._spm_unk_id, FAIRSEQ_SPECIALS["<unk>"],
                                 ids + FAIRSEQ_OFFSET),
            spm_ids)
