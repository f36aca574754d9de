"""BigQuery input against an emulator (bqemulator), through the real CLI.

The emulator serves BigQuery's REST API and the Storage Read API (plaintext gRPC)
on loopback ports for this module; tables are created and filled through the
google-cloud-bigquery client, never through beam-embed's code.
"""
from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.bigquery_emulator import PROJECT, Emulator, emulator_bin
from tests.pipeline_helpers import DirectEncoder, read_dead_letters, read_parquet_rows, run_cli

DATASET = "corpus"
GOOD = {
    "a": "The cat sat on the mat.",
    "b": "Der Hund schläft im Garten.",
    "n7": "An integer id becomes a string.",
}
# (id, text, views): NULL text, empty and blank text, a NULL id, an id twice with the
# same text (one row, one counted duplicate) and one twice with different texts
# (ambiguous: both dead-lettered).
ROWS = [
    {"id": "a", "text": GOOD["a"], "views": 1},
    {"id": "b", "text": GOOD["b"], "views": 2},
    {"id": "n7", "text": GOOD["n7"], "views": 3},
    {"id": "null-text", "text": None, "views": 4},
    {"id": "empty", "text": "", "views": 5},
    {"id": "blank", "text": "  \t ", "views": 6},
    {"id": None, "text": "a text without an id", "views": 7},
    {"id": "dup-same", "text": "Said twice.", "views": 8},
    {"id": "dup-same", "text": "Said twice.", "views": 9},
    {"id": "dup-conflict", "text": "One text.", "views": 10},
    {"id": "dup-conflict", "text": "Another text.", "views": 11},
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if not os.access(emulator_bin(), os.X_OK):
        pytest.skip(f"bqemulator not found at {emulator_bin()}: run `make .venv-bq/.installed` "
                    "or set BEAM_EMBED_BQEMULATOR")
    emulator = Emulator(str(tmp_path_factory.mktemp("bqemulator"))).start()
    try:
        from google.cloud import bigquery
        client = emulator.client()
        client.create_dataset(DATASET)
        client.create_dataset("scratch")
        schema = [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("text", "STRING"),
                  bigquery.SchemaField("views", "INT64")]
        docs = client.create_table(bigquery.Table(f"{PROJECT}.{DATASET}.docs", schema=schema))
        assert client.insert_rows_json(docs, ROWS) == []
        yield emulator
    finally:
        emulator.stop()


def emulator_flags(emulator):
    return [f"--project={PROJECT}", f"--bigquery_endpoint={emulator.endpoint}",
            f"--bigquery_storage_endpoint={emulator.storage_endpoint}"]


def by_id(letters, reason):
    return sorted(l["id"] for l in letters if l["reason"] == reason)


def test_table_end_to_end(emulator, tmp_path):
    out = str(tmp_path / "emb")
    summary = run_cli(f"--bigquery_table={PROJECT}:{DATASET}.docs", "--text_field=text",
                      f"--output={out}", *emulator_flags(emulator))
    rows = read_parquet_rows(out)
    letters = read_dead_letters(f"{out}-errors")

    assert summary["read"] == len(ROWS)
    assert set(rows) == {*GOOD, "dup-same"} and summary["embedded"] == 4
    assert summary["duplicates"] == 1
    assert summary["dead_lettered"] == {"invalid_type": 2, "empty_text": 2, "duplicate_id": 2}
    assert len(letters) == 6
    assert by_id(letters, "empty_text") == ["blank", "empty"]
    assert by_id(letters, "duplicate_id") == ["dup-conflict", "dup-conflict"]
    null_text, null_id = sorted((l for l in letters if l["reason"] == "invalid_type"),
                                key=lambda l: l["id"] is None)
    assert null_text["id"] == "null-text" and "'text' is null" in null_text["detail"]
    assert null_id["id"] is None and "'id' is null" in null_id["detail"]
    assert '"a text without an id"' in null_id["raw"]
    for letter in (null_text, null_id):
        assert letter["source"].startswith(f"bigquery:{PROJECT}.{DATASET}.docs:stream 0 row ")

    # The texts reached the encoder intact (UTF-8 included).
    from models.default_model import ensure_default_model
    model = ensure_default_model()
    direct = DirectEncoder(model.preprocessor, model.encoder)
    for doc_id in ("a", "b"):
        np.testing.assert_allclose(rows[doc_id]["embedding"], direct.embed(GOOD[doc_id]),
                                   atol=2e-5)


def test_query_end_to_end(emulator, tmp_path):
    """--bigquery_query with --bigquery_temp_dataset: CREATE TABLE ... AS, then read."""
    out = str(tmp_path / "emb")
    query = (f"SELECT id, text FROM `{PROJECT}.{DATASET}.docs` "
             "WHERE views <= 4;")  # a, b, n7 and the NULL text; the ; is dropped
    summary = run_cli(f"--bigquery_query={query}", f"--bigquery_temp_dataset={PROJECT}:scratch",
                      "--text_field=text", f"--output={out}", *emulator_flags(emulator))
    assert set(read_parquet_rows(out)) == set(GOOD)
    assert summary["read"] == 4 and summary["dead_lettered"] == {"invalid_type": 1}
    letter, = read_dead_letters(f"{out}-errors")
    assert letter["id"] == "null-text"
    assert letter["source"].startswith(f"bigquery:{PROJECT}.scratch.beam_embed_")


def test_non_string_text_and_missing_column(emulator):
    from transforms.bigquery import ReadBigQueryCorpus
    table = f"{PROJECT}.{DATASET}.docs"
    with beam.Pipeline(runner="FnApiRunner") as p:
        # views is INT64: every row's "text" is an integer.
        ints = p | "Ints" >> ReadBigQueryCorpus(
            table, text_field="views", project=PROJECT, endpoint=emulator.endpoint,
            storage_endpoint=emulator.storage_endpoint)
        assert_that(ints.documents, equal_to([]), label="NoIntDocuments")
        assert_that(ints.dead_letters | "IntReasons" >> beam.Map(lambda l: (l.reason, l.detail)),
                    equal_to([("invalid_type", "field 'views' is an integer, expected a string")]
                             * (len(ROWS) - 1)
                             + [("invalid_type", "field 'id' is null, expected a string or an integer")]),
                    label="IntDeadLetters")
        # A column the table does not have: every row with an id is missing it.
        missing = p | "Missing" >> ReadBigQueryCorpus(
            table, text_field="body", project=PROJECT, endpoint=emulator.endpoint,
            storage_endpoint=emulator.storage_endpoint)
        assert_that(missing.dead_letters | "MissingReasons" >> beam.Map(lambda l: l.reason),
                    equal_to(["missing_field"] * (len(ROWS) - 1) + ["invalid_type"]),
                    label="MissingDeadLetters")


def test_option_errors_name_the_option(capsys, tmp_path):
    from pipeline.main import main
    for argv, fragment in [
        (["--bigquery_table=not a table"], "--bigquery_table 'not a table'"),
        (["--bigquery_table=corpus.docs"], "names no project"),
        (["--bigquery_query=SELECT 1"], "--bigquery_query needs --project"),
        ([f"--project={PROJECT}", "--bigquery_query=SELECT 1", "--bigquery_temp_dataset=a.b.c"],
         "--bigquery_temp_dataset"),
    ]:
        assert main([*argv, "--text_field=text", f"--output={tmp_path}/o",
                     "--runner=FnApiRunner"]) == 2
        assert fragment in capsys.readouterr().err
