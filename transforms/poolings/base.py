"""What the token-level modes share: the chosen layer's token states and the mask."""
from __future__ import annotations

import tensorflow as tf


def token_states(outputs: dict, layer: int | None) -> tf.Tensor:
    """[batch, seq, width]: the last layer (``sequence_output``) or encoder layer ``layer``."""
    return outputs["sequence_output"] if layer is None else outputs["encoder_outputs"][layer]


def token_mask(input_mask: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
    """[batch, seq, 1] in the tokens' dtype: 1 for real tokens, 0 for padding."""
    return tf.cast(input_mask, tokens.dtype)[:, :, tf.newaxis]
