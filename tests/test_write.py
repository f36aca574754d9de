"""WriteEmbeddings and WriteDeadLetters on FnApiRunner, read back by other tools."""
from __future__ import annotations

import json
import os

import apache_beam as beam
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.records import DeadLetter
from transforms.write import (WriteDeadLetters, WriteEmbeddings, embedding_schema,
                              tfrecord_feature_spec)

DIM = 8
METADATA = {"model": "all-MiniLM-L6-v2", "pooling": "mean", "dim": str(DIM)}


def make_rows(n, with_optional=True):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        row = {"id": f"doc-{i}", "embedding": rng.standard_normal(DIM, np.float32),
               "n_tokens": 10 + i, "truncated": i % 2 == 0}
        if with_optional:
            row.update(n_chunks=1 + i % 3, text=f"text {i} é",
                       text_pair=None if i % 4 else f"pair {i}")
        rows.append(row)
    return rows


def write(rows, out_dir, transform, element_type=dict):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (pipeline | beam.Create(rows, reshuffle=False).with_output_types(
            element_type) | transform)
    return sorted(os.listdir(out_dir))


def by_id(rows):
    return {row["id"]: row for row in rows}


def test_parquet_round_trip(tmp_path):
    rows = make_rows(50)
    columns = {"n_chunks", "text", "text_pair"}
    files = write(rows, tmp_path, WriteEmbeddings(
        str(tmp_path / "emb"), "parquet", dim=DIM, columns=columns, metadata=METADATA,
        num_shards=3))
    # Final names only: the sink's beam-temp-* directory is gone after finalize.
    assert files == [f"emb-0000{i}-of-00003.parquet" for i in range(3)]
    pattern = str(tmp_path / "emb-*.parquet")
    expected = by_id(rows)

    table = pa.concat_tables([pq.read_table(tmp_path / name) for name in files])
    assert table.schema.equals(embedding_schema(DIM, columns), check_metadata=False)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    for name in files:
        metadata = pq.read_schema(tmp_path / name).metadata
        assert {k.decode(): v.decode() for k, v in metadata.items()
                if not k.startswith(b"ARROW:")} == METADATA
    assert table.num_rows == 50
    for row in table.to_pylist():
        want = expected[row["id"]]
        np.testing.assert_array_equal(np.array(row["embedding"], np.float32),
                                      want["embedding"])
        for key in ("n_tokens", "truncated", "n_chunks", "text", "text_pair"):
            assert row[key] == want[key], key

    frame = pd.concat([pd.read_parquet(tmp_path / name) for name in files])
    assert len(frame) == 50 and frame["id"].is_unique
    first = frame.set_index("id").loc["doc-3"]
    np.testing.assert_array_equal(first["embedding"], expected["doc-3"]["embedding"])
    assert frame["n_tokens"].dtype == np.int32 and frame["truncated"].dtype == bool

    connection = duckdb.connect()
    count, length, type_name, nulls = connection.execute(
        "SELECT count(*), min(len(embedding)), any_value(typeof(embedding)), "
        f"count(*) FILTER (WHERE text_pair IS NULL) FROM read_parquet('{pattern}')"
    ).fetchone()
    assert (count, length, nulls) == (50, DIM, 37)
    # Parquet has no fixed-size list: pyarrow restores it from the stored Arrow
    # schema, DuckDB (2.0) reads a variable-length FLOAT[] of the same values.
    assert type_name in (f"FLOAT[{DIM}]", "FLOAT[]")
    value = connection.execute(
        f"SELECT embedding FROM read_parquet('{pattern}') WHERE id = 'doc-7'"
    ).fetchone()[0]
    np.testing.assert_allclose(value, expected["doc-7"]["embedding"])
    model = connection.execute(
        f"SELECT value FROM parquet_kv_metadata('{pattern}') WHERE key = 'model'"
    ).fetchall()
    assert {row[0] for row in model} == {b"all-MiniLM-L6-v2"}


def test_parquet_without_optional_columns_and_with_list_embeddings(tmp_path):
    rows = make_rows(5, with_optional=False)
    for row in rows:
        row["embedding"] = row["embedding"].astype(np.float64).tolist()
    files = write(rows, tmp_path, WriteEmbeddings(str(tmp_path / "e"), dim=DIM))
    assert files == ["e-00000-of-00001.parquet"]
    table = pq.read_table(tmp_path / files[0])
    assert table.column_names == ["id", "embedding", "n_tokens", "truncated"]


def test_parquet_embeddings_are_stored_plain_not_dictionary_encoded(tmp_path):
    """Embedding floats never repeat: a dictionary would be as large as the data. The
    file stays within 1.1x the raw float bytes (pyarrow's default gave 1.6x)."""
    dim, n = 384, 500
    rng = np.random.default_rng(1)
    rows = [{"id": f"doc-{i}", "embedding": rng.standard_normal(dim, np.float32),
             "n_tokens": 10 + i % 5, "truncated": False} for i in range(n)]
    [name] = write(rows, tmp_path, WriteEmbeddings(str(tmp_path / "emb"), dim=dim, num_shards=1))
    path = tmp_path / name
    columns = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {columns.column(i).path_in_schema: columns.column(i).encodings
                 for i in range(columns.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["embedding.list.item"], encodings
    assert "RLE_DICTIONARY" in encodings["n_tokens"]
    assert os.path.getsize(path) < 1.1 * n * dim * 4
    table = pq.read_table(path)
    assert np.array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)),
                          np.stack([r["embedding"] for r in rows]))


def test_tfrecord_round_trip(tmp_path):
    import tensorflow as tf

    rows = make_rows(20)
    columns = {"n_chunks", "text", "text_pair"}
    files = write(rows, tmp_path, WriteEmbeddings(
        str(tmp_path / "emb"), "tfrecord", dim=DIM, columns=columns, num_shards=2))
    assert files == ["emb-00000-of-00002.tfrecord", "emb-00001-of-00002.tfrecord"]
    expected = by_id(rows)
    spec = tfrecord_feature_spec(DIM, columns)
    dataset = tf.data.TFRecordDataset([str(tmp_path / name) for name in files]).map(
        lambda serialized: tf.io.parse_single_example(serialized, spec))
    seen = 0
    for example in dataset.as_numpy_iterator():
        want = expected[example["id"].decode()]
        np.testing.assert_array_equal(example["embedding"], want["embedding"])
        assert example["embedding"].dtype == np.float32
        assert example["n_tokens"] == want["n_tokens"]
        assert example["truncated"] == int(want["truncated"])
        assert example["n_chunks"] == want["n_chunks"]
        assert example["text"].decode() == want["text"]
        assert example["text_pair"].decode() == (want["text_pair"] or "")
        seen += 1
    assert seen == 20


def test_tfrecord_minimal_spec(tmp_path):
    import tensorflow as tf

    files = write(make_rows(3, with_optional=False), tmp_path,
                  WriteEmbeddings(str(tmp_path / "e"), "tfrecord", dim=DIM))
    assert set(tfrecord_feature_spec(DIM)) == {"id", "embedding", "n_tokens",
                                               "truncated"}
    batch = next(iter(tf.data.TFRecordDataset(str(tmp_path / files[0])).batch(3)))
    parsed = tf.io.parse_example(batch, tfrecord_feature_spec(DIM))
    assert parsed["embedding"].shape == (3, DIM)


def test_empty_input_gives_one_valid_empty_shard_per_writer(tmp_path):
    import tensorflow as tf

    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        rows = pipeline | "Rows" >> beam.Create([]).with_output_types(dict)
        _ = rows | "Parquet" >> WriteEmbeddings(
            str(tmp_path / "pq"), dim=DIM, columns={"text"}, metadata=METADATA)
        _ = rows | "TFRecord" >> WriteEmbeddings(str(tmp_path / "tf"), "tfrecord",
                                                 dim=DIM)
        _ = (pipeline | "DeadLetters" >> beam.Create([]).with_output_types(DeadLetter)
             | WriteDeadLetters(str(tmp_path / "dead")))
    assert sorted(os.listdir(tmp_path)) == [
        "dead-00000-of-00001.jsonl", "pq-00000-of-00001.parquet",
        "tf-00000-of-00001.tfrecord"]

    parquet = str(tmp_path / "pq-00000-of-00001.parquet")
    table = pq.read_table(parquet)
    assert table.num_rows == 0
    assert table.schema.equals(embedding_schema(DIM, {"text"}), check_metadata=False)
    assert table.schema.metadata[b"model"] == b"all-MiniLM-L6-v2"
    assert len(pd.read_parquet(parquet)) == 0
    assert duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{parquet}')").fetchone() == (0,)
    assert list(tf.data.TFRecordDataset(str(tmp_path / "tf-00000-of-00001.tfrecord"))) \
        == []
    assert (tmp_path / "dead-00000-of-00001.jsonl").read_bytes() == b""


def test_dead_letters_as_json_lines(tmp_path):
    dead_letters = [
        DeadLetter("invalid_utf8", "invalid UTF-8 byte 0xff", "c.txt:2", "bad \\xff"),
        DeadLetter("invalid_type", "field 'text' is null", "c.jsonl:4",
                   '{"id": "j4", "text": null}', "j4"),
        DeadLetter("empty_text", "line is empty", "caf\udce9.txt:1", ""),
    ]
    files = write(dead_letters, tmp_path, WriteDeadLetters(str(tmp_path / "dead")),
                  element_type=DeadLetter)
    assert files == ["dead-00000-of-00001.jsonl"]
    with open(tmp_path / files[0], encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert all(set(line) == {"id", "source", "reason", "detail", "raw"}
               for line in lines)
    by_reason = {line["reason"]: line for line in lines}
    assert by_reason["invalid_type"] == {
        "id": "j4", "source": "c.jsonl:4", "reason": "invalid_type",
        "detail": "field 'text' is null", "raw": '{"id": "j4", "text": null}'}
    assert by_reason["invalid_utf8"]["id"] is None
    # A file name that is not UTF-8 (Python decodes byte 0xe9 to "\udce9") does
    # not break the report: its byte is escaped.
    assert by_reason["empty_text"]["source"] == "caf\\xe9.txt:1"


def test_wrong_embedding_size_fails_the_pipeline(tmp_path):
    rows = make_rows(2, with_optional=False)
    rows[1]["embedding"] = np.zeros(DIM + 1, np.float32)
    with pytest.raises(Exception, match=r"embedding of 'doc-1' has shape \(9,\)"):
        write(rows, tmp_path, WriteEmbeddings(str(tmp_path / "e"), dim=DIM))


def test_invalid_options():
    with pytest.raises(ValueError, match="--output_format 'csv'"):
        WriteEmbeddings("out/e", "csv", dim=DIM)
    with pytest.raises(ValueError, match="unknown output columns"):
        WriteEmbeddings("out/e", dim=DIM, columns={"title"})
    with pytest.raises(ValueError, match="dim must be positive"):
        WriteEmbeddings("out/e", dim=0)
