"""CSV with a header row: each data row's fields checked by FieldRules.

Whether a record is UTF-8 is decided for the record, never for one of its lines: a
quoted field may span lines, and a record holding a bad byte is one invalid_utf8
dead letter, whole (with its id when that is readable).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
from typing import Iterator, Optional

from transforms.formats.base import FileInput, line_records
from transforms.records import RAW_PREFIX_BYTES, DeadLetter, Record, raw_prefix
from transforms.text_source import Line, Utf8Error, lines
from transforms.validate import FieldRules, as_text

# Python's csv module refuses fields over 128 KiB by default; corpus documents can
# be megabytes long, and length limits are the tokenizer's business, not the reader's.
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1


def parse(file: FileInput, rules: FieldRules) -> Iterator[Record]:
    return line_records(file, functools.partial(_parse_lines, rules=rules))


def _parse_lines(path, source, position, rules: FieldRules) -> Iterator[Record]:
    # csv.reader pulls decoded lines (with their line ends, which quoted
    # multi-line fields need) from a generator. Bytes that are not UTF-8 pass
    # through csv as surrogate escapes, and the record holding them becomes one
    # invalid_utf8 dead letter.
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
            doc_id = dict(zip(header, row)).get(rules.id_field)
            if len(row) == len(header) and doc_id and as_text(doc_id) == doc_id:
                letter = dataclasses.replace(letter, id=doc_id)  # its id is readable
            yield letter
            continue
        if len(row) != len(header):
            yield DeadLetter(
                "malformed_record",
                f"row has {len(row)} fields, the header has {len(header)}",
                source_name, raw_prefix(record.raw))
            continue
        result = rules.from_fields(dict(zip(header, row)), source_name, record.raw)
        if header_error is not None and isinstance(result, DeadLetter) \
                and result.reason == "missing_field":
            # Column names that are not UTF-8 never match a field option.
            result = dataclasses.replace(
                result, detail=f"{result.detail}; the header (line 1) is not UTF-8: "
                f"{header_error.describe(None)}")
        yield result


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
