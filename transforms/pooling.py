"""Turning the encoder's token outputs into one vector per text.

``mean`` (the default) averages the chosen layer over real tokens only (the input
mask), as sentence-transformers does; ``cls`` takes the first token; ``max`` the
masked maximum; ``pooled_output`` is the module's own pooled output (for
RoBERTa/XLM-R a dense+tanh head whose pre-training objective never trained it).
"""
from __future__ import annotations

import tensorflow as tf

from transforms.constants import POOLING_MODES


def pool(outputs: dict, input_mask: tf.Tensor, mode: str, layer: int | None) -> tf.Tensor:
    if mode == "pooled_output":
        return outputs["pooled_output"]
    tokens = outputs["sequence_output"] if layer is None else outputs["encoder_outputs"][layer]
    if mode == "cls":
        return tokens[:, 0, :]
    mask = tf.cast(input_mask, tokens.dtype)[:, :, tf.newaxis]
    if mode == "mean":
        return tf.reduce_sum(tokens * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    if mode == "max":
        return tf.reduce_max(tokens + (1.0 - mask) * tokens.dtype.min, axis=1)
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLING_MODES)}")


def l2_normalize(vectors: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(vectors, axis=-1)
