"""The sink contract: what every embedding sink receives, reports and promises.

A sink is one module in this package holding a ``Sink`` subclass, registered in
``transforms/sinks/__init__.py``. What it receives:

- **rows**: dicts ``{"id": str, "embedding": float32 array [dim], "n_tokens": int,
  "truncated": bool}`` plus the optional columns the run keeps (``n_chunks``,
  ``text``, ``text_pair``; ``SinkRows.columns``). Ids are unique within a run.
- **provenance** (``SinkRows.metadata``): the run's string key/values (fingerprint,
  encoder, preprocessor, pooling, layer, normalize, dim, max_seq_length, version).
  File sinks keep it in the file's metadata; table sinks keep the fingerprint in
  a column per row (``--skip_existing`` compares it row by row) and the rest as the
  table's metadata.
- **run**: the run's identity, its ``--output`` prefix. Table sinks tag each row
  with it; re-running the same command replaces that run's rows.

What it promises:

- ``check()`` runs in the launcher before the model loads and raises
  ``DestinationError`` naming what is wrong (unreachable host, missing
  permission, an existing table whose embedding size differs). File sinks are
  checked by pipeline/outputs.py and config.py (prefix safety applies to files
  only), so their ``check`` does nothing.
- ``prepare()`` runs in the launcher just before the pipeline starts, once the
  run holds its prefix locks: it clears what a killed attempt of this run left
  (file sinks: pipeline/outputs.py clears their shards).
- ``write()`` is the PTransform that writes the rows. File sinks write shards
  renamed into place at the end (Beam's FileBasedSink); table sinks load into a
  staging area and swap it in, in one transaction, at the end, so a killed run
  changes nothing in the table and a re-run replaces its rows. After any
  sequence of runs, kills and re-runs, each id is in the table once.
- The summary: a table sink counts the rows of this run the table holds once the
  swap is committed (``counters.ROWS_WRITTEN``, ``table_rows`` in the summary),
  which equals ``embedded`` for a complete run. A run whose write fails (retries
  exhausted) fails: no summary is written.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterable, Mapping

import apache_beam as beam
import numpy as np

from transforms import quantize

# Row keys a caller may add to the required id / embedding / n_tokens / truncated.
OPTIONAL_COLUMNS = ("n_chunks", "text", "text_pair")
SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"
FINGERPRINT_KEY = "beam_embed.fingerprint"


class DestinationError(ValueError):
    """A destination that cannot take this run's rows; the message says why."""


@dataclasses.dataclass(frozen=True)
class SinkRows:
    """What a sink is told about the rows it receives."""
    dim: int
    columns: frozenset = frozenset()
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    run: str = ""
    dtype: str = "float32"  # --embedding_dtype: how the vectors are stored (transforms/quantize.py)

    def __post_init__(self):
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")
        object.__setattr__(self, "columns", check_columns(self.columns))
        object.__setattr__(self, "metadata", dict(self.metadata or {}))

    @property
    def fingerprint(self) -> str:
        return self.metadata.get(FINGERPRINT_KEY, "")


class Sink:
    """One destination for embedding rows. Subclasses set ``name`` and either
    ``extensions`` (file sinks: the shard extensions of ``destination``, a prefix)
    or ``schemes`` (table sinks: the URL schemes of ``destination``)."""
    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, destination: str, rows: SinkRows, **options):
        """``options``: the run's table options (config.table_options); each sink takes
        the ones it knows."""
        self.destination = destination
        self.rows = rows

    @property
    def is_file_sink(self) -> bool:
        return bool(self.extensions)

    def describe(self) -> str:
        """The destination as it may appear in logs and messages (no secrets)."""
        return self.destination

    def check(self) -> None:
        """Before the run: raise DestinationError if the rows cannot go there."""

    def prepare(self) -> None:
        """Just before the pipeline starts: clear what a killed attempt left."""

    def write(self) -> beam.PTransform:
        raise NotImplementedError

    # Table sinks only: a table named by --skip_existing.
    @classmethod
    def check_evidence(cls, url: str, option: str) -> None:
        """Before the run: raise DestinationError if the table cannot be read."""
        raise NotImplementedError

    @classmethod
    def done_ids(cls, url: str, fingerprint: str, own_run: str, **options) -> beam.PTransform:
        """PBegin -> the ids the table holds with ``fingerprint``, except ``own_run``'s."""
        raise NotImplementedError


def check_columns(columns: Iterable[str]) -> frozenset:
    columns = frozenset(columns)
    unknown = columns - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown output columns {sorted(unknown)}; optional columns are "
            f"{', '.join(OPTIONAL_COLUMNS)}")
    return columns


def embedding_matrix(rows: list[dict], dim: int, dtype: str = "float32") -> np.ndarray:
    """The rows' embeddings as one matrix of the stored dtype (binary dtypes: dim / 8
    bytes a row); a row of another size fails the pipeline, as it means the model and
    the declared dimension disagree."""
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
