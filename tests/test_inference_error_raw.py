"""An ``inference_error`` dead letter carries the first KiB of its text (``raw``), as
every other dead letter does, without --keep_text; a truncated text that fails is a
dead letter, not a truncated row."""
from __future__ import annotations

import apache_beam as beam
import pytest
import tensorflow as tf

from tests.pipeline_helpers import read_dead_letters, read_parquet_rows
from transforms import counters
from transforms.embed import EmbedText
from transforms.encode import NON_FINITE, EmbeddingSpec, TextEncoder
from transforms.records import RAW_PREFIX_BYTES, Document, raw_prefix
from transforms.write import WriteDeadLetters, WriteEmbeddings

POISON = "poison"
# Long (truncated at 64 tokens; several windows in chunk mode), multi-byte, over 1 KiB.
LONG = "déjà vu 中文 " * 150 + POISON


class FailsOnPoison(TextEncoder):
    """The real encoder, except that a batch holding the poison word's token fails as
    a broken kernel would."""

    def embed(self, pieces, seq_length=None):
        poison = set(self._preprocessor.tokenize(tf.constant([POISON])).flat_values.numpy())
        if any(poison & set(segment) for p in pieces for segment in p.segments):
            raise tf.errors.InvalidArgumentError(None, None, "injected kernel failure")
        return super().embed(pieces, seq_length)


def documents():
    return [Document("ok", "a fine text", None, "t:1"),
            Document("short-bad", f"short {POISON}", None, "t:2"),
            Document("long-bad", POISON + " " + LONG, None, "t:3")]


@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_inference_errors_keep_the_first_kib(tmp_path, tiny_random_model, long_text):
    prefix = str(tmp_path / "emb")
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = (p | beam.Create(documents())
                  | EmbedText(tiny_random_model.preprocessor, tiny_random_model.encoder,
                              EmbeddingSpec(max_seq_length=64), long_text=long_text,
                              encoder_class=FailsOnPoison))
        result.rows | WriteEmbeddings(prefix, dim=32,
                                      columns={"n_chunks"} if long_text == "chunk" else set())
        result.dead_letters | WriteDeadLetters(f"{prefix}-errors")
    totals = counters.committed_counters(p.result)
    assert set(read_parquet_rows(prefix)) == {"ok"}
    letters = {letter["id"]: letter for letter in read_dead_letters(f"{prefix}-errors")}
    assert set(letters) == {"short-bad", "long-bad"}
    assert {letter["reason"] for letter in letters.values()} == {"inference_error"}
    assert letters["short-bad"]["raw"] == f"short {POISON}"
    long_raw = letters["long-bad"]["raw"]
    assert long_raw == raw_prefix(POISON + " " + LONG)
    assert long_raw.startswith(POISON + " déjà vu 中文")
    assert RAW_PREFIX_BYTES - 3 <= len(long_raw.encode()) <= RAW_PREFIX_BYTES
    assert totals.get(counters.TRUNCATED, 0) == 0  # the truncated text became a dead letter


class NaNOnPoison(TextEncoder):
    """The real encoder, except that a piece holding the poison word comes out NaN, as
    float16 overflowing would make it."""

    def embed(self, pieces, seq_length=None):
        import numpy as np
        vectors = super().embed(pieces, seq_length)
        poison = set(self._preprocessor.tokenize(tf.constant([POISON])).flat_values.numpy())
        for i, piece in enumerate(pieces):
            if any(poison & set(segment) for segment in piece.segments):
                vectors[i, 3] = np.nan
        return vectors


def test_a_nan_embedding_is_a_dead_letter_not_a_row(tmp_path, tiny_random_model):
    prefix = str(tmp_path / "emb")
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = (p | beam.Create(documents())
                  | EmbedText(tiny_random_model.preprocessor, tiny_random_model.encoder,
                              EmbeddingSpec(max_seq_length=64), encoder_class=NaNOnPoison))
        result.rows | WriteEmbeddings(prefix, dim=32)
        result.dead_letters | WriteDeadLetters(f"{prefix}-errors")
    assert set(read_parquet_rows(prefix)) == {"ok"}
    letters = read_dead_letters(f"{prefix}-errors")
    assert {(letter["id"], letter["detail"]) for letter in letters} == {
        ("short-bad", NON_FINITE), ("long-bad", NON_FINITE)}


def test_the_probe_refuses_a_nan_embedding():
    import numpy as np
    from pipeline.probe import ProbeFailure, check_finite
    check_finite(np.zeros(4, np.float32), "x")
    with pytest.raises(ProbeFailure, match="--precision"):
        check_finite(np.array([0, np.inf], np.float32), "x")
