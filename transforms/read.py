"""Reading a corpus into Documents, with every unusable record dead-lettered.

``ReadCorpus`` reads text, JSONL, CSV or Parquet files through Beam's FileSystems
(so local paths and ``gs://`` both work) and never fails on a bad record: each one
becomes a DeadLetter that says why and where.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from typing import Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import pyarrow
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from transforms import counters
from transforms.formats import INPUT_FORMATS, infer_input_format  # noqa: F401 (interface)
# check_pattern_matches is part of this module's interface (pipeline/config.py uses it).
from transforms.input_files import check_pattern_matches, matched_bytes
from transforms.progress import PROGRESS
from transforms.records import (RAW_PREFIX_BYTES, DeadLetter, Document, encodable,
                                raw_prefix)
from transforms.shards import absolute
from transforms.text_encoding import Rejection
from transforms.text_source import Line, Position, TextSource, Utf8Error, lines

# Python's csv module refuses fields over 128 KiB by default; corpus documents can
# be megabytes long, and length limits are the tokenizer's business, not the reader's.
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1

# Errors that mean the bytes of a Parquet file are corrupt (not that reading it failed
# for a passing reason, like a network error, which must fail the bundle so it
# retries). Compressed line formats never raise: transforms/decompress.py reports.
_CORRUPT_FILE_ERRORS = (pyarrow.ArrowInvalid, EOFError)

DOCUMENTS_TAG = "documents"
DEAD_LETTERS_TAG = "dead_letters"


class ReadResult(NamedTuple):
    """What ReadCorpus and DeduplicateDocuments return: two PCollections.

    Unpack it (``documents, dead_letters = ...``) or use the attributes.
    """
    documents: beam.PCollection  # of Document
    dead_letters: beam.PCollection  # of DeadLetter


class ReadCorpus(beam.PTransform):
    """Reads documents from files; returns ``ReadResult(documents, dead_letters)``.

    Args:
      file_pattern: a path or glob understood by Beam's FileSystems
        (``/data/*.jsonl``, ``gs://bucket/corpus-*.parquet``). It must match at
        least one file.
      input_format: ``"text"`` (one document per line, id = hex SHA-256 of the
        line's UTF-8 text), ``"jsonl"``, ``"csv"`` (with a header row) or
        ``"parquet"``; ``None`` infers it from the extension, compressed text
        formats (``.gz``, ``.bz2``, ...) included.
      id_field, text_field, text_pair_field: names of the id, text and optional
        second-text fields of JSONL objects, CSV columns or Parquet columns. Integer
        ids are turned into strings. When ``text_pair_field`` is set, every record
        needs that field too.
      max_text_bytes: optional limit on the UTF-8 size of text (plus text_pair);
        longer records are dead-lettered as ``too_long``. ``None`` keeps all.
      validate: check at construction time that ``file_pattern`` matches files,
        for a clear error before the pipeline starts. Turn off when the launching
        machine cannot see the files.
      reshuffle: redistribute the documents after parsing (see expand). Turn off
        when a shuffle follows anyway, as DeduplicateDocuments' GroupByKey does.

    Every input record (a line of a text or JSONL file, a CSV data row, a Parquet
    row) increments the ``read`` counter once and comes out either as a Document or
    as a DeadLetter, whose ``source`` gives ``path:line`` (``path:row N`` for
    Parquet). Blank lines in JSONL and CSV files separate records and are not
    records; in text files they are, and are dead-lettered as ``empty_text``.
    JSONL/CSV/Parquet records whose id or text is present but empty are
    dead-lettered as ``missing_field`` and ``empty_text`` respectively. A damaged
    compressed file keeps the records decoded before the damage and adds one
    ``damaged_stream`` dead letter; a file in an encoding that is not read is one
    ``unsupported_encoding`` dead letter (the README's "Damaged and
    foreign-encoded inputs" says exactly what is promised).
    """

    def __init__(
        self,
        file_pattern: str,
        input_format: Optional[str] = None,
        id_field: str = "id",
        text_field: str = "text",
        text_pair_field: Optional[str] = None,
        max_text_bytes: Optional[int] = None,
        validate: bool = True,
        reshuffle: bool = True,
    ):
        super().__init__()
        if input_format is None:
            input_format = infer_input_format(file_pattern)
        elif input_format not in INPUT_FORMATS:
            raise ValueError(
                f"--input_format {input_format!r} is not supported; use one of "
                f"{', '.join(INPUT_FORMATS)}")
        file_pattern = absolute(file_pattern)  # Beam's local glob finds nothing for "*.txt"
        if validate:
            check_pattern_matches(file_pattern)
        self._file_pattern = file_pattern
        self._reshuffle = reshuffle
        self._parser = RecordParser(
            input_format, id_field, text_field, text_pair_field, max_text_bytes)

    def expand(self, pbegin) -> ReadResult:
        PROGRESS.expect(total_bytes=matched_bytes(self._file_pattern))
        parsed = (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(
                self._file_pattern,
                empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            # Spread the files over workers: the match is one element otherwise.
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
            | "Parse" >> beam.ParDo(_ParseFileFn(self._parser))
            .with_output_types(Document, **{DEAD_LETTERS_TAG: DeadLetter})
            .with_outputs(DEAD_LETTERS_TAG, main=DOCUMENTS_TAG))
        # Each file is parsed whole by one DoFn call, so Beam cannot split a large
        # file between workers (unlike ReadFromText). Redistributing the documents
        # at least lets the expensive embedding step run in parallel instead of
        # staying fused to the worker that happened to read the file.
        documents = parsed[DOCUMENTS_TAG]
        if self._reshuffle:
            documents = documents | "ReshuffleDocuments" >> beam.Reshuffle()
        return ReadResult(documents, parsed[DEAD_LETTERS_TAG])


class _ParseFileFn(beam.DoFn):
    """ReadableFile -> Documents (main output) and DeadLetters (tagged)."""

    def __init__(self, parser: "RecordParser"):
        self._parser = parser

    def setup(self):
        self._outputs = RecordOutputs()

    def process(self, readable_file: fileio.ReadableFile):
        # Only the name in ``source`` is escaped: the file opens by its real path.
        path = encodable(readable_file.metadata.path)
        # Raw bytes: Parquet needs random access, and the line formats are
        # decompressed by RecordParser, which notices damage (Beam's AUTO does not).
        with readable_file.open(compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            documents = 0
            for output in self._outputs.route(self._parser.parse(
                    path, stream, compressed_name=readable_file.metadata.path,
                    size=readable_file.metadata.size_in_bytes)):
                documents += not isinstance(output, beam.pvalue.TaggedOutput)
                yield output
        PROGRESS.read(documents, readable_file.metadata.size_in_bytes)


Record = Union[Document, DeadLetter]


class RecordOutputs:
    """Routes a reader's records to DoFn outputs and counts them: every record once
    in ``read``, Documents to the main output, DeadLetters to ``DEAD_LETTERS_TAG``
    and their reason's counter. Create it in ``DoFn.setup`` (it holds Beam
    counters); ReadCorpus and ReadBigQueryCorpus both use it.
    """

    def __init__(self):
        self._read = counters.counter(counters.READ)
        self._dead_lettered = {
            reason: counters.counter(name)
            for reason, name in counters.DEAD_LETTERED.items()}

    def route(self, records: Iterator[Record]):
        for record in records:
            self._read.inc()
            if isinstance(record, DeadLetter):
                self._dead_lettered[record.reason].inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS_TAG, record)
            else:
                yield record


class RecordParser:
    """Turns one file's byte stream into exactly one Document or DeadLetter per
    input record. Plain Python (no Beam), so it is cheap to test and reason about.
    """

    def __init__(self, input_format, id_field, text_field, text_pair_field,
                 max_text_bytes):
        self.input_format = input_format
        self._id_field = id_field
        self._text_field = text_field
        self._text_pair_field = text_pair_field
        self._max_text_bytes = max_text_bytes

    def parse(self, path: str, stream, compressed_name: Optional[str] = None,
              ledger: Optional[list] = None, size: Optional[int] = None) -> Iterator[Record]:
        """The records of one file, from its raw bytes ``stream``.

        Text, JSONL and CSV files are decompressed by the suffix of
        ``compressed_name`` (default ``path``) and their encoding is decided once
        (transforms/text_encoding.py). ``ledger``, if given, receives a
        ``(start, end, what)`` tuple for every stretch of the decoded stream the
        parser consumed (a record, a blank line, the CSV header, the damaged
        part); tests use it to check that every byte is accounted for. ``size``
        (the file's, if known) spares reading a damaged file to its end.
        """
        position = Position(ledger)
        if self.input_format == "parquet":
            try:
                yield from self._parse_parquet(path, stream, position)
            except _CORRUPT_FILE_ERRORS as error:
                # A file that is not Parquet: what was read stands, the unreadable rest
                # becomes one dead letter instead of a failed job.
                yield DeadLetter(
                    "malformed_record",
                    f"unreadable parquet file after {position.describe()}: "
                    f"{type(error).__name__}: {error}",
                    position.source(path), "", None)
            return
        source = TextSource(stream, compressed_name or path, size)
        if isinstance(source.encoding, Rejection):
            position.span(0, None, "rejected")
            yield DeadLetter("unsupported_encoding", source.encoding.detail, f"{path}:1",
                             raw_prefix(source.encoding.sample))
            return
        parse_format = {"text": self._parse_text, "jsonl": self._parse_jsonl,
                        "csv": self._parse_csv}[self.input_format]
        yield from parse_format(path, source, position)
        if source.damage is not None:
            yield source.damage_dead_letter(path, position)

    # Plain text -------------------------------------------------------------------

    def _parse_text(self, path, source, position) -> Iterator[Record]:
        for line in lines(source, position):
            source_name = f"{path}:{line.number}"
            position.line(line, "record")
            text = source.decode(line)
            if isinstance(text, Utf8Error):
                yield text.dead_letter(source_name, line.content)
                continue
            if not text.strip():
                yield DeadLetter("empty_text", _empty_detail(text, "line"), source_name,
                                 raw_prefix(line.content))
                continue
            too_long = self._too_long(text, None, source_name, line.content, None)
            if too_long:
                yield too_long
                continue
            # The id identifies the text itself, so a re-run or a copy of the same
            # line anywhere in the corpus gets the same id (and deduplicates). For a
            # UTF-16/32 file, content is the UTF-8 transcoding: the same text, same id.
            yield Document(hashlib.sha256(line.content).hexdigest(), text, None, source_name)

    # JSON lines ---------------------------------------------------------------------

    def _parse_jsonl(self, path, source, position) -> Iterator[Record]:
        for line in lines(source, position):
            content = line.content
            if not content.strip():
                position.line(line, "blank")
                continue
            position.line(line, "record")
            source_name = f"{path}:{line.number}"
            text = source.decode(line)
            if isinstance(text, Utf8Error):
                yield text.dead_letter(source_name, content)
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as error:
                yield DeadLetter("malformed_record", f"invalid JSON: {error}",
                                 source_name, raw_prefix(content))
                continue
            if not isinstance(value, dict):
                yield DeadLetter(
                    "malformed_record",
                    f"JSON value is {_type_name(value)}, not an object",
                    source_name, raw_prefix(content))
                continue
            yield self.from_fields(value, source_name, content)

    # CSV ------------------------------------------------------------------------------

    def _parse_csv(self, path, source, position) -> Iterator[Record]:
        # csv.reader pulls decoded lines (with their line ends, which quoted
        # multi-line fields need) from a generator. Whether a record is UTF-8 is
        # decided for the record, never for one of its lines: bytes that are not
        # UTF-8 pass through csv as surrogate escapes, and the record holding them
        # becomes one invalid_utf8 dead letter, whole.
        record = _CsvRecordLines()

        def decoded_lines():
            for line in lines(source, position):
                text = source.decode(line)
                if isinstance(text, Utf8Error):
                    record.add(line, text)
                    text = line.content.decode("utf-8", "surrogateescape")
                else:
                    record.add(line, None)
                yield text + line.ending.decode("ascii")

        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_SIZE_LIMIT))  # process-wide
        # strict: otherwise an unclosed quote silently swallows the rest of the file
        # into one field; strictly, it is one malformed record.
        reader = csv.reader(decoded_lines(), strict=True)
        header, header_error = None, None
        while True:
            record.reset()
            try:
                row = next(reader)
                error = None
            except StopIteration:
                break
            except csv.Error as csv_error:
                row, error = None, csv_error
            source_name = f"{path}:{record.first_line}"
            if error is not None:
                position.span(record.start, record.end, "record")
                yield DeadLetter("malformed_record", record.describe_csv_error(error),
                                 source_name, raw_prefix(record.raw))
                continue
            if not row:
                position.span(record.start, record.end, "blank")
                continue  # a blank line
            if header is None:
                position.span(record.start, record.end, "header")
                header, header_error = row, record.utf8_error
                continue
            position.span(record.start, record.end, "record")
            if record.utf8_error is not None:
                letter = record.utf8_error.dead_letter(
                    source_name, record.raw,
                    record.utf8_error_line if record.last_line != record.first_line else None)
                doc_id = dict(zip(header, row)).get(self._id_field)
                if len(row) == len(header) and doc_id and _as_text(doc_id) == doc_id:
                    letter = dataclasses.replace(letter, id=doc_id)  # its id is readable
                yield letter
                continue
            if len(row) != len(header):
                yield DeadLetter(
                    "malformed_record",
                    f"row has {len(row)} fields, the header has {len(header)}",
                    source_name, raw_prefix(record.raw))
                continue
            result = self.from_fields(dict(zip(header, row)), source_name, record.raw)
            if header_error is not None and isinstance(result, DeadLetter) \
                    and result.reason == "missing_field":
                # Column names that are not UTF-8 never match a field option.
                result = dataclasses.replace(
                    result, detail=f"{result.detail}; the header (line 1) is not UTF-8: "
                    f"{header_error.describe(None)}")
            yield result

    # Parquet -------------------------------------------------------------------------

    def _parse_parquet(self, path, stream, position) -> Iterator[Record]:
        import pyarrow.parquet as pq  # only Parquet readers pay for the import

        position.unit, position.next_line = "row", 0
        parquet_file = pq.ParquetFile(stream)
        present = set(parquet_file.schema_arrow.names)
        wanted = [name for name in (self._id_field, self._text_field,
                                    self._text_pair_field)
                  if name is not None and name in present]
        row_number = 0
        # Batches keep memory bounded by the batch, not the file or row group.
        for batch in parquet_file.iter_batches(batch_size=1024, columns=wanted):
            for row in _parquet_rows(batch):
                position.next_line = row_number
                source = f"{path}:row {row_number}"
                row_number += 1
                if isinstance(row, _FieldUtf8Error):
                    yield DeadLetter("invalid_utf8", row.detail(row.field), source, "", None)
                    continue
                yield self.from_fields(row, source, _parquet_raw(row))
            position.next_line = row_number

    # Shared field checks --------------------------------------------------------------

    def from_fields(self, fields: dict, source: str, raw: bytes | str) -> Record:
        """One structured record (a JSON object, CSV row, Parquet or BigQuery row)
        as a Document, or a DeadLetter saying which field is missing, null, of the
        wrong type or empty."""
        def dead(reason, detail, doc_id=None):
            return DeadLetter(reason, detail, source, raw_prefix(raw), doc_id)

        if self._id_field not in fields:
            return dead("missing_field", f"field {self._id_field!r} is missing")
        doc_id = fields[self._id_field]
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int, bytes)):
            return dead("invalid_type",
                        f"field {self._id_field!r} is {_type_name(doc_id)}, "
                        "expected a string or an integer")
        if isinstance(doc_id, int):
            doc_id = str(doc_id)
        doc_id = _as_text(doc_id)
        if isinstance(doc_id, _FieldUtf8Error):
            return dead("invalid_utf8", doc_id.detail(self._id_field))
        if doc_id == "":
            return dead("missing_field", f"field {self._id_field!r} is empty")

        texts = {}
        for name in (self._text_field, self._text_pair_field):
            if name is None:
                continue
            if name not in fields:
                return dead("missing_field", f"field {name!r} is missing", doc_id)
            value = fields[name]
            if not isinstance(value, (str, bytes)):
                return dead("invalid_type",
                            f"field {name!r} is {_type_name(value)}, expected a string",
                            doc_id)
            value = _as_text(value)
            if isinstance(value, _FieldUtf8Error):
                return dead("invalid_utf8", value.detail(name), doc_id)
            if not value.strip():
                return dead("empty_text", _empty_detail(value, f"field {name!r}"),
                            doc_id)
            texts[name] = value
        text = texts[self._text_field]
        text_pair = texts.get(self._text_pair_field)
        too_long = self._too_long(text, text_pair, source, raw, doc_id)
        return too_long or Document(doc_id, text, text_pair, source)

    def _too_long(self, text, text_pair, source, raw, doc_id) -> Optional[DeadLetter]:
        if self._max_text_bytes is None:
            return None
        size = len(text.encode("utf-8")) + len((text_pair or "").encode("utf-8"))
        if size <= self._max_text_bytes:
            return None
        return DeadLetter(
            "too_long", f"text is {size} UTF-8 bytes, the limit is "
            f"{self._max_text_bytes}", source, raw_prefix(raw), doc_id)


class _FieldUtf8Error(NamedTuple):
    position: int
    what: str
    field: Optional[str] = None  # set where the field is not known from the call

    def detail(self, field: str) -> str:
        return f"field {field!r} has {self.what} at character offset {self.position}"


def _parquet_rows(batch: pyarrow.RecordBatch) -> list:
    """The batch's rows as dicts. Parquet says strings are UTF-8, but writers that do
    not validate (and files built from raw buffers) hold any bytes, and pyarrow only
    finds out when it converts a cell, failing the whole batch (and the job). Then
    the batch's string columns are read as bytes, so that from_fields decides UTF-8
    per record; a row whose nested column (a list of strings, say) still cannot be
    converted is a _FieldUtf8Error naming that column."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        pass
    as_bytes = {pyarrow.string(): pyarrow.binary(), pyarrow.large_string(): pyarrow.large_binary()}
    columns = [column.cast(as_bytes[column.type]) if column.type in as_bytes else column
               for column in batch.columns]
    rows = []
    for i in range(batch.num_rows):
        row = {}
        for name, column in zip(batch.schema.names, columns):
            try:
                row[name] = column[i].as_py()
            except UnicodeDecodeError as error:
                row = _FieldUtf8Error(error.start, "invalid UTF-8 in a nested value", name)
                break
        rows.append(row)
    return rows


def _parquet_raw(row: dict) -> str:
    """A Parquet row as JSON for a dead letter's raw; bytes as text, bad ones \\xNN."""
    def text(value):
        if isinstance(value, bytes):
            return value.decode("utf-8", "backslashreplace")
        return repr(value)
    return json.dumps(row, ensure_ascii=False, default=text)


def _as_text(value: Union[str, bytes]) -> Union[str, _FieldUtf8Error]:
    """``value`` as a str that can be encoded as UTF-8, or why it cannot be.

    JSON can spell lone surrogates ("\\ud800") that decode into a Python str but
    cannot be written as UTF-8; Parquet binary columns may hold any bytes.
    """
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            return _FieldUtf8Error(
                error.start, f"invalid UTF-8 byte 0x{value[error.start]:02x}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return _FieldUtf8Error(
            error.start, f"a lone surrogate U+{ord(value[error.start]):04X}")
    return value


class _CsvRecordLines:
    """The physical lines of the CSV record being parsed: where it starts and ends,
    its raw bytes, and the first line that is not valid in the file's encoding."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.first_line: Optional[int] = None
        self.last_line: Optional[int] = None
        self.start = self.end = None
        self.utf8_error: Optional[Utf8Error] = None
        self.utf8_error_line: Optional[int] = None  # 1-based within the record
        self._raw = bytearray()

    def add(self, line: Line, utf8_error: Optional[Utf8Error]):
        if self.first_line is None:
            self.first_line, self.start = line.number, line.start
        self.last_line, self.end = line.number, line.end
        if utf8_error is not None and self.utf8_error is None:
            self.utf8_error = utf8_error
            self.utf8_error_line = line.number - self.first_line + 1
        if len(self._raw) <= RAW_PREFIX_BYTES:
            self._raw += line.content + line.ending

    def describe_csv_error(self, error: csv.Error) -> str:
        detail = f"invalid CSV: {error}"
        if self.last_line is not None and self.last_line != self.first_line:
            detail += f" (the record spans lines {self.first_line}-{self.last_line})"
        if "unexpected end of data" in str(error):
            detail += ("; a quoted field is never closed, so the record runs to the end "
                       "of the file")
        return detail

    @property
    def raw(self) -> bytes:
        return bytes(self._raw).rstrip(b"\r\n")


def _empty_detail(text: str, what: str) -> str:
    return f"{what} is empty" if text == "" else f"{what} is only whitespace"


def _type_name(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value),
                                                       type(value).__name__)
