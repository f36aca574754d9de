"""What every input format's parser gets, and the decoding the line formats share.

A parser is ``parse(file: FileInput, rules: FieldRules) -> Iterator[Record]``:
exactly one Document or DeadLetter per input record, plain Python (no Beam), so it
is tested on bytes. The line formats (text, JSONL, CSV) read through
``line_records``: the file is decompressed by its name's suffix, its encoding
decided once (transforms/text_encoding.py), a file in an encoding that is not read
is one dead letter, and a damaged compressed file adds one after the records
decoded before the damage.
"""
from __future__ import annotations

from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional

from transforms.records import DeadLetter, Record, raw_prefix
from transforms.text_encoding import Rejection
from transforms.text_source import Position, TextSource


class FileInput(NamedTuple):
    path: str  # as written in each record's source (escaped to be encodable)
    stream: BinaryIO  # the file's raw bytes
    position: Position  # where the parser is; with a ledger in tests
    compressed_name: str  # the real name, whose suffix decides the decompression
    size: Optional[int] = None  # the file's, if known: a damaged file is not read to its end


def line_records(file: FileInput,
                 parse_lines: Callable[[str, TextSource, Position], Iterator[Record]]
                 ) -> Iterator[Record]:
    """The records ``parse_lines(path, source, position)`` finds in a line format's
    decompressed, decoded text, plus the dead letters of the file as a whole."""
    source = TextSource(file.stream, file.compressed_name, file.size)
    if isinstance(source.encoding, Rejection):
        file.position.span(0, None, "rejected")
        yield DeadLetter("unsupported_encoding", source.encoding.detail, f"{file.path}:1",
                         raw_prefix(source.encoding.sample))
        return
    yield from parse_lines(file.path, source, file.position)
    if source.damage is not None:
        yield source.damage_dead_letter(file.path, file.position)
