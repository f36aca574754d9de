"""Reading a corpus into Documents, with every unusable record dead-lettered.

``ReadCorpus`` reads text, JSONL, CSV or Parquet files through Beam's FileSystems
(so local paths and ``gs://`` both work) and never fails on a bad record: each one
becomes a DeadLetter that says why and where.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import stat
from typing import Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import pyarrow
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileSystem
from apache_beam.io.filesystems import FileSystems

from transforms import counters
from transforms.decompress import CODECS, DecompressingReader, StreamDamage, codec_for
from transforms.text_encoding import (SAMPLE_BYTES, Encoding, Rejection, TranscodingReader,
                                      marked_bytes, sniff)
from transforms.records import (RAW_PREFIX_BYTES, DeadLetter, Document, encodable,
                                raw_prefix)
from transforms.shards import absolute

INPUT_FORMATS = ("text", "jsonl", "csv", "parquet")

_FORMAT_BY_EXTENSION = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
# Suffixes of the compressions the line formats are read in (transforms/decompress.py).
_COMPRESSION_SUFFIXES = tuple(CODECS)
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


def infer_input_format(file_pattern: str) -> str:
    """The input format implied by the pattern's extension (ignoring .gz and co).

    Raises ValueError, naming the ``--input_format`` option, when it cannot tell, and
    for a local directory (which has no format: its files do).
    """
    _check_not_a_directory(file_pattern)
    name = file_pattern.lower()
    compression = next((s for s in _COMPRESSION_SUFFIXES if name.endswith(s)), "")
    stem = name[:len(name) - len(compression)]
    for extension, input_format in _FORMAT_BY_EXTENSION.items():
        if stem.endswith(extension):
            if input_format == "parquet" and compression:
                raise ValueError(
                    f"--input {file_pattern!r}: Parquet files cannot be "
                    f"{compression}-compressed as a whole (Parquet compresses "
                    "internally)")
            return input_format
    raise ValueError(
        f"cannot infer the input format of --input {file_pattern!r} from its "
        f"extension; set --input_format (input_format=) to one of "
        f"{', '.join(INPUT_FORMATS)}")


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
    dead-lettered as ``missing_field`` and ``empty_text`` respectively.
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


def check_pattern_matches(file_pattern: str) -> None:
    """Raises ValueError, naming ``--input``, unless the pattern matches at least one
    file and every match is something ReadCorpus can read: a regular file (or a link
    to one), readable. Directories, FIFOs, devices and sockets are refused, because
    a worker would fail on them after the job started (or block on a FIFO forever).
    Empty files are accepted (they hold no records) and logged."""
    _check_not_a_directory(file_pattern)
    if _is_local(file_pattern) and os.path.islink(file_pattern) and not os.path.exists(file_pattern):
        raise ValueError(f"--input {file_pattern!r} is a symbolic link that leads nowhere "
                         "(its target is missing, or the links form a loop)")
    try:
        matched = FileSystems.match([absolute(file_pattern)])[0].metadata_list
    except Exception as error:  # BeamIOError for a missing bucket or path, etc.
        raise ValueError(
            f"--input {file_pattern!r} cannot be matched: {error}") from error
    if not matched:
        raise ValueError(f"--input {file_pattern!r} matches no files")
    _warn_about_what_the_glob_skips(file_pattern)
    for metadata in matched:
        problem = _unreadable_kind(metadata.path)
        if problem:
            raise ValueError(f"--input {file_pattern!r} matches {encodable(metadata.path)!r}, "
                             f"{problem}")
    empty = [m.path for m in matched if m.size_in_bytes == 0]
    if empty:
        logging.warning("--input %r: %d of the %d matched files are empty (no records): %s",
                        file_pattern, len(empty), len(matched),
                        ", ".join(repr(encodable(p)) for p in empty[:5]))


def _warn_about_what_the_glob_skips(file_pattern: str) -> None:
    """Beam's local glob lists files only (os.walk): directories, and links that lead
    nowhere, are skipped without a word. Name them, since the user may have meant
    them to be read."""
    pattern = absolute(file_pattern)
    if not _is_local(pattern) or not any(c in pattern for c in "*?["):
        return
    root = pattern[:min(pattern.index(c) for c in "*?[" if c in pattern)].rpartition("/")[0] or "/"
    matches = re.compile(FileSystem.translate_pattern(pattern)).match
    skipped = []
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            if matches(path) and not os.path.isfile(path):
                skipped.append(path)
        if len(skipped) > 5:
            break
    if skipped:
        logging.warning(
            "--input %r also matches %s, which %s not read: a glob reads regular files only "
            "(a directory's files need their own glob, e.g. DIR/*)",
            file_pattern, ", ".join(repr(encodable(p)) for p in skipped[:5]),
            "is" if len(skipped) == 1 else "are")


def _check_not_a_directory(file_pattern: str) -> None:
    if _is_local(file_pattern) and os.path.isdir(file_pattern):
        glob = os.path.join(file_pattern, "*")
        raise ValueError(
            f"--input {file_pattern!r} is a directory; give a glob of the files in it, "
            f"e.g. --input {glob!r} with --input_format, or {os.path.join(file_pattern, '*.jsonl')!r}")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _unreadable_kind(path: str) -> Optional[str]:
    """Why a matched local path cannot be read as a file, or None (remote objects
    are files by construction, except a "directory" placeholder ending in "/")."""
    if not _is_local(path):
        return "a directory placeholder, not a file" if path.endswith("/") else None
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a file is a file
    except OSError as error:  # a dangling link, a link loop, a path that vanished
        return f"which cannot be opened: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return ("a directory: the glob must match files only (narrow it, e.g. with an "
                "extension, or add '/*' to read the directory's files)")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        return (f"{kind}: only regular files can be read (a worker may read a file more than "
                "once, and a pipe or device gives different bytes each time)")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        return f"which cannot be read: {error.strerror or error}"
    return None


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
            yield from self._outputs.route(
                self._parser.parse(path, stream, compressed_name=readable_file.metadata.path))


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
              ledger: Optional[list] = None) -> Iterator[Record]:
        """The records of one file, from its raw bytes ``stream``.

        Text, JSONL and CSV files are decompressed by the suffix of
        ``compressed_name`` (default ``path``) and their encoding is decided once
        (transforms/text_encoding.py). ``ledger``, if given, receives a
        ``(start, end, what)`` tuple for every stretch of the decoded stream the
        parser consumed (a record, a blank line, the CSV header, the damaged
        part); tests use it to check that every byte is accounted for.
        """
        position = _Position(ledger)
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
        source = _TextSource(stream, compressed_name or path)
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
        for line in _lines(source, position):
            source_name = f"{path}:{line.number}"
            position.span(line.start, line.end, "record")
            text = source.decode(line)
            if isinstance(text, _Utf8Error):
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
        for line in _lines(source, position):
            content = line.content
            if not content.strip():
                position.span(line.start, line.end, "blank")
                continue
            position.span(line.start, line.end, "record")
            source_name = f"{path}:{line.number}"
            text = source.decode(line)
            if isinstance(text, _Utf8Error):
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
            for line in _lines(source, position):
                text = source.decode(line)
                if isinstance(text, _Utf8Error):
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
                yield record.utf8_error.dead_letter(
                    source_name, record.raw,
                    record.utf8_error_line if record.last_line != record.first_line else None)
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
            for row in batch.to_pylist():
                position.next_line = row_number
                source = f"{path}:row {row_number}"
                row_number += 1
                raw = json.dumps(row, ensure_ascii=False, default=repr)
                yield self.from_fields(row, source, raw)
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


class _Position:
    """Where a parser is in its file, for the message if the file breaks off, and
    the optional ledger of the stretches it consumed (see RecordParser.parse)."""

    def __init__(self, ledger: Optional[list] = None):
        self.next_line = 1
        self.unit = "line"
        self._ledger = ledger

    def describe(self) -> str:
        if self.unit == "row":
            return f"{self.next_line} rows"
        return f"{self.next_line - 1} lines"

    def source(self, path: str) -> str:
        if self.unit == "row":
            return f"{path}:row {self.next_line}"
        return f"{path}:{self.next_line}"

    def span(self, start: int, end: Optional[int], what: str) -> None:
        if self._ledger is not None:
            self._ledger.append((start, end, what))


class _Line(NamedTuple):
    number: int        # 1-based
    start: int         # byte offset in the decoded stream (after any byte-order mark)
    content: bytes     # without the line ending
    ending: bytes      # b"\n", b"\r\n" or b"" (the last line)

    @property
    def end(self) -> int:
        return self.start + len(self.content) + len(self.ending)


class _TextSource:
    """One text, JSONL or CSV file as a stream of UTF-8 lines: decompressed by its
    suffix (damage recorded, see transforms/decompress.py), its encoding decided
    from its first bytes (transforms/text_encoding.py)."""

    def __init__(self, raw, name: str):
        codec = codec_for(name)
        self._decompressor = DecompressingReader(raw, codec) if codec else None
        stream = io.BufferedReader(self._decompressor, 1 << 16) if codec else raw
        sample = stream.read(SAMPLE_BYTES)
        self.encoding: Union[Encoding, Rejection] = sniff(sample)
        self.partial: Optional[_Line] = None  # the line a damaged stream cut off
        self.lines_end = 0                    # where the last line read ends
        if isinstance(self.encoding, Rejection):
            return
        rest = _Chained(sample[self.encoding.bom_bytes:], stream)
        if self.encoding.transcoded:
            rest = TranscodingReader(rest, self.encoding.name)
        self.readline = io.BufferedReader(rest, 1 << 16).readline
        self.base_offset = 0 if self.encoding.transcoded else self.encoding.bom_bytes

    @property
    def damage(self) -> Optional[StreamDamage]:
        return self._decompressor.damage if self._decompressor else None

    def decode(self, line: _Line) -> Union[str, "_Utf8Error"]:
        try:
            return line.content.decode("utf-8")
        except UnicodeDecodeError as error:
            if self.encoding.transcoded:
                return self._foreign_error(line)
            return _Utf8Error(error.start, line.start + error.start,
                              line.content[error.start:error.start + 1], "UTF-8")

    def _foreign_error(self, line: _Line) -> "_Utf8Error":
        text = line.content.decode("utf-8", "surrogatepass")
        at, bad = marked_bytes(text) or (0, b"")
        return _Utf8Error(at, None, bad, self.encoding.name.upper())

    def damage_dead_letter(self, path: str, position: _Position) -> DeadLetter:
        damage, partial = self.damage, self.partial
        detail = f"damaged stream: {damage.describe()}"
        if partial is not None:
            position.span(partial.start, partial.end, "damaged")
            detail += (f"; line {partial.number} was cut off after {len(partial.content)} "
                       "bytes (its start is in raw) and is not a record")
            where = partial.number
        else:
            where = position.next_line
        position.span(partial.end if partial else self.lines_end, None, "lost")
        return DeadLetter("damaged_stream", detail, f"{path}:{where}",
                          raw_prefix(partial.content if partial else b""))


class _Chained(io.RawIOBase):
    """``head`` (bytes already read) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream):
        super().__init__()
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _lines(source: _TextSource, position: _Position) -> Iterator[_Line]:
    """Each line of the file, undecoded.

    Only "\n" and "\r\n" end lines: a lone "\r" or other Unicode line separators
    stay inside the text, as they would for Beam's ReadFromText. A last line
    without a line end is a record, unless the stream is damaged: then it is where
    the damage cut in, and goes to the damage's dead letter instead.
    """
    offset = source.base_offset
    line_number = 0
    for raw in iter(source.readline, b""):
        line_number += 1
        position.next_line = line_number + 1
        start = offset
        offset += len(raw)
        source.lines_end = offset
        if raw.endswith(b"\r\n"):
            line = _Line(line_number, start, raw[:-2], b"\r\n")
        elif raw.endswith(b"\n"):
            line = _Line(line_number, start, raw[:-1], b"\n")
        else:
            line = _Line(line_number, start, raw, b"")
            if source.damage is not None:
                source.partial = line
                position.next_line = line_number
                return
        yield line


class _Utf8Error(NamedTuple):
    line_offset: int             # where in the line (bytes; characters if transcoded)
    file_offset: Optional[int]   # where in the file, if the file is UTF-8
    bad: bytes                   # the first bad byte(s)
    encoding: str                # "UTF-8", "UTF-16-LE", ...

    def describe(self, record_line: Optional[int]) -> str:
        bad = " ".join(f"0x{b:02x}" for b in self.bad[:4])
        line = f"line {record_line} of the record" if record_line else "the line"
        if self.file_offset is None:
            return (f"invalid {self.encoding} bytes {bad} at character offset "
                    f"{self.line_offset} of {line}")
        return (f"invalid UTF-8 byte {bad} at byte offset {self.line_offset} of {line} "
                f"(byte {self.file_offset} of the file)")

    def dead_letter(self, source: str, content: bytes,
                    record_line: Optional[int] = None) -> DeadLetter:
        return DeadLetter("invalid_utf8", self.describe(record_line), source,
                          raw_prefix(content))


class _FieldUtf8Error(NamedTuple):
    position: int
    what: str

    def detail(self, field: str) -> str:
        return f"field {field!r} has {self.what} at character offset {self.position}"


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
        self.utf8_error: Optional[_Utf8Error] = None
        self.utf8_error_line: Optional[int] = None  # 1-based within the record
        self._raw = bytearray()

    def add(self, line: _Line, utf8_error: Optional[_Utf8Error]):
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
