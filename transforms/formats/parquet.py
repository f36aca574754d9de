"""Parquet: each row's id / text columns checked by FieldRules; ``source`` is
``path:row N`` (0-based). A file whose bytes are not Parquet keeps the rows read
before the damage and adds one malformed_record dead letter."""
from __future__ import annotations

import json
from typing import Iterator

import pyarrow
import pyarrow.parquet as pq

from transforms.formats.base import FileInput
from transforms.records import DeadLetter, Record
from transforms.validate import FieldRules, FieldUtf8Error

# Errors that mean the bytes of a Parquet file are corrupt (not that reading it failed
# for a passing reason, like a network error, which must fail the bundle so it
# retries).
_CORRUPT_FILE_ERRORS = (pyarrow.ArrowInvalid, EOFError)
_BATCH_ROWS = 1024


def parse(file: FileInput, rules: FieldRules) -> Iterator[Record]:
    position = file.position
    try:
        yield from _rows(file, rules)
    except _CORRUPT_FILE_ERRORS as error:
        # A file that is not Parquet: what was read stands, the unreadable rest
        # becomes one dead letter instead of a failed job.
        yield DeadLetter(
            "malformed_record",
            f"unreadable parquet file after {position.describe()}: "
            f"{type(error).__name__}: {error}",
            position.source(file.path), "", None)


def _rows(file: FileInput, rules: FieldRules) -> Iterator[Record]:
    position = file.position
    position.unit, position.next_line = "row", 0
    parquet_file = pq.ParquetFile(file.stream)  # random access: the raw stream
    present = set(parquet_file.schema_arrow.names)
    wanted = [name for name in (rules.id_field, rules.text_field, rules.text_pair_field)
              if name is not None and name in present]
    row_number = 0
    # Batches keep memory bounded by the batch, not the file or row group.
    for batch in parquet_file.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
        for row in _parquet_rows(batch):
            position.next_line = row_number
            source = f"{file.path}:row {row_number}"
            row_number += 1
            if isinstance(row, FieldUtf8Error):
                yield DeadLetter("invalid_utf8", row.detail(row.field), source, "", None)
                continue
            yield rules.from_fields(row, source, _parquet_raw(row))
        position.next_line = row_number


def _parquet_rows(batch: pyarrow.RecordBatch) -> list:
    """The batch's rows as dicts. Parquet says strings are UTF-8, but writers that do
    not validate (and files built from raw buffers) hold any bytes, and pyarrow only
    finds out when it converts a cell, failing the whole batch (and the job). Then
    the batch's string columns are read as bytes, so that from_fields decides UTF-8
    per record; a row whose nested column (a list of strings, say) still cannot be
    converted is a FieldUtf8Error naming that column."""
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
                row = FieldUtf8Error(error.start, "invalid UTF-8 in a nested value", name)
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
