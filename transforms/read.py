"""Reading a corpus of files into Documents, with every unusable record dead-lettered.

``ReadCorpus`` matches files through Beam's FileSystems (so local paths and
``gs://`` both work), picks each format's parser from the registry
(transforms/formats/), and routes what it yields: Documents to the main output,
DeadLetters, each saying why and where, to ``DEAD_LETTERS_TAG``. It never fails on
a bad record.
"""
from __future__ import annotations

from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from transforms import counters
# INPUT_FORMATS and infer_input_format are part of this module's interface too.
from transforms.formats import INPUT_FORMATS, infer_input_format  # noqa: F401
from transforms.formats import input_format as registered_format
from transforms.formats.base import FileInput
# check_pattern_matches is part of this module's interface (pipeline/config.py uses it).
from transforms.input_files import check_pattern_matches, matched_bytes
from transforms.progress import PROGRESS
from transforms.records import (DEAD_LETTERS_TAG, DOCUMENTS_TAG, DeadLetter, Document, Record,
                                ReadResult, encodable)
from transforms.shards import absolute
from transforms.text_source import Position
from transforms.validate import FieldRules


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
        self._parser = RecordParser(
            input_format, id_field, text_field, text_pair_field, max_text_bytes)
        file_pattern = absolute(file_pattern)  # Beam's local glob finds nothing for "*.txt"
        if validate:
            check_pattern_matches(file_pattern)
        self._file_pattern = file_pattern
        self._reshuffle = reshuffle

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
    input record, with the registered parser of ``input_format``
    (transforms/formats/) and the field rules (transforms/validate.py). Plain
    Python (no Beam), so it is cheap to test and reason about.
    """

    def __init__(self, input_format: str, id_field: str = "id", text_field: str = "text",
                 text_pair_field: Optional[str] = None, max_text_bytes: Optional[int] = None):
        self.input_format = input_format
        self._parse = registered_format(input_format).parser()  # ValueError naming --input_format
        self._rules = FieldRules(id_field, text_field, text_pair_field, max_text_bytes)

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
        return self._parse(FileInput(path, stream, Position(ledger), compressed_name or path, size),
                           self._rules)
