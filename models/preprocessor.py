"""The preprocessor SavedModel: strings in, encoder inputs out (TF Hub's interface).

Like TF Hub's BERT/XLM-R ``*_preprocess`` modules it is callable on a batch of
strings (packing to ``default_seq_length``) and exposes:
  ``tokenize(strings)`` -> int32 RaggedTensor [batch, (tokens)], no special tokens;
  ``bert_pack_inputs(segments, seq_length=N)`` -> the encoder's input dict, for one
  or two tokenized segments (see ``models.packing``).
"""
from __future__ import annotations

import tensorflow as tf

from models.packing import PackingStyle, pack

DEFAULT_SEQ_LENGTH = 128
_STRINGS = tf.TensorSpec([None], tf.string)
_SEGMENT = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)
_LENGTH = tf.TensorSpec([], tf.int32)


class TextPreprocessor(tf.Module):
    def __init__(self, tokenizer: tf.Module, style: PackingStyle, vocab_size: int,
                 default_seq_length: int = DEFAULT_SEQ_LENGTH):
        super().__init__(name="text_preprocessor")
        self.tokenizer = tokenizer
        self._style = style
        self._default_seq_length = default_seq_length
        self.vocab_size = tf.constant(vocab_size, tf.int32)
        self.pad_id = tf.constant(style.pad_id, tf.int32)
        self.tokenize = tf.function(self._tokenize, input_signature=[_STRINGS])
        self.bert_pack_inputs = tf.function(self._bert_pack_inputs)
        self.__call__ = tf.function(self._call, input_signature=[_STRINGS])

    def _tokenize(self, strings):
        return self.tokenizer.tokenize(strings)

    def _bert_pack_inputs(self, inputs, seq_length=DEFAULT_SEQ_LENGTH):
        return pack(self._style, list(inputs), seq_length)

    def _call(self, strings):
        return pack(self._style, [self.tokenizer.tokenize(strings)], self._default_seq_length)

    def trace_for_saving(self):
        """Concrete functions a restored module can dispatch to: 1 or 2 segments,
        with ``seq_length`` as a tensor (any N) or left at its default."""
        for num_segments in (1, 2):
            segments = [_SEGMENT] * num_segments
            self.bert_pack_inputs.get_concrete_function(segments)
            self.bert_pack_inputs.get_concrete_function(segments, _LENGTH)
        return self
