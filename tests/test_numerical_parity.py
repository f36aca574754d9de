"""Converted encoders compute what Hugging Face's models compute.

Random checkpoints with every parameter randomized (reference/hf_reference.py
random-checkpoint), converted by models.convert, run on the same int inputs as
transformers' BertModel / RobertaModel / XLMRobertaModel (torch, CPU). Rows of
different lengths padded to 32 exercise the attention mask and RoBERTa's position
ids (padding_idx + 1 onwards); pair rows exercise BERT's token type 1.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FAMILIES, SAMPLE_TEXT
from tests.reference import hf_encode

SEQ_LENGTH = 32
SINGLE_LENGTHS = (3, 8, 17, 30, 32)  # including the special tokens
PAIR_LENGTHS = ((5, 9), (12, 14))    # tokens of segment A and B
TOLERANCE = 1e-4


def _inputs(preprocessor) -> dict[str, np.ndarray]:
    """Real token ids from our preprocessor, cut to the lengths above."""
    with open(SAMPLE_TEXT, encoding="utf-8") as f:
        text = " ".join(f.read().split()[:200])
    ids = preprocessor.tokenize(tf.constant([text]))[0]
    assert ids.shape[0] > 2 * SEQ_LENGTH
    singles = tf.ragged.constant([ids[:n - 2].numpy() for n in SINGLE_LENGTHS], tf.int32)
    first = tf.ragged.constant([ids[:a].numpy() for a, _ in PAIR_LENGTHS], tf.int32)
    second = tf.ragged.constant([ids[-b:].numpy() for _, b in PAIR_LENGTHS], tf.int32)
    parts = [preprocessor.bert_pack_inputs([singles], seq_length=tf.constant(SEQ_LENGTH)),
             preprocessor.bert_pack_inputs([first, second], seq_length=tf.constant(SEQ_LENGTH))]
    inputs = {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}
    np.testing.assert_array_equal(inputs["input_mask"][:len(SINGLE_LENGTHS)].sum(1), SINGLE_LENGTHS)
    return inputs


def _max_diff(got, want, mask=None) -> float:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if mask is not None:
        got, want = got[mask == 1], want[mask == 1]
    return float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("family", FAMILIES)
def test_outputs_match_hugging_face(family, tiny_models):
    preprocessor, encoder = tiny_models.loaded(family)
    inputs = _inputs(preprocessor)
    if family == "bert":
        assert inputs["input_type_ids"].max() == 1
    ours = encoder({k: tf.constant(v) for k, v in inputs.items()})
    want = hf_encode(tiny_models.checkpoint(family), inputs)
    mask = inputs["input_mask"]

    assert np.std(want["sequence_output"][mask == 1]) > 0.1  # not a degenerate model
    assert _max_diff(ours["sequence_output"], want["sequence_output"], mask) <= TOLERANCE
    assert _max_diff(ours["pooled_output"], want["pooled_output"]) <= TOLERANCE
    assert len(ours["encoder_outputs"]) == len(want["encoder_outputs"])
    for layer, (got, expected) in enumerate(zip(ours["encoder_outputs"], want["encoder_outputs"])):
        assert _max_diff(got, expected, mask) <= TOLERANCE, f"{family}: encoder_outputs[{layer}]"
