"""The closed-form trimming agrees with tensorflow_text's RoundRobinTrimmer, which the
preprocessor's packing uses (so truncated flags and token counts are right)."""
import random

import tensorflow as tf
import tensorflow_text as tf_text

from transforms.tokenize import round_robin_lengths


def test_matches_tensorflow_text_round_robin_trimmer():
    rng = random.Random(0)
    for _ in range(300):
        k = rng.choice([1, 2])
        lengths = [rng.randrange(0, 40) for _ in range(k)]
        budget = rng.randrange(1, 90)
        segments = [tf.ragged.constant([list(range(n))], dtype=tf.int32, row_splits_dtype=tf.int64)
                    for n in lengths]
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        expected = [int(t.row_lengths()[0]) for t in trimmed]
        assert round_robin_lengths(lengths, budget) == expected, (lengths, budget)
