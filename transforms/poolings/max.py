"""``max``: the chosen layer's maximum over real tokens (padding pushed to the
dtype's minimum so that it never wins)."""
from __future__ import annotations

import tensorflow as tf

from transforms.poolings.base import token_mask, token_states


def pool(outputs: dict, input_mask: tf.Tensor, layer: int | None) -> tf.Tensor:
    tokens = token_states(outputs, layer)
    mask = token_mask(input_mask, tokens)
    return tf.reduce_max(tokens + (1.0 - mask) * tokens.dtype.min, axis=1)
