"""Decompressing an input file while noticing, and describing, any damage to it.

Our own loop instead of Beam's ``CompressedFile`` (what ``ReadableFile.open`` with
``CompressionTypes.AUTO`` returns), because that one never checks that a stream
ended: a gzip or bzip2 file cut short reads as a shorter file, with no error, and
junk after a valid member raises before lines already decoded are handed out.

``DecompressingReader`` is a raw binary stream of the decoded bytes. It stops at
the first damage (a stream cut short, corrupt data, bytes after the last member
that are not another member) and records it in ``damage``: what was decoded stays
readable, and the reader says exactly where the rest was lost.
"""
from __future__ import annotations

import bz2
import functools
import io
import lzma
import zlib
from typing import Callable, NamedTuple, Optional

# Compressed bytes fed to a decompressor per call. A decompressor that raises
# loses the output of that call, so this bounds what a corrupt spot can take with
# it (gzip and deflate lose nothing: they are replayed byte by byte, see _replay).
_SLICE = 8192


class Codec(NamedTuple):
    name: str                     # as messages spell it
    new: Callable[[], object]     # a fresh decompressor for one member / stream
    magic: Optional[Callable[[bytes], bool]] = None  # could a member start so?
    zero_padding: int = 0         # zero-byte padding the format allows between streams
    replayable: bool = False      # the decompressor has copy() (zlib)


def _zstd():
    import zstandard  # only zstd inputs pay for the import (Beam depends on it)
    # The window limit Beam sets too: large windows otherwise fail to decode.
    return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()


def _zlib_header(head: bytes) -> bool:
    return len(head) < 2 or (head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0)


def _starts(magic: bytes) -> Callable[[bytes], bool]:
    return lambda head: magic.startswith(head[:len(magic)])


_ZSTD = Codec("zstd", _zstd, _starts(b"\x28\xb5\x2f\xfd"))
CODECS = {
    ".gz": Codec("gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
                 _starts(b"\x1f\x8b"), replayable=True),
    # Beam's "deflate" is the zlib format (a 2-byte header and an Adler-32 trailer).
    ".deflate": Codec("deflate", zlib.decompressobj, _zlib_header, replayable=True),
    ".bz2": Codec("bzip2", bz2.BZ2Decompressor, _starts(b"BZh")),
    # .xz streams may be followed by zero padding in multiples of 4 bytes.
    ".xz": Codec("xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO),
                 _starts(b"\xfd7zXZ\x00"), zero_padding=4),
    # The legacy .lzma format has no magic number.
    ".lzma": Codec("lzma", lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO)),
    ".zst": _ZSTD,
    ".zstd": _ZSTD,
}
# A member this small is kept while it decodes, so that an error in it can be
# replayed byte by byte even by decompressors without copy() (see _replay_member).
_KEEP_MEMBER_BYTES = 1 << 20


def codec_for(path: str) -> Optional[Codec]:
    """The codec implied by the path's suffix (case-insensitive), or None."""
    name = path.lower()
    return next((codec for suffix, codec in CODECS.items() if name.endswith(suffix)), None)


@functools.lru_cache(maxsize=None)
def _decompression_errors() -> tuple:
    errors = [zlib.error, lzma.LZMAError, OSError, EOFError, ValueError]
    try:
        import zstandard
        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - Beam installs it
        pass
    return tuple(errors)


class StreamDamage(NamedTuple):
    """Where and how a compressed stream is damaged."""
    what: str                  # e.g. "the gzip data ends early (cut short?)"
    compressed_offset: int     # byte of the file where the unreadable part starts
    file_size: int             # bytes in the file (as far as it could be read)
    decoded_offset: int        # decoded bytes before the damage: all were handed out
    lost_rest: bool            # True: data that should follow is missing or unreadable

    def describe(self) -> str:
        unread = self.file_size - self.compressed_offset
        text = (f"{self.what}, at byte {self.compressed_offset} of the "
                f"{self.file_size}-byte file; the {self.decoded_offset} bytes decoded "
                "before it were read")
        if unread:
            text += (f"; bytes {self.compressed_offset}-{self.file_size - 1} "
                     f"({unread} bytes) could not be decoded")
        if self.lost_rest:
            text += "; the rest of the data is lost"
        return text


class DecompressingReader(io.RawIOBase):
    """The decoded bytes of ``raw`` (a binary file object), every member in turn."""

    def __init__(self, raw, codec: Codec, size: Optional[int] = None):
        super().__init__()
        self._raw = raw
        self._size = size              # of the file, if known: spares reading its rest
        self._codec = codec
        self._decompressor = None      # None between members
        self._member_start = 0
        self._member_head = b""
        self._member_bytes: Optional[bytearray] = bytearray()
        self._member_output = 0        # decoded bytes of the current member so far
        self._members = 0              # complete members so far
        self._pending = b""            # compressed bytes read but not yet fed
        self._consumed = 0             # compressed bytes fed and accepted
        self._decoded = 0              # decoded bytes produced
        self._out = b""                # decoded bytes not yet handed out
        self._done = False
        self.damage: Optional[StreamDamage] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out and not self._done:
            self._step()
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    # One slice of compressed input ---------------------------------------------------

    def _step(self) -> None:
        if not self._pending:
            self._pending = self._raw.read(_SLICE)
            if not self._pending:
                self._at_end_of_file()
                return
        if self._decompressor is None and not self._start_member():
            return
        data, self._pending = self._pending[:_SLICE], self._pending[_SLICE:]
        if len(self._member_head) < 64:
            self._member_head += data[:64]
        if self._member_bytes is not None:
            self._member_bytes += data
            if len(self._member_bytes) > _KEEP_MEMBER_BYTES:
                self._member_bytes = None
        backup = self._decompressor.copy() if self._codec.replayable else None
        try:
            out = self._decompressor.decompress(data)
        except _decompression_errors() as error:
            if backup is not None:
                self._replay(backup, data, error)
            elif self._member_bytes is not None:
                self._replay_member(data, error)
            else:
                self._pending = data + self._pending
                self._broken(error)
            return
        self._emit(out)
        if getattr(self._decompressor, "eof", False):
            unused = self._decompressor.unused_data
            self._consumed += len(data) - len(unused)
            self._end_member(unused)
        else:
            self._consumed += len(data)

    def _replay(self, decompressor, data: bytes, error) -> None:
        """Feed the failing slice again one byte at a time, to keep every byte the
        stream decodes before the error (a gzip with a bad CRC decodes in full)."""
        self._decompressor = decompressor
        for i in range(len(data)):
            try:
                out = decompressor.decompress(data[i:i + 1])
            except _decompression_errors() as byte_error:
                self._pending = data[i:] + self._pending
                self._broken(byte_error)
                return
            self._emit(out)
            self._consumed += 1
            if decompressor.eof:
                self._consumed -= len(decompressor.unused_data)
                self._end_member(decompressor.unused_data + data[i + 1:])
                return
        self._broken(error)  # it failed on the slice but not on its bytes: stop anyway

    def _replay_member(self, data: bytes, error) -> None:
        """_replay for decompressors without copy(): a new one decodes the member up
        to the failing slice again (its output was handed out already), then the
        slice goes in byte by byte."""
        decompressor = self._codec.new()
        head = bytes(self._member_bytes[:len(self._member_bytes) - len(data)])
        try:
            again = len(decompressor.decompress(head)) if head else 0
        except _decompression_errors() as head_error:  # not deterministic: give up here
            self._pending = data + self._pending
            self._broken(head_error)
            return
        skip = self._member_output - again  # output the byte-wise replay repeats
        self._member_bytes = None

        class Skipping:  # drops the first ``skip`` bytes the replay decodes again
            eof = property(lambda _: decompressor.eof)
            unused_data = property(lambda _: decompressor.unused_data)

            def decompress(_, chunk):
                nonlocal skip
                out = decompressor.decompress(chunk)
                dropped = min(skip, len(out))
                skip -= dropped
                return out[dropped:]
        self._replay(Skipping(), data, error)

    def _end_member(self, unused: bytes) -> None:
        self._pending = unused + self._pending
        self._decompressor = None
        self._members += 1

    def _start_member(self) -> bool:
        """A new member starts at the pending bytes: returns False if there are none."""
        if self._members and self._codec.zero_padding:
            self._skip_padding()
            if not self._pending:
                return False
        self._decompressor = self._codec.new()
        self._member_start = self._consumed
        self._member_head = b""        # its first bytes, to tell zero padding from junk
        self._member_bytes = bytearray()  # all of it, while it is small (None after)
        self._member_output = 0
        return True

    def _skip_padding(self) -> None:
        stripped = self._pending.lstrip(b"\x00")
        zeros = len(self._pending) - len(stripped)
        while not stripped:  # the padding may run past this slice
            more = self._raw.read(_SLICE)
            if not more:
                break
            stripped = more.lstrip(b"\x00")
            zeros += len(more) - len(stripped)
        if zeros % self._codec.zero_padding == 0:
            self._consumed += zeros
            self._pending = stripped
        else:  # not padding the format allows: leave it to fail as trailing junk
            self._pending = b"\x00" * zeros + stripped

    def _emit(self, out: bytes) -> None:
        if out:
            self._out += out
            self._decoded += len(out)
            self._member_output += len(out)

    # Ends ------------------------------------------------------------------------------

    def _at_end_of_file(self) -> None:
        self._done = True
        if self._decompressor is not None:
            # A member that started and never ended: the file was cut short (or its
            # end is corrupt); whatever it should still have held is lost.
            what = (f"the {self._codec.name} data ends early (the file is cut short or "
                    f"its end is missing): member {self._members + 1} is incomplete")
            self._set_damage(what, self._consumed, lost_rest=True)

    def _broken(self, error) -> None:
        self._done = True
        reason = f"{type(error).__name__}: {error}"
        name = self._codec.name
        magic = self._codec.magic
        if self._member_output == 0 and (magic is None or not magic(self._member_head)):
            # The member does not even start right: from its first byte on, this is
            # not compressed data. Bytes the decompressor took in are unread too.
            offset = self._member_start
            if self._members:
                what = (f"the bytes after {self._members} complete {name} member(s) are "
                        f"not {name} data ({reason})")
                lost_rest = False  # nothing compressed is missing, only junk follows
            else:
                what = f"the file is not {name} data ({reason})"
                lost_rest = True
        else:
            offset = self._consumed
            # A checksum is checked after the data it covers was decoded (gzip: at the
            # end of each member), so what was handed out cannot be taken back: say
            # which decoded bytes the failing member produced.
            start = self._decoded - self._member_output
            what = f"the {name} data is corrupt in member {self._members + 1} ({reason})"
            if self._member_output:
                what += (f"; decoded bytes {start}-{self._decoded - 1} came from that member "
                         "and may be wrong near the damage")
            lost_rest = True
        self._set_damage(what, offset, lost_rest)

    def _set_damage(self, what: str, offset: int, lost_rest: bool) -> None:
        seen = self._consumed + len(self._pending)
        # The rest is read only to tell zero padding from junk, and only when it is
        # short or the file's size is unknown (a damaged 10 GB object on Cloud
        # Storage is not downloaded to the end for a message).
        if self._size is None or self._size - seen <= _ZERO_CHECK_BYTES:
            rest, all_zero = _drain(self._raw)
        else:
            rest, all_zero = self._size - seen, False
        size = seen + rest
        head_zero = not self._member_head.strip(b"\x00")
        if not lost_rest and all_zero and head_zero and not self._pending.strip(b"\x00"):
            what += "; they are all zero bytes (padding: probably nothing was lost)"
        self._pending = b""
        self.damage = StreamDamage(what, offset, size, self._decoded, lost_rest)


_ZERO_CHECK_BYTES = 1 << 20


def _drain(raw) -> tuple[int, bool]:
    """(bytes of ``raw`` not read yet, whether all are zero): read and dropped, since
    the reader is done with the file but the damage report names its size."""
    total, all_zero = 0, True
    while True:
        chunk = raw.read(1 << 20)
        if not chunk:
            return total, all_zero
        total += len(chunk)
        all_zero = all_zero and not chunk.strip(b"\x00")
