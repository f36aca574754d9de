"""Reading a corpus from BigQuery, with ReadCorpus's Document / DeadLetter rules.

``ReadBigQueryCorpus`` reads a table (or a query's result table) through the
BigQuery Storage Read API in Arrow format: one DoFn creates the read session, and
each of the session's streams is read by its own DoFn call, so the streams are
read in parallel on the workers.

Why not Beam's ``ReadFromBigQuery(method=DIRECT_READ)``: it cannot be pointed at
anything but production BigQuery, so it cannot be tested offline. In Beam 2.77
its REST client is built without a URL (``bigquery_tools.BigQueryWrapper.
_bigquery_client`` → ``BigqueryV2.BASE_URL``, https://bigquery.googleapis.com)
and its Storage Read client with no arguments at all (``bigquery.py``:
``bq_storage.BigQueryReadClient()``); a settable endpoint was requested in
apache/beam#28149 (Java) and never added to the Python SDK. Here the endpoints
and credentials are parameters; with none given, the clients are the default
production ones.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from typing import Any, NamedTuple, Optional

import apache_beam as beam

from transforms.progress import PROGRESS
from transforms.read import RecordOutputs
from transforms.records import DEAD_LETTERS_TAG, DOCUMENTS_TAG, DeadLetter, Document, ReadResult
from transforms.validate import FieldRules

_LOG = logging.getLogger(__name__)

# PROJECT:DATASET.TABLE (Beam's and bq's spelling) or PROJECT.DATASET.TABLE
# (standard SQL's); the project may be domain-scoped (example.com:my-project) or
# left out (then the pipeline's --project).
TABLE_PATTERN = re.compile(
    r"^(?:(?P<project>(?:[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+:)?[a-z][a-z0-9-]{4,28}[a-z0-9])[:.])?"
    r"(?P<dataset>[A-Za-z0-9_]{1,1024})\.(?P<table>[^.:`\s]{1,1024})$")
# Query results written with --bigquery_temp_dataset expire after this long.
RESULT_TABLE_EXPIRATION_HOURS = 24


class TableRef(NamedTuple):
    project: str
    dataset: str
    table: str

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def path(self) -> str:
        """The Storage Read API's resource name."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"


def parse_table(spec: str, default_project: Optional[str] = None,
                option: str = "--bigquery_table") -> TableRef:
    """``PROJECT:DATASET.TABLE`` / ``PROJECT.DATASET.TABLE`` / ``DATASET.TABLE``.

    Raises ValueError naming ``option`` for anything else, or for a table without
    a project when there is no default project.
    """
    match = TABLE_PATTERN.match(spec or "")
    if not match:
        raise ValueError(f"{option} {spec!r} is not PROJECT:DATASET.TABLE or PROJECT.DATASET.TABLE")
    project = match["project"] or default_project
    if not project:
        raise ValueError(f"{option} {spec!r} names no project and --project is not set")
    return TableRef(project, match["dataset"], match["table"])


def parse_dataset(spec: str, default_project: Optional[str] = None) -> tuple[str, str]:
    """``PROJECT:DATASET`` / ``PROJECT.DATASET`` / ``DATASET`` → (project, dataset)."""
    try:
        ref = parse_table(f"{spec}.t", default_project, "--bigquery_temp_dataset")
    except ValueError:
        raise ValueError(f"--bigquery_temp_dataset {spec!r} is not PROJECT:DATASET or "
                         "PROJECT.DATASET (or DATASET with --project)") from None
    return ref.project, ref.dataset


def check_source(table: Optional[str], query: Optional[str], project: Optional[str],
                 temp_dataset: Optional[str] = None):
    """(table, temp dataset, billing project) from the options; ValueError naming
    the option when they do not make one source."""
    if bool(table) == bool(query):
        raise ValueError("give exactly one of --bigquery_table (table=) and --bigquery_query (query=)")
    if query and not project:
        raise ValueError("--bigquery_query needs --project: the project that runs the query job")
    table_ref = parse_table(table, project) if table else None
    dataset = parse_dataset(temp_dataset, project) if temp_dataset else None
    return table_ref, dataset, project or table_ref.project


@dataclasses.dataclass(frozen=True)
class BigQueryConnection:
    """Where the two BigQuery APIs are and who calls them; picklable, so DoFns
    build their clients from it on the workers.

    ``endpoint``: the REST API's root URL (``http://127.0.0.1:9050`` for an
    emulator); ``storage_endpoint``: the Storage Read API's ``host:port``, where
    ``http://host:port`` means a plaintext gRPC channel (emulators serve no TLS).
    Credentials: ``credentials`` if given; anonymous when an endpoint is plain
    ``http://`` (no token is ever sent in clear); otherwise application default
    credentials, as for every production client.
    """
    endpoint: Optional[str] = None
    storage_endpoint: Optional[str] = None
    credentials: Any = None

    def _credentials(self):
        if self.credentials is not None:
            return self.credentials
        if any(e and e.startswith("http://") for e in (self.endpoint, self.storage_endpoint)):
            from google.auth.credentials import AnonymousCredentials
            return AnonymousCredentials()
        return None

    def bigquery_client(self, project: str):
        from google.cloud import bigquery
        return bigquery.Client(
            project=project, credentials=self._credentials(),
            client_options={"api_endpoint": self.endpoint} if self.endpoint else None)

    def read_client(self):
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient
        endpoint = self.storage_endpoint
        if not endpoint:
            return BigQueryReadClient(credentials=self._credentials())
        if endpoint.startswith("http://"):
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport)
            # Like the client's own channel: Arrow record batches can exceed gRPC's
            # default 4 MiB message limit.
            channel = grpc.insecure_channel(endpoint[len("http://"):], options=[
                ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
            return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
        return BigQueryReadClient(
            credentials=self._credentials(),
            client_options={"api_endpoint": endpoint.removeprefix("https://")})


class ReadBigQueryCorpus(beam.PTransform):
    """Reads documents from a BigQuery table or query; returns
    ``ReadResult(documents, dead_letters)`` like ReadCorpus.

    Args:
      table: ``PROJECT:DATASET.TABLE`` or ``PROJECT.DATASET.TABLE``
        (``DATASET.TABLE`` takes ``project``).
      query: a standard-SQL SELECT, instead of ``table``. It runs as a query job
        when the pipeline starts; its result table is then read like a table.
        With ``temp_dataset`` the result is written by ``CREATE TABLE ... AS``
        into that dataset (expiring after 24 hours); without, BigQuery's
        anonymous result table is read.
      id_field, text_field, text_pair_field: column names. The same rules as
        ReadCorpus's structured inputs apply to every row: a missing column →
        ``missing_field``; NULL or a non-string text (or a non-string, non-integer
        id) → ``invalid_type``; blank text → ``empty_text``; integer ids become
        strings.
      project: the project that runs (and pays for) the query job and the read
        session; defaults to the table's project.
      temp_dataset: ``PROJECT:DATASET`` (or ``DATASET``) for query results.
      endpoint, storage_endpoint, credentials: see BigQueryConnection; leave them
        out for production BigQuery.
      max_streams: upper bound on the read session's streams; 0 lets BigQuery
        choose.
      max_text_bytes: as in ReadCorpus.

    Every row counts once in ``read``. A dead letter's ``source`` is
    ``bigquery:PROJECT.DATASET.TABLE:stream S row N`` (the row's place in the read
    session, which lasts for the job; the ``id`` field identifies it for good) and
    its ``raw`` is the row as JSON.
    """

    def __init__(self, table: Optional[str] = None, query: Optional[str] = None,
                 id_field: str = "id", text_field: str = "text",
                 text_pair_field: Optional[str] = None, *, project: Optional[str] = None,
                 temp_dataset: Optional[str] = None, endpoint: Optional[str] = None,
                 storage_endpoint: Optional[str] = None, credentials: Any = None,
                 max_streams: int = 0, max_text_bytes: Optional[int] = None):
        super().__init__()
        self._table, self._temp_dataset, self._project = check_source(
            table, query, project, temp_dataset)
        self._query = query.strip().rstrip(";").strip() if query else None
        self._connection = BigQueryConnection(endpoint, storage_endpoint, credentials)
        self._fields = (id_field, text_field, text_pair_field)
        self._max_streams = max_streams
        self._rules = FieldRules(id_field, text_field, text_pair_field, max_text_bytes)

    def expand(self, pbegin) -> ReadResult:
        parsed = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "CreateReadSession" >> beam.ParDo(_CreateReadSessionFn(
                self._connection, self._project, self._table, self._query,
                self._temp_dataset, self._fields, self._max_streams))
            # One element per stream: spread them over workers before reading.
            | "ReshuffleStreams" >> beam.Reshuffle()
            | "ReadStreams" >> beam.ParDo(_ReadStreamFn(self._connection, self._rules))
            .with_output_types(Document, **{DEAD_LETTERS_TAG: DeadLetter})
            .with_outputs(DEAD_LETTERS_TAG, main=DOCUMENTS_TAG))
        documents = parsed[DOCUMENTS_TAG] | "ReshuffleDocuments" >> beam.Reshuffle()
        return ReadResult(documents, parsed[DEAD_LETTERS_TAG])


class _Stream(NamedTuple):
    """One stream of a read session: what a worker needs to read it."""
    label: str  # "bigquery:PROJECT.DATASET.TABLE"
    index: int
    name: str
    arrow_schema: bytes


class _CreateReadSessionFn(beam.DoFn):
    """Runs the query (if any), then opens one Arrow read session over the table's
    id / text columns and emits its streams."""

    def __init__(self, connection, project, table, query, temp_dataset, fields, max_streams):
        self._connection = connection
        self._project = project
        self._table = table
        self._query = query
        self._temp_dataset = temp_dataset
        self._fields = fields
        self._max_streams = max_streams

    def process(self, _):
        from google.cloud.bigquery_storage_v1 import types
        client = self._connection.bigquery_client(self._project)
        table = self._table or self._run_query(client)
        columns = {field.name for field in client.get_table(str(table)).schema}
        wanted = [name for name in self._fields if name is not None]
        missing = [name for name in wanted if name not in columns]
        if missing:
            # Every row is dead-lettered as missing_field, as for a file that lacks
            # the column; say it once here too.
            _LOG.warning("bigquery:%s has no column %s", table, ", ".join(map(repr, missing)))
        selected = [name for name in wanted if name in columns]
        session = self._connection.read_client().create_read_session(
            parent=f"projects/{self._project}",
            read_session=types.ReadSession(
                table=table.path, data_format=types.DataFormat.ARROW,
                read_options=types.ReadSession.TableReadOptions(selected_fields=selected)),
            max_stream_count=self._max_streams)
        _LOG.info("bigquery:%s: read session with %d streams", table, len(session.streams))
        # The progress display's total (an estimate: BigQuery's, before any filter).
        PROGRESS.expect(total_records=session.estimated_row_count)
        schema = bytes(session.arrow_schema.serialized_schema)
        for index, stream in enumerate(session.streams):
            yield _Stream(f"bigquery:{table}", index, stream.name, schema)

    def _run_query(self, client) -> TableRef:
        if self._temp_dataset is None:
            # BigQuery writes every query's result to an anonymous table that the
            # Storage Read API can read (google-cloud-bigquery's to_arrow does so).
            job = client.query(self._query)
            job.result()
            destination = job.destination
            return TableRef(destination.project, destination.dataset_id, destination.table_id)
        project, dataset = self._temp_dataset
        table = TableRef(project, dataset, f"beam_embed_{uuid.uuid4().hex}")
        client.query(
            f"CREATE TABLE `{table}` OPTIONS(expiration_timestamp=TIMESTAMP_ADD("
            f"CURRENT_TIMESTAMP(), INTERVAL {RESULT_TABLE_EXPIRATION_HOURS} HOUR)) AS\n"
            f"{self._query}").result()
        return table


class _ReadStreamFn(beam.DoFn):
    """_Stream → Documents (main output) and DeadLetters (tagged), row by row."""

    def __init__(self, connection: BigQueryConnection, rules: FieldRules):
        self._connection = connection
        self._rules = rules

    def setup(self):
        self._client = self._connection.read_client()
        self._outputs = RecordOutputs()

    def process(self, stream: _Stream):
        yield from self._outputs.route(self._records(stream))

    def _records(self, stream: _Stream):
        import pyarrow as pa
        schema = pa.ipc.read_schema(pa.py_buffer(stream.arrow_schema))
        row = 0
        # ReadRowsStream reconnects from its last offset on transient errors.
        for response in self._client.read_rows(stream.name):
            batch = pa.ipc.read_record_batch(
                pa.py_buffer(response.arrow_record_batch.serialized_record_batch), schema)
            for fields in batch.to_pylist():
                source = f"{stream.label}:stream {stream.index} row {row}"
                row += 1
                raw = json.dumps(fields, ensure_ascii=False, default=str)
                yield self._rules.from_fields(fields, source, raw)
