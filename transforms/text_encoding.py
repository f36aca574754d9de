"""Which encoding a text, JSONL or CSV file is in, decided once per file.

The rule (the README's "Damaged and foreign-encoded inputs" says the same):

* a file that starts like compressed data, a zip archive or Parquet is not text,
  whatever its name: it is rejected whole, as one ``unsupported_encoding`` dead
  letter that says what it is;
* a byte-order mark names the encoding: UTF-8, UTF-16 (LE/BE) or UTF-32 (LE/BE).
  UTF-16 and UTF-32 files are decoded as such (their lines are transcoded to
  UTF-8, so ids and offsets refer to the UTF-8 text);
* without one, a file whose first 64 KiB are NUL-dense (a quarter or more of the
  bytes are NUL, or most line breaks sit next to a NUL, as in UTF-16 and UTF-32
  text) is rejected whole, as one ``unsupported_encoding`` dead letter: guessing
  an encoding could embed garbage;
* anything else is UTF-8, decided record by record (a record that is not UTF-8
  is an ``invalid_utf8`` dead letter; Latin-1 text therefore loses only its
  non-ASCII records, each named).
"""
from __future__ import annotations

import codecs
import io
import re
from typing import NamedTuple, Optional

SAMPLE_BYTES = 64 * 1024

# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Bytes that are not valid in the file's encoding come out of the transcoder as
# U+DC00 + byte (like Python's surrogateescape, which only covers bytes >= 0x80):
# a lone surrogate cannot be UTF-8, so the record holding it fails UTF-8 decoding,
# and the marker says which bytes were bad.
_MARK_ERRORS = "beam_embed.mark_invalid"


def _mark_invalid(error: UnicodeDecodeError):
    bad = error.object[error.start:error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(_MARK_ERRORS, _mark_invalid)


class Encoding(NamedTuple):
    name: str          # "utf-8", "utf-16-le", ...
    bom_bytes: int     # length of the byte-order mark at the start (0: none)

    @property
    def transcoded(self) -> bool:
        return self.name != "utf-8"


class Rejection(NamedTuple):
    detail: str
    sample: bytes


# Files that are not text at all, whatever their name says: read as UTF-8, their
# bytes would give a few lines that happen to decode, and embed them.
_NOT_TEXT = (
    (re.compile(rb"\x1f\x8b\x08"), "gzip-compressed data (name it .gz)"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2-compressed data (name it .bz2)"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed data (name it .xz)"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed data (name it .zst)"),
    (re.compile(rb"PK\x03\x04"), "a zip archive (unpack it)"),
    (re.compile(rb"PAR1"), "a Parquet file (use --input_format parquet)"),
)


def sniff(sample: bytes) -> Encoding | Rejection:
    """The encoding of a file whose first bytes are ``sample``, or why it is refused."""
    for magic, what in _NOT_TEXT:
        if magic.match(sample):
            return Rejection(f"the file is {what}, not text; nothing was read from it", sample)
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return Encoding(name, len(bom))
    guess = _nul_dense(sample)
    if guess:
        return Rejection(
            f"the file looks like {guess} without a byte-order mark "
            f"({sample.count(0)} of its first {len(sample)} bytes are NUL); nothing "
            "was read from it. Re-encode it as UTF-8 (or add a byte-order mark)", sample)
    return Encoding("utf-8", 0)


def _nul_dense(sample: bytes) -> Optional[str]:
    nuls = sample.count(0)
    if not nuls:
        return None
    newlines = sample.count(b"\n")
    next_to_nul = sample.count(b"\n\x00") + sample.count(b"\x00\n")
    if nuls * 4 < len(sample) and not (newlines >= 2 and next_to_nul * 2 >= newlines):
        return None
    # Where the NULs sit tells UTF-16 from UTF-32, and the byte order.
    by_position = [sample[i::4].count(0) for i in range(4)]
    if min(by_position) * 4 >= len(sample) // 4 * 3:
        return "binary data, or an unknown encoding"
    if sum(1 for n in by_position if n * 4 >= len(sample) // 4 * 3) == 3:
        return "UTF-32-LE" if by_position[0] < by_position[3] else "UTF-32-BE"
    even, odd = by_position[0] + by_position[2], by_position[1] + by_position[3]
    if odd > 2 * even:
        return "UTF-16-LE"
    if even > 2 * odd:
        return "UTF-16-BE"
    return "binary data, or an unknown encoding"


class TranscodingReader(io.RawIOBase):
    """UTF-8 bytes of a stream in ``encoding`` (its byte-order mark already read).

    Undecodable bytes become marked lone surrogates (see _MARK_ERRORS), written
    with ``surrogatepass``, so the record holding them is dead-lettered.
    """

    def __init__(self, raw, encoding: str):
        super().__init__()
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)(_MARK_ERRORS)
        self._out = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out and not self._done:
            chunk = self._raw.read(SAMPLE_BYTES)
            self._done = not chunk
            text = self._decoder.decode(chunk, final=self._done)
            self._out = text.encode("utf-8", "surrogatepass")
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def marked_bytes(text: str) -> Optional[tuple[int, bytes]]:
    """(character offset, original bytes) of the first run of marked invalid bytes
    in a transcoded line, or None."""
    for i, char in enumerate(text):
        if 0xDC00 <= ord(char) <= 0xDCFF:
            end = i
            while end < len(text) and 0xDC00 <= ord(text[end]) <= 0xDCFF:
                end += 1
            return i, bytes(ord(c) - 0xDC00 for c in text[i:end])
    return None
