"""JSON lines: one JSON object per line, its fields checked by FieldRules."""
from __future__ import annotations

import functools
import json
from typing import Iterator

from transforms.formats.base import FileInput, line_records
from transforms.records import DeadLetter, Record, raw_prefix
from transforms.text_source import Utf8Error, lines
from transforms.validate import FieldRules, type_name


def parse(file: FileInput, rules: FieldRules) -> Iterator[Record]:
    return line_records(file, functools.partial(_parse_lines, rules=rules))


def _parse_lines(path, source, position, rules: FieldRules) -> Iterator[Record]:
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
                f"JSON value is {type_name(value)}, not an object",
                source_name, raw_prefix(content))
            continue
        yield rules.from_fields(value, source_name, content)
