"""Compact embeddings: Matryoshka truncation, and the stored dtypes with their encodings.

One float32 vector per document comes out of ``EmbedText``; ``compact`` makes the
stored vector from it: keep the first ``truncate_dim`` dimensions, L2-normalize again
if ``--normalize`` (as sentence-transformers' ``encode(truncate_dim=...,
normalize_embeddings=True)`` does), then convert to the ``--embedding_dtype``.

The conversions are sentence-transformers' ``quantize_embeddings`` (6.x), written
again here on numpy so that workers need no torch; reference/st_compact.py checks
them bit for bit against the real function:

  float32  as is
  float16  numpy's round-to-nearest cast
  int8     q = clip(floor((x - min) / step), 0, 255) - 128, step = (max - min) / 255
           (1 where max == min), computed in float32; min/max per dimension from a
           calibration (transforms/calibration.py)
  uint8    the same q without the -128
  binary   np.packbits(x > 0) - 128 as int8: 8 dimensions per byte, the first
           dimension in the byte's highest bit, the last byte zero-padded
  ubinary  np.packbits(x > 0) as uint8

How each dtype is stored:

  =========  ===============================  =========================================
  dtype      Parquet ``embedding`` column     TFRecord ``embedding`` feature
  =========  ===============================  =========================================
  float32    fixed_size_list<float>[D]         float_list, D values
  float16    fixed_size_list<halffloat>[D]     bytes_list, one value: D little-endian
                                               IEEE half floats (2D bytes)
  int8       fixed_size_list<int8>[D]          bytes_list, one value: D bytes (two's
                                               complement)
  uint8      fixed_size_list<uint8>[D]         bytes_list, one value: D bytes
  binary     fixed_size_binary[ceil(D/8)]      bytes_list, one value: ceil(D/8) bytes
  ubinary    fixed_size_binary[ceil(D/8)]      bytes_list, one value: ceil(D/8) bytes
  =========  ===============================  =========================================

binary and ubinary hold the same bits: a binary byte is the ubinary byte minus 128
(its top bit flipped), read as int8. Bytes are used in TFRecord because an int64_list
would spend 1-10 varint bytes per dimension; ``tf.io.decode_raw(feature, tf.int8)``
(or tf.uint8 / tf.float16) reads them back.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from transforms.constants import EMBEDDING_DTYPES
CALIBRATED_DTYPES = ("int8", "uint8")
_PACKED = ("binary", "ubinary")


def stored_width(dtype: str, dim: int) -> int:
    """Values per row: D, or the ceil(D/8) bytes of a packed bit vector."""
    return (dim + 7) // 8 if dtype in _PACKED else dim


def bytes_per_vector(dtype: str, dim: int) -> int:
    return stored_width(dtype, dim) * {"float32": 4, "float16": 2}.get(dtype, 1)


def truncate(vectors: np.ndarray, truncate_dim: Optional[int], normalize: bool) -> np.ndarray:
    """The first ``truncate_dim`` dimensions (all when None), re-normalized when the
    run normalizes: a prefix of a unit vector is not a unit vector."""
    vectors = np.asarray(vectors, np.float32)
    if truncate_dim is None or truncate_dim >= vectors.shape[-1]:
        return vectors
    vectors = vectors[..., :truncate_dim]
    if normalize:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors.astype(np.float32)


def quantize(vectors: np.ndarray, dtype: str, ranges: Optional[np.ndarray] = None) -> np.ndarray:
    """[n, D] float32 -> [n, stored_width] of the dtype. ``ranges``: [2, D] (min row,
    max row), required for int8 and uint8."""
    vectors = np.asarray(vectors, np.float32)
    if dtype == "float32":
        return vectors
    if dtype == "float16":
        return vectors.astype(np.float16)
    if dtype in CALIBRATED_DTYPES:
        if ranges is None:
            raise ValueError(f"{dtype} needs calibration ranges")
        ranges = np.asarray(ranges, np.float32)
        if ranges.shape != (2, vectors.shape[-1]):
            raise ValueError(f"calibration ranges have shape {ranges.shape}, the vectors "
                             f"{vectors.shape[-1]} dimensions")
        starts = ranges[0]
        steps = (ranges[1] - starts) / np.float32(255)
        steps = np.where(steps == 0, np.float32(1), steps)
        q = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        return q.astype(np.uint8) if dtype == "uint8" else (q - 128).astype(np.int8)
    if dtype in _PACKED:
        packed = np.packbits(vectors > 0, axis=-1)
        return (packed ^ np.uint8(0x80)).view(np.int8) if dtype == "binary" else packed
    raise ValueError(f"unknown embedding dtype {dtype!r}; expected one of {', '.join(EMBEDDING_DTYPES)}")


def dequantize(values: np.ndarray, dtype: str, ranges: Optional[np.ndarray] = None) -> np.ndarray:
    """Approximate float32 vectors back from int8/uint8 (the bucket's lower edge, as
    sentence-transformers' rescoring does), float16 or float32. For readers and
    the bench; binary vectors are compared by Hamming distance instead."""
    if dtype in ("float32", "float16"):
        return np.asarray(values, np.float32)
    if dtype in CALIBRATED_DTYPES:
        ranges = np.asarray(ranges, np.float32)
        steps = (ranges[1] - ranges[0]) / np.float32(255)
        steps = np.where(steps == 0, np.float32(1), steps)
        q = np.asarray(values, np.float32) + (128 if dtype == "int8" else 0)
        return ranges[0] + q * steps
    raise ValueError(f"{dtype} vectors are bits; compare them by Hamming distance")


# --- how a stored vector goes into each output format ------------------------------

def arrow_type(dtype: str, dim: int):
    import pyarrow as pa
    if dtype in _PACKED:
        return pa.binary(stored_width(dtype, dim))
    value = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(),
             "uint8": pa.uint8()}[dtype]
    return pa.list_(value, dim)


def arrow_array(matrix: np.ndarray, dtype: str, dim: int):
    """[n, stored_width] of the dtype -> the Parquet column's Arrow array."""
    import pyarrow as pa
    width = stored_width(dtype, dim)
    matrix = np.ascontiguousarray(matrix)
    if dtype in _PACKED:
        buffer = pa.py_buffer(matrix.view(np.uint8).tobytes())
        return pa.FixedSizeBinaryArray.from_buffers(arrow_type(dtype, dim), len(matrix), [None, buffer])
    values = pa.array(matrix.reshape(-1), type=arrow_type(dtype, dim).value_type)
    return pa.FixedSizeListArray.from_arrays(values, width)


def parquet_dictionary_paths(schema) -> list[str]:
    """Column paths of an int8/uint8 embedding, to dictionary-encode in Parquet.

    Parquet has no 8-bit physical type: int8 is stored as INT32, so a plain 384-dim
    int8 column took 802 bytes a row (Snappy), not 384. With only 256 distinct values,
    dictionary encoding stores 8-bit indices: 386 bytes a row. (Float columns are
    the opposite case: see _ParquetTableSink in transforms/write.py.)"""
    import pyarrow as pa
    if "embedding" not in schema.names:
        return []
    kind = schema.field("embedding").type
    if pa.types.is_fixed_size_list(kind) and kind.value_type in (pa.int8(), pa.uint8()):
        return ["embedding.list.item"]  # the non-compliant nested names the sink writes
    return []


def numpy_dtype(dtype: str):
    return {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
            "binary": np.int8, "ubinary": np.uint8}[dtype]


def tfrecord_feature(vector: np.ndarray, dtype: str, feature_pb2):
    """One stored vector -> the ``embedding`` tf.train.Feature (see the table above)."""
    if dtype == "float32":
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=vector.tolist()))
    data = np.ascontiguousarray(vector, numpy_dtype(dtype)).astype(
        np.dtype(numpy_dtype(dtype)).newbyteorder("<"), copy=False).tobytes()
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[data]))


def tfrecord_spec(dtype: str, dim: int):
    """The parse spec of the ``embedding`` feature."""
    import tensorflow as tf
    if dtype == "float32":
        return tf.io.FixedLenFeature([dim], tf.float32)
    return tf.io.FixedLenFeature([], tf.string)
