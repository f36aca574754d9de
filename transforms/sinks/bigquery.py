"""BigQuery: ``--output_table bq://PROJECT.DATASET.TABLE``.

The table: ``id STRING``, ``embedding ARRAY<FLOAT64>`` (what ``VECTOR_SEARCH``
takes), ``n_tokens INT64``, ``truncated BOOL``, the optional ``n_chunks INT64`` /
``text`` / ``text_pair STRING``, then provenance per row: ``fingerprint`` (compared
by ``--skip_existing``) and ``run`` (the run's ``--output`` prefix). The rest of
the provenance (encoder, pooling, dim, ...) is the table's description, a JSON
object keyed by fingerprint. The table is clustered on ``id``.

Loading is free: workers write the rows as Parquet files under
``OUTPUT-bigquery-staging/`` (next to the run's other files; on Dataflow a
``gs://`` prefix), and once all are written one **load job** (free, atomic, files
from Cloud Storage; local files are uploaded one load job each) fills a staging
table. Beam's own ``WriteToBigQuery`` is not used: its REST client cannot be
pointed at an emulator (see transforms/bigquery.py). The Storage Write API was not
chosen: it is billed per GB ingested, and load jobs give the same atomicity free.

Re-runs: one multi-statement transaction deletes the rows of this run and the
rows of the staged ids, then inserts the staged rows (one per id), so each id is
in the table once after any sequence of runs, kills and re-runs; a killed run
changes nothing in the table. That one DML transaction per run is what is billed
(BigQuery bills a DELETE by the bytes of the table it modifies), not the rows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Optional

import apache_beam as beam

from transforms import counters
from transforms.sinks.base import (FINGERPRINT_KEY, OPTIONAL_COLUMNS, DestinationError, Sink,
                                   SinkRows, embedding_matrix)

OPTION = "--output_table"
FILE_ROWS = 20000
CHECK_TIMEOUT_SECONDS = 10
_TYPES = {"id": "STRING", "n_tokens": "INT64", "truncated": "BOOL", "n_chunks": "INT64",
          "text": "STRING", "text_pair": "STRING", "fingerprint": "STRING", "run": "STRING"}
PROVENANCE_KEY = "beam_embed"


def _table_ref(url: str, project: Optional[str], option: str):
    from transforms.bigquery import parse_table
    spec = url.split("://", 1)[1]
    try:
        return parse_table(spec, project, option)
    except ValueError as e:
        raise DestinationError(str(e)) from None


def _schema(columns) -> list:
    from google.cloud import bigquery
    fields = [bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
              bigquery.SchemaField("embedding", "FLOAT64", mode="REPEATED"),
              bigquery.SchemaField("n_tokens", "INT64", mode="REQUIRED"),
              bigquery.SchemaField("truncated", "BOOL", mode="REQUIRED")]
    fields += [bigquery.SchemaField(c, _TYPES[c]) for c in OPTIONAL_COLUMNS if c in columns]
    fields += [bigquery.SchemaField("fingerprint", "STRING", mode="REQUIRED"),
               bigquery.SchemaField("run", "STRING", mode="REQUIRED")]
    return fields


class BigQuerySink(Sink):
    """Rows into a BigQuery table (see the module docstring)."""
    name = "bigquery"
    schemes = ("bq",)

    def __init__(self, destination: str, rows: SinkRows, project: Optional[str] = None,
                 bigquery_endpoint: Optional[str] = None, staging_prefix: str = "", **_):
        from transforms.bigquery import BigQueryConnection
        super().__init__(destination, rows)
        self.table = _table_ref(destination, project, OPTION)
        self.project = project or self.table.project  # runs the jobs
        self.connection = BigQueryConnection(bigquery_endpoint)
        digest = hashlib.sha256(f"{self.table}\0{rows.run}".encode()).hexdigest()[:16]
        self.staging = f"{self.table.project}.{self.table.dataset}.beam_embed_stage_{digest}"
        self.staging_dir = f"{staging_prefix}-bigquery-staging"

    def describe(self) -> str:
        return f"bq://{self.table}"

    def client(self):
        return self.connection.bigquery_client(self.project)

    def check(self) -> None:
        from google.api_core import exceptions
        shown = f"{OPTION} {self.describe()!r}"
        client = self.client()
        try:
            client.get_dataset(f"{self.table.project}.{self.table.dataset}", retry=None,
                               timeout=CHECK_TIMEOUT_SECONDS)
        except exceptions.NotFound:
            raise DestinationError(f"{shown}: dataset {self.table.project}.{self.table.dataset} "
                                   "does not exist") from None
        except exceptions.Forbidden as e:
            raise DestinationError(f"{shown}: no access to the dataset: {e.message}") from None
        except Exception as e:  # noqa: BLE001 - transport errors come in many types
            raise DestinationError(f"{shown}: cannot reach BigQuery: {e}"[:500]) from None
        self._check_permissions(client, shown)
        try:
            table = client.get_table(str(self.table), retry=None, timeout=CHECK_TIMEOUT_SECONDS)
        except exceptions.NotFound:
            return
        found = {f.name: (f.field_type, f.mode) for f in table.schema}
        if found.get("embedding") not in (("FLOAT", "REPEATED"), ("FLOAT64", "REPEATED")):
            raise DestinationError(f"{shown}: the table's embedding column is "
                                   f"{found.get('embedding') or 'missing'}, not ARRAY<FLOAT64>")
        for column in ["id", "n_tokens", "truncated", "fingerprint", "run",
                       *sorted(self.rows.columns)]:
            kind = found.get(column, ("missing",))[0]
            if {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}.get(kind, kind) != _TYPES[column]:
                raise DestinationError(f"{shown}: the table's column {column} is {kind}, "
                                       f"expected {_TYPES[column]}")
        dims = {meta.get("dim") for meta in _provenance(table.description).values()}
        other = dims - {str(self.rows.dim), None}
        if other:
            raise DestinationError(f"{shown}: the table holds embeddings of dim {', '.join(sorted(other))}; "
                                   f"this run's model gives {self.rows.dim}")

    def _check_permissions(self, client, shown: str) -> None:
        """tables.testIamPermissions on the dataset's tables. bqemulator has no IAM
        (it answers 405), so there it is skipped."""
        from google.api_core import exceptions
        needed = ["bigquery.tables.create", "bigquery.tables.updateData",
                  "bigquery.tables.getData", "bigquery.tables.update"]
        path = (f"/projects/{self.table.project}/datasets/{self.table.dataset}/tables/"
                f"{self.table.table}:testIamPermissions")
        try:
            granted = client._connection.api_request(
                "POST", path, data={"permissions": needed}, timeout=CHECK_TIMEOUT_SECONDS)
        except (exceptions.MethodNotAllowed, exceptions.MethodNotImplemented, exceptions.NotFound):
            return
        missing = sorted(set(needed) - set(granted.get("permissions", [])))
        if missing:
            raise DestinationError(f"{shown}: missing permissions {', '.join(missing)}")

    def prepare(self) -> None:
        """A killed attempt's staging table and files go; the table is created if need be."""
        from apache_beam.io.filesystems import FileSystems
        from google.cloud import bigquery
        client = self.client()
        client.delete_table(self.staging, not_found_ok=True)
        _delete_dir(self.staging_dir)
        table = bigquery.Table(str(self.table), schema=_schema(OPTIONAL_COLUMNS))
        table.clustering_fields = ["id"]
        client.create_table(table, exists_ok=True)

    def write(self) -> beam.PTransform:
        return WriteBigQuery(self)

    @classmethod
    def check_evidence(cls, url: str, option: str) -> None:
        _table_ref(url, None, option)

    @classmethod
    def done_ids(cls, url: str, fingerprint: str, own_run: str, **options) -> beam.PTransform:
        return ReadBigQueryIds(url, fingerprint, own_run, **options)


def _delete_dir(path: str) -> None:
    """The staging files (a directory locally, an object prefix on Cloud Storage)."""
    from apache_beam.io.filesystems import FileSystems
    if path.startswith("gs://"):
        path += "/"
    if FileSystems.exists(path) or path.endswith("/"):
        try:
            FileSystems.delete([path])
        except Exception:  # noqa: BLE001 - nothing there to delete
            logging.debug("no staging files at %s", path)


def _provenance(description: Optional[str]) -> dict:
    try:
        found = json.loads(description or "{}").get(PROVENANCE_KEY, {})
        return found if isinstance(found, dict) else {}
    except (ValueError, AttributeError):
        return {}


class WriteBigQuery(beam.PTransform):
    def __init__(self, sink: BigQuerySink):
        super().__init__()
        self._sink = sink

    def expand(self, rows):
        return (rows
                | "Batch" >> beam.BatchElements(min_batch_size=FILE_ROWS, max_batch_size=FILE_ROWS)
                | "WriteFiles" >> beam.ParDo(_WriteFileFn(self._sink)).with_output_types(tuple[str, int])
                | "AllFiles" >> beam.combiners.ToList()
                | "LoadAndSwap" >> beam.ParDo(_LoadAndSwapFn(self._sink)).with_output_types(int))


class _WriteFileFn(beam.DoFn):
    """A batch of rows -> one Parquet file under the staging directory; its path. Only
    the paths of committed bundles reach the load, so a retried bundle's file is
    never loaded twice."""

    def __init__(self, sink: BigQuerySink):
        self._sink = sink

    def process(self, batch: list[dict]):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems
        sink = self._sink
        matrix = embedding_matrix(batch, sink.rows.dim).astype("float64")  # exact widening
        columns = {"id": pa.array([r["id"] for r in batch], pa.string()),
                   "embedding": pa.array(list(matrix), pa.list_(pa.float64())),
                   "n_tokens": pa.array([int(r["n_tokens"]) for r in batch], pa.int64()),
                   "truncated": pa.array([bool(r["truncated"]) for r in batch], pa.bool_())}
        for c in OPTIONAL_COLUMNS:
            if c in sink.rows.columns:
                columns[c] = pa.array([r.get(c) for r in batch],
                                      pa.int64() if c == "n_chunks" else pa.string())
        columns["fingerprint"] = pa.array([sink.rows.fingerprint] * len(batch), pa.string())
        columns["run"] = pa.array([sink.rows.run] * len(batch), pa.string())
        path = f"{sink.staging_dir}/part-{uuid.uuid4().hex}.parquet"
        with FileSystems.create(path) as f:
            pq.write_table(pa.table(columns), f)
        yield path, len(batch)


class _LoadAndSwapFn(beam.DoFn):
    def __init__(self, sink: BigQuerySink):
        self._sink = sink

    def process(self, files: list[tuple[str, int]]):
        from apache_beam.io.filesystems import FileSystems
        from google.cloud import bigquery
        sink = self._sink
        paths, staged = [p for p, _ in files], sum(n for _, n in files)
        client = sink.client()
        client.delete_table(sink.staging, not_found_ok=True)
        staging = bigquery.Table(sink.staging, schema=_schema(sorted(sink.rows.columns)))
        client.create_table(staging)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition="WRITE_APPEND")
        config.parquet_options = bigquery.ParquetOptions()
        config.parquet_options.enable_list_inference = True
        cloud = [p for p in paths if p.startswith("gs://")]
        if cloud:  # one free load job for all of them (up to 10,000 URIs a job)
            for start in range(0, len(cloud), 10000):
                client.load_table_from_uri(cloud[start:start + 10000], sink.staging,
                                           job_config=config).result()
        for path in (p for p in paths if not p.startswith("gs://")):
            with FileSystems.open(path) as f:
                client.load_table_from_file(f, sink.staging, job_config=config).result()
        loaded = client.get_table(sink.staging).num_rows or 0
        if loaded != staged:  # every row handed over, or the run fails claiming nothing
            raise RuntimeError(f"{OPTION} {sink.describe()}: the staging table holds {loaded} "
                               f"rows of the {staged} written; nothing was swapped in")
        written = self._swap(client)
        self._record_provenance(client)
        client.delete_table(sink.staging, not_found_ok=True)
        _delete_dir(sink.staging_dir)
        counters.counter(counters.ROWS_WRITTEN).inc(written)
        logging.info("bq://%s: %d rows of this run", sink.table, written)
        yield written

    def _swap(self, client) -> int:
        from google.cloud import bigquery
        sink = self._sink
        names = ["id", "embedding", "n_tokens", "truncated",
                 *[c for c in OPTIONAL_COLUMNS if c in sink.rows.columns], "fingerprint", "run"]
        listed = ", ".join(names)
        target = f"`{sink.table}`"
        parameters = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("run", "STRING", sink.rows.run)])
        # The run is a literal in the script: bqemulator binds no parameters inside a
        # multi-statement script. JSON's escapes (\\, \", \uXXXX) are BigQuery's too.
        run = json.dumps(sink.rows.run, ensure_ascii=True)
        client.query(
            f"BEGIN TRANSACTION; "
            f"DELETE FROM {target} WHERE run = {run} OR id IN (SELECT id FROM `{sink.staging}`); "
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM `{sink.staging}` "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY id) = 1; "
            f"COMMIT TRANSACTION;").result()
        [(count,)] = client.query(f"SELECT COUNT(*) FROM {target} WHERE run = @run",
                                  job_config=parameters).result()
        return int(count)

    def _record_provenance(self, client) -> None:
        sink = self._sink
        table = client.get_table(str(sink.table))
        try:
            description = json.loads(table.description or "{}")
            description = description if isinstance(description, dict) else {}
        except ValueError:
            description = {}
        provenance = _provenance(table.description)
        provenance[sink.rows.metadata.get(FINGERPRINT_KEY, "")] = dict(sink.rows.metadata)
        description[PROVENANCE_KEY] = provenance
        table.description = json.dumps(description, sort_keys=True)
        client.update_table(table, ["description"])


class ReadBigQueryIds(beam.PTransform):
    """The ids a table holds with ``fingerprint``, except ``own_run``'s rows: the
    ``--skip_existing`` evidence of a table (one query over its id, fingerprint and
    run columns). A table that does not exist yet holds none."""

    def __init__(self, url: str, fingerprint: str, own_run: str, project: Optional[str] = None,
                 bigquery_endpoint: Optional[str] = None, **_):
        super().__init__()
        from transforms.bigquery import BigQueryConnection
        self._table = _table_ref(url, project, "--skip_existing")
        self._project = project or self._table.project
        self._connection = BigQueryConnection(bigquery_endpoint)
        self._fingerprint, self._own_run = fingerprint, own_run

    def expand(self, pbegin):
        return (pbegin | "Start" >> beam.Create([None])
                | "ReadIds" >> beam.ParDo(_ReadIdsFn(self._connection, self._project, str(self._table),
                                                     self._fingerprint, self._own_run))
                .with_output_types(str))


class _ReadIdsFn(beam.DoFn):
    def __init__(self, connection, project, table, fingerprint, own_run):
        self._args = (connection, project, table, fingerprint, own_run)

    def process(self, _):
        from google.api_core import exceptions
        from google.cloud import bigquery
        connection, project, table, fingerprint, own_run = self._args
        client = connection.bigquery_client(project)
        try:
            client.get_table(table)
        except exceptions.NotFound:
            return
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("fingerprint", "STRING", fingerprint),
            bigquery.ScalarQueryParameter("run", "STRING", own_run)])
        rows = client.query(f"SELECT id FROM `{table}` WHERE fingerprint = @fingerprint "
                            "AND run != @run", job_config=config).result(page_size=50000)
        for (doc_id,) in rows:
            yield doc_id
