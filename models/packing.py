"""Packing token ids into the encoder's fixed-length inputs (TF Hub's ``bert_pack_inputs``).

BERT packs ``[CLS] A [SEP] B [SEP]`` with type ids 0 for A and 1 for B;
RoBERTa/XLM-R pack ``<s> A </s></s> B </s>`` with all type ids 0 (their type
vocabulary has one entry). Segments are trimmed round-robin to fit.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_text as tf_text


@dataclasses.dataclass(frozen=True)
class PackingStyle:
    start_id: int          # [CLS] or <s>
    end_id: int            # [SEP] or </s>
    pad_id: int            # [PAD] or <pad>
    double_separator: bool  # RoBERTa's "</s></s>" between segments
    segment_type_ids: bool  # BERT's 0/1 token types; RoBERTa uses 0 everywhere

    def num_special_tokens(self, num_segments: int) -> int:
        extra = 1 if (self.double_separator and num_segments > 1) else 0
        return 1 + num_segments + extra


def bert_style(vocab: dict[str, int]) -> PackingStyle:
    return PackingStyle(vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"],
                        double_separator=False, segment_type_ids=True)


def roberta_style(start_id: int = 0, pad_id: int = 1, end_id: int = 2) -> PackingStyle:
    return PackingStyle(start_id, end_id, pad_id, double_separator=True, segment_type_ids=False)


def _as_token_lists(segment: tf.RaggedTensor) -> tf.RaggedTensor:
    """TF Hub tokenizers may return [batch, words, pieces]; packing wants [batch, tokens]."""
    if segment.shape.rank is not None and segment.shape.rank > 2:
        segment = segment.merge_dims(-2, -1)
    return tf.cast(segment, tf.int32)


def pack(style: PackingStyle, segments: list[tf.RaggedTensor], seq_length) -> dict[str, tf.Tensor]:
    segments = [_as_token_lists(s) for s in segments]
    budget = seq_length - style.num_special_tokens(len(segments))
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    if style.double_separator and len(trimmed) > 1:
        # combine_segments closes each segment with one end id; RoBERTa opens the
        # following segments with a second one.
        trimmed = [trimmed[0]] + [
            tf.concat([tf.RaggedTensor.from_tensor(tf.fill([s.nrows(), 1], style.end_id)), s], axis=1)
            for s in trimmed[1:]]
    ids, type_ids = tf_text.combine_segments(
        trimmed, start_of_sequence_id=style.start_id, end_of_segment_id=style.end_id)
    if not style.segment_type_ids:
        type_ids = tf.zeros_like(type_ids)
    input_word_ids, input_mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length,
                                                          pad_value=style.pad_id)
    input_type_ids, _ = tf_text.pad_model_inputs(type_ids, max_seq_length=seq_length, pad_value=0)
    return {"input_word_ids": tf.cast(input_word_ids, tf.int32),
            "input_mask": tf.cast(input_mask, tf.int32),
            "input_type_ids": tf.cast(input_type_ids, tf.int32)}
