"""Checking options before anything runs, and turning them into one resolved config.

Every check here fails with a message naming the option, before the pipeline
starts; the models are loaded once locally to check their handles and to learn
the embedding size and layer count.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Optional

from apache_beam.io.filesystem import FileSystem

from pipeline import compact as compact_vectors
from pipeline.options import EmbedOptions
from pipeline.outputs import DEAD_LETTER_EXTENSIONS, files_beam_would_delete, probe_writable
from pipeline.prefix_lock import LockError, PrefixLock, lock_path
from pipeline.presets import ModelHandles, resolve_model
from pipeline.storage_access import check_gcs_access, gcs_paths
from pipeline.summary import partial_summary_path, summary_path
from transforms.constants import OUTPUT_FORMATS, VERSION
from transforms.encode import EmbeddingSpec, RuntimeOptions
from transforms.poolings import POOLING_MODES
from transforms.read import check_pattern_matches, infer_input_format
from transforms.shards import (absolute, example_shard, example_temp_file, prefix_problem,
                               shard_pattern, temp_dir_of)
from transforms.skip_existing import FINGERPRINT_KEY


NO_FILES = "none"  # --output_format none: only --output_table gets rows


def output_columns(o: EmbedOptions) -> set[str]:
    columns = set()
    if o.long_text == "chunk":
        columns.add("n_chunks")
    if o.keep_text:
        columns.add("text")
        if o.text_pair_field:
            columns.add("text_pair")
    return columns


def table_options(o: EmbedOptions) -> dict:
    """What table sinks may need besides their URL; each takes the ones it knows."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    return dict(vector_type=o.vector_type, hnsw_index=o.hnsw_index, staging_prefix=o.output,
                project=o.view_as(GoogleCloudOptions).project,
                bigquery_endpoint=o.bigquery_endpoint)


def run_id(output: str) -> str:
    """A run's identity in a table: its --output prefix (absolute when local), the
    same prefix whose files and locks the run owns."""
    return absolute(output)


class OptionError(ValueError):
    """A bad command line; the message names the option."""


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    dim: int
    num_layers: int
    weight_bytes: int = 0  # the encoder's variables, as the SavedModel stores them


@dataclasses.dataclass(frozen=True)
class RunConfig:
    options: EmbedOptions
    input_format: Optional[str]
    handles: ModelHandles
    spec: EmbeddingSpec
    runtime: RuntimeOptions
    facts: ModelFacts
    dead_letter: str
    compact: compact_vectors.CompactSpec = compact_vectors.CompactSpec()
    # int8/uint8: the ranges every row is quantized with (pipeline/compact.py).
    calibration: Optional[compact_vectors.Calibration] = None

    def _vector_fields(self) -> dict:
        return {"encoder": self.handles.encoder, "preprocessor": self.handles.preprocessor,
                "pooling": self.spec.pooling, "layer": self.spec.layer,
                "normalize": self.spec.normalize, "max_seq_length": self.spec.max_seq_length,
                **compact_vectors.vector_fields(self.compact)}

    @property
    def vectors_fingerprint(self) -> str:
        """What makes two float vectors comparable: modules, pooling, length, truncation,
        prefixes (a calibration records it: ranges fit only such vectors)."""
        return _digest(self._vector_fields())
    model_copies: int | str = "auto"  # --model_copies, parsed (transforms/encode.py)

    @property
    def fingerprint(self) -> str:
        """What makes two stored embeddings comparable: the float vectors', plus the
        stored dtype and the int8/uint8 calibration."""
        return _digest({**self._vector_fields(),
                        **compact_vectors.stored_fields(self.compact, self.calibration)})

    @property
    def stored_dim(self) -> int:
        return self.compact.dim(self.facts.dim)

    def embedder(self, keep_text: Optional[bool] = None):
        """The EmbedText of this run (float32 vectors of the model's dim)."""
        from transforms.embed import EmbedText
        o = self.options
        return EmbedText(self.handles.preprocessor, self.handles.encoder, self.spec,
                         long_text=o.long_text, batch_tokens=o.batch_tokens,
                         max_batch_size=o.max_batch_size,
                         keep_text=o.keep_text if keep_text is None else keep_text,
                         runtime=self.runtime,
                         text_prefixes=(self.compact.text_prefix, self.compact.text_pair_prefix),
                         fixed_shapes=self.compact.dtype != "float32",
                         model_copies=self.model_copies)

    def sinks(self) -> list:
        """The sinks the rows go to (transforms/sinks/): the file sink of --output_format
        under --output, and the table sink of --output_table."""
        from transforms.sinks import SinkRows, file_sink_class, table_sink_class
        o = self.options
        rows = SinkRows(self.stored_dim, output_columns(o), self.metadata(), run_id(o.output),
                        dtype=self.compact.dtype)
        sinks = []
        if o.output_format != NO_FILES:
            sinks.append(file_sink_class(o.output_format)(o.output, rows))
        if o.output_table:
            sinks.append(table_sink_class(o.output_table)(o.output_table, rows, **table_options(o)))
        return sinks

    def metadata(self) -> dict[str, str]:
        return {"beam_embed.version": VERSION, FINGERPRINT_KEY: self.fingerprint,
                "encoder": self.handles.encoder, "preprocessor": self.handles.preprocessor,
                "pooling": self.spec.pooling, "layer": json.dumps(self.spec.layer),
                "normalize": json.dumps(self.spec.normalize), "dim": str(self.facts.dim),
                "max_seq_length": str(self.spec.max_seq_length),
                "beam_embed.vectors": self.vectors_fingerprint,
                **compact_vectors.metadata(self.compact, self.calibration, self.facts.dim,
                                           self.options.output)}


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def probe_model(handles: ModelHandles) -> ModelFacts:
    """Load both modules here, once, and read the encoder's output shapes."""
    from transforms.text_modules import load_encoder, load_module
    try:
        preprocessor = load_module(handles.preprocessor)
    except Exception as e:  # hub.load raises many types for an unreadable handle
        raise OptionError(f"--preprocessor {handles.preprocessor!r} cannot be loaded: {e}") from None
    try:
        encoder = load_encoder(handles.encoder)
    except Exception as e:
        raise OptionError(f"--encoder {handles.encoder!r} cannot be loaded: {e}") from None
    outputs = _declared_outputs(encoder) or _run_once(preprocessor, encoder)
    return ModelFacts(dim=int(outputs["sequence_output"].shape[-1]),
                      num_layers=len(outputs["encoder_outputs"]), weight_bytes=_weight_bytes(encoder))


def _weight_bytes(encoder) -> int:
    return sum(v.shape.num_elements() * v.dtype.size for v in getattr(encoder, "variables", None) or ()
               if v.shape.num_elements() is not None)


def _declared_outputs(encoder) -> Optional[dict]:
    """The output structure the SavedModel declares for ``__call__`` (TensorSpecs, nothing
    runs), if it declares the TF Hub encoder interface."""
    for function in getattr(getattr(encoder, "__call__", None), "concrete_functions", ()):
        outputs = function.structured_outputs
        if isinstance(outputs, dict) and {"sequence_output", "encoder_outputs"} <= outputs.keys():
            return outputs
    return None


def _run_once(preprocessor, encoder) -> dict:
    import tensorflow as tf
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(["probe"]))], seq_length=8)
    return encoder(packed)


def probe_embedding(config: RunConfig) -> None:
    """Embed in this process exactly as the workers will (EmbedText.probe), so that a
    config that would make every record, or every long one, a dead letter fails
    before the job starts (see pipeline/probe.py): one short text (pooling, layer,
    precision, XLA, pairs), then one of --max_seq_length tokens. The local runner's
    workers, which share this process, find the graphs already traced."""
    from pipeline import probe
    from transforms.embed import EmbedText
    from transforms.text_modules import encoder_device, load_encoder
    from transforms.tf_errors import error_text
    o = config.options
    embedder = EmbedText(config.handles.preprocessor, config.handles.encoder, config.spec,
                         long_text=o.long_text, runtime=config.runtime,
                         text_prefixes=(config.compact.text_prefix, config.compact.text_pair_prefix))
    encoder = load_encoder(config.handles.encoder)
    pair = bool(o.text_pair_field)
    try:
        try:
            probe.check_finite(embedder.probe(text_pair="probe" if pair else None), "the probe text")
        except probe.ProbeFailure:
            raise
        except Exception as e:  # TensorFlow raises many types; the message says what failed
            if pair:
                probe.check_pairs(embedder, encoder, e, error_text,
                                  f"--text_pair_field {o.text_pair_field}")
            raise OptionError(
                f"--encoder {config.handles.encoder!r} failed on a probe text with --pooling {o.pooling}"
                f"{f' --layer {o.layer}' if o.layer is not None else ''} --precision {o.precision}"
                f"{' --jit_compile' if o.jit_compile else ''}: {error_text(e, 500)}") from None
        # Lengths are checked without XLA, whose gather clamps an index beyond the table
        # instead of failing (a GPU's returns zeros: see probe.check_max_length).
        checked = embedder if not o.jit_compile else EmbedText(
            config.handles.preprocessor, config.handles.encoder, config.spec,
            runtime=dataclasses.replace(config.runtime, jit_compile=False))
        probe.check_max_length(checked, encoder, o.max_seq_length, pair,
                               encoder_device().startswith("/GPU"), error_text)
    except probe.ProbeFailure as e:
        raise OptionError(str(e)) from None


def _check_source(o: EmbedOptions) -> Optional[str]:
    sources = [name for name in ("input", "bigquery_table", "bigquery_query") if getattr(o, name)]
    if len(sources) != 1:
        raise OptionError("give exactly one of --input, --bigquery_table, --bigquery_query"
                          + (f" (got {', '.join('--' + s for s in sources)})" if sources else ""))
    if not o.output:
        raise OptionError("--output is required")
    _check_no_other_outputs_at_risk(o)
    _check_outputs_writable(o)
    if o.input:
        try:
            input_format = o.input_format or infer_input_format(o.input)
            check_pattern_matches(o.input)
        except ValueError as e:
            raise OptionError(str(e)) from None
        _check_outputs_outside_input(o)
    else:
        input_format = None
        from apache_beam.options.pipeline_options import GoogleCloudOptions
        from transforms.bigquery import check_source
        try:
            check_source(o.bigquery_table, o.bigquery_query, o.view_as(GoogleCloudOptions).project,
                         o.bigquery_temp_dataset)
        except ValueError as e:
            raise OptionError(str(e)) from None
    if input_format != "text" and not o.text_field:
        what = f"--input_format {input_format}" if input_format else "BigQuery input"
        raise OptionError(f"--text_field is required for {what}")
    return input_format


def dead_letter_prefix(o: EmbedOptions) -> str:
    return o.dead_letter or f"{o.output}-errors"


def _written_prefixes(o: EmbedOptions):
    return (("--output", o.output, OUTPUT_FORMATS),
            ("--dead_letter", dead_letter_prefix(o), DEAD_LETTER_EXTENSIONS))


def _check_no_other_outputs_at_risk(o: EmbedOptions) -> None:
    for option, prefix, _ in _written_prefixes(o):
        problem = prefix_problem(prefix)
        if problem:
            raise OptionError(f"{option} {prefix!r} {problem}")
    for option, prefix, extensions in _written_prefixes(o):
        at_risk = files_beam_would_delete(prefix, extensions)
        if at_risk:
            raise OptionError(
                f"{option} {prefix!r}: {at_risk[0]!r} belongs to another output, and Beam's "
                "file sink would delete it at the end of this run (it clears "
                "PREFIX-*-of-NNNNN files); use a prefix that does not start another "
                "output's name, e.g. a directory per run")


def _check_outputs_writable(o: EmbedOptions) -> None:
    """A probe file is created and deleted where each prefix writes, and no live run
    holds the prefixes (a cheap early look; run.py takes the locks), all before the
    model loads: a read-only mount, /proc or a regular file in the path fails here."""
    for option, prefix, extensions in _written_prefixes(o):
        try:
            probe_writable(prefix, extensions)
        except ValueError as e:
            raise OptionError(f"{option} {prefix!r}: {e}") from None
    try:
        PrefixLock([o.output, dead_letter_prefix(o)]).check_free()
    except LockError as e:
        raise OptionError(str(e)) from None


def _check_outputs_outside_input(o: EmbedOptions) -> None:
    """No file this run writes may be matched by its input glob: the next run (or, with
    a glob like ``data/**``, this one, which matches files while others are written)
    would read embeddings, dead letters or half-written temporary files back as input."""
    input_glob = absolute(o.input)
    # Beam's own glob rules, on the paths as given and with their directories' symbolic
    # links resolved: --output=link/emb with link -> data writes into data/, which
    # --input='data/*' reads (it read the run's own locks back as documents).
    patterns = [re.compile(FileSystem.translate_pattern(glob)).match
                for glob in {input_glob, absolute(_resolved_glob(o.input))}]

    def matches(path: str) -> bool:  # path as given: "link/../x" follows the link first
        return any(match(candidate) for match in patterns
                   for candidate in {absolute(path), _resolved_path(path)})
    dead_letter = dead_letter_prefix(o)
    written = {
        "--output": [o.output, summary_path(o.output), partial_summary_path(o.output),
                     lock_path(o.output), compact_vectors.calibration_path(o.output)]
                    + [example_shard(o.output, ext) for ext in OUTPUT_FORMATS]
                    + [example_temp_file(o.output, ext) for ext in OUTPUT_FORMATS],
        "--dead_letter": [dead_letter, lock_path(dead_letter), example_shard(dead_letter, "jsonl"),
                          example_temp_file(dead_letter, "jsonl")],
    }
    linked = _linked_input_files(o.input)
    for option, paths in written.items():
        prefix, extensions = paths[0], OUTPUT_FORMATS if option == "--output" else ("jsonl",)
        if any(absolute(path) == input_glob or matches(path) for path in paths) or any(
                _written_by(target, prefix, extensions) for target in linked):
            if option == "--dead_letter" and not o.dead_letter:
                named = f"--output {o.output!r} (its dead letters, {paths[0]}-*.jsonl)"
            else:
                named = f"{option} {paths[0]!r}"
            raise OptionError(f"{named} lies inside --input {o.input!r}: the input glob would "
                              "read this run's output back as input; write it elsewhere")


def _linked_input_files(input_glob: str) -> list[str]:
    """Where the local files the input matches through symbolic links really are: a
    link to the output's own summary or shard was deleted by the run's clearing (the
    earlier output lost), and the run then failed reading it."""
    if "://" in input_glob:
        return []
    from apache_beam.io.filesystems import FileSystems
    try:
        matched = FileSystems.match([absolute(input_glob)])[0].metadata_list
    except Exception:  # noqa: BLE001 - check_pattern_matches has said why already
        return []
    return [os.path.realpath(m.path) for m in matched
            if os.path.realpath(m.path) != os.path.abspath(m.path)]


def _written_by(path: str, prefix: str, extensions: tuple[str, ...]) -> bool:
    """Whether ``path`` (resolved) is a file the run on ``prefix`` writes or clears."""
    directory, name = os.path.split(_resolved_path(prefix))
    if os.path.dirname(path) == directory:
        base = os.path.basename(path)
        return bool(shard_pattern(name, extensions).match(base)) or base in (
            os.path.basename(summary_path(name)), os.path.basename(partial_summary_path(name)),
            os.path.basename(lock_path(name)))
    return temp_dir_of(path, os.path.join(directory, name)) is not None


def _resolved_path(path: str) -> str:
    """A local path with the symbolic links (and ``..``) of its directory resolved; the
    last component stays, since it need not exist yet. Other paths unchanged."""
    if "://" in path:
        return path
    directory, name = os.path.split(path)
    return os.path.join(os.path.realpath(directory), name)


def _resolved_glob(glob: str) -> str:
    """A local glob with the symbolic links of its fixed leading directories resolved
    (those before the first component holding a glob character)."""
    if "://" in glob:
        return glob
    parts = glob.split(os.sep)  # of the glob as given, for the same reason as paths
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")),
                 len(parts) - 1)
    if fixed == 0:
        return glob
    return os.path.join(os.path.realpath(os.sep.join(parts[:fixed]) or os.sep), *parts[fixed:])


def _check_table_options(o: EmbedOptions) -> None:
    """The table URLs parse, before the model loads (their servers are checked later)."""
    from transforms.sinks import TABLE_SCHEMES, table_sink_class
    if o.output_format == NO_FILES and not o.output_table:
        raise OptionError(f"--output_format {NO_FILES} writes no rows unless --output_table is given")
    urls = [("--output_table", o.output_table)] + (
        [("--skip_existing", o.skip_existing)] if "://" in (o.skip_existing or "")
        and not o.skip_existing.startswith("gs://") else [])
    for option, url in urls:
        if url and table_sink_class(url) is None:
            raise OptionError(f"{option}: {url.split('://')[0]}:// is not a table; use one of "
                              f"{', '.join(s + '://' for s in TABLE_SCHEMES)}")


def check_table_destinations(config: RunConfig) -> None:
    """Each table sink's own check (reachable, privileges, an existing table's columns
    and dim), and a --skip_existing table's server; the model is known by now."""
    from transforms.sinks import DestinationError, table_sink_class
    o = config.options
    if o.output_table and config.compact.dtype != "float32":
        # pgvector's vector/halfvec and BigQuery's ARRAY<FLOAT64> hold floats; storing
        # quantized codes there would need a per-store encoding nobody has asked for yet.
        raise OptionError(f"--embedding_dtype {config.compact.dtype} is for file outputs; "
                          "--output_table stores float32 vectors (use --truncate_dim to shrink them)")
    try:
        for sink in config.sinks():
            sink.check()
        if o.skip_existing and table_sink_class(o.skip_existing):
            table_sink_class(o.skip_existing).check_evidence(o.skip_existing, "--skip_existing")
    except DestinationError as e:
        raise OptionError(str(e)) from None


def _check_model_copies(o: EmbedOptions) -> int | str:
    from transforms.encode import parse_model_copies
    try:
        return parse_model_copies(o.model_copies)
    except ValueError as e:
        raise OptionError(str(e)) from None


def _check_memory_plan(o: EmbedOptions, facts: ModelFacts, model_copies) -> None:
    """Refuse a GPU worker whose encoders cannot fit its GPUs (pipeline/memory_plan.py)."""
    from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, WorkerOptions
    from pipeline import memory_plan
    experiments = o.view_as(DebugOptions).experiments or []
    gpu = memory_plan.accelerator((o.view_as(GoogleCloudOptions).dataflow_service_options or [])
                                  + experiments)
    vcpus = memory_plan.machine_vcpus(o.view_as(WorkerOptions).machine_type)
    if gpu is None or vcpus is None:
        return
    problem = memory_plan.plan_problem(facts.weight_bytes, model_copies, gpu, vcpus,
                                       one_process="no_use_multiple_sdk_containers" in experiments)
    if problem:
        raise OptionError(problem)


def resolve(options: EmbedOptions) -> RunConfig:
    o = options
    try:  # first: one quick request per bucket, before Beam's slow retries can start
        check_gcs_access(gcs_paths(o))
    except ValueError as e:
        raise OptionError(str(e)) from None
    input_format = _check_source(o)
    _check_table_options(o)
    if o.pooling not in POOLING_MODES:
        raise OptionError(f"--pooling {o.pooling!r} is not supported; use one of {', '.join(POOLING_MODES)}")
    if o.pooling == "pooled_output" and o.layer is not None:
        raise OptionError("--layer applies to token outputs; it cannot be combined with --pooling pooled_output")
    if o.max_seq_length < 8:
        raise OptionError(f"--max_seq_length {o.max_seq_length} is too small (at least 8)")
    if o.batch_tokens is not None and o.batch_tokens < o.max_seq_length:
        raise OptionError(f"--batch_tokens {o.batch_tokens} must be at least --max_seq_length {o.max_seq_length}")
    if o.max_batch_size < 1:
        raise OptionError(f"--max_batch_size {o.max_batch_size} must be positive")
    model_copies = _check_model_copies(o)
    if o.long_text == "chunk" and o.text_pair_field:
        raise OptionError("--long_text chunk cannot split text pairs; use truncate or reject with --text_pair_field")
    try:
        handles = resolve_model(o.model, o.preprocessor, o.encoder)
    except ValueError as e:
        raise OptionError(str(e)) from None
    facts = probe_model(handles)
    if o.layer is not None and not -facts.num_layers <= o.layer < facts.num_layers:
        raise OptionError(f"--layer {o.layer} is out of range: the encoder has {facts.num_layers} "
                          f"layers (use 0..{facts.num_layers - 1}, or negative from the end)")
    _check_memory_plan(o, facts, model_copies)
    spec = EmbeddingSpec(o.pooling, o.layer, o.normalize, o.max_seq_length)
    config = RunConfig(o, input_format, handles, spec, RuntimeOptions(o.precision, o.jit_compile),
                       facts, dead_letter_prefix(o), _check_compact(o, facts),
                       model_copies=model_copies)
    config = _with_calibration(config)
    check_table_destinations(config)
    probe_embedding(config)
    return config


def _check_compact(o: EmbedOptions, facts: ModelFacts) -> "compact_vectors.CompactSpec":
    try:
        return compact_vectors.check_compact_options(o, facts.dim, o.normalize)
    except ValueError as e:
        raise OptionError(str(e)) from None


def _with_calibration(config: RunConfig) -> RunConfig:
    """The --calibration or --skip_existing outputs' calibration, checked; a run that
    must compute one does so in run.start (pipeline/compact.py)."""
    try:
        calibration = compact_vectors.resolve_calibration(
            config.options, config.compact, config.stored_dim, config.vectors_fingerprint)
    except ValueError as e:
        raise OptionError(str(e)) from None
    return dataclasses.replace(config, calibration=calibration)
