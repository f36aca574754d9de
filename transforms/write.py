"""Writing embeddings (through the sink registry, transforms/sinks/) and dead letters.

File sinks go through Beam's file sinks, which write each bundle to a temporary
file under ``<output dir>/beam-temp-*`` and only rename the files to their final
``PREFIX-SSSSS-of-NNNNN.<ext>`` names once every bundle has succeeded: a reader
never sees a half-written output, and a failed run leaves no final files.

Empty input: each file writer still produces exactly one valid, empty shard
(``PREFIX-00000-of-00001.<ext>``): a Parquet file with the full schema and
metadata and no rows, an empty TFRecord file, an empty JSONL file. Downstream
globs and readers therefore always find the output, and never crash on it.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import apache_beam as beam

from transforms.records import DeadLetter
from transforms.sinks import FILE_FORMATS, Sink, SinkRows, file_sink_class
from transforms.sinks.base import OPTIONAL_COLUMNS, SHARD_NAME_TEMPLATE  # noqa: F401
from transforms.sinks.parquet import DEFAULT_PARQUET_BATCH_SIZE, embedding_schema  # noqa: F401
from transforms.sinks.tfrecord import tfrecord_feature_spec  # noqa: F401



class WriteEmbeddings(beam.PTransform):
    """Writes embedding rows to one file sink, or to each of ``sinks``.

    Input: dicts ``{"id": str, "embedding": float32 array [dim], "n_tokens": int,
    "truncated": bool}``, plus ``"n_chunks"`` (int), ``"text"`` and ``"text_pair"``
    (str or None) for the optional columns named in ``columns``.

    ``WriteEmbeddings(prefix, "parquet"|"tfrecord", dim=..., columns=..., metadata=...,
    num_shards=..., parquet_batch_size=...)`` writes files under ``prefix`` (see
    transforms/sinks/parquet.py and tfrecord.py); ``WriteEmbeddings(sinks=[...])``
    applies already built sinks (what the pipeline does). Returns the last sink's
    write result.
    """

    def __init__(self, output_prefix: Optional[str] = None, output_format: str = "parquet", *,
                 dim: int = 0, columns: Iterable[str] = (),
                 metadata: Optional[Mapping[str, str]] = None, num_shards: int = 0,
                 parquet_batch_size: int = DEFAULT_PARQUET_BATCH_SIZE,
                 sinks: Iterable[Sink] = (), dtype: str = "float32"):
        super().__init__()
        self._sinks = list(sinks)
        if output_prefix is not None:
            cls = file_sink_class(output_format)
            self._sinks.append(cls(output_prefix, SinkRows(dim, columns, metadata, dtype=dtype),
                                   num_shards=num_shards, batch_size=parquet_batch_size))
        if not self._sinks:
            raise ValueError("WriteEmbeddings needs an output prefix or sinks")

    def expand(self, rows):
        result = None
        for sink in self._sinks:
            result = rows | f"Write{sink.name.capitalize()}" >> sink.write()
        return result


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
