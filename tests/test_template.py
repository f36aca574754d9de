"""templates/metadata.json against the pipeline's own options.

The Flex Template must declare exactly the options `beam-embed --help` shows
(EmbedOptions' parser, hidden emulator-only options excepted), and each
parameter's regex must accept documented examples, which the CLI parses too, and
reject obvious mistakes.
"""
from __future__ import annotations

import argparse
import json
import os
import re

import pytest

from pipeline.options import EmbedOptions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "templates", "metadata.json"), encoding="utf-8") as f:
    METADATA = json.load(f)
PARAMETERS = {p["name"]: p for p in METADATA["parameters"]}


def option_actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    EmbedOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest != "help"}


def user_facing() -> set[str]:
    return {name for name, action in option_actions().items() if action.help is not argparse.SUPPRESS}


GCS_PATH = (["gs://my-bucket/corpus/2026-01-31/*.jsonl", "gs://b/x"],
            ["corpus/*.jsonl", "/data/corpus.txt", "s3://bucket/x", "gs://", ""])
FIELD = (["text", "id", "doc_id", "body text"], ["", " text", "text ", "a\nb"])
BOOLEAN = (["true", "false"], ["yes", "1", "True", ""])
POSITIVE = (["1", "512", "8192"], ["0", "-1", "1.5", "", "12k"])
# name -> (accepted examples, rejected values). Choice options take every choice
# from the parser besides these.
EXAMPLES = {
    "input": GCS_PATH,
    "input_format": (["text", "jsonl", "csv", "parquet"], ["json", "txt", "CSV", ""]),
    "id_field": FIELD,
    "text_field": FIELD,
    "text_pair_field": FIELD,
    "bigquery_table": (["my-project:corpus.documents", "my-project.corpus.documents",
                        "corpus.documents", "example.com:my-project:corpus.docs_2026_01_31"],
                       ["documents", "my-project:corpus", "my-project:corpus.docs.extra",
                        "My_Project:corpus.docs", "my-project:corpus.`docs`", ""]),
    "bigquery_query": (["SELECT id, text FROM `my-project.corpus.documents` WHERE day = '2026-01-31'",
                        "select id, text from corpus.docs", "WITH t AS (SELECT 1) SELECT * FROM t",
                        "\n  SELECT id,\n  text FROM corpus.docs"],
                       ["", "DROP TABLE corpus.docs", "corpus.docs", "DELETE FROM corpus.docs WHERE TRUE"]),
    "bigquery_temp_dataset": (["my-project:scratch", "my-project.scratch", "scratch"],
                              ["my-project:scratch.table", "my-project:", "scr atch", ""]),
    "output": GCS_PATH,
    "output_format": (["parquet", "tfrecord", "none"], ["csv", ""]),
    "dead_letter": GCS_PATH,
    "keep_text": BOOLEAN,
    "skip_existing": (["gs://my-bucket/embeddings/*/emb-*.parquet", "bq://my-project.search.emb",
                       "postgresql://etl@db.internal:5432/search?table=public.emb"],
                      ["out/*.parquet", "mysql://h/db", ""]),
    "output_table": (["bq://my-project.search.embeddings", "bq://example.com:my-project.search.emb",
                      "postgresql://etl@db.internal:5432/search?table=public.embeddings",
                      "postgresql:///search?service=prod&table=emb"],
                     ["my-project.search.embeddings", "bq://search", "postgresql://db/search",
                      "mysql://h/db?table=t", ""]),
    "vector_type": (["vector", "halfvec"], ["float", ""]),
    "hnsw_index": BOOLEAN,
    "model": (["all-MiniLM-L6-v2", "xlm-roberta-large", "roberta-large"],
              ["minilm", "bert-base", ""]),
    "preprocessor": (["https://tfhub.dev/jeongukjae/xlm_roberta_multi_cased_preprocess/1",
                      "gs://my-bucket/models/xlmr/preprocessor", "/opt/beam-embed/models/x/preprocessor"],
                     ["models/preprocessor", "http://tfhub.dev/x", ""]),
    "encoder": (["https://tfhub.dev/jeongukjae/xlm_roberta_multi_cased_L-24_H-1024_A-16/1",
                 "gs://my-bucket/models/xlmr/encoder"], ["encoder", ""]),
    "pooling": (["mean", "cls", "pooled_output", "max"], ["median", "MEAN", ""]),
    "layer": (["0", "11", "-1", "-2"], ["", "last", "1.0", "--1"]),
    "normalize": BOOLEAN,
    "max_seq_length": POSITIVE,
    "long_text": (["truncate", "chunk", "reject"], ["split", ""]),
    "batch_tokens": POSITIVE,
    "max_batch_size": POSITIVE,
    "precision": (["float32", "bfloat16", "float16"], ["fp16", "half", ""]),
    "jit_compile": BOOLEAN,
    "truncate_dim": POSITIVE,
    "embedding_dtype": (["float32", "int8", "binary"], ["int4", "INT8", ""]),
    "calibration": (["gs://my-bucket/embeddings/2026-01-01/emb-calibration.json"],
                    ["emb-calibration.json", ""]),
    "calibration_sample": (["0", "10000"], ["-1", "1.5", "", "10k"]),
    "text_prefix": (["passage: ", "query: ", ""], ["a\nb"]),
    "text_pair_prefix": (["query: ", ""], ["a\rb"]),
    "model_copies": (["auto", "0", "1", "4", "64"], ["-1", "65", "two", "1.5", "AUTO", ""]),
}


def matches(parameter: dict, value: str) -> bool:
    return all(re.fullmatch(regex, value) for regex in parameter["regexes"])


def test_parameters_are_exactly_the_user_facing_options():
    assert set(PARAMETERS) == user_facing()
    assert len(PARAMETERS) == len(METADATA["parameters"]), "a parameter is declared twice"
    # The hidden ones are the emulator endpoints, which Dataflow jobs never use.
    assert set(option_actions()) - user_facing() == {"bigquery_endpoint", "bigquery_storage_endpoint"}


def test_every_parameter_is_described():
    assert METADATA["name"] and METADATA["description"]
    for name, parameter in PARAMETERS.items():
        assert set(parameter) >= {"name", "label", "helpText", "isOptional", "regexes"}, name
        assert parameter["label"].strip() and parameter["helpText"].strip(), name
        assert parameter["regexes"], name
    # --output is the one option every run needs.
    assert [n for n, p in PARAMETERS.items() if not p["isOptional"]] == ["output"]


def test_every_parameter_has_examples():
    assert set(EXAMPLES) == set(PARAMETERS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_regex_accepts_examples_the_cli_parses(name):
    good, bad = EXAMPLES[name]
    action = option_actions()[name]
    for value in [*good, *(action.choices or ())]:
        assert matches(PARAMETERS[name], value), (name, value)
        # What the template lets through, the pipeline's parser takes as given.
        parsed = getattr(EmbedOptions([f"--{name}={value}"]), name)
        expected = action.type(value) if action.type else value
        assert parsed == expected, (name, value, parsed)
    for value in bad:
        assert not matches(PARAMETERS[name], value), (name, value)


def test_table_regex_is_the_transforms():
    """The same pattern ReadBigQueryCorpus parses tables with, minus Python's group
    names: the service checks parameters with its own regex engine, and only the
    common syntax is safe there."""
    from transforms.bigquery import TABLE_PATTERN
    assert PARAMETERS["bigquery_table"]["regexes"] == [re.sub(r"\(\?P<\w+>", "(", TABLE_PATTERN.pattern)]
    for parameter in PARAMETERS.values():
        for regex in parameter["regexes"]:
            assert "(?P" not in regex and "(?<" not in regex, parameter["name"]


def test_launcher_entry_point_submits_without_waiting(tmp_path, monkeypatch):
    """templates/main.py returns once the job is submitted: no summary is written
    (on Dataflow the counters are the summary), the outputs still are."""
    import runpy
    import sys

    from tests.pipeline_helpers import read_parquet_rows
    corpus = tmp_path / "c.txt"
    corpus.write_text("one\ntwo\n", encoding="utf-8")
    out = str(tmp_path / "emb")
    monkeypatch.setattr(sys, "argv", ["main.py", f"--input={corpus}", f"--output={out}",
                                      "--runner=FnApiRunner"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(os.path.join(REPO, "templates", "main.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert len(read_parquet_rows(out)) == 2  # the local runner finishes inside run()
    assert not os.path.exists(f"{out}-summary.json")
