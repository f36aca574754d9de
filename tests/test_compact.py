"""Compact embeddings: --truncate_dim, --embedding_dtype, the int8 calibration, text prefixes.

Expected values come from sentence-transformers itself (reference/st_compact.py in
.venv-ref), or from a float32 run of the same corpus put through it.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipeline_helpers import (fails_with, module_args, read_parquet_rows, run_cli,
                                    shard_files, text_id, write_lines_corpus)
from tests.reference import st_encode_truncated, st_quantize
from transforms import quantize
from transforms.calibration import Calibration
from transforms.write import _rows_to_table, _ToExampleFn, embedding_schema, tfrecord_feature_spec


def _hostile_vectors(dim: int = 37, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Vectors with zeros, negative zeros, values on bucket edges and outside the
    ranges, and a dimension whose min equals its max (ST's step-of-one case)."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    ranges = np.stack([vectors.min(0), vectors.max(0)]).astype(np.float32)
    ranges[:, 3] = 0.25                      # min == max
    vectors[0] = 0.0
    vectors[1] = -0.0
    vectors[2] = ranges[0]                   # exactly the minimum
    vectors[3] = ranges[1]                   # exactly the maximum
    steps = (ranges[1] - ranges[0]) / np.float32(255)
    vectors[4] = ranges[0] + steps * 17      # on a bucket edge
    vectors[5] = ranges[1] + 1               # above the range: clipped
    vectors[6] = ranges[0] - 1
    return vectors, ranges


def test_quantization_equals_sentence_transformers(ref_python):
    vectors, ranges = _hostile_vectors()
    calibration = vectors[10:]
    want = st_quantize(vectors, ranges=ranges, calibration=calibration)
    for dtype in ("binary", "ubinary", "int8", "uint8"):
        ours = quantize.quantize(vectors, dtype, ranges if dtype.endswith("int8") else None)
        assert ours.dtype == want[dtype].dtype and ours.shape == want[dtype].shape, dtype
        assert np.array_equal(ours, want[dtype]), dtype
    # Our calibration's ranges (per-dimension min and max) are ST's calibration_embeddings.
    ours_ranges = np.stack([calibration.min(0), calibration.max(0)])
    for dtype in ("int8", "uint8"):
        assert np.array_equal(quantize.quantize(vectors, dtype, ours_ranges),
                              want[f"{dtype}_calibrated"]), dtype
    assert quantize.stored_width("binary", 37) == 5 == want["binary"].shape[1]


def test_parquet_and_tfrecord_encodings():
    tf = pytest.importorskip("tensorflow")
    vectors, ranges = _hostile_vectors(dim=20, n=8)
    for dtype, arrow in (("int8", pa.list_(pa.int8(), 20)), ("uint8", pa.list_(pa.uint8(), 20)),
                         ("float16", pa.list_(pa.float16(), 20)), ("binary", pa.binary(3)),
                         ("ubinary", pa.binary(3)), ("float32", pa.list_(pa.float32(), 20))):
        stored = quantize.quantize(vectors, dtype, ranges)
        rows = [{"id": str(i), "embedding": v, "n_tokens": 3, "truncated": False}
                for i, v in enumerate(stored)]
        table = _rows_to_table(rows, embedding_schema(20, dtype=dtype), 20, dtype)
        assert table.schema.field("embedding").type == arrow, dtype
        column = table.column("embedding").to_pylist()
        back = (np.frombuffer(b"".join(column), quantize.numpy_dtype(dtype)).reshape(8, -1)
                if dtype.endswith("binary") else np.array(column, quantize.numpy_dtype(dtype)))
        assert np.array_equal(back, stored), dtype
        fn = _ToExampleFn(20, frozenset(), dtype)
        fn.setup()
        [serialized] = fn.process(rows[1])
        parsed = tf.io.parse_single_example(serialized, tfrecord_feature_spec(20, dtype=dtype))
        value = parsed["embedding"]
        if dtype != "float32":
            value = tf.io.decode_raw(value, {"float16": tf.float16, "int8": tf.int8,
                                             "uint8": tf.uint8, "binary": tf.int8,
                                             "ubinary": tf.uint8}[dtype])
        assert np.array_equal(value.numpy(), stored[1]), dtype


def test_truncate_dim_equals_sentence_transformers(tmp_path, ref_python, minilm_dir):
    """The default model (MiniLM) through the CLI with --truncate_dim 128 --normalize,
    against encode(truncate_dim=128, normalize_embeddings=True)."""
    texts = ["A man is playing a guitar.", "Le chat dort sur le canapé.", "naïve café",
             "The quick brown fox jumps over the lazy dog. " * 30]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = str(tmp_path / "emb")
    run_cli(f"--input={corpus}", f"--output={out}", "--truncate_dim=128", "--normalize",
            "--max_seq_length=256")
    rows = read_parquet_rows(out)
    ours = np.stack([rows[text_id(t)]["embedding"] for t in texts])
    want = st_encode_truncated(minilm_dir, texts, 128)
    assert ours.shape == want.shape == (len(texts), 128)
    cosine = np.sum(ours * want, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert pq.read_schema(shard_files(out, "parquet")[0]).metadata[b"truncate_dim"] == b"128"
