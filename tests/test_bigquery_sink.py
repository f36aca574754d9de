"""--output_table bq://...: the CLI against the bqemulator BigQuery emulator.

Rows are read back through google-cloud-bigquery, never through beam-embed's code.
The emulator has no VECTOR_SEARCH (its parser rejects ``VECTOR_SEARCH(TABLE ...)``)
and no IAM (``tables.testIamPermissions`` answers 405): the neighbour query uses
``COSINE_DISTANCE`` (BigQuery has it too), and the permission check is not tested.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.bigquery_emulator import PROJECT, Emulator, emulator_bin
from tests.pipeline_helpers import (DirectEncoder, fails_with, module_args, read_parquet_rows,
                                    run_cli, write_lines_corpus)
from tests.test_postgres_sink import accounted, assert_table_holds_the_run, cosine_neighbours

DATASET = "vectors"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if not os.access(emulator_bin(), os.X_OK):
        pytest.skip(f"bqemulator not found at {emulator_bin()}")
    emulator = Emulator(str(tmp_path_factory.mktemp("bqemulator"))).start()
    try:
        emulator.client().create_dataset(DATASET)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def direct(tiny_random_model):
    return DirectEncoder(tiny_random_model.preprocessor, tiny_random_model.encoder)


def flags(emulator):
    return [f"--project={PROJECT}", f"--bigquery_endpoint={emulator.endpoint}"]


def table_rows(emulator, table: str) -> dict[str, dict]:
    rows = {}
    for row in emulator.client().query(f"SELECT * FROM `{PROJECT}.{DATASET}.{table}`").result():
        assert row["id"] not in rows
        rows[row["id"]] = dict(row.items(), embedding=np.asarray(row["embedding"], np.float64))
    return rows


def test_rows_equal_the_encoder_and_reruns_replace_them(emulator, tiny_random_model, direct, tmp_path):
    lines = write_lines_corpus(tmp_path / "corpus.txt", 20)
    out = str(tmp_path / "day1" / "emb")
    url = f"bq://{PROJECT}.{DATASET}.emb"
    argv = [f"--input={tmp_path / 'corpus.txt'}", f"--output={out}", f"--output_table={url}",
            *flags(emulator), *module_args(tiny_random_model)]
    summary = run_cli(*argv)
    rows = table_rows(emulator, "emb")
    parquet = read_parquet_rows(out)

    assert accounted(summary)
    assert_table_holds_the_run(summary, rows, parquet, lines, direct, out)
    assert [row["truncated"] for row in rows.values()] == [False] * len(lines)
    client = emulator.client()
    description = json.loads(client.get_table(f"{PROJECT}.{DATASET}.emb").description)
    fingerprint, = {r["fingerprint"] for r in rows.values()}
    assert description["beam_embed"][fingerprint]["dim"] == "32"
    assert not [t for t in client.list_tables(DATASET) if "stage" in t.table_id]
    assert not os.path.exists(f"{out}-bigquery-staging")

    ids = sorted(parquet)
    matrix = np.stack([parquet[i]["embedding"] for i in ids])
    for q in (0, 11):
        query = "[" + ",".join(map(repr, matrix[q].astype(np.float64).tolist())) + "]"
        found = [r["id"] for r in client.query(
            f"SELECT id FROM `{PROJECT}.{DATASET}.emb` ORDER BY COSINE_DISTANCE(embedding, "
            f"{query}) LIMIT 5").result()]
        assert found == [ids[i] for i in cosine_neighbours(matrix, matrix[q], 5)]

    with open(tmp_path / "corpus.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines[3:]) + "\n")
    again = run_cli(*argv)
    rows = table_rows(emulator, "emb")
    assert again["table_rows"] == again["embedded"] == len(rows) == len(lines) - 3

    new = [f"something new {i}" for i in range(2)]
    with open(tmp_path / "day2.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines[3:] + new) + "\n")
    day2 = run_cli(f"--input={tmp_path / 'day2.txt'}", f"--output={tmp_path / 'day2' / 'emb'}",
                   f"--output_table={url}", f"--skip_existing={url}", "--output_format=none",
                   *flags(emulator), *module_args(tiny_random_model))
    assert accounted(day2)
    assert (day2["skipped_existing"], day2["embedded"], day2["table_rows"]) == (len(lines) - 3, 2, 2)
    assert len(table_rows(emulator, "emb")) == len(lines) - 1


def test_bad_destinations_fail_before_the_run(emulator, tiny_random_model, tmp_path, capsys):
    from google.cloud import bigquery
    write_lines_corpus(tmp_path / "corpus.txt", 3)
    base = [f"--input={tmp_path / 'corpus.txt'}", f"--output={tmp_path / 'emb'}",
            *module_args(tiny_random_model)]
    client = emulator.client()
    table = bigquery.Table(f"{PROJECT}.{DATASET}.small", schema=[
        bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("embedding", "FLOAT64", mode="REPEATED"),
        bigquery.SchemaField("n_tokens", "INT64"), bigquery.SchemaField("truncated", "BOOL"),
        bigquery.SchemaField("fingerprint", "STRING"), bigquery.SchemaField("run", "STRING")])
    table.description = json.dumps({"beam_embed": {"0123": {"dim": "8"}}})
    client.create_table(table)
    fails_with(capsys, [*base, f"--output_table=bq://{PROJECT}.{DATASET}.small", *flags(emulator)],
               "--output_table", "dim 8", "gives 32")
    fails_with(capsys, [*base, f"--output_table=bq://{PROJECT}.nowhere.emb", *flags(emulator)],
               "--output_table", "does not exist")
    from tests.gcs_emulator import free_port
    fails_with(capsys, [*base, f"--output_table=bq://{PROJECT}.{DATASET}.emb", f"--project={PROJECT}",
                        f"--bigquery_endpoint=http://127.0.0.1:{free_port()}"],
               "--output_table", "cannot reach BigQuery")
    fails_with(capsys, [*base, "--output_table=bq://not a table", *flags(emulator)], "--output_table")
    assert not [t for t in client.list_tables(DATASET) if "stage" in t.table_id]
