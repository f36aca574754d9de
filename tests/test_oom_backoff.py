"""Out-of-memory back-off, with the real (tiny) modules on a device that is made small.

``SmallDeviceEncoder`` raises TensorFlow's ResourceExhaustedError, as a GPU does,
for any batch above a padded-token budget, and otherwise runs the real encoder. It
goes in through EmbedText's ``encoder_class``, so the pipeline is the production one
on the FnApiRunner: batches are split in halves down to single documents, and a
document too big on its own becomes an ``inference_error`` dead letter.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import tensorflow as tf

from tests.pipeline_helpers import read_dead_letters, read_parquet_rows
from transforms import counters
from transforms.embed import EmbedText
from transforms.encode import EmbeddingSpec, TextEncoder
from transforms.records import Document
from transforms.write import WriteDeadLetters, WriteEmbeddings

DEVICE_TOKENS = 320  # padded tokens (batch size x length) the "device" can hold
WORDS = "river stone light quiet morning garden window letter music winter".split()


class SmallDeviceEncoder(TextEncoder):
    budget = DEVICE_TOKENS

    def embed(self, pieces):
        padded = len(pieces) * self.padded_length(pieces)
        if padded > self.budget:
            raise tf.errors.ResourceExhaustedError(
                None, None, f"OOM when allocating tensor for {padded} tokens (test device)")
        return super().embed(pieces)


class SmallerDeviceEncoder(SmallDeviceEncoder):
    """For tests/test_shared_model.py: two SDK processes' bundles make smaller batches.
    Defined here, in a module SDK processes import as tests.test_oom_backoff."""
    budget = 100


def documents() -> list[Document]:
    rng = np.random.default_rng(0)
    docs = [Document(f"doc-{i}", " ".join(rng.choice(WORDS, int(rng.integers(3, 60)))), None,
                     f"test:{i}") for i in range(80)]
    # About 400 tokens: over the device's budget even alone.
    docs.append(Document("too-big-alone", " ".join(rng.choice(WORDS, 400)), None, "test:80"))
    return docs


def embed(tmp_path, name, model, encoder_class):
    prefix = str(tmp_path / name)
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = (p | beam.Create(documents())
                  | EmbedText(model.preprocessor, model.encoder, EmbeddingSpec(),
                              encoder_class=encoder_class))
        result.rows | WriteEmbeddings(prefix, dim=32)
        result.dead_letters | WriteDeadLetters(f"{prefix}-errors")
    totals = counters.committed_counters(p.result)
    return read_parquet_rows(prefix), read_dead_letters(f"{prefix}-errors"), totals


def test_batches_split_until_they_fit_and_a_lone_giant_is_dead_lettered(tmp_path,
                                                                        tiny_random_model):
    expected, _, plain = embed(tmp_path, "plain", tiny_random_model, TextEncoder)
    assert len(expected) == 81 and plain.get(counters.OOM_SPLITS, 0) == 0

    rows, letters, totals = embed(tmp_path, "small-device", tiny_random_model,
                                  SmallDeviceEncoder)

    assert totals[counters.OOM_SPLITS] > 0
    assert set(rows) == set(expected) - {"too-big-alone"}
    for doc_id, row in rows.items():
        # Other batch compositions than without the back-off: equal up to float32 noise.
        assert np.abs(row["embedding"] - expected[doc_id]["embedding"]).max() <= 1e-5, doc_id
    [letter] = letters
    assert letter["id"] == "too-big-alone" and letter["reason"] == "inference_error"
    assert "out of memory" in letter["detail"]
    assert totals[counters.EMBEDDED] == 80
    assert totals[counters.DEAD_LETTERED["inference_error"]] == 1
