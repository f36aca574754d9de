"""Writing embeddings (Parquet or TFRecord) and dead letters (JSON lines).

All writers go through Beam's file sinks, which write each bundle to a temporary
file under ``<output dir>/beam-temp-*`` and only rename the files to their final
``PREFIX-SSSSS-of-NNNNN.<ext>`` names once every bundle has succeeded: a reader
never sees a half-written output, and a failed run leaves no final files.

Empty input: each writer still produces exactly one valid, empty shard
(``PREFIX-00000-of-00001.<ext>``): a Parquet file with the full schema and
metadata and no rows, an empty TFRecord file, an empty JSONL file. Downstream
globs and readers therefore always find the output, and never crash on it.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes

from transforms import quantize
from transforms.records import DeadLetter

OUTPUT_FORMATS = ("parquet", "tfrecord")
# Row keys a caller may add to the required id / embedding / n_tokens / truncated.
OPTIONAL_COLUMNS = ("n_chunks", "text", "text_pair")
SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"

# Rows per pyarrow Table handed to the Parquet writer; each becomes a row group.
# Fixed rather than adaptive: adaptive batching starts at one row, and one-row row
# groups make Parquet files slow to read.
DEFAULT_PARQUET_BATCH_SIZE = 2048
# The only Parquet columns worth dictionary-encoding: their values repeat.
DICTIONARY_COLUMNS = ("n_tokens", "truncated", "n_chunks")


def embedding_schema(dim: int, columns: Iterable[str] = (),
                     metadata: Optional[Mapping[str, str]] = None,
                     dtype: str = "float32") -> pa.Schema:
    """The Arrow schema of the Parquet output.

    ``id`` string, ``embedding`` fixed_size_list<float32>[dim] (other ``dtype``\\ s:
    see transforms/quantize.py), ``n_tokens`` int32,
    ``truncated`` bool, then the optional ``n_chunks`` int32, ``text`` string,
    ``text_pair`` string (null when a document has no pair) that are in
    ``columns``. ``metadata`` becomes the schema's key/value metadata (UTF-8).
    """
    columns = _check_columns(columns)
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("embedding", quantize.arrow_type(dtype, dim), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
    ]
    optional = {
        "n_chunks": pa.field("n_chunks", pa.int32(), nullable=False),
        "text": pa.field("text", pa.string(), nullable=False),
        "text_pair": pa.field("text_pair", pa.string(), nullable=True),
    }
    fields += [optional[name] for name in OPTIONAL_COLUMNS if name in columns]
    schema = pa.schema(fields)
    if metadata:
        schema = schema.with_metadata(
            {str(k).encode("utf-8"): str(v).encode("utf-8")
             for k, v in metadata.items()})
    return schema


def tfrecord_feature_spec(dim: int, columns: Iterable[str] = (), dtype: str = "float32") -> dict:
    """The feature spec to parse the TFRecord output's ``tf.train.Example``\\ s.

    Use it as ``tf.io.parse_single_example(serialized, tfrecord_feature_spec(dim))``
    (or ``tf.io.parse_example`` on a batch). It maps ``id`` to a tf.string scalar,
    ``embedding`` to a float32 vector of length ``dim``, ``n_tokens`` and
    ``truncated`` (0 or 1) to int64 scalars, and, for those in ``columns``,
    ``n_chunks`` to an int64 scalar and ``text`` / ``text_pair`` to tf.string
    scalars (``text_pair`` is b"" for a document without a pair). Other ``dtype``\\ s
    store ``embedding`` as one bytes value (transforms/quantize.py).
    """
    import tensorflow as tf

    columns = _check_columns(columns)
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "embedding": quantize.tfrecord_spec(dtype, dim),
        "n_tokens": tf.io.FixedLenFeature([], tf.int64),
        "truncated": tf.io.FixedLenFeature([], tf.int64),
    }
    if "n_chunks" in columns:
        spec["n_chunks"] = tf.io.FixedLenFeature([], tf.int64)
    if "text" in columns:
        spec["text"] = tf.io.FixedLenFeature([], tf.string)
    if "text_pair" in columns:
        spec["text_pair"] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
    return spec


class WriteEmbeddings(beam.PTransform):
    """Writes embedding rows as Parquet or TFRecord shards.

    Input: dicts ``{"id": str, "embedding": float32 array [dim], "n_tokens": int,
    "truncated": bool}``, plus ``"n_chunks"`` (int), ``"text"`` and ``"text_pair"``
    (str or None) for the optional columns named in ``columns``.

    Args:
      output_prefix: path prefix of the files (local or ``gs://``).
      output_format: ``"parquet"`` writes ``PREFIX-SSSSS-of-NNNNN.parquet`` with
        the schema of ``embedding_schema`` (Snappy-compressed); ``"tfrecord"``
        writes ``PREFIX-SSSSS-of-NNNNN.tfrecord`` with one serialized
        ``tf.train.Example`` per row (see ``tfrecord_feature_spec``).
      dim: the embedding size; a row with another size fails the pipeline, as it
        means the model and the declared dimension disagree.
      columns: which of OPTIONAL_COLUMNS the rows carry and the output keeps.
      metadata: string key/values stored in the Parquet schema metadata (model
        name, pooling, ...). TFRecord files have no place for it: write it beside
        them if needed.
      num_shards: number of output files; 0 lets the runner decide.
      parquet_batch_size: rows per Parquet row group.

    Returns Beam's write result (the final file names, PCollection of str).
    """

    def __init__(self, output_prefix: str, output_format: str = "parquet", *,
                 dim: int, columns: Iterable[str] = (),
                 metadata: Optional[Mapping[str, str]] = None, num_shards: int = 0,
                 parquet_batch_size: int = DEFAULT_PARQUET_BATCH_SIZE, dtype: str = "float32"):
        super().__init__()
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"--output_format {output_format!r} is not supported; use one of "
                f"{', '.join(OUTPUT_FORMATS)}")
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._output_prefix = output_prefix
        self._output_format = output_format
        self._dim = dim
        self._columns = _check_columns(columns)
        self._metadata = dict(metadata or {})
        self._num_shards = num_shards
        self._parquet_batch_size = parquet_batch_size
        self._dtype = dtype

    def expand(self, rows):
        if self._output_format == "parquet":
            schema = embedding_schema(self._dim, self._columns, self._metadata, self._dtype)
            return (
                rows
                | "Batch" >> beam.BatchElements(
                    min_batch_size=self._parquet_batch_size,
                    max_batch_size=self._parquet_batch_size)
                | "ToArrow" >> beam.Map(_rows_to_table, schema, self._dim, self._dtype)
                | "WriteParquet" >> beam.io.Write(_ParquetTableSink(
                    self._output_prefix, schema, self._num_shards)))
        return (
            rows
            | "ToExample" >> beam.ParDo(_ToExampleFn(self._dim, self._columns, self._dtype))
            .with_output_types(bytes)
            | "WriteTFRecord" >> beam.io.WriteToTFRecord(
                self._output_prefix,
                file_name_suffix=".tfrecord",
                num_shards=self._num_shards,
                shard_name_template=SHARD_NAME_TEMPLATE))


class _ParquetTableSink(FileBasedSink):
    """Beam's WriteToParquetBatched sink (pyarrow Tables in, Snappy row groups out),
    with dictionary encoding only for DICTIONARY_COLUMNS.

    WriteToParquetBatched has no ``use_dictionary`` option, and pyarrow's default
    dictionary-encodes every column: the unique float embeddings then carry a
    dictionary page as large as themselves plus the indices. The demo's 358 MiniLM
    rows took 887 KB that way, 577 KB without (raw floats: 550 KB), and wrote 8x
    slower. Like WriteToParquetBatched, this is a FileBasedSink under ``beam.io.Write``:
    temporary files, then renames, one empty shard for empty input.
    """

    def __init__(self, file_path_prefix: str, schema: pa.Schema, num_shards: int):
        super().__init__(file_path_prefix, coder=None, file_name_suffix=".parquet",
                         num_shards=num_shards, shard_name_template=SHARD_NAME_TEMPLATE,
                         mime_type="application/x-parquet",
                         compression_type=CompressionTypes.UNCOMPRESSED)  # Parquet compresses pages
        self._schema = schema

    def open(self, temp_path):
        handle = super().open(temp_path)
        dictionary = [name for name in DICTIONARY_COLUMNS if name in self._schema.names]
        dictionary += quantize.parquet_dictionary_paths(self._schema)
        # Non-compliant nested names ("item"), as WriteToParquetBatched writes them.
        return handle, pq.ParquetWriter(handle, self._schema, compression="snappy",
                                        use_dictionary=dictionary, use_compliant_nested_type=False)

    def write_record(self, opened, table: pa.Table):
        opened[1].write_table(table)

    def close(self, opened):
        handle, writer = opened
        writer.close()
        super().close(handle)


class WriteDeadLetters(beam.PTransform):
    """Writes DeadLetters as JSON lines: ``PREFIX-SSSSS-of-NNNNN.jsonl``.

    One object per line with keys id, source, reason, detail, raw (see
    ``DeadLetter.to_json``). Returns Beam's write result (the final file names).
    """

    def __init__(self, output_prefix: str, num_shards: int = 0):
        super().__init__()
        self._output_prefix = output_prefix
        self._num_shards = num_shards

    def expand(self, dead_letters):
        return (
            dead_letters
            | "ToJson" >> beam.Map(DeadLetter.to_json).with_output_types(str)
            | "WriteJsonl" >> beam.io.WriteToText(
                self._output_prefix,
                file_name_suffix=".jsonl",
                num_shards=self._num_shards,
                shard_name_template=SHARD_NAME_TEMPLATE))


def _check_columns(columns: Iterable[str]) -> frozenset:
    columns = frozenset(columns)
    unknown = columns - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown output columns {sorted(unknown)}; optional columns are "
            f"{', '.join(OPTIONAL_COLUMNS)}")
    return columns


def _embedding_matrix(rows: list[dict], dim: int, dtype: str = "float32") -> np.ndarray:
    width = quantize.stored_width(dtype, dim)
    matrix = np.empty((len(rows), width), dtype=quantize.numpy_dtype(dtype))
    for i, row in enumerate(rows):
        vector = np.asarray(row["embedding"])
        if vector.shape != (width,):
            raise ValueError(
                f"embedding of {row['id']!r} has shape {vector.shape}, expected "
                f"({width},)")
        matrix[i] = vector
    return matrix


def _rows_to_table(rows: list[dict], schema: pa.Schema, dim: int,
                   dtype: str = "float32") -> pa.Table:
    embeddings = quantize.arrow_array(_embedding_matrix(rows, dim, dtype), dtype, dim)
    arrays = []
    for field in schema:
        if field.name == "embedding":
            arrays.append(embeddings)
        else:
            arrays.append(pa.array([row[field.name] for row in rows], type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class _ToExampleFn(beam.DoFn):
    """Row dict -> serialized tf.train.Example (TensorFlow imported on workers only
    when TFRecord output is asked for)."""

    def __init__(self, dim: int, columns: frozenset, dtype: str = "float32"):
        self._dim = dim
        self._columns = columns
        self._dtype = dtype

    def setup(self):
        from tensorflow.core.example import example_pb2, feature_pb2
        self._example_pb2 = example_pb2
        self._feature_pb2 = feature_pb2

    def process(self, row: dict):
        feature = self._feature_pb2.Feature
        bytes_list, int64_list = self._feature_pb2.BytesList, self._feature_pb2.Int64List
        embedding = _embedding_matrix([row], self._dim, self._dtype)[0]
        features = {
            "id": feature(bytes_list=bytes_list(value=[row["id"].encode("utf-8")])),
            "embedding": quantize.tfrecord_feature(embedding, self._dtype, self._feature_pb2),
            "n_tokens": feature(int64_list=int64_list(value=[int(row["n_tokens"])])),
            "truncated": feature(
                int64_list=int64_list(value=[int(bool(row["truncated"]))])),
        }
        if "n_chunks" in self._columns:
            features["n_chunks"] = feature(
                int64_list=int64_list(value=[int(row["n_chunks"])]))
        for name in ("text", "text_pair"):
            if name in self._columns:
                value = (row.get(name) or "").encode("utf-8")
                features[name] = feature(bytes_list=bytes_list(value=[value]))
        example = self._example_pb2.Example(
            features=self._feature_pb2.Features(feature=features))
        yield example.SerializeToString()
