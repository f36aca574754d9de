"""TFRecord shards: ``PREFIX-SSSSS-of-NNNNN.tfrecord``, one ``tf.train.Example`` a row."""
from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from transforms import quantize
from transforms.sinks.base import SHARD_NAME_TEMPLATE, Sink, SinkRows, check_columns, embedding_matrix


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

    columns = check_columns(columns)
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


class TFRecordSink(Sink):
    """``PREFIX-SSSSS-of-NNNNN.tfrecord`` (see ``tfrecord_feature_spec``). TFRecord
    files have no place for the provenance: it is in the run's summary only."""
    name = "tfrecord"
    extensions = ("tfrecord",)

    def __init__(self, destination: str, rows: SinkRows, num_shards: int = 0, **_):
        super().__init__(destination, rows)
        self.num_shards = num_shards

    def write(self) -> beam.PTransform:
        return WriteTFRecord(self)


class WriteTFRecord(beam.PTransform):
    def __init__(self, sink: TFRecordSink):
        super().__init__()
        self._sink = sink

    def expand(self, rows):
        sink = self._sink
        return (
            rows
            | "ToExample" >> beam.ParDo(_ToExampleFn(sink.rows.dim, sink.rows.columns,
                                                  sink.rows.dtype))
            .with_output_types(bytes)
            | "WriteTFRecord" >> beam.io.WriteToTFRecord(
                sink.destination, file_name_suffix=".tfrecord", num_shards=sink.num_shards,
                shard_name_template=SHARD_NAME_TEMPLATE))


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
        embedding = embedding_matrix([row], self._dim, self._dtype)[0]
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
