"""Plain text: one document per line; its id is the hex SHA-256 of the line's text.

Blank lines are records here (dead-lettered as ``empty_text``), unlike in JSONL and
CSV, where they separate records.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Iterator

from transforms.formats.base import FileInput, line_records
from transforms.records import DeadLetter, Document, Record, raw_prefix
from transforms.text_source import Utf8Error, lines
from transforms.validate import FieldRules, empty_detail


def parse(file: FileInput, rules: FieldRules) -> Iterator[Record]:
    return line_records(file, functools.partial(_parse_lines, rules=rules))


def _parse_lines(path, source, position, rules: FieldRules) -> Iterator[Record]:
    for line in lines(source, position):
        source_name = f"{path}:{line.number}"
        position.line(line, "record")
        text = source.decode(line)
        if isinstance(text, Utf8Error):
            yield text.dead_letter(source_name, line.content)
            continue
        if not text.strip():
            yield DeadLetter("empty_text", empty_detail(text, "line"), source_name,
                             raw_prefix(line.content))
            continue
        too_long = rules.too_long(text, None, source_name, line.content, None)
        if too_long:
            yield too_long
            continue
        # The id identifies the text itself, so a re-run or a copy of the same
        # line anywhere in the corpus gets the same id (and deduplicates). For a
        # UTF-16/32 file, content is the UTF-8 transcoding: the same text, same id.
        yield Document(hashlib.sha256(line.content).hexdigest(), text, None, source_name)
