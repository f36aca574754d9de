"""Converted modules follow TF Hub's BERT-family interface (seeds 000 and 001).

Encoder: dict of int32 input_word_ids / input_mask / input_type_ids in; exactly
pooled_output, sequence_output and encoder_outputs (one per layer) out, through
``hub.load`` and ``hub.KerasLayer``. Preprocessor: callable on strings, ``tokenize``
(ragged) and ``bert_pack_inputs(segments, seq_length=N)``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the preprocessor's ops)
import tf_keras
from safetensors import safe_open

from tests.conftest import FAMILIES, TINY

HIDDEN, LAYERS = TINY["hidden_size"], TINY["num_hidden_layers"]
INPUT_KEYS = {"input_word_ids", "input_mask", "input_type_ids"}
OUTPUT_KEYS = {"pooled_output", "sequence_output", "encoder_outputs"}
SENTENCES = ["Hello world!", "你好，世界", "नमस्ते दुनिया", "Bonjour le monde, comment ça va ?",
             "", "Guten Morgen", "Привет, мир!"]


def _encoder_inputs(batch: int, seq: int, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq  # one full row
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(5, 200, size=(batch, seq)).astype(np.int32) * mask + (1 - mask)
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
            "input_type_ids": tf.zeros([batch, seq], tf.int32)}


def _check_outputs(outputs, batch: int, seq: int):
    assert set(outputs) == OUTPUT_KEYS
    assert outputs["pooled_output"].shape == (batch, HIDDEN)
    assert outputs["sequence_output"].shape == (batch, seq, HIDDEN)
    assert len(outputs["encoder_outputs"]) == LAYERS
    for layer in outputs["encoder_outputs"]:
        assert layer.shape == (batch, seq, HIDDEN)
    np.testing.assert_array_equal(outputs["encoder_outputs"][-1], outputs["sequence_output"])


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_through_hub_load_and_keras_layer(family, tiny_models):
    _, encoder = tiny_models.loaded(family)
    layer = hub.KerasLayer(tiny_models.module(family).encoder)
    for batch in (1, 7):
        for seq in (8, 512):
            inputs = _encoder_inputs(batch, seq)
            _check_outputs(encoder(inputs), batch, seq)
            _check_outputs(layer(inputs), batch, seq)


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_takes_int32(family, tiny_models):
    _, encoder = tiny_models.loaded(family)
    (signature,), _ = encoder.__call__.concrete_functions[0].structured_input_signature
    assert set(signature) == INPUT_KEYS
    for spec in signature.values():
        assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, None]


@pytest.mark.parametrize("family", FAMILIES)
def test_preprocessor_is_callable_on_strings(family, tiny_models):
    preprocessor, encoder = tiny_models.loaded(family)
    for pre in (preprocessor, hub.KerasLayer(tiny_models.module(family).preprocessor)):
        inputs = pre(tf.constant(SENTENCES))
        assert set(inputs) == INPUT_KEYS
        for value in inputs.values():
            assert value.dtype == tf.int32 and value.shape == (len(SENTENCES), 128)
        _check_outputs(encoder(inputs), len(SENTENCES), 128)
    tokens = preprocessor.tokenize(tf.constant(SENTENCES))
    assert isinstance(tokens, tf.RaggedTensor) and tokens.dtype == tf.int32
    assert tokens.shape.rank == 2 and tokens.nrows() == len(SENTENCES)


def _check_packed(packed, seq_length: int, segments: list, family: str):
    assert set(packed) == INPUT_KEYS
    for value in packed.values():
        assert value.dtype == tf.int32 and value.shape == (segments[0].nrows(), seq_length)
    # <s> A </s> [</s> B </s>] for RoBERTa-likes, [CLS] A [SEP] [B [SEP]] for BERT.
    specials = 1 + len(segments) + (len(segments) == 2 and family != "bert")
    content = sum(s.row_lengths().numpy() for s in segments)
    expected = np.minimum(content, seq_length - specials) + specials
    np.testing.assert_array_equal(np.sum(packed["input_mask"], axis=1), expected)


@pytest.mark.parametrize("seq_length", (16, 128, 512))
@pytest.mark.parametrize("family", FAMILIES)
def test_bert_pack_inputs_honours_seq_length(family, seq_length, tiny_models):
    preprocessor, encoder = tiny_models.loaded(family)
    texts = SENTENCES + [" ".join(SENTENCES * 20)]  # the last one is longer than 512 tokens
    tokens = preprocessor.tokenize(tf.constant(texts))
    assert tokens.row_lengths()[-1] > 512
    for num_segments in (1, 2):
        segments = [tokens] * num_segments
        for packed in (preprocessor.bert_pack_inputs(segments, seq_length=seq_length),
                       preprocessor.bert_pack_inputs(segments, seq_length=tf.constant(seq_length))):
            _check_packed(packed, seq_length, segments, family)
        layer = hub.KerasLayer(preprocessor.bert_pack_inputs, arguments=dict(seq_length=seq_length))
        packed = layer(segments)
        _check_packed(packed, seq_length, segments, family)
        _check_outputs(encoder(packed), len(texts), seq_length)


@pytest.mark.parametrize("family", FAMILIES)
def test_keras_examples_from_the_module_pages(family, tiny_models):
    """The "Example Use" and "Build model for multi text inputs" code of seeds 000/001."""
    dirs = tiny_models.module(family)
    text_input = tf_keras.layers.Input(shape=(), dtype=tf.string)
    encoder_inputs = hub.KerasLayer(dirs.preprocessor)(text_input)
    encoder_outputs = hub.KerasLayer(dirs.encoder, trainable=True)(encoder_inputs)
    model = tf_keras.Model(text_input, encoder_outputs["pooled_output"])
    assert model(tf.constant(["(your text here)"])).shape == (1, HIDDEN)

    preprocessor = hub.load(dirs.preprocessor)
    tokenize = hub.KerasLayer(preprocessor.tokenize)
    bert_pack_inputs = hub.KerasLayer(preprocessor.bert_pack_inputs)
    encoder = hub.KerasLayer(dirs.encoder, trainable=True)
    text_inputs = [tf_keras.layers.Input(shape=(), dtype=tf.string),
                   tf_keras.layers.Input(shape=(), dtype=tf.string)]
    tokenized_inputs = [tokenize(segment) for segment in text_inputs]
    encoder_inputs = bert_pack_inputs(tokenized_inputs)
    encoder_outputs = encoder(encoder_inputs)
    model = tf_keras.Model(text_inputs, encoder_outputs["pooled_output"])
    hypotheses = tf.constant(["(your hypothesis text here)", "A man is sleeping."])
    premises = tf.constant(["(your premise text here)", "Un homme dort dans son lit."])
    assert model([hypotheses, premises]).shape == (2, HIDDEN)
    sequence_model = tf_keras.Model(text_inputs, encoder_outputs["sequence_output"])
    assert sequence_model([hypotheses, premises]).shape == (2, 128, HIDDEN)

    # trainable=True fine-tunes every parameter of the Hugging Face checkpoint.
    with safe_open(os.path.join(tiny_models.checkpoint(family), "model.safetensors"), "np") as f:
        parameters = {name: f.get_slice(name).get_shape() for name in f.keys()}
    # Revision 3 stores each layer's query, key and value as one fused kernel and bias.
    layers = sum(name.endswith("attention.self.query.weight") for name in parameters)
    assert layers > 0 and len(encoder.trainable_weights) == len(parameters) - 4 * layers
    assert (sum(w.shape.num_elements() for w in encoder.trainable_weights)
            == sum(int(np.prod(shape)) for shape in parameters.values()))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model([hypotheses, premises]) ** 2)
    gradients = tape.gradient(loss, encoder.trainable_weights)
    assert all(g is not None for g in gradients)
