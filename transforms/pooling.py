"""Turning the encoder's token outputs into one vector per text.

Each pooling mode is a module in transforms/poolings/ (mean.py, the default, cls.py,
max.py, pooled_output.py) named in its registry; ``pool`` dispatches to it.
"""
from __future__ import annotations

import tensorflow as tf

from transforms.poolings import pooling


def pool(outputs: dict, input_mask: tf.Tensor, mode: str, layer: int | None) -> tf.Tensor:
    return pooling(mode).function()(outputs, input_mask, layer)


def l2_normalize(vectors: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(vectors, axis=-1)
