"""beam-embed's options: names, choices and defaults, declared on any argparse parser.

``declare`` is the one place they are written. Beam's parser gets them through
``EmbedOptions`` (pipeline/beam_options.py, a PipelineOptions, so that templates and
Beam's own flags such as ``--runner`` travel through the same parser), and
``beam-embed --help`` through a plain argparse parser (``help_parser``): this module
imports neither Beam nor TensorFlow, which take seconds to import.
"""
from __future__ import annotations

import argparse

from pipeline.presets import PRESET_NAMES
from transforms.constants import (CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, DEFAULT_LONG_TEXT,
                                  DEFAULT_OUTPUT_FORMAT, DEFAULT_POOLING, DEFAULT_PRECISION, LONG_TEXT_POLICIES,
                                  MAX_BATCH_SIZE, MAX_SEQ_LENGTH, OUTPUT_FORMATS,
                                  PRECISIONS, VECTOR_TYPES, VERSION, EMBEDDING_DTYPES,
                                  CALIBRATION_SAMPLE, MODEL_COPIES_AUTO)
from transforms.formats import INPUT_FORMATS
from transforms.poolings import POOLING_MODES

PROG = "beam-embed"
USAGE = "beam-embed --input=GLOB | --bigquery_table=TABLE --output=PREFIX [options]"
DESCRIPTION = ("Embed a text corpus (files or BigQuery) with a TF Hub text encoder on "
               "Apache Beam; every record is embedded or dead-lettered with a reason.")
EPILOG = ("Beam's pipeline options pass through as well: --runner (use FnApiRunner "
          "locally), --direct_running_mode, --direct_num_workers, and Dataflow's "
          "(--project, --region, --temp_location, --sdk_container_image, "
          "--experiments, ...). Any other flag is an error.")


def declare(parser) -> None:
    """beam-embed's pipeline options, on ``parser`` (argparse or Beam's)."""
    source = parser.add_argument_group("input (one of --input, --bigquery_table, --bigquery_query)")
    source.add_argument("--input", help="file glob: local or gs:// path")
    source.add_argument("--input_format", choices=INPUT_FORMATS,
                        help="default: from the file extension")
    source.add_argument("--id_field", default="id", help="id field of structured inputs")
    source.add_argument("--text_field", help="text field; required for jsonl, csv, parquet, BigQuery")
    source.add_argument("--text_pair_field", help="optional second text, packed as a pair")
    source.add_argument("--bigquery_table", help="PROJECT:DATASET.TABLE")
    source.add_argument("--bigquery_query",
                        help="standard SQL query (runs in --project)")
    source.add_argument("--bigquery_temp_dataset",
                        help="PROJECT:DATASET for --bigquery_query results (else BigQuery's "
                             "anonymous result table)")
    # Emulators only: hidden from --help and from the Flex Template, whose jobs
    # run against production BigQuery. http:// means plaintext, anonymous access.
    source.add_argument("--bigquery_endpoint", help=argparse.SUPPRESS)
    source.add_argument("--bigquery_storage_endpoint", help=argparse.SUPPRESS)
    out = parser.add_argument_group("output")
    out.add_argument("--output", help="output prefix: PREFIX-SSSSS-of-NNNNN.parquet|.tfrecord")
    out.add_argument("--output_format", default=DEFAULT_OUTPUT_FORMAT, choices=OUTPUT_FORMATS + ("none",),
                     help="files under --output; none: only --output_table (the summary "
                          "and dead letters still go under --output)")
    out.add_argument("--dead_letter", help="dead-letter prefix (default: OUTPUT-errors)")
    _flag(out, "--keep_text", "also write text (and text_pair)")
    out.add_argument("--skip_existing", help="glob of earlier Parquet outputs (or a table "
                     "URL like --output_table's) whose ids are done")
    out.add_argument("--output_table",
                     help="also write the rows to a table: bq://PROJECT.DATASET.TABLE or "
                          "postgresql://[USER@]HOST[:PORT]/DB?table=[SCHEMA.]TABLE (password "
                          "from PGPASSWORD, ~/.pgpass or a service file, never the URL)")
    out.add_argument("--vector_type", default="vector", choices=VECTOR_TYPES,
                     help="pgvector column type of a new PostgreSQL table")
    _flag(out, "--hnsw_index", "create a pgvector HNSW index (cosine) after loading")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help=f"preset: {', '.join(PRESET_NAMES)} (default {PRESET_NAMES[0]})")
    model.add_argument("--preprocessor", help="TF Hub preprocessor handle (URL, local or gs:// path)")
    model.add_argument("--encoder", help="TF Hub encoder handle (URL, local or gs:// path)")
    model.add_argument("--pooling", default=DEFAULT_POOLING, help=f"one of {', '.join(POOLING_MODES)}")
    model.add_argument("--layer", type=int,
                       help="pool encoder_outputs[N] instead of sequence_output (negative counts from the end)")
    _flag(model, "--normalize", "L2-normalize embeddings")
    model.add_argument("--max_seq_length", type=int, default=MAX_SEQ_LENGTH)
    model.add_argument("--long_text", default=DEFAULT_LONG_TEXT, choices=LONG_TEXT_POLICIES)
    _add_compact_args(parser.add_argument_group("compact vectors and prompts"))
    run = parser.add_argument_group("execution")
    run.add_argument("--batch_tokens", type=int,
                     help=f"padded tokens per encoder batch (default: {CPU_BATCH_TOKENS} on a CPU, "
                          f"{GPU_BATCH_TOKENS} on a GPU)")
    run.add_argument("--max_batch_size", type=int, default=MAX_BATCH_SIZE, help="texts per encoder batch")
    run.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS)
    _flag(run, "--jit_compile", "compile the encoder with XLA")
    run.add_argument("--model_copies", default=MODEL_COPIES_AUTO,
                     help="encoder copies per machine, shared by its SDK processes; 0: one "
                          "per process; auto (default): one per GPU, per process on CPU")


def declare_cli(parser) -> None:
    """Options of the command line itself: how it talks, never sent to the pipeline."""
    cli = parser.add_argument_group("command line")
    cli.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    cli.add_argument("--version", action="store_true", help="show the version and exit")
    cli.add_argument("--json", action="store_true",
                     help="print the run summary as JSON on stdout (it is always written "
                          "to OUTPUT-summary.json)")
    cli.add_argument("-v", "--verbose", action="store_true",
                     help="show Beam's and TensorFlow's own logs too (INFO)")
    cli.add_argument("--log_level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     type=str.upper, help="show every logger's records from this level on")


def help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                                     add_help=False, allow_abbrev=False)
    declare(parser)
    declare_cli(parser)
    return parser


def version_line() -> str:
    return f"{PROG} {VERSION}"


def __getattr__(name: str):
    # EmbedOptions subclasses Beam's PipelineOptions, which imports all of Beam; it is
    # loaded on first use so that importing this module stays instant.
    if name == "EmbedOptions":
        from pipeline.beam_options import EmbedOptions
        return EmbedOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _add_compact_args(group) -> None:
    group.add_argument("--truncate_dim", type=int,
                       help="keep the first D dimensions (Matryoshka), re-normalized with --normalize")
    group.add_argument("--embedding_dtype", default="float32", choices=EMBEDDING_DTYPES,
                       help="stored type; binary/ubinary pack 8 dimensions per byte")
    group.add_argument("--calibration",
                       help="int8/uint8: reuse this calibration file (OUTPUT-calibration.json of a run)")
    group.add_argument("--calibration_sample", type=int, default=CALIBRATION_SAMPLE,
                       help="int8/uint8: documents of the seeded calibration sample (0: all)")
    group.add_argument("--text_prefix", default="",
                       help="prepended to every text before tokenization, e.g. 'passage: '")
    group.add_argument("--text_pair_prefix", default="",
                       help="prepended to every text_pair before tokenization")


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _flag(group, name: str, help: str) -> None:
    """``--name`` alone or ``--name=true|false``: a Flex Template passes every
    parameter as ``--name=value``, which a plain store_true flag refuses."""
    group.add_argument(name, nargs="?", const=True, default=False, type=_boolean,
                       metavar="true|false", help=help)
