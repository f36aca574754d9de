"""PostgreSQL + pgvector: ``--output_table postgresql://[USER@]HOST[:PORT]/DB?table=[SCHEMA.]TABLE``.

The URL is a libpq connection URI plus one parameter of ours, ``table``; every
other parameter (``sslmode``, ``service``, ...) goes to libpq. It must not hold a
password: the URL reaches logs and job options. libpq finds it the standard ways
(``PGPASSWORD``, ``~/.pgpass`` or ``PGPASSFILE``, a ``PGSERVICE`` service file),
and messages show the URL without one (``describe``).

The table: ``id text PRIMARY KEY``, ``embedding vector(dim)`` (or ``halfvec(dim)``
with ``--vector_type halfvec``), ``n_tokens integer``, ``truncated boolean``, the
optional ``n_chunks integer`` / ``text`` / ``text_pair`` (nullable), then
provenance per row: ``fingerprint`` (the model fingerprint, compared by
``--skip_existing``) and ``run`` (the run's ``--output`` prefix). The other
provenance (encoder, pooling, ...) goes in the table's comment as JSON, keyed by
fingerprint.

Idempotence, by a staging table swapped in: the launcher (re)creates a (logged:
a crashed server empties unlogged tables) staging table of this run before the
pipeline starts; workers COPY batches of rows
into it; once every batch is in, one transaction deletes the rows an earlier
attempt of this run left, upserts the staged rows on id (``ON CONFLICT (id) DO
UPDATE``, one row per id even if a retried batch was copied twice), and drops the
staging table, after checking that it holds every row the run handed over. A killed run leaves the table as it was; each id is in it once
whatever happened. Two runs on one table swap one at a time (an advisory lock).

Connections that drop are retried with back-off (a batch is one transaction, so
a retry never half-applies it); once the retries are used up, the run fails.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.parse
from typing import Callable, Optional

import apache_beam as beam

from transforms import counters
from transforms.constants import VECTOR_TYPES
from transforms.sinks.base import OPTIONAL_COLUMNS, DestinationError, Sink, SinkRows

OPTION = "--output_table"
CONNECT_TIMEOUT_SECONDS = 5
COPY_BATCH_ROWS = 1000
# Seconds to wait before each retry of a dropped connection: about 30 s in all, long
# enough for a server restart or fail-over. BEAM_EMBED_PG_RETRY_SECONDS (a total,
# spread the same way) shortens it in tests.
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)
_COLUMN_TYPES = {"id": "text", "n_tokens": "integer", "truncated": "boolean",
                 "n_chunks": "integer", "text": "text", "text_pair": "text",
                 "fingerprint": "text", "run": "text"}


def retry_delays() -> tuple[float, ...]:
    total = os.environ.get("BEAM_EMBED_PG_RETRY_SECONDS")
    if not total:
        return RETRY_DELAYS
    scale = float(total) / sum(RETRY_DELAYS)
    return tuple(d * scale for d in RETRY_DELAYS)


class PostgresTable:
    """A parsed ``postgresql://`` table URL."""

    def __init__(self, url: str, option: str = OPTION):
        self.option = option
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if parts.password is not None or any(k == "password" for k, _ in query):
            raise DestinationError(
                f"{option}: the URL holds a password; give it in PGPASSWORD, ~/.pgpass "
                "(PGPASSFILE) or a service file (PGSERVICE) instead: the URL reaches logs "
                "and job options")
        tables = [v for k, v in query if k == "table"]
        rest = [(k, v) for k, v in query if k != "table"]
        netloc = parts.netloc
        self.conninfo = urllib.parse.urlunsplit(
            ("postgresql", netloc, parts.path, urllib.parse.urlencode(rest), ""))
        self.shown = urllib.parse.urlunsplit(
            ("postgresql", netloc, parts.path, urllib.parse.urlencode(query), ""))
        if len(tables) != 1 or not tables[0].strip():
            raise DestinationError(f"{option} {self.shown!r}: name the table as ?table=NAME "
                                   "or ?table=SCHEMA.NAME")
        schema, _, name = tables[0].rpartition(".")
        if len(name.encode()) > 40 or len(schema.encode()) > 63:
            raise DestinationError(f"{option} {self.shown!r}: the table name may be at most 40 "
                                   "bytes (its staging table and index names add to it)")
        self.schema, self.name = schema or None, name

    def identifier(self, name: Optional[str] = None):
        from psycopg import sql
        parts = ([self.schema] if self.schema else []) + [name or self.name]
        return sql.Identifier(*parts)

    @property
    def regclass(self) -> str:
        return self.identifier().as_string(None)

    def connect(self, autocommit: bool = False):
        import psycopg
        return psycopg.connect(self.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               autocommit=autocommit, application_name="beam-embed")

    def connect_checked(self):
        """A connection, or DestinationError saying why there is none."""
        import psycopg
        try:
            return self.connect(autocommit=True)
        except psycopg.Error as e:
            raise DestinationError(f"{self.option} {self.shown!r}: cannot connect: "
                                   f"{_one_line(e)}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:400]


def with_retries(what: str, action: Callable, on_drop: Callable = lambda: None):
    """``action()``, retried with back-off while the connection drops
    (psycopg.OperationalError: refused, reset, server shut down). Other errors (bad
    data, permissions) are not retried."""
    import psycopg
    delays = retry_delays()
    for attempt in range(len(delays) + 1):
        try:
            return action()
        except psycopg.OperationalError as e:
            on_drop()
            if attempt == len(delays):
                raise RuntimeError(f"{what} failed after {attempt + 1} attempts over "
                                   f"{sum(delays):.1f} s: {_one_line(e)}") from None
            logging.warning("%s: the connection failed (%s); retrying in %.1f s", what,
                            _one_line(e), delays[attempt])
            time.sleep(delays[attempt])


class PostgresSink(Sink):
    """Rows into a pgvector table (see the module docstring)."""
    name = "postgres"
    schemes = ("postgresql", "postgres")

    def __init__(self, destination: str, rows: SinkRows, vector_type: str = "vector",
                 hnsw_index: bool = False, **_):
        super().__init__(destination, rows)
        self.table = PostgresTable(destination)
        if vector_type not in VECTOR_TYPES:
            raise DestinationError(f"--vector_type {vector_type!r}: use one of "
                                   f"{', '.join(VECTOR_TYPES)}")
        self.vector_type = vector_type
        self.hnsw_index = hnsw_index
        digest = hashlib.sha256(f"{self.table.regclass}\0{rows.run}".encode()).hexdigest()[:16]
        self.staging_name = f"beam_embed_stage_{digest}"

    def describe(self) -> str:
        return self.table.shown

    @property
    def columns(self) -> list[str]:
        """The staged columns, in COPY order."""
        return ["id", "embedding", "n_tokens", "truncated"] + [
            c for c in OPTIONAL_COLUMNS if c in self.rows.columns]

    @property
    def vector_column_type(self) -> str:
        return f"{self.vector_type}({self.rows.dim})"

    def check(self) -> None:
        import psycopg
        try:
            self._check()
        except psycopg.Error as e:  # a missing schema, a server that went away, ...
            raise DestinationError(f"{OPTION} {self.table.shown!r}: {_one_line(e)}") from None

    def _check(self) -> None:
        with self.table.connect_checked() as conn:
            shown = f"{OPTION} {self.table.shown!r}"
            cur = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if cur.fetchone() is None:
                raise DestinationError(f"{shown}: the server has no pgvector extension")
            schema = self.table.schema or conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None or not conn.execute(
                    "SELECT has_schema_privilege(%s, 'CREATE')", [schema]).fetchone()[0]:
                raise DestinationError(f"{shown}: no CREATE privilege on schema {schema!r} "
                                       "(the run creates a staging table there)")
            oid = conn.execute("SELECT to_regclass(%s)::oid", [self.table.regclass]).fetchone()[0]
            if oid is None:
                return
            self._check_existing(conn, oid, shown)

    def _check_existing(self, conn, oid: int, shown: str) -> None:
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            if not conn.execute("SELECT has_table_privilege(%s, %s)", [oid, privilege]).fetchone()[0]:
                raise DestinationError(f"{shown}: no {privilege} privilege on the table")
        found = dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", [oid]).fetchall())
        expected = dict(self._column_types(), fingerprint="text", run="text")
        if found.get("embedding") != self.vector_column_type:
            raise DestinationError(
                f"{shown}: the table's embedding column is {found.get('embedding') or 'missing'}, "
                f"this run writes {self.vector_column_type} (the model's dim and --vector_type)")
        for column, kind in expected.items():
            if found.get(column) != kind:
                raise DestinationError(f"{shown}: the table's column {column} is "
                                       f"{found.get(column) or 'missing'}, expected {kind}")
        unique = conn.execute(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND i.indisunique "
            "AND i.indnatts = 1 AND a.attname = 'id'", [oid]).fetchone()
        if unique is None:
            raise DestinationError(f"{shown}: the table has no primary key or unique index on id")
        owner = conn.execute("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s",
                             [oid]).fetchone()[0]
        if self.hnsw_index and not owner:
            raise DestinationError(f"{shown}: --hnsw_index needs the table's owner")

    def _column_types(self) -> dict[str, str]:
        types = {c: _COLUMN_TYPES.get(c) for c in self.columns}
        types["embedding"] = self.vector_column_type
        return types

    def prepare(self) -> None:
        """Create the extension and the table if need be, and a fresh staging table
        (a killed attempt's is dropped)."""
        from psycopg import sql
        with self.table.connect_checked() as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            optional = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_COLUMN_TYPES[c]))
                        for c in OPTIONAL_COLUMNS]
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, embedding {} NOT NULL, "
                "n_tokens integer NOT NULL, truncated boolean NOT NULL, {}, "
                "fingerprint text NOT NULL, run text NOT NULL)").format(
                    self.table.identifier(), sql.SQL(self.vector_column_type),
                    sql.SQL(", ").join(optional)))
            staging = self.table.identifier(self.staging_name)
            staged = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                      for c, t in self._column_types().items()]
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
            # Logged, not UNLOGGED: a server that crashes (or is stopped with -m
            # immediate) truncates unlogged tables on recovery, and the batches
            # committed before would be lost while the run retries the rest.
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
                staging, sql.SQL(", ").join(staged)))

    def write(self) -> beam.PTransform:
        return WritePostgres(self)

    @classmethod
    def check_evidence(cls, url: str, option: str) -> None:
        PostgresTable(url, option).connect_checked().close()

    @classmethod
    def done_ids(cls, url: str, fingerprint: str, own_run: str, **_) -> beam.PTransform:
        return ReadPostgresIds(url, fingerprint, own_run)


class WritePostgres(beam.PTransform):
    def __init__(self, sink: PostgresSink):
        super().__init__()
        self._sink = sink

    def expand(self, rows):
        return (rows
                | "Batch" >> beam.BatchElements(min_batch_size=COPY_BATCH_ROWS,
                                                max_batch_size=COPY_BATCH_ROWS)
                | "CopyToStaging" >> beam.ParDo(_CopyBatchFn(self._sink)).with_output_types(int)
                | "CountStaged" >> beam.CombineGlobally(sum)
                | "SwapIn" >> beam.ParDo(_SwapInFn(self._sink)).with_output_types(int))


def vector_text(vector) -> str:
    # Python floats of float32 values print in their shortest form, which pgvector
    # parses (strtof) back to the same float32.
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


class _CopyBatchFn(beam.DoFn):
    """A batch of rows -> COPY into the staging table, one transaction a batch."""

    def __init__(self, sink: PostgresSink):
        self._sink = sink
        self._conn = None

    def setup(self):
        self._conn = None

    def _drop(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass
        self._conn = None

    def process(self, batch: list[dict]):
        from psycopg import sql
        from transforms.sinks.base import embedding_matrix
        sink = self._sink
        matrix = embedding_matrix(batch, sink.rows.dim)
        columns = sink.columns
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sink.table.identifier(sink.staging_name),
            sql.SQL(", ").join(map(sql.Identifier, columns)))

        def copy():
            if self._conn is None:
                self._conn = sink.table.connect()
            with self._conn.transaction(), self._conn.cursor() as cur:
                with cur.copy(statement) as out:
                    for row, vector in zip(batch, matrix):
                        out.write_row([vector_text(vector) if c == "embedding" else row.get(c)
                                       for c in columns])
        with_retries(f"writing to {OPTION} {sink.table.shown}", copy, self._drop)
        yield len(batch)

    def teardown(self):
        self._drop()


class _SwapInFn(beam.DoFn):
    """Once every batch is staged: replace this run's rows with the staged ones, in one
    transaction; count the rows of this run the table then holds."""

    def __init__(self, sink: PostgresSink):
        self._sink = sink

    def process(self, staged: int):
        sink = self._sink
        written = with_retries(f"swapping the rows into {OPTION} {sink.table.shown}",
                               lambda: self._swap(staged))
        counters.counter(counters.ROWS_WRITTEN).inc(written)
        if sink.hnsw_index:
            with_retries(f"indexing {OPTION} {sink.table.shown}", self._index)
        logging.info("%s: %d rows of this run (%d staged)",
                     sink.table.shown, written, staged)
        yield written

    def _swap(self, staged: int) -> int:
        from psycopg import sql
        sink, table = self._sink, self._sink.table
        target, staging = table.identifier(), table.identifier(sink.staging_name)
        run = sink.rows.run
        with table.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table.regclass])
            if conn.execute("SELECT to_regclass(%s)", [staging.as_string(None)]).fetchone()[0] is None:
                # A retried swap whose first attempt committed: the staging table is
                # dropped in the same transaction as the rows go in.
                return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE run = %s").format(target),
                                    [run]).fetchone()[0]
            # Every row handed to the sink must be there (each batch's count reached
            # here once, whatever was retried): else the run fails, claiming nothing.
            distinct = conn.execute(sql.SQL("SELECT count(DISTINCT id) FROM {}").format(staging)
                                    ).fetchone()[0]
            if distinct != staged:
                raise RuntimeError(f"{OPTION} {table.shown}: the staging table holds {distinct} "
                                   f"rows of the {staged} written; nothing was swapped in")
            conn.execute(sql.SQL("DELETE FROM {} WHERE run = %s").format(target), [run])
            columns = sink.columns
            absent = [c for c in OPTIONAL_COLUMNS if c not in columns]
            updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                       for c in columns[1:] + ["fingerprint", "run"]]
            updates += [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in absent]
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            cur = conn.execute(sql.SQL(
                "INSERT INTO {target} ({names}, fingerprint, run) "
                "SELECT DISTINCT ON (id) {names}, %s, %s FROM {staging} ORDER BY id "
                "ON CONFLICT (id) DO UPDATE SET {updates}").format(
                    target=target, names=names, staging=staging,
                    updates=sql.SQL(", ").join(updates)), [sink.rows.fingerprint, run])
            written = cur.rowcount
            conn.execute(sql.SQL("DROP TABLE {}").format(staging))
            self._record_provenance(conn)
            return written

    def _record_provenance(self, conn) -> None:
        """The run's provenance, in the table's comment: {fingerprint: metadata}. Only
        the owner may comment on a table; others' runs keep the per-row fingerprint."""
        from psycopg import sql
        sink = self._sink
        oid = conn.execute("SELECT to_regclass(%s)::oid", [sink.table.regclass]).fetchone()[0]
        owner, comment = conn.execute(
            "SELECT pg_has_role(relowner, 'USAGE'), obj_description(oid, 'pg_class') "
            "FROM pg_class WHERE oid = %s", [oid]).fetchone()
        if not owner:
            return
        try:
            provenance = json.loads(comment or "{}")
            provenance = provenance if isinstance(provenance, dict) else {}
        except ValueError:
            provenance = {}
        provenance[sink.rows.fingerprint] = dict(sink.rows.metadata)
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sink.table.identifier(), sql.Literal(json.dumps(provenance, sort_keys=True))))

    def _index(self) -> None:
        from psycopg import sql
        sink = self._sink
        ops = "vector_cosine_ops" if sink.vector_type == "vector" else "halfvec_cosine_ops"
        with sink.table.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding {})").format(
                sql.Identifier(f"{sink.table.name}_embedding_hnsw"), sink.table.identifier(),
                sql.SQL(ops)))


class ReadPostgresIds(beam.PTransform):
    """The ids a table holds with ``fingerprint``, except ``own_run``'s rows (which this
    run replaces): the ``--skip_existing`` evidence of a table. A table that does not
    exist yet holds none."""

    def __init__(self, url: str, fingerprint: str, own_run: str):
        super().__init__()
        self._table = PostgresTable(url, "--skip_existing")
        self._fingerprint = fingerprint
        self._own_run = own_run

    def expand(self, pbegin):
        return (pbegin | "Start" >> beam.Create([None])
                | "ReadIds" >> beam.ParDo(_ReadIdsFn(self._table, self._fingerprint,
                                                     self._own_run)).with_output_types(str))


class _ReadIdsFn(beam.DoFn):
    def __init__(self, table: PostgresTable, fingerprint: str, own_run: str):
        self._table, self._fingerprint, self._own_run = table, fingerprint, own_run

    def process(self, _):
        """Streams the ids (a server-side cursor): a dropped connection starts again from
        the first id, and the ids it repeats are harmless (SkipExisting keeps a set)."""
        import psycopg
        from psycopg import sql
        delays = retry_delays()
        for attempt in range(len(delays) + 1):
            try:
                with self._table.connect() as conn:
                    if conn.execute("SELECT to_regclass(%s)",
                                    [self._table.regclass]).fetchone()[0] is None:
                        return
                    with conn.cursor(name="beam_embed_ids") as cur:
                        cur.itersize = 10000
                        cur.execute(sql.SQL("SELECT id FROM {} WHERE fingerprint = %s AND run <> %s")
                                    .format(self._table.identifier()),
                                    [self._fingerprint, self._own_run])
                        for (doc_id,) in cur:
                            yield doc_id
                return
            except psycopg.OperationalError as e:
                if attempt == len(delays):
                    raise RuntimeError(f"reading ids from --skip_existing {self._table.shown} "
                                       f"failed after {attempt + 1} attempts: {_one_line(e)}") from None
                time.sleep(delays[attempt])
