"""One text, JSONL or CSV file as numbered lines of UTF-8 bytes, and where they lie.

Layers, bottom up: the raw bytes, decompressed by suffix with damage recorded
(transforms/decompress.py); the encoding decided once from the first bytes,
UTF-16/32 transcoded to UTF-8 (transforms/text_encoding.py); lines split on
"\\n" and "\\r\\n" with their byte offsets. The parsers in transforms/read.py
decide what a record is; this module only says where each line starts and ends,
which line a damaged stream cut off, and why a line is not UTF-8.
"""
from __future__ import annotations

import io
from typing import Iterator, NamedTuple, Optional, Union

from transforms.decompress import DecompressingReader, StreamDamage, codec_for
from transforms.records import DeadLetter, raw_prefix
from transforms.text_encoding import (SAMPLE_BYTES, Encoding, Rejection, TranscodingReader,
                                      marked_bytes, sniff)


class Position:
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

    def line(self, line: "Line", what: str) -> None:
        """span() for one line (cheap when there is no ledger: this runs per line)."""
        if self._ledger is not None:
            self._ledger.append((line.start, line.end, what))


class Line(NamedTuple):
    number: int        # 1-based
    start: int         # byte offset in the decoded stream (after any byte-order mark)
    content: bytes     # without the line ending
    ending: bytes      # b"\n", b"\r\n" or b"" (the last line)

    @property
    def end(self) -> int:
        return self.start + len(self.content) + len(self.ending)


class TextSource:
    """One text, JSONL or CSV file as a stream of UTF-8 lines: decompressed by its
    suffix (damage recorded, see transforms/decompress.py), its encoding decided
    from its first bytes (transforms/text_encoding.py)."""

    def __init__(self, raw, name: str, size: Optional[int] = None):
        codec = codec_for(name)
        self._decompressor = DecompressingReader(raw, codec, size) if codec else None
        stream = io.BufferedReader(self._decompressor, 1 << 16) if codec else raw
        sample = stream.read(SAMPLE_BYTES)
        self.encoding: Union[Encoding, Rejection] = sniff(sample)
        self.partial: Optional[Line] = None  # the line a damaged stream cut off
        self.lines_end = 0                    # where the last line read ends
        if isinstance(self.encoding, Rejection):
            return
        rest = _Chained(sample[self.encoding.bom_bytes:], stream)
        if self.encoding.transcoded:
            rest = TranscodingReader(rest, self.encoding.name)
        self.readline = io.BufferedReader(rest, 1 << 16).readline
        self.base_offset = 0 if self.encoding.transcoded else self.encoding.bom_bytes
        self.lines_end = self.base_offset

    @property
    def damage(self) -> Optional[StreamDamage]:
        return self._decompressor.damage if self._decompressor else None

    def decode(self, line: Line) -> Union[str, "Utf8Error"]:
        try:
            return line.content.decode("utf-8")
        except UnicodeDecodeError as error:
            if self.encoding.transcoded:
                return self._foreign_error(line)
            return Utf8Error(error.start, line.start + error.start,
                             line.content[error.start:error.start + 1], "UTF-8")

    def _foreign_error(self, line: Line) -> "Utf8Error":
        text = line.content.decode("utf-8", "surrogatepass")
        at, bad = marked_bytes(text) or (0, b"")
        return Utf8Error(at, None, bad, self.encoding.name.upper())

    def damage_dead_letter(self, path: str, position: Position) -> DeadLetter:
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


def lines(source: TextSource, position: Position) -> Iterator[Line]:
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
            line = Line(line_number, start, raw[:-2], b"\r\n")
        elif raw.endswith(b"\n"):
            line = Line(line_number, start, raw[:-1], b"\n")
        else:
            line = Line(line_number, start, raw, b"")
            if source.damage is not None:
                source.partial = line
                position.next_line = line_number
                return
        yield line


class Utf8Error(NamedTuple):
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
