"""Writing large corpora full of faults, from a little material that Hypothesis draws.

Hypothesis draws text atoms (any Unicode, lone surrogates included), raw byte
strings, odd id values and a seed; a ``FuzzedCorpus`` combines them with a seeded
random generator into thousands of records per file, so each Hypothesis example
stays small while each file is large. Every writer returns what it wrote: the
number of records as the reader defines them, how many were deliberately faulty,
the ids of the clean ones (which must be embedded or, for an encoder failure,
dead-lettered), and the ids shared by records that disagree (never embedded).
"""
from __future__ import annotations

import bz2
import codecs
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import random
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

# Characters that make trouble: controls, bidi overrides and isolates, zero-width
# and byte-order marks, line and paragraph separators, combining marks, Unicode
# spaces (which count as blank), a private-use character and a noncharacter.
SPECIALS = ("\x00", "\x01", "\x07", "\x1b[31m", "\x7f", "\x85", "\u202e", "\u202d", "\u2066",
            "\u2069", "\u200f", "\u200b", "\u200d", "\ufeff", "\u2028", "\u2029", "\u0301",
            "\u0338", "\u3000", "\u00a0", "\ue000", "\uffff", "\t", "\x0b", "\x0c", "\x1c")
WORDS = ("the", "river", "Straße", "東京", "مرحبا", "שלום", "नमस्ते", "😀", "naïve", "x")
SURROGATES = ("\ud800", "\udfff", "\udc80")
INVALID_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80")
HUGE_CHARS = 300_000


@dataclasses.dataclass(frozen=True)
class Material:
    """What Hypothesis draws for one example."""
    seed: int
    atoms: tuple[str, ...]       # may hold lone surrogates
    blobs: tuple[bytes, ...]     # arbitrary bytes
    odd_ids: tuple               # JSON values of every type
    csv_bom: bool
    parquet_id_type: str         # "string", "int64" or "binary"
    parquet_text_type: str       # "string", "large_string" or "binary"


@dataclasses.dataclass
class Written:
    records: int = 0             # as the reader counts them
    faults: int = 0              # records written deliberately wrong or odd
    clean_ids: set = dataclasses.field(default_factory=set)
    conflicting_ids: set = dataclasses.field(default_factory=set)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class FuzzedCorpus:
    def __init__(self, material: Material, n_records: int):
        self.m = material
        self.n = n_records

    # Texts -----------------------------------------------------------------------

    def _rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.m.seed}:{salt}")

    def any_text(self, rng) -> str:
        """Atoms, words and troublemakers; may be blank or hold surrogates."""
        parts = [rng.choice(self.m.atoms) if rng.random() < 0.5 else rng.choice(WORDS)
                 for _ in range(rng.randint(1, 6))]
        for _ in range(rng.randint(0, 3)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(SPECIALS))
        return rng.choice(("", " ")).join(parts)

    def clean_text(self, rng, single_line=True) -> str:
        """Valid, not blank: a word first; no surrogates; no line breaks if asked."""
        text = rng.choice(WORDS) + " " + self.any_text(rng)
        text = "".join(c if _encodable(c) else "?" for c in text)
        if single_line:
            text = text.replace("\n", " ").replace("\r", " ")
        if rng.random() < 0.002:
            text = (text + " ") * (HUGE_CHARS // (len(text) + 1) + 1)
        return text

    def blank_text(self, rng) -> str:
        return rng.choice(("", " ", "\t \t", "\u3000", "\u2003\u00a0", "\x1c\x1d"))

    def surrogate_text(self, rng) -> str:
        text = self.clean_text(rng)
        i = rng.randint(0, len(text))
        return text[:i] + rng.choice(SURROGATES) + text[i:]

    def invalid_bytes(self, rng, content: bytes) -> bytes:
        """``content`` with bytes that are not UTF-8 inserted (never a line break)."""
        bad = rng.choice(INVALID_UTF8 + self.m.blobs).replace(b"\n", b"").replace(b"\r", b"")
        if _decodes(bad):
            bad = rng.choice(INVALID_UTF8)
        i = rng.randint(0, len(content))
        return content[:i] + bad + content[i:]

    # Ids -------------------------------------------------------------------------

    def clean_id(self, rng, i: int) -> str:
        """Unique by construction (the index), odd in shape."""
        shape = rng.random()
        if shape < 0.3:
            return str(i)
        atom = "".join(c for c in rng.choice(self.m.atoms) if _encodable(c))
        return f"{atom}\u202e{rng.choice(SPECIALS)}#{i}" if shape < 0.6 else f"doc-{i} {atom}"

    # Formats ---------------------------------------------------------------------

    def write_text(self, path) -> Written:
        rng, out, lines = self._rng("text"), Written(), []
        earlier = []
        lines.append(b"first line")
        out.clean_ids.add(_sha(b"first line"))
        for _ in range(self.n - 1):
            kind = rng.random()
            if kind < 0.70:
                content = _utf8(self.clean_text(rng))
                out.clean_ids.add(_sha(content))
                earlier.append(content)
            else:
                out.faults += 1
                if kind < 0.76 and earlier:
                    content = rng.choice(earlier)                  # an exact copy
                elif kind < 0.82:
                    content = _utf8(self.blank_text(rng))          # empty_text
                elif kind < 0.90:
                    content = self.invalid_bytes(rng, _utf8(self.clean_text(rng)))
                elif kind < 0.95:
                    content = _utf8(self.surrogate_text(rng))      # invalid UTF-8 too
                else:
                    content = _utf8("".join(rng.choice(SPECIALS) for _ in range(5)).replace(
                        "\n", " ").replace("\r", " "))            # controls only
                    if content.decode("utf-8").strip():
                        out.clean_ids.add(_sha(content))
            lines.append(content)
        out.records = len(lines)
        with open(path, "wb") as f:
            for i, content in enumerate(lines):
                last = i == len(lines) - 1
                # An empty last line without a line end would be no line at all.
                f.write(content + (b"" if last and content and rng.random() < 0.5 else
                                   rng.choice((b"\n", b"\r\n"))))
        return out

    def write_jsonl(self, path) -> Written:
        rng, out, lines = self._rng("jsonl"), Written(), []
        texts_by_id: dict[str, set] = {}

        def record(doc_id, text, extra=None):
            value = {"id": doc_id, "text": text, **(extra or {})}
            keys = list(value)
            rng.shuffle(keys)
            return _utf8(json.dumps({k: value[k] for k in keys}, ensure_ascii=rng.random() < 0.5))

        for i in range(self.n):
            kind = rng.random()
            if kind < 0.65:
                doc_id, text = self.clean_id(rng, i), self.clean_text(rng)
                if rng.random() < 0.1 and doc_id.isascii() and doc_id.isdigit():
                    lines.append(record(int(doc_id), text))        # integer ids become strings
                else:
                    lines.append(record(doc_id, text, {"extra": [1, None]}))
                texts_by_id.setdefault(doc_id, set()).add(text)
                continue
            out.faults += 1
            if kind < 0.69 and texts_by_id:                          # an exact copy
                doc_id = rng.choice(sorted(texts_by_id))
                lines.append(record(doc_id, next(iter(texts_by_id[doc_id]))))
            elif kind < 0.72 and texts_by_id:                        # same id, other text
                doc_id = rng.choice(sorted(texts_by_id))
                text = self.clean_text(rng) + f" other {i}"
                lines.append(record(doc_id, text))
                texts_by_id[doc_id].add(text)
            elif kind < 0.78:                                        # odd id types
                lines.append(_utf8(json.dumps({"id": rng.choice(self.m.odd_ids) if rng.random() < 0.7
                                               else rng.choice([1.5, True, None, [], {}, ""]),
                                               "text": self.clean_text(rng)})))
            elif kind < 0.83:                                        # odd text types
                lines.append(_utf8(json.dumps({"id": f"t{i}", "text": rng.choice(
                    [None, 3, 2.5, False, ["x"], {"t": "x"}, self.blank_text(rng)])})))
            elif kind < 0.86:                                        # missing fields
                lines.append(_utf8(json.dumps(rng.choice([{"text": "no id"}, {"id": f"m{i}"}, {}]))))
            elif kind < 0.90:                                        # surrogates, escaped or raw
                lines.append(record(f"s{i}", self.surrogate_text(rng)))
            elif kind < 0.93:                                        # invalid UTF-8
                lines.append(self.invalid_bytes(rng, record(f"u{i}", self.clean_text(rng))))
            else:                                                    # not JSON, or not an object
                lines.append(self._malformed_json(rng, record(f"j{i}", self.clean_text(rng))))
        for doc_id, texts in texts_by_id.items():
            (out.clean_ids if len(texts) == 1 else out.conflicting_ids).add(doc_id)
        out.records = len(lines)
        with open(path, "wb") as f:
            for content in lines:
                f.write(content + b"\n")
                if rng.random() < 0.02:
                    f.write(rng.choice((b"\n", b" \t\n", b"\r\n", b"\x0c\n")))  # blank: not records
        return out

    def _malformed_json(self, rng, good: bytes) -> bytes:
        choice = rng.randrange(8)
        if choice == 0:
            return good[:rng.randint(1, max(1, len(good) - 1))]     # cut short
        if choice == 1:
            return good + b" trailing"
        if choice == 2:
            return b"[" * 20000 + b"]" * 20000                       # too deep to parse
        if choice == 3:
            return rng.choice((b"[1, 2]", b'"just a string"', b"42", b"null", b"NaN"))
        if choice == 4:
            return b"{'id': 'single quotes'}"
        if choice == 5:
            blob = rng.choice(self.m.blobs) or b"\x00"
            return b"{" + blob.replace(b"\n", b" ").replace(b"\r", b" ")
        if choice == 6:
            return b'{"id": "x", "text": "unterminated}'
        return b'{"id": "dup key", "id": 7, "text": ' + b'"' + b"\\x" + b'"}'  # bad escape

    def write_csv(self, path) -> Written:
        rng, out = self._rng("csv"), Written()
        texts_by_id: dict[str, set] = {}
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, quoting=rng.choice((csv.QUOTE_MINIMAL, csv.QUOTE_ALL)),
                            lineterminator=rng.choice(("\n", "\r\n")))
        writer.writerow(["id", "text"])
        chunks = [_utf8(buffer.getvalue())]

        def row(fields):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(fields)
            chunks.append(_utf8(buffer.getvalue()))

        def raw(line: bytes):
            chunks.append(line + b"\n")

        for i in range(self.n - 1):
            kind = rng.random()
            if kind < 0.65:
                doc_id = self.clean_id(rng, i).replace("\r", " ")
                text = self.clean_text(rng, single_line=False).replace("\r", " ")
                if rng.random() < 0.1:
                    text += "\r\nsecond line, \"quoted\""
                row([doc_id, text])
                texts_by_id.setdefault(doc_id, set()).add(text)
                continue
            out.faults += 1
            if kind < 0.69 and texts_by_id:
                doc_id = rng.choice(sorted(texts_by_id))
                row([doc_id, next(iter(texts_by_id[doc_id]))])
            elif kind < 0.72 and texts_by_id:
                doc_id = rng.choice(sorted(texts_by_id))
                text = f"other text {i}"
                row([doc_id, text])
                texts_by_id[doc_id].add(text)
            elif kind < 0.78:
                row(rng.choice([[f"f{i}"], [f"f{i}", "a", "b"], [f"f{i}", "a", "b", "c"]]))
            elif kind < 0.83:
                row(rng.choice([["", "no id"], [f"e{i}", self.blank_text(rng).replace("\r", " ")]]))
            elif kind < 0.90:
                raw(self.invalid_bytes(rng, _utf8(f"u{i},{self.clean_text(rng)}").replace(
                    b'"', b"'")))
            elif kind < 0.93:
                raw(_utf8(f'q{i},"closed early"junk'))                # text after a closing quote
            elif kind < 0.95:                                         # bad bytes inside a quoted
                lines = [_utf8(self.clean_text(rng)).replace(b'"', b"'") for _ in range(3)]
                bad = rng.randrange(3)                                 # multi-line field: the whole
                lines[bad] = self.invalid_bytes(rng, lines[bad]).replace(b'"', b"'")  # record
                raw(_utf8(f"m{i},") + b'"' + b"\n".join(lines) + b'"')             # is dead
            else:
                raw(_utf8(f"n{i},a\x00b"))                            # NUL in a field
            if rng.random() < 0.02:
                chunks.append(b"\n")                                    # a blank line: no record
        chunks.append(_utf8('last,"never closed'))                     # swallows nothing after it
        out.faults += 1
        for doc_id, texts in texts_by_id.items():
            (out.clean_ids if len(texts) == 1 else out.conflicting_ids).add(doc_id)
        out.records = self.n
        with open(path, "wb") as f:
            f.write((b"\xef\xbb\xbf" if self.m.csv_bom else b"") + b"".join(chunks))
        return out

    def write_parquet(self, directory) -> Written:
        rng, out = self._rng("parquet"), Written()
        id_type, text_type = self.m.parquet_id_type, self.m.parquet_text_type
        ids, texts, texts_by_id = [], [], {}
        for i in range(self.n):
            kind = rng.random()
            doc_id = str(i) if id_type == "int64" else self.clean_id(rng, i)
            if kind < 0.7:
                text = self.clean_text(rng, single_line=False)
                texts_by_id.setdefault(doc_id, set()).add(text)
            else:
                out.faults += 1
                if kind < 0.75 and texts_by_id:                          # an exact copy
                    doc_id = rng.choice(sorted(texts_by_id))
                    text = next(iter(texts_by_id[doc_id]))
                elif kind < 0.80 and texts_by_id:                        # same id, other text
                    doc_id = rng.choice(sorted(texts_by_id))
                    text = f"other text {i}"
                    texts_by_id[doc_id].add(text)
                elif kind < 0.85:
                    doc_id = None
                    text = self.clean_text(rng)
                elif kind < 0.90:
                    text = rng.choice([None, self.blank_text(rng)])
                else:                                                    # surrogates or bad bytes
                    text = (self.surrogate_text(rng) if text_type != "binary"
                            else self.invalid_bytes(rng, _utf8(self.clean_text(rng))))
                    if text_type != "binary":
                        text = "".join(c if _encodable(c) else "\ufffd" for c in text)
                        out.faults -= 1  # Arrow strings cannot hold surrogates: this one is clean
                        texts_by_id.setdefault(doc_id, set()).add(text)
            ids.append(doc_id)
            texts.append(text)
        for doc_id, values in texts_by_id.items():
            (out.clean_ids if len(values) == 1 else out.conflicting_ids).add(doc_id)

        def column(values, arrow_type):
            if arrow_type == "int64":
                return pa.array([None if v is None else int(v) for v in values], pa.int64())
            if arrow_type == "binary":
                return pa.array([v if v is None or isinstance(v, bytes) else _utf8(v)
                                 for v in values], pa.binary())
            return pa.array(values, getattr(pa, arrow_type)())

        table = pa.table({"extra": pa.array(range(self.n)), "id": column(ids, id_type),
                          "text": column(texts, text_type)})
        good = directory / "corpus.parquet"
        pq.write_table(table, good, row_group_size=rng.choice((100, 1000, 100_000)))
        # A second file, cut short: unreadable, one dead letter.
        (directory / "truncated.parquet").write_bytes(good.read_bytes()[:rng.randint(0, 2000)])
        out.records = self.n + 1
        out.faults += 1
        return out


# Damaged and foreign-encoded copies ------------------------------------------------

def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


COMPRESSIONS = {
    ".gz": lambda data: gzip.compress(data, mtime=0),
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    ".zst": _zstd,
    ".deflate": zlib.compress,
}
# name -> (Python codec, byte-order mark written first): None marks a file to refuse.
ENCODINGS = {
    "utf-8-sig": ("utf-8", codecs.BOM_UTF8), "utf-16-le-bom": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be-bom": ("utf-16-be", codecs.BOM_UTF16_BE),
    "utf-32-le-bom": ("utf-32-le", codecs.BOM_UTF32_LE),
    "utf-32-be-bom": ("utf-32-be", codecs.BOM_UTF32_BE),
    "utf-16-le": ("utf-16-le", None), "utf-16-be": ("utf-16-be", None),
    "utf-32-le": ("utf-32-le", None),
}


@dataclasses.dataclass
class Copy:
    """A damaged or re-encoded copy of the start of a corpus file."""
    path: object
    content: bytes         # what it decodes to, as far as it can be decoded
    note: str              # what was done to it, for failure messages
    refused: bool = False  # must be one unsupported_encoding dead letter, whole
    original: bytes = b""  # the UTF-8 bytes it was made from


def write_copies(seed: int, source, directory, extension: str) -> list[Copy]:
    """A compressed copy of the first sixteenth of ``source``, cut at a random offset
    (or followed by junk, zeros or a second member), and a copy in a random
    encoding, with or without a byte-order mark. Their records repeat the
    original's (same ids, same texts), so they add reading, not embedding."""
    rng = random.Random(f"{seed}:copies")
    data = source.read_bytes()
    cut = data.find(b"\n", len(data) // 16) + 1 or len(data)
    head = data[:cut]
    suffix = rng.choice(sorted(COMPRESSIONS))
    compressed = COMPRESSIONS[suffix](head)
    damage = rng.choice(("cut", "cut", "cut", "junk", "zeros", "members"))
    if damage == "cut":
        offset = rng.randint(0, len(compressed))
        compressed, note = compressed[:offset], f"{suffix} cut at {offset} of {len(compressed)}"
        head = _decodable(suffix, compressed)  # all that can be read back, independently
    elif damage == "junk":
        compressed, note = compressed + rng.randbytes(rng.randint(1, 64)), f"{suffix} + junk"
    elif damage == "zeros":
        compressed, note = compressed + b"\0" * rng.randint(1, 3000), f"{suffix} + zeros"
    else:
        compressed += COMPRESSIONS[suffix](head)
        head, note = head + head, f"{suffix} two members"
    copies = [Copy(directory / f"cut{extension}{suffix}", head, note)]
    head = data[:cut]
    copies[0].path.write_bytes(compressed)

    name = rng.choice(sorted(ENCODINGS))
    python_codec, bom = ENCODINGS[name]
    # Bytes that are not UTF-8 stay invalid: surrogate escapes, written as lone
    # surrogates, which no UTF-16/32 decoder accepts either.
    text = head.removeprefix(codecs.BOM_UTF8).decode("utf-8", "surrogateescape")
    body = text.encode(python_codec, "surrogatepass")
    if name == "utf-8-sig":
        body = head.removeprefix(codecs.BOM_UTF8)
    encoded = (bom or b"") + body
    copies.append(Copy(directory / f"encoded{extension}", encoded, name, refused=bom is None,
                       original=head))
    copies[1].path.write_bytes(encoded)
    return copies


def _decodable(suffix: str, compressed: bytes) -> bytes:
    """What a plain streaming decoder gets out of a stream cut short (no error: the
    decoders just stop), to check the reader's count against."""
    import zstandard
    decoder = {".gz": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
               ".deflate": zlib.decompressobj,
               ".bz2": bz2.BZ2Decompressor, ".xz": lzma.LZMADecompressor,
               ".lzma": lzma.LZMADecompressor,
               ".zst": lambda: zstandard.ZstdDecompressor().decompressobj()}[suffix]()
    return decoder.decompress(compressed)


def _decodes(blob: bytes) -> bool:
    try:
        blob.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
