"""The launcher's side of compact embeddings: checking --truncate_dim, --embedding_dtype,
--calibration and the text prefixes, finding the calibration a run must use, and
computing one when there is none.

Which calibration an int8/uint8 run uses, in order:
  1. ``--calibration PATH``: that file. With ``--skip_existing`` it must be the one
     the earlier quantized outputs were written with, or the run is refused: their
     vectors and this run's would be in different buckets.
  2. With ``--skip_existing`` and earlier quantized outputs of this embedding (the
     Parquet metadata names their calibration file and digest): that calibration.
     Outputs with different calibrations refuse the run (pass --calibration).
  3. Otherwise it is computed by a calibration pipeline that runs before the main one
     (``compute_calibration``): same input, a seeded sample of --calibration_sample
     documents embedded and truncated as the main run will, their per-dimension
     min/max combined. A pipeline of its own because every row's quantization depends
     on ranges over all of them, and the output's metadata and fingerprint carry the
     ranges' digest, which must be known before the main pipeline is built.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from typing import Optional

from transforms.calibration import (DEFAULT_SAMPLE, DEFAULT_SEED, Calibration, calibration_path,
                                    read_calibration, write_calibration)
from transforms.quantize import CALIBRATED_DTYPES, EMBEDDING_DTYPES, bytes_per_vector, stored_width

CALIBRATION_KEY = "beam_embed.calibration"
CALIBRATION_DIGEST_KEY = "beam_embed.calibration_digest"
DTYPE_KEY = "beam_embed.embedding_dtype"


@dataclasses.dataclass(frozen=True)
class CompactSpec:
    """What the stored vector is, beyond the model: recorded in metadata and fingerprint."""
    truncate_dim: Optional[int] = None
    dtype: str = "float32"
    text_prefix: str = ""
    text_pair_prefix: str = ""
    calibration_sample: int = DEFAULT_SAMPLE
    calibration_seed: int = DEFAULT_SEED

    @property
    def calibrated(self) -> bool:
        return self.dtype in CALIBRATED_DTYPES

    @property
    def changes_vectors(self) -> bool:
        return self.truncate_dim is not None or self.dtype != "float32"

    def dim(self, model_dim: int) -> int:
        return self.truncate_dim or model_dim


def check_compact_options(o, model_dim: int, normalize: bool) -> CompactSpec:
    """Raises OptionError-compatible ValueError naming the option."""
    if o.embedding_dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"--embedding_dtype {o.embedding_dtype!r} is not supported; use one of "
                         f"{', '.join(EMBEDDING_DTYPES)}")
    if o.truncate_dim is not None and not 1 <= o.truncate_dim <= model_dim:
        raise ValueError(f"--truncate_dim {o.truncate_dim} is out of range: the encoder's "
                         f"embeddings have {model_dim} dimensions (use 1..{model_dim})")
    if o.calibration and o.embedding_dtype not in CALIBRATED_DTYPES:
        raise ValueError(f"--calibration applies to --embedding_dtype int8 or uint8, not "
                         f"{o.embedding_dtype}")
    if o.calibration_sample < 0:
        raise ValueError(f"--calibration_sample {o.calibration_sample} must be 0 (the whole "
                         "corpus) or a positive number of documents")
    for name in ("text_prefix", "text_pair_prefix"):
        value = getattr(o, name) or ""
        if "\x00" in value:
            raise ValueError(f"--{name} holds a NUL character")
    if o.text_pair_prefix and not o.text_pair_field:
        raise ValueError("--text_pair_prefix needs --text_pair_field")
    truncate_dim = o.truncate_dim if o.truncate_dim != model_dim else None
    return CompactSpec(truncate_dim, o.embedding_dtype, o.text_prefix or "",
                       o.text_pair_prefix or "", o.calibration_sample)


def vector_fields(compact: CompactSpec) -> dict:
    """Fingerprint fields of the float vectors (before dtype); only those set, so
    outputs written before these options existed keep their fingerprint."""
    fields = {}
    if compact.truncate_dim is not None:
        fields["truncate_dim"] = compact.truncate_dim
    if compact.text_prefix:
        fields["text_prefix"] = compact.text_prefix
    if compact.text_pair_prefix:
        fields["text_pair_prefix"] = compact.text_pair_prefix
    return fields


def stored_fields(compact: CompactSpec, calibration: Optional[Calibration]) -> dict:
    fields = {}
    if compact.dtype != "float32":
        fields["embedding_dtype"] = compact.dtype
    if compact.calibrated:
        fields["calibration"] = calibration.digest if calibration else None
    return fields


def metadata(compact: CompactSpec, calibration: Optional[Calibration], model_dim: int,
             output_prefix: str) -> dict[str, str]:
    dim = compact.dim(model_dim)
    meta = {DTYPE_KEY: compact.dtype, "embedding_dim": str(dim),
            "embedding_bytes": str(bytes_per_vector(compact.dtype, dim)),
            "text_prefix": compact.text_prefix, "text_pair_prefix": compact.text_pair_prefix}
    if compact.truncate_dim is not None:
        meta["truncate_dim"] = str(compact.truncate_dim)
    if compact.calibrated and calibration is not None:
        # The file's name only: it lies next to the output's shards, wherever they move.
        meta[CALIBRATION_KEY] = os.path.basename(calibration_path(output_prefix))
        meta[CALIBRATION_DIGEST_KEY] = calibration.digest
        meta["calibration_method"] = (f"{calibration.method}: {calibration.documents} documents"
                                      + (f", seed {calibration.seed}" if calibration.method == "sample" else ""))
    return meta


def check_calibration(calibration: Calibration, where: str, dim: int, embedding: str) -> None:
    if calibration.dim != dim:
        raise ValueError(f"{where} has ranges for {calibration.dim} dimensions; this run stores {dim}")
    if calibration.embedding != embedding:
        raise ValueError(f"{where} was computed for other embeddings (fingerprint "
                         f"{calibration.embedding}; this run's are {embedding}: another model, "
                         "pooling, normalization, truncation or prefix)")


def earlier_calibrations(skip_glob: str, own_output: str, embedding: str) -> dict[str, str]:
    """digest -> calibration file, of the earlier quantized Parquet outputs of
    ``embedding`` that ``--skip_existing`` names (this run's own shards excluded).
    Reads footers only; a file that cannot be read is SkipExisting's to report."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from transforms.shards import absolute, shard_pattern
    from transforms.skip_existing import FINGERPRINT_KEY  # noqa: F401 (same metadata)
    own = shard_pattern(absolute(own_output), ("parquet",))
    found: dict[str, str] = {}
    try:
        matched = FileSystems.match([absolute(skip_glob)])[0].metadata_list
    except Exception:  # noqa: BLE001 - a glob matching nothing skips nothing
        return found
    for m in matched:
        if own.match(absolute(m.path)):
            continue
        try:
            with FileSystems.open(m.path) as f:
                meta = pq.ParquetFile(f).schema_arrow.metadata or {}
        except Exception:  # noqa: BLE001
            continue
        meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in meta.items()}
        if meta.get(DTYPE_KEY) not in CALIBRATED_DTYPES or meta.get("beam_embed.vectors") != embedding:
            continue
        digest = meta.get(CALIBRATION_DIGEST_KEY)
        if digest:
            name = meta.get(CALIBRATION_KEY, "")
            found.setdefault(digest, f"{m.path.rsplit('/', 1)[0]}/{name}" if "/" in m.path else name)
    return found


def resolve_calibration(o, compact: CompactSpec, dim: int, embedding: str) -> Optional[Calibration]:
    """The calibration this run must use, or None when it is to be computed (or none
    is needed). Raises ValueError naming the option."""
    if not compact.calibrated:
        return None
    given = None
    if o.calibration:
        try:
            given = read_calibration(o.calibration)
            check_calibration(given, f"--calibration {o.calibration!r}", dim, embedding)
        except ValueError as e:
            message = str(e)
            raise ValueError(message if message.startswith("--calibration")
                             else f"--calibration {o.calibration!r} {message}") from None
    if not o.skip_existing:
        return given
    earlier = earlier_calibrations(o.skip_existing, o.output, embedding)
    if given is not None:
        if earlier and set(earlier) != {given.digest}:
            raise ValueError(
                f"--calibration {o.calibration!r} (digest {given.digest}) is not the calibration "
                f"of the --skip_existing outputs ({', '.join(sorted(earlier))}, in "
                f"{', '.join(sorted(set(earlier.values())))}): their int8 buckets and this run's "
                "would differ; pass that calibration, or drop --skip_existing")
        return given
    if len(earlier) > 1:
        raise ValueError(f"--skip_existing: the earlier outputs were quantized with {len(earlier)} "
                         f"calibrations ({', '.join(sorted(earlier.values()))}); pass the one to "
                         "use with --calibration")
    if earlier:
        [(digest, path)] = earlier.items()
        try:
            calibration = read_calibration(path)
            check_calibration(calibration, path, dim, embedding)
        except ValueError as e:
            raise ValueError(f"--skip_existing: the earlier outputs' calibration {path!r} {e}; "
                             "pass one with --calibration") from None
        if calibration.digest != digest:
            raise ValueError(f"--skip_existing: the earlier outputs' calibration {path!r} was "
                             f"replaced (digest {calibration.digest}, the outputs say {digest}); "
                             "pass the right one with --calibration")
        logging.info("reusing the calibration of the --skip_existing outputs: %s", path)
        return calibration
    return None


def compute_calibration(config) -> Optional[Calibration]:
    """Run the calibration pipeline (see the module docstring) to completion; the
    ranges of the truncated float vectors of the seeded sample. None when no sampled
    document could be embedded (an empty corpus)."""
    import apache_beam as beam

    from pipeline.run import read_documents
    from transforms.calibration import ComputeRanges, SeededSample
    from transforms.dedupe import DeduplicateDocuments
    o, compact = config.options, config.compact
    part = f"{calibration_path(o.output)}.part-{uuid.uuid4().hex[:12]}"
    pipeline = beam.Pipeline(options=o)
    documents = read_documents(pipeline, config).documents | "Deduplicate" >> DeduplicateDocuments()
    rows = (documents.documents
            | "Sample" >> SeededSample(compact.calibration_sample, compact.calibration_seed)
            | "Embed" >> config.embedder(keep_text=False)).rows
    (rows
     | "Ranges" >> ComputeRanges(compact.truncate_dim, config.spec.normalize, config.vectors_fingerprint,
                                 compact.calibration_sample, compact.calibration_seed)
     | "Write" >> beam.Map(lambda c: write_calibration(part, c)))
    logging.info("computing the int8 calibration: a seeded sample of %s documents",
                 compact.calibration_sample or "all")
    pipeline.run().wait_until_finish()
    from apache_beam.io.filesystems import FileSystems
    if not FileSystems.exists(part):
        return None
    try:
        return read_calibration(part)
    finally:
        FileSystems.delete([part])


def place_calibration(output_prefix: str, calibration: Optional[Calibration]) -> None:
    """After the earlier run's files are cleared: this run's calibration next to its
    output (or no stale one, when it has none)."""
    from apache_beam.io.filesystems import FileSystems
    path = calibration_path(output_prefix)
    if calibration is not None:
        write_calibration(path, calibration)
    elif FileSystems.exists(path):
        FileSystems.delete([path])


__all__ = ["CompactSpec", "check_compact_options", "resolve_calibration", "compute_calibration",
           "place_calibration", "metadata", "stored_width"]
