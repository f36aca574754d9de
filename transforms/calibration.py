"""int8/uint8 calibration: per-dimension ranges computed once per corpus, and kept.

sentence-transformers quantizes int8 with the minimum and maximum of each dimension
over "calibration embeddings", and warns that ranges taken from the batch at hand
are unstable. Handing ``precision="int8"`` to a Beam model handler would calibrate
every batch on its own, so two workers would put the same vector in different
buckets. Here the ranges are computed once per run, before any row is quantized,
from a seeded sample of the corpus (``--calibration_sample N`` documents, default
10,000; the whole corpus when it has fewer, or with 0), and then reach every worker
as one side input. They are written next to the output, ``OUTPUT-calibration.json``,
and the Parquet metadata names that file and its digest, so readers can dequantize
and a later run can reuse them (``--calibration PATH``).

The sample is the N documents whose ``blake2b(seed, id)`` is smallest: the same
documents whatever the runner, worker count or input order (Beam's own
``Sample.FixedSizeGlobally`` is random per run).

The digest covers the ranges' float32 values and the embedding they belong to,
not the file's bytes: re-serializing the JSON does not change it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterable, Optional

import apache_beam as beam
import numpy as np

from transforms.constants import CALIBRATION_SAMPLE

from transforms.quantize import quantize, truncate

FORMAT = "beam_embed.calibration/1"
CALIBRATION_SUFFIX = "-calibration.json"
DEFAULT_SAMPLE = CALIBRATION_SAMPLE
DEFAULT_SEED = 0


def calibration_path(output_prefix: str) -> str:
    return output_prefix + CALIBRATION_SUFFIX


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-dimension ranges: ``minimum``/``maximum`` of the truncated (and, with
    --normalize, re-normalized) float32 vectors of ``documents`` documents."""
    minimum: tuple
    maximum: tuple
    embedding: str          # the fingerprint of the float vectors they describe
    documents: int          # how many documents the ranges were computed from
    method: str             # "sample" (seeded) or "corpus" (every document)
    sample_size: int
    seed: int

    @property
    def dim(self) -> int:
        return len(self.minimum)

    @property
    def ranges(self) -> np.ndarray:
        return np.array([self.minimum, self.maximum], np.float32)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.embedding.encode())
        h.update(self.ranges.astype("<f4").tobytes())
        return h.hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "digest": self.digest, "dim": self.dim,
                           "embedding": self.embedding, "method": self.method,
                           "documents": self.documents, "sample_size": self.sample_size,
                           "seed": self.seed, "min": list(self.minimum),
                           "max": list(self.maximum)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        """Raises ValueError saying what is wrong with the file."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"is not JSON ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"is not a beam-embed calibration (no \"format\": \"{FORMAT}\")")
        try:
            minimum = np.asarray(data["min"], np.float32)
            maximum = np.asarray(data["max"], np.float32)
            calibration = cls(tuple(float(v) for v in minimum), tuple(float(v) for v in maximum),
                              str(data["embedding"]), int(data["documents"]), str(data["method"]),
                              int(data["sample_size"]), int(data["seed"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"is incomplete or malformed ({type(e).__name__}: {e})") from None
        if minimum.ndim != 1 or minimum.shape != maximum.shape or not minimum.size:
            raise ValueError("has min and max lists of different or zero lengths")
        if not (np.isfinite(minimum).all() and np.isfinite(maximum).all()) or (minimum > maximum).any():
            raise ValueError("has ranges that are not finite, or a min above its max")
        if data.get("digest") not in (None, calibration.digest):
            raise ValueError(f"was edited: its digest says {data.get('digest')}, its ranges "
                             f"give {calibration.digest}")
        return calibration


def read_calibration(path: str) -> Calibration:
    """Raises ValueError (unreadable or malformed), naming nothing but the problem."""
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8")
    except Exception as e:  # noqa: BLE001 - local and gs:// raise different types
        raise ValueError(f"cannot be read ({type(e).__name__}: {e})"[:300]) from None
    return Calibration.from_json(text)


def write_calibration(path: str, calibration: Calibration) -> None:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.create(path) as f:
        f.write(calibration.to_json().encode("utf-8"))


# --- computing the ranges in a pipeline ----------------------------------------------

def _sample_key(doc, seed: int) -> bytes:
    return hashlib.blake2b(doc.id.encode("utf-8"), digest_size=16,
                           key=str(seed).encode()).digest()


class SeededSample(beam.PTransform):
    """Documents (unique ids) -> the ``size`` whose keyed hash of the id is smallest;
    all of them when size is 0."""

    def __init__(self, size: int, seed: int):
        super().__init__()
        self._size, self._seed = size, seed

    def expand(self, documents):
        if not self._size:
            return documents
        seed = self._seed
        return (documents
                | "Key" >> beam.Map(lambda d: (_sample_key(d, seed), d))
                | "Smallest" >> beam.combiners.Top.Of(self._size, key=lambda kd: kd[0], reverse=True)
                | "Unpack" >> beam.FlatMap(lambda top: [d for _, d in top]))


class _RangesFn(beam.CombineFn):
    """Rows -> [count, min vector, max vector] of their (truncated) embeddings."""

    def __init__(self, truncate_dim: Optional[int], normalize: bool):
        self._truncate_dim, self._normalize = truncate_dim, normalize

    def create_accumulator(self):
        return [0, None, None]

    def add_input(self, acc, row):
        vector = truncate(row["embedding"], self._truncate_dim, self._normalize)
        if acc[1] is None:
            return [acc[0] + 1, vector.copy(), vector.copy()]
        return [acc[0] + 1, np.minimum(acc[1], vector), np.maximum(acc[2], vector)]

    def merge_accumulators(self, accumulators):
        merged = [0, None, None]
        for count, low, high in accumulators:
            if low is None:
                continue
            merged = [merged[0] + count, low if merged[1] is None else np.minimum(merged[1], low),
                      high if merged[2] is None else np.maximum(merged[2], high)]
        return merged

    def extract_output(self, acc):
        return acc


class ComputeRanges(beam.PTransform):
    """Embedding rows -> one Calibration (min and max are exact whatever the order)."""

    def __init__(self, truncate_dim: Optional[int], normalize: bool, embedding: str,
                 sample_size: int, seed: int):
        super().__init__()
        self._fn = _RangesFn(truncate_dim, normalize)
        self._meta = (embedding, sample_size, seed)

    def expand(self, rows):
        embedding, sample_size, seed = self._meta

        def to_calibration(acc):
            count, low, high = acc
            if not count:
                return []
            method = "sample" if sample_size and count >= sample_size else "corpus"
            return [Calibration(tuple(float(v) for v in low), tuple(float(v) for v in high),
                                embedding, count, method, sample_size, seed)]
        return (rows | "MinMax" >> beam.CombineGlobally(self._fn).without_defaults()
                | "ToCalibration" >> beam.FlatMap(to_calibration))


# --- applying it ---------------------------------------------------------------------

class _CompactFn(beam.DoFn):
    def __init__(self, truncate_dim: Optional[int], normalize: bool, dtype: str):
        self._truncate_dim, self._normalize, self._dtype = truncate_dim, normalize, dtype

    def process(self, row: dict, calibration: Optional[Calibration] = None) -> Iterable[dict]:
        vector = truncate(row["embedding"], self._truncate_dim, self._normalize)
        ranges = calibration.ranges if calibration is not None else None
        yield {**row, "embedding": quantize(vector[None, :], self._dtype, ranges)[0]}


class CompactEmbeddings(beam.PTransform):
    """Rows with full float32 embeddings -> rows with the stored vector (truncated,
    converted to ``dtype``). ``calibration``: a one-element PCollection of
    Calibration for int8/uint8, given to every worker as a side input."""

    def __init__(self, truncate_dim: Optional[int], normalize: bool, dtype: str,
                 calibration=None):
        super().__init__()
        self._fn = _CompactFn(truncate_dim, normalize, dtype)
        self._calibration = calibration

    def expand(self, rows):
        if self._calibration is None:
            return rows | "Compact" >> beam.ParDo(self._fn)
        return rows | "Compact" >> beam.ParDo(
            self._fn, calibration=beam.pvalue.AsSingleton(self._calibration))
