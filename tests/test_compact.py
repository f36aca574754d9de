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
from transforms.encode import onednn_enabled
from transforms.sinks.parquet import embedding_schema
from transforms.sinks.parquet import rows_to_table as _rows_to_table
from transforms.sinks.tfrecord import _ToExampleFn, tfrecord_feature_spec


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
    # With e5's prompt: sentence-transformers prepends it to the string too.
    run_cli(f"--input={corpus}", f"--output={out}", "--truncate_dim=128", "--normalize",
            "--max_seq_length=256", "--text_prefix=query: ", "--keep_text")
    rows = read_parquet_rows(out)
    ours = np.stack([rows[text_id(t)]["embedding"] for t in texts])
    want = st_encode_truncated(minilm_dir, texts, 128, prompt="query: ")
    assert rows[text_id(texts[2])]["text"] == texts[2]  # the prefix is not the text
    assert ours.shape == want.shape == (len(texts), 128)
    cosine = np.sum(ours * want, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    metadata = pq.read_schema(shard_files(out, "parquet")[0]).metadata
    assert metadata[b"truncate_dim"] == b"128" and metadata[b"text_prefix"] == b"query: "


def test_text_prefix_is_tokenized_counted_and_fingerprinted(tmp_path, tiny_random_model):
    from tests.pipeline_helpers import DirectEncoder
    corpus = tmp_path / "corpus.txt"
    lines = write_lines_corpus(corpus, 3)
    base = [f"--input={corpus}", *module_args(tiny_random_model)]
    run_cli(*base, f"--output={tmp_path}/plain")
    run_cli(*base, f"--output={tmp_path}/prefixed", "--text_prefix=passage: ")
    direct = DirectEncoder(tiny_random_model.preprocessor, tiny_random_model.encoder)
    plain, prefixed = read_parquet_rows(f"{tmp_path}/plain"), read_parquet_rows(f"{tmp_path}/prefixed")
    for line in lines:
        row = prefixed[text_id(line)]
        assert row["n_tokens"] == direct.outputs("passage: " + line)[1] > plain[text_id(line)]["n_tokens"]
        assert np.abs(row["embedding"] - direct.embed("passage: " + line)).max() < 1e-5
    fingerprints = {pq.read_schema(shard_files(f"{tmp_path}/{name}", "parquet")[0])
                    .metadata[b"beam_embed.fingerprint"] for name in ("plain", "prefixed")}
    assert len(fingerprints) == 2


def test_bad_compact_options_are_refused(tmp_path, tiny_random_model, capsys):
    corpus = tmp_path / "corpus.txt"
    write_lines_corpus(corpus, 3)
    base = [f"--input={corpus}", f"--output={tmp_path}/emb", *module_args(tiny_random_model)]
    fails_with(capsys, [*base, "--truncate_dim=33"], "--truncate_dim 33", "32 dimensions")
    fails_with(capsys, [*base, "--truncate_dim=0"], "--truncate_dim 0")
    fails_with(capsys, [*base, "--calibration=x.json"], "--calibration applies to")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "beam_embed.calibration/1", "min": [0], "max": [1]}')
    fails_with(capsys, [*base, "--embedding_dtype=int8", f"--calibration={bad}"],
               "--calibration", "incomplete or malformed")
    fails_with(capsys, [*base, "--embedding_dtype=int8", f"--calibration={tmp_path}/none.json"],
               "--calibration", "cannot be read")
    fails_with(capsys, [*base, "--text_pair_prefix=x"], "--text_pair_prefix needs --text_pair_field")
    assert not shard_files(f"{tmp_path}/emb", "parquet")


def _calibration_of(prefix: str) -> tuple[dict, Calibration]:
    [path, *_] = shard_files(prefix, "parquet")
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}
    with open(os.path.join(os.path.dirname(path), meta["beam_embed.calibration"]), encoding="utf-8") as f:
        return meta, Calibration.from_json(f.read())


def _int8_rows(prefix: str) -> dict[str, np.ndarray]:
    files = shard_files(prefix, "parquet")
    assert pq.read_schema(files[0]).field("embedding").type == pa.list_(pa.int8(), 20)
    return {r["id"]: np.array(r["embedding"], np.int8)
            for f in files for r in pq.read_table(f).to_pylist()}


def test_int8_uses_one_calibration_over_the_corpus(tmp_path, tiny_random_model):
    """A float32 run and an int8 run of the same corpus: the calibration's ranges are the
    per-dimension min/max over every (truncated, re-normalized) vector, and each int8
    row is sentence-transformers' formula with those ranges; chunk mode included."""
    corpus = tmp_path / "corpus.txt"
    lines = write_lines_corpus(corpus, 40)
    common = [f"--input={corpus}", *module_args(tiny_random_model), "--truncate_dim=20",
              "--normalize", "--long_text=chunk", "--max_seq_length=16"]
    run_cli(*common, f"--output={tmp_path}/float")
    summary = run_cli(*common, f"--output={tmp_path}/int8", "--embedding_dtype=int8")
    assert summary["embedded"] == 40
    floats = read_parquet_rows(f"{tmp_path}/float")
    assert len(floats[text_id(lines[0])]["embedding"]) == 20
    assert max(r["n_chunks"] for r in floats.values()) > 1  # chunk mode is exercised
    matrix = np.stack([floats[k]["embedding"] for k in sorted(floats)])
    meta, calibration = _calibration_of(f"{tmp_path}/int8")
    assert calibration.method == "corpus" and calibration.documents == 40
    assert np.allclose(calibration.ranges, [matrix.min(0), matrix.max(0)], atol=1e-6)
    assert meta["beam_embed.calibration_digest"] == calibration.digest
    assert meta["beam_embed.embedding_dtype"] == "int8"
    int8 = _int8_rows(f"{tmp_path}/int8")
    want = quantize.quantize(matrix, "int8", calibration.ranges)
    ours = np.stack([int8[k] for k in sorted(floats)])
    assert (ours != want).mean() < 0.01  # float runs differ from each other by ~1e-6 only
    assert not np.array_equal(ours, quantize.quantize(matrix[:1], "int8", calibration.ranges
                                                      ).repeat(len(ours), 0))


def test_int8_is_bit_identical_with_two_workers(tmp_path, tiny_random_model):
    corpus = tmp_path / "corpus.txt"
    write_lines_corpus(corpus, 60)
    common = [f"--input={corpus}", *module_args(tiny_random_model), "--truncate_dim=20",
              "--embedding_dtype=int8", "--calibration_sample=25"]
    run_cli(*common, f"--output={tmp_path}/one")
    (_, one) = _calibration_of(f"{tmp_path}/one")
    assert one.method == "sample" and one.documents == 25
    # The one run's ranges, so that the slow multi-process runner runs one pipeline,
    # not two (the calibration pipeline's min/max of bitwise-equal vectors is exact).
    run_cli(*common, f"--output={tmp_path}/two", "--runner=DirectRunner",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2",
            f"--calibration={tmp_path}/one-calibration.json")
    (_, two) = _calibration_of(f"{tmp_path}/two")
    assert one == two
    a, b = _int8_rows(f"{tmp_path}/one"), _int8_rows(f"{tmp_path}/two")
    assert set(a) == set(b) and len(a) == 60
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_day_two_reuses_day_one_calibration(tmp_path, tiny_random_model, capsys):
    lines = write_lines_corpus(tmp_path / "all.txt", 50)
    day1, day2 = tmp_path / "day1.txt", tmp_path / "day2.txt"
    day1.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    day2.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    common = [*module_args(tiny_random_model), "--truncate_dim=20", "--embedding_dtype=int8",
              f"--skip_existing={out}/*/emb-*.parquet"]
    run_cli(f"--input={day1}", f"--output={out}/d1/emb", *common)
    second = run_cli(f"--input={day2}", f"--output={out}/d2/emb", *common)
    assert second["skipped_existing"] == 40 and second["embedded"] == 10
    (m1, c1), (m2, c2) = _calibration_of(f"{out}/d1/emb"), _calibration_of(f"{out}/d2/emb")
    assert c1 == c2 and m1["beam_embed.fingerprint"] == m2["beam_embed.fingerprint"]
    # Ranges from another corpus: refused, naming the option, and nothing is written.
    other = tmp_path / "other.txt"
    write_lines_corpus(other, 30, seed=5)
    run_cli(f"--input={other}", f"--output={tmp_path}/other/emb", *module_args(tiny_random_model),
            "--truncate_dim=20", "--embedding_dtype=int8")
    fails_with(capsys, [f"--input={day2}", f"--output={out}/d3/emb", *common,
                        f"--calibration={tmp_path}/other/emb-calibration.json"],
               "--calibration", "is not the calibration of the --skip_existing outputs")
    assert not os.path.exists(f"{out}/d3")
    # The same file, passed explicitly, is accepted.
    third = run_cli(f"--input={day2}", f"--output={out}/d3/emb", *common,
                    f"--calibration={out}/d1/emb-calibration.json")
    assert third["skipped_existing"] == 50


def test_int8_parquet_takes_about_a_byte_per_dimension(tmp_path):
    """Parquet stores int8 as INT32: without dictionary encoding of the embedding's
    values a 384-dim int8 row took 802 bytes, with it 390."""
    from transforms.sinks.parquet import _ParquetTableSink
    vectors, ranges = _hostile_vectors(dim=384, n=2048)
    stored = quantize.quantize(vectors, "int8", ranges)
    schema = embedding_schema(384, dtype="int8")
    rows = [{"id": str(i), "embedding": v, "n_tokens": 3, "truncated": False}
            for i, v in enumerate(stored)]
    sink = _ParquetTableSink(str(tmp_path / "x"), schema, 1)
    opened = sink.open(str(tmp_path / "t.parquet"))
    sink.write_record(opened, _rows_to_table(rows, schema, 384, "int8"))
    sink.close(opened)
    assert os.path.getsize(tmp_path / "t.parquet") / len(rows) < 384 * 1.1
    back = pq.read_table(tmp_path / "t.parquet").column("embedding").to_pylist()
    assert np.array_equal(np.array(back, np.int8), stored)


def test_calibration_file_round_trips_and_refuses_edits():
    as_float32 = lambda values: tuple(float(v) for v in np.float32(values))  # noqa: E731
    calibration = Calibration(as_float32([-0.1, 0.0, 1e-8]), as_float32([0.3, 0.0, 0.7]), "abc", 5,
                              "corpus", 10000, 0)
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration and np.array_equal(again.ranges, calibration.ranges)
    data = json.loads(calibration.to_json())
    data["max"][0] = 0.31
    with pytest.raises(ValueError, match="was edited"):
        Calibration.from_json(json.dumps(data))
    data = json.loads(calibration.to_json())
    data["min"][1] = 0.5  # above its max
    with pytest.raises(ValueError, match="min above its max"):
        Calibration.from_json(json.dumps(data))
    # Another embedding, same ranges: another digest (so another fingerprint).
    import dataclasses
    assert dataclasses.replace(calibration, embedding="xyz").digest != calibration.digest


@pytest.mark.skipif(not onednn_enabled(),
                    reason="the 1,024-token rule is oneDNN's (Eigen's kernels vary by row)")
def test_a_filled_partial_batch_gives_a_full_batchs_bits():
    """Quantized runs top partial batches up (transforms/batching.py: fill_to_shape),
    so a piece's vector has the same bits whether its bundle left it in a partial
    batch or in a full one; on MiniLM with oneDNN a batch under 1,024 padded tokens
    gave other bits in every row (the tiny test model does not show it)."""
    import random

    from models.default_model import ensure_default_model
    from transforms.batching import FILLER_INDEX, BatchShape, fill_to_shape
    from transforms.encode import EmbeddingSpec, RuntimeOptions, text_encoder
    from transforms.records import Piece
    dirs = ensure_default_model()
    encoder = text_encoder(str(dirs.preprocessor), str(dirs.encoder), EmbeddingSpec(), RuntimeOptions(),
                           device="/CPU:0")
    shape = BatchShape()
    rng = random.Random(0)
    for n_tokens in (20, 64, 130):
        pieces = [Piece(f"d{i}", "s", (tuple(rng.randrange(1000, 30000) for _ in range(n_tokens - 2)),),
                        n_tokens, False, 0, 1, None, None) for i in range(256)]
        length = shape.padded_length(n_tokens)
        full = pieces[:shape.batch_size(length)]
        want = encoder.embed(full)
        for k in (1, 3, 7):
            filled = fill_to_shape(full[:k], shape)
            assert len(filled) * length >= 1024 and all(p.chunk_index == FILLER_INDEX for p in filled[k:])
            got = encoder.embed(filled)[:k]
            assert np.array_equal(got, want[:k]), (n_tokens, k, float(np.abs(got - want[:k]).max()))


def test_fillers_are_computed_but_not_counted(tmp_path, tiny_random_model):
    """A quantized run tops its partial batches up with copies of a piece
    (fill_to_shape): they are computed, but the summary's tokens are the rows' own
    and the progress tally counts the documents, not the copies."""
    from transforms.progress import PROGRESS
    corpus = tmp_path / "corpus.txt"
    write_lines_corpus(corpus, 60)
    calibration = [f"--input={corpus}", *module_args(tiny_random_model), "--embedding_dtype=int8"]
    run_cli(*calibration, f"--output={tmp_path}/first")  # computes the calibration first
    summary = run_cli(*calibration, f"--output={tmp_path}/emb",
                      f"--calibration={tmp_path}/first-calibration.json")
    rows = read_parquet_rows(f"{tmp_path}/emb")
    assert summary["embedded"] == len(rows) == 60
    assert summary["tokens"] == sum(int(r["n_tokens"]) for r in rows.values())
    assert PROGRESS.figures().docs == 60  # this run's tally (each run resets it)
    assert summary["padding_ratio"] < 0.5  # the fillers were computed
