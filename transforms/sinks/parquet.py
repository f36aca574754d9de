"""Parquet shards: ``PREFIX-SSSSS-of-NNNNN.parquet``, provenance in the schema metadata."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes

from transforms import quantize
from transforms.sinks.base import (OPTIONAL_COLUMNS, SHARD_NAME_TEMPLATE, Sink, SinkRows,
                                   check_columns, embedding_matrix)

# Rows per pyarrow Table handed to the Parquet writer; each becomes a row group.
# Fixed rather than adaptive: adaptive batching starts at one row, and one-row row
# groups make Parquet files slow to read.
DEFAULT_PARQUET_BATCH_SIZE = 2048
# The only Parquet columns worth dictionary-encoding: their values repeat.
DICTIONARY_COLUMNS = ("n_tokens", "truncated", "n_chunks")


def embedding_schema(dim: int, columns: Iterable[str] = (),
                     metadata: Optional[Mapping[str, str]] = None,
                     dtype: str = "float32") -> pa.Schema:
    """The Arrow schema of the Parquet output (the one place it is built).

    ``id`` string, ``embedding`` fixed_size_list<float32>[dim] (other ``dtype``\\ s:
    see transforms/quantize.py), ``n_tokens`` int32,
    ``truncated`` bool, then the optional ``n_chunks`` int32, ``text`` string,
    ``text_pair`` string (null when a document has no pair) that are in
    ``columns``. ``metadata`` becomes the schema's key/value metadata (UTF-8).
    """
    columns = check_columns(columns)
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


def rows_to_table(rows: list[dict], schema: pa.Schema, dim: int,
                  dtype: str = "float32") -> pa.Table:
    embeddings = quantize.arrow_array(embedding_matrix(rows, dim, dtype), dtype, dim)
    arrays = []
    for field in schema:
        if field.name == "embedding":
            arrays.append(embeddings)
        else:
            arrays.append(pa.array([row[field.name] for row in rows], type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class ParquetSink(Sink):
    """``PREFIX-SSSSS-of-NNNNN.parquet`` with the schema of ``embedding_schema``
    (Snappy-compressed row groups of ``batch_size`` rows)."""
    name = "parquet"
    extensions = ("parquet",)

    def __init__(self, destination: str, rows: SinkRows, num_shards: int = 0,
                 batch_size: int = DEFAULT_PARQUET_BATCH_SIZE):
        super().__init__(destination, rows)
        self.num_shards = num_shards
        self.batch_size = batch_size

    def write(self) -> beam.PTransform:
        return WriteParquet(self)


class WriteParquet(beam.PTransform):
    def __init__(self, sink: ParquetSink):
        super().__init__()
        self._sink = sink

    def expand(self, rows):
        sink = self._sink
        schema = embedding_schema(sink.rows.dim, sink.rows.columns, sink.rows.metadata,
                                  sink.rows.dtype)
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=sink.batch_size,
                                            max_batch_size=sink.batch_size)
            | "ToArrow" >> beam.Map(rows_to_table, schema, sink.rows.dim, sink.rows.dtype)
            | "WriteParquet" >> beam.io.Write(_ParquetTableSink(
                sink.destination, schema, sink.num_shards)))


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
