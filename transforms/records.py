"""The stage types, in one place: a Document to embed or a DeadLetter; the stage tags
and ReadResult; a tokenized Piece (one encoder input) and its Encoded result.

Both are frozen dataclasses registered with Beam's RowCoder, so Beam encodes them
field by field (compact, deterministic, usable as a GroupByKey value or key) rather
than pickling each element; they also pickle normally for DoFn closures and tests.
"""
from __future__ import annotations

import codecs
import dataclasses
import json
from typing import NamedTuple, Optional, Union

import apache_beam as beam

# Every reason a record can leave the pipeline without an embedding. Metrics and
# the dead-letter files use these exact strings, so they are part of the interface.
REASONS = (
    "empty_text",
    "invalid_utf8",
    "malformed_record",
    "missing_field",
    "invalid_type",
    "too_long",
    "duplicate_id",
    "inference_error",
    # A compressed file cut short, corrupt, or followed by bytes that are not part of
    # it: one per damaged file, saying where and what was lost (see transforms/decompress.py).
    "damaged_stream",
    # A file in an encoding that is not read (UTF-16/32 without a byte-order mark,
    # NUL-dense bytes): the whole file, as one dead letter (see transforms/text_encoding.py).
    "unsupported_encoding",
)

# A dead letter keeps a prefix of the raw input only: enough to find and eyeball the
# record, while one pathological multi-megabyte line cannot bloat the error output.
RAW_PREFIX_BYTES = 1024


def raw_prefix(raw: bytes | str) -> str:
    """The first RAW_PREFIX_BYTES bytes of ``raw`` as printable text.

    Bytes that are not UTF-8 become ``\\xNN`` escapes (and so do lone surrogates in
    a str) so that the dead-letter JSON can always be written. A multi-byte character
    cut by the limit is dropped rather than escaped.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="backslashreplace")
    head = raw[:RAW_PREFIX_BYTES]
    if len(raw) <= RAW_PREFIX_BYTES:
        return head.decode("utf-8", errors="backslashreplace")
    # Not final: a character the cut split stays in the decoder's buffer, dropped,
    # while invalid bytes before it are still escaped.
    return codecs.getincrementaldecoder("utf-8")("backslashreplace").decode(head, final=False)


def encodable(text: str) -> str:
    """``text`` if it can be written as UTF-8, else with the offending characters
    escaped.

    Beam's coders encode every str as UTF-8 and fail on lone surrogates, which
    Python puts in file names that are not UTF-8 (``os.fsdecode``'s
    surrogateescape) and which JSON can spell. Such file names get their original
    bytes back as ``\\xNN``; other lone surrogates become ``\\udNNN``.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode(
            "utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclasses.dataclass(frozen=True)
class Document:
    """One text to embed.

    ``source`` says where it came from: ``"path:line"`` (1-based line) for text,
    JSONL and CSV inputs, ``"path:row N"`` (0-based row) for Parquet.
    ``text_pair`` is the optional second segment for cross-encoder style inputs.
    Every str must be encodable as UTF-8 (see ``encodable``): ReadCorpus
    guarantees it, and Beam's coder needs it.
    """
    id: str
    text: str
    text_pair: Optional[str]
    source: str


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A record that could not be embedded, with why and where.

    ``reason`` is one of REASONS (anything else raises ValueError), ``detail`` is a
    human-readable explanation, ``raw`` the start of the raw input (see raw_prefix),
    ``id`` the record id when one could be read. Text that cannot be written as
    UTF-8 is escaped on construction (see ``encodable``), so reporting a bad
    record can never fail in turn.
    """
    reason: str
    detail: str
    source: str
    raw: str
    id: Optional[str] = None

    def __post_init__(self):
        if self.reason not in REASONS:
            raise ValueError(
                f"unknown dead-letter reason {self.reason!r}; expected one of "
                f"{', '.join(REASONS)}")
        for name in ("detail", "source", "raw", "id"):
            value = getattr(self, name)
            if value is not None:
                # Frozen: fields can only be replaced this way, during construction.
                object.__setattr__(self, name, encodable(value))

    def to_json(self) -> str:
        """One JSON object (no newline) with keys id, source, reason, detail, raw."""
        return json.dumps(
            {"id": self.id, "source": self.source, "reason": self.reason,
             "detail": self.detail, "raw": self.raw},
            ensure_ascii=False)


# RowCoder instead of the pickling fallback. Frozen dataclasses only get it when
# registered explicitly (Beam keeps pickling them otherwise, for compatibility).
beam.coders.registry.register_row(Document)
beam.coders.registry.register_row(DeadLetter)


Record = Union[Document, DeadLetter]

# The two outputs of every stage that can reject a record (reading, deduplication):
# Documents on the main output, DeadLetters on this tag.
DOCUMENTS_TAG = "documents"
DEAD_LETTERS_TAG = "dead_letters"


class ReadResult(NamedTuple):
    """What ReadCorpus, ReadBigQueryCorpus and DeduplicateDocuments return: two
    PCollections. Unpack it (``documents, dead_letters = ...``) or use the attributes.
    """
    documents: beam.PCollection  # of Document
    dead_letters: beam.PCollection  # of DeadLetter


class Piece(NamedTuple):
    """One encoder input: a document, or one window of a chunked document."""
    doc_id: str
    source: str
    segments: tuple            # one or two tuples of token ids, trimmed to fit
    n_tokens: int              # packed length including special tokens
    truncated: bool
    chunk_index: int
    n_chunks: int
    text: Optional[str]        # carried only with --keep_text
    text_pair: Optional[str]
    # The first KiB of the text (records.raw_prefix) for an inference_error dead
    # letter; only on a document's first window, which a chunked document's dead
    # letter is made from, so a long text is not carried once per window.
    raw: str = ""


class Encoded(NamedTuple):
    piece: Piece
    vector: Optional["numpy.ndarray"]   # float32 [dim], None on error
    error: Optional[str]
