"""--output_table postgresql://...: the CLI against a real PostgreSQL + pgvector server.

The server (tests/postgres_server.py) runs once per session; each test uses its own
tables. Rows are read back with psycopg, never with beam-embed's code, and checked
against the encoder called directly and against the same run's Parquet output.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest

from tests.pipeline_helpers import (DirectEncoder, fails_with, module_args, read_parquet_rows,
                                    run_cli, text_id, write_lines_corpus)
from tests.postgres_server import wait_for

TOLERANCE = 2e-5
DIM = 32  # tiny_random_model


def table_rows(server, table: str) -> dict[str, dict]:
    with server.connect() as conn:
        cur = conn.execute(f"SELECT id, embedding::text, n_tokens, truncated, fingerprint, run "
                           f"FROM {table}")
        rows = {}
        for doc_id, vector, n_tokens, truncated, fingerprint, run in cur:
            assert doc_id not in rows
            rows[doc_id] = dict(embedding=np.array(vector.strip("[]").split(","), np.float32),
                                n_tokens=n_tokens, truncated=truncated, fingerprint=fingerprint,
                                run=run)
        return rows


def accounted(summary: dict) -> bool:
    return summary["read"] == (summary["embedded"] + sum(summary["dead_lettered"].values())
                               + summary["duplicates"] + summary["skipped_existing"])


def assert_table_holds_the_run(summary, rows, parquet, lines, direct, out) -> None:
    """The table's rows are the run's: one per line, equal to the encoder called
    directly and to the same run's Parquet rows, tagged with the run."""
    assert summary["embedded"] == summary["table_rows"] == len(rows) == len(lines)
    assert set(rows) == {text_id(line) for line in lines} == set(parquet)
    for line in lines:
        row, stored = rows[text_id(line)], parquet[text_id(line)]
        np.testing.assert_allclose(row["embedding"], direct.embed(line), atol=TOLERANCE)
        np.testing.assert_array_equal(row["embedding"], stored["embedding"])
        assert (row["n_tokens"], row["run"]) == (stored["n_tokens"], os.path.abspath(out))


def cosine_neighbours(matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    normed = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return list(np.argsort(-(normed @ (query / np.linalg.norm(query))), kind="stable")[:k])


@pytest.fixture(scope="module")
def direct(tiny_random_model):
    return DirectEncoder(tiny_random_model.preprocessor, tiny_random_model.encoder)


def test_rows_equal_the_encoder_and_reruns_replace_them(postgres_server, tiny_random_model,
                                                        direct, tmp_path):
    lines = write_lines_corpus(tmp_path / "corpus.txt", 30)
    with open(tmp_path / "corpus.txt", "a", encoding="utf-8") as f:
        f.write(lines[0] + "\n\n")  # a duplicate and a blank line: accounted, not written
    out = str(tmp_path / "day1" / "emb")
    url = postgres_server.url(table="emb")
    argv = [f"--input={tmp_path / 'corpus.txt'}", f"--output={out}", f"--output_table={url}",
            *module_args(tiny_random_model)]
    summary = run_cli(*argv)
    rows = table_rows(postgres_server, "emb")
    parquet = read_parquet_rows(out)

    assert accounted(summary) and summary["duplicates"] == 1
    assert_table_holds_the_run(summary, rows, parquet, lines, direct, out)
    with postgres_server.connect() as conn:
        fingerprint, = {r["fingerprint"] for r in rows.values()}
        comment = conn.execute("SELECT obj_description('emb'::regclass, 'pg_class')").fetchone()[0]
        assert f'"{fingerprint}"' in comment and '"pooling": "mean"' in comment
        # pgvector's cosine distance finds the neighbours numpy finds in the Parquet output
        ids = sorted(parquet)
        matrix = np.stack([parquet[i]["embedding"] for i in ids])
        for q in (0, 7, 19):
            found = [doc_id for (doc_id,) in conn.execute(
                "SELECT id FROM emb ORDER BY embedding <=> %s::vector LIMIT 5",
                ["[" + ",".join(map(repr, matrix[q].tolist())) + "]"])]
            assert found == [ids[i] for i in cosine_neighbours(matrix, matrix[q], 5)]
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE "
                            "'beam_embed_stage_%'").fetchone()[0] == 0

    # The same day again, with two lines gone: the run's rows are replaced, each id once.
    with open(tmp_path / "corpus.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines[2:]) + "\n")
    again = run_cli(*argv)
    rows = table_rows(postgres_server, "emb")
    assert again["table_rows"] == again["embedded"] == len(rows) == len(lines) - 2
    assert set(rows) == {text_id(line) for line in lines[2:]}

    # The next day names the table as evidence: only new documents are embedded.
    new = [f"a new document number {i}" for i in range(4)]
    with open(tmp_path / "day2.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines[2:] + new) + "\n")
    day2 = run_cli(f"--input={tmp_path / 'day2.txt'}", f"--output={tmp_path / 'day2' / 'emb'}",
                   f"--output_table={url}", f"--skip_existing={url}",
                   *module_args(tiny_random_model))
    assert accounted(day2)
    assert (day2["skipped_existing"], day2["embedded"], day2["table_rows"]) == (len(lines) - 2, 4, 4)
    rows = table_rows(postgres_server, "emb")
    assert len(rows) == len(lines) + 2 and {text_id(t) for t in new} <= set(rows)

    # Re-running day 1 with --skip_existing: its own rows are no evidence (it replaces
    # them), day 2's are; nothing is lost and no id doubles.
    rerun = run_cli(*argv, f"--skip_existing={url}")
    assert accounted(rerun)
    assert (rerun["skipped_existing"], rerun["embedded"]) == (0, len(lines) - 2)
    assert len(table_rows(postgres_server, "emb")) == len(lines) + 2


def test_halfvec_with_hnsw_index_and_no_files(postgres_server, tiny_random_model, tmp_path):
    lines = write_lines_corpus(tmp_path / "corpus.txt", 12)
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={tmp_path / 'corpus.txt'}", f"--output={out}",
                      f"--output_table={postgres_server.url(table='public.half')}",
                      "--vector_type=halfvec", "--hnsw_index", "--output_format=none",
                      *module_args(tiny_random_model))
    assert summary["embedded"] == summary["table_rows"] == len(lines)
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".parquet", ".tfrecord"))]
    with postgres_server.connect() as conn:
        kind = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = 'half'::regclass AND attname = 'embedding'").fetchone()[0]
        assert kind == f"halfvec({DIM})"
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'half'").fetchall()
        assert any("hnsw" in d and "halfvec_cosine_ops" in d for (d,) in index), index


def test_bad_destinations_fail_before_the_run(postgres_server, tiny_random_model, tmp_path, capsys):
    write_lines_corpus(tmp_path / "corpus.txt", 3)
    base = [f"--input={tmp_path / 'corpus.txt'}", f"--output={tmp_path / 'emb'}",
            *module_args(tiny_random_model)]
    with postgres_server.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE small (id text PRIMARY KEY, embedding vector(8) NOT NULL, "
                     "n_tokens integer NOT NULL, truncated boolean NOT NULL, fingerprint text "
                     "NOT NULL, run text NOT NULL)")
        conn.execute("CREATE TABLE guarded (LIKE small INCLUDING ALL)")
        conn.execute("ALTER TABLE guarded ALTER COLUMN embedding TYPE vector(32)")
        conn.execute("CREATE ROLE reader LOGIN")
        conn.execute("GRANT SELECT ON guarded TO reader")
        conn.execute("GRANT CREATE ON SCHEMA public TO reader")
    from tests.gcs_emulator import free_port
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?table=emb"
    fails_with(capsys, [*base, f"--output_table={closed}"], "--output_table", "cannot connect")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url(table='small')}"],
               "--output_table", "vector(8)", f"vector({DIM})")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url('reader', table='guarded')}"],
               "--output_table", "no INSERT privilege")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url(table='small')}",
                        "--vector_type=halfvec"], "--output_table", "halfvec(32)")
    err = fails_with(capsys, [*base, "--output_table=postgresql://postgres:s3cret@127.0.0.1/db?table=t"],
                     "--output_table", "PGPASSWORD")
    assert "s3cret" not in err
    fails_with(capsys, [*base, f"--output_table={postgres_server.url(table='nope.emb')}"],
               "--output_table", 'schema "nope" does not exist')
    fails_with(capsys, [*base, "--output_table=mysql://h/db"], "--output_table", "postgresql://")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url()}"], "?table=")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url(table='emb')}",
                        f"--skip_existing={closed}"], "--skip_existing", "cannot connect")
    fails_with(capsys, [*base, "--output_format=none"], "--output_format none")
    fails_with(capsys, [*base, f"--output_table={postgres_server.url(table='emb')}",
                        "--embedding_dtype=int8"], "--embedding_dtype int8", "--output_table")
    with postgres_server.connect() as conn:  # nothing was created by the refused runs
        assert conn.execute("SELECT to_regclass('t'), to_regclass('emb_refused')").fetchone() == (None, None)


class _Cli(threading.Thread):
    """The CLI in a thread of this process (no second TensorFlow start-up): its exit
    code, or the exception it raised."""

    def __init__(self, argv: list[str]):
        super().__init__(daemon=True)
        self.argv, self.code, self.error = argv, None, None

    def run(self):
        from pipeline.main import main
        try:
            self.code = main(self.argv)
        except Exception as e:  # noqa: BLE001 - what the test inspects
            self.error = e


def _start_cli(tmp_path, url: str, model, n: int) -> _Cli:
    write_lines_corpus(tmp_path / "corpus.txt", n)
    cli = _Cli([f"--input={tmp_path / 'corpus.txt'}", f"--output={tmp_path / 'emb'}",
                f"--output_table={url}", "--runner=FnApiRunner", *module_args(model)])
    cli.start()
    return cli


SLOW_STAGING = """
CREATE OR REPLACE FUNCTION test_slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION test_add_slow_copy() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
    IF r.object_identity LIKE '%beam_embed_stage_%' THEN
      EXECUTE format('CREATE TRIGGER slow AFTER INSERT ON %s FOR EACH STATEMENT '
                     'EXECUTE FUNCTION test_slow_copy()', r.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER test_slow_staging ON ddl_command_end EXECUTE FUNCTION test_add_slow_copy();
"""


@contextlib.contextmanager
def slow_staging(server):
    """Every COPY into a staging table takes 1.5 s more (a trigger the server adds to
    each staging table as it is created), so that the test can stop the server while
    the run is between its batches, with one committed and the next in flight."""
    with server.connect() as conn:
        conn.execute(SLOW_STAGING)
    try:
        yield
    finally:
        with server.connect() as conn:
            conn.execute("DROP EVENT TRIGGER IF EXISTS test_slow_staging")


def _staged_rows(server) -> int:
    try:
        with server.connect() as conn:
            names = [n for (n,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'beam_embed_stage_%'")]
            return max([conn.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names],
                       default=-1)
    except Exception:  # noqa: BLE001 - not up yet
        return -1


def test_server_restarted_mid_run_is_retried(postgres_server, tiny_random_model, tmp_path,
                                             monkeypatch, caplog):
    monkeypatch.setenv("BEAM_EMBED_PG_RETRY_SECONDS", "20")
    url = postgres_server.url(table="restarted")
    with slow_staging(postgres_server):
        cli = _start_cli(tmp_path, url, tiny_random_model, n=2500)
        ready = wait_for(lambda: _staged_rows(postgres_server) > 0, timeout=300, step=0.05)
    assert ready, "the run never staged a batch"
    postgres_server.stop("immediate")  # drops the workers' connections mid-COPY
    postgres_server.start()
    cli.join(timeout=300)
    assert (cli.code, cli.error) == (0, None)
    assert "retrying in" in caplog.text
    rows = table_rows(postgres_server, "restarted")
    assert len(rows) == 2500


def test_server_gone_mid_run_fails_without_a_summary(postgres_server, tiny_random_model, tmp_path,
                                                     monkeypatch, capsys):
    monkeypatch.setenv("BEAM_EMBED_PG_RETRY_SECONDS", "2")
    url = postgres_server.url(table="gone")
    with slow_staging(postgres_server):
        cli = _start_cli(tmp_path, url, tiny_random_model, n=2500)
        ready = wait_for(lambda: _staged_rows(postgres_server) > 0, timeout=300, step=0.05)
    try:
        assert ready, "the run never staged a batch"
        postgres_server.stop("immediate")
        cli.join(timeout=300)
    finally:
        postgres_server.start()
    # One line naming the cause, exit 1: not the traceback of a bundle.
    assert cli.error is None and cli.code == 1, cli.error
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("beam-embed: error: the run failed: "), err[-3000:]
    assert "--output_table" in last and "attempts" in last, last
    assert f"there is no {tmp_path / 'emb'}-summary.json" in last, last
    assert "Traceback" not in err, err[-3000:]
    assert not os.path.exists(tmp_path / "emb-summary.json")
    with postgres_server.connect() as conn:  # the table holds nothing of the failed run
        assert conn.execute("SELECT count(*) FROM gone").fetchone()[0] == 0
    # The same command again, once the server is back: the complete table, once each.
    summary = run_cli(f"--input={tmp_path / 'corpus.txt'}", f"--output={tmp_path / 'emb'}",
                      f"--output_table={url}", *module_args(tiny_random_model))
    assert summary["embedded"] == summary["table_rows"] == len(table_rows(postgres_server, "gone")) == 2500
    assert _staged_rows(postgres_server) == -1  # no staging table left
