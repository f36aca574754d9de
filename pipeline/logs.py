"""Logging for the command line, with credentials kept out of it and terminals safe.

What the pipeline logs is counts, paths and option names: documents never reach the
logs (a rejected record's text goes to the dead-letter files only). Command-line
values can: Beam logs every argument it does not know verbatim ("Unparseable
argument: --api_key=..."), and workers log their options. So the values of flags
whose names look like credentials (``--*token*``, ``--*key*``, ``--*secret*``,
``--*password*``, ``--*credential*``, ``--*auth*``) are replaced by ``***`` in every
log record of the process, whichever logger emits it and whichever handler writes it.

Paths come from users and file systems, and a file name may hold any character but
``/`` and NUL: an ESC starts a terminal escape sequence, a BEL rings, ``\r`` and
``\n`` forge log lines, bidi overrides make text read backwards. So every log
message is made ``printable`` (one record, one line), tracebacks keep only their
line breaks, and the CLI's own error line and uncaught tracebacks go through the
same function.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import traceback
from typing import Optional, Sequence

_SECRET_FLAG = re.compile(r"--?[\w.-]*(token|key|secret|passw|credential|auth)[\w.-]*\Z",
                          re.IGNORECASE)
# Shorter values ("1", "true") are flags, not credentials; hiding them would only
# garble unrelated messages.
_MIN_SECRET_LENGTH = 6
REDACTED = "***"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # replaced whole, never mutated: records read it unlocked
_factory_installed = False


_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# C0 and C1 controls (DEL too), bidi embeddings, overrides, isolates and marks, line
# and paragraph separators, and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, keep: str = "") -> str:
    """``text`` with the characters a terminal or a log reader would act on escaped
    (``\\x1b``, ``\\n``, ``\\u202e``; an undecodable byte of a file name as ``\\xNN``),
    except those in ``keep``."""
    def escape(match: re.Match) -> str:
        char = match.group()
        if char in keep:
            return char
        code = ord(char)
        if char in _NAMED:
            return _NAMED[char]
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of byte code - 0xDC00
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return _UNSAFE.sub(escape, text)


class _SafeFormatter(logging.Formatter):
    """Tracebacks and stacks keep their line breaks; everything else is escaped (the
    message itself already is, by the record factory)."""

    def formatException(self, ei) -> str:
        return printable(_redact(super().formatException(ei)), keep="\n")

    def formatStack(self, stack_info: str) -> str:
        return printable(_redact(super().formatStack(stack_info)), keep="\n")


# This tool's own loggers (its modules log through the root logger or their
# __name__; progress through beam_embed.progress).
_OWN_NAMES = ("pipeline", "transforms", "models", "beam_embed")
_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
                  + os.sep for name in ("pipeline", "transforms", "models"))


def is_own_record(record: logging.LogRecord) -> bool:
    if record.name.split(".", 1)[0] in _OWN_NAMES:
        return True
    # logging.warning(...) in this tool's modules: the root logger, called from here.
    return record.name == "root" and os.path.abspath(record.pathname).startswith(_OWN_DIRS)


# Beam's records of a failed bundle, its traceback included. A bundle that fails
# fails a local run (the FnApiRunner does not retry), and the run's failure is one
# line of beam-embed's (pipeline/main.py); -v shows these records.
BUNDLE_FAILURE_LOGGERS = frozenset({"apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"})


def quiet_worker_prints() -> None:
    """Beam's gRPC SDK worker (two local workers, multi_threading: pipeline/local_workers.py)
    prints a failed bundle's traceback to stderr with print() as well as logging it
    (sdk_worker.SdkHarness._execute, its only print); a quiet run drops the print,
    as it drops the record. Module globals shadow builtins, so this one name does it."""
    from apache_beam.runners.worker import sdk_worker
    sdk_worker.print = lambda *args, **kwargs: None


class QuietFilter(logging.Filter):
    """The default level: this tool's warnings and progress lines, and anyone's
    errors. Beam's and TensorFlow's INFO and WARNING records (type hints, worker
    start-up, deprecations) are shown with --log_level or -v only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in BUNDLE_FAILURE_LOGGERS:
            return False
        if record.levelno >= logging.ERROR:
            return True
        if not is_own_record(record):
            return False
        return record.levelno >= logging.WARNING or record.name == "beam_embed.progress"


def configure_logging(argv: Sequence[str], level: Optional[str] = None) -> None:
    """``level`` None: quiet (QuietFilter); else every logger from that level on."""
    handler = logging.StreamHandler()
    handler.setFormatter(_SafeFormatter(_FORMAT))
    if level is None:
        handler.addFilter(QuietFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # no-op if already configured
    root = logging.getLogger()
    if handler in root.handlers:  # this process's logging is ours (not a test's, say)
        # Python warnings (Beam's and TensorFlow's deprecations) become records of the
        # py.warnings logger, shown at the same levels.
        logging.captureWarnings(True)
    if handler in root.handlers or level is not None:
        root.setLevel(level or logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING if level is None else level)
    redact_secrets(argv)
    _install_record_factory()
    sys.excepthook = _print_uncaught


def _print_uncaught(kind, value, tb) -> None:
    """Python's own report of an uncaught exception, escaped and redacted."""
    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(printable(_redact(text), keep="\n"))


def secret_values(argv: Sequence[str]) -> list[str]:
    """The values of credential-like flags, ``--name=value`` or ``--name value``."""
    values = []
    for i, arg in enumerate(argv):
        name, has_value, value = arg.partition("=")
        if not _SECRET_FLAG.match(name):
            continue
        if not has_value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
        if len(value) >= _MIN_SECRET_LENGTH:
            values.append(value)
    return values


def redact_secrets(argv: Sequence[str]) -> None:
    """From now on, log records of this process show ``***`` for those values."""
    global _secrets
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | set(secret_values(argv)), key=len, reverse=True))
    _install_record_factory()


def _install_record_factory() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        # A record factory rather than a handler filter: it covers handlers added
        # later too (Beam's, a test's log capture), and records of every logger.
        make_record = logging.getLogRecordFactory()

        def make_safe_record(*args, **kwargs):
            record = make_record(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed call: leave it to the handler to report
                return record
            safe = printable(_redact(message))
            if safe != message:
                record.msg, record.args = safe, ()
            return record

        logging.setLogRecordFactory(make_safe_record)
        _factory_installed = True


def _redact(message: str) -> str:
    for secret in _secrets:
        if secret in message:
            message = message.replace(secret, REDACTED)
    return message


# What TensorFlow's C++ side writes to stderr while it loads, before its logging is
# initialized, whatever TF_CPP_MIN_LOG_LEVEL says: absl's notice and INFO/WARNING
# lines such as "I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers".
_NATIVE_PREAMBLE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] ")


@contextlib.contextmanager
def without_native_preamble():
    """Runs the block (the import of TensorFlow) with file descriptor 2 captured,
    then writes back every captured line but TensorFlow's load-time preamble: error
    lines, Python tracebacks and anything else still reach stderr, in order."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
                    if not _NATIVE_PREAMBLE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
