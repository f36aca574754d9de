"""Logging for the command line, with credentials kept out of it.

What the pipeline logs is counts, paths and option names: documents never reach the
logs (a rejected record's text goes to the dead-letter files only). Command-line
values can: Beam logs every argument it does not know verbatim ("Unparseable
argument: --api_key=..."), and workers log their options. So the values of flags
whose names look like credentials (``--*token*``, ``--*key*``, ``--*secret*``,
``--*password*``, ``--*credential*``, ``--*auth*``) are replaced by ``***`` in every
log record of the process, whichever logger emits it and whichever handler writes it.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Sequence

_SECRET_FLAG = re.compile(r"--?[\w.-]*(token|key|secret|passw|credential|auth)[\w.-]*\Z",
                          re.IGNORECASE)
# Shorter values ("1", "true") are flags, not credentials; hiding them would only
# garble unrelated messages.
_MIN_SECRET_LENGTH = 6
REDACTED = "***"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # replaced whole, never mutated: records read it unlocked
_factory_installed = False


def configure_logging(argv: Sequence[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    redact_secrets(argv)


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
    global _factory_installed, _secrets
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | set(secret_values(argv)), key=len, reverse=True))
        if _factory_installed or not _secrets:
            return
        # A record factory rather than a handler filter: it covers handlers added
        # later too (Beam's, a test's log capture), and records of every logger.
        make_record = logging.getLogRecordFactory()

        def make_redacted_record(*args, **kwargs):
            record = make_record(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed call: leave it to the handler to report
                return record
            redacted = _redact(message)
            if redacted != message:
                record.msg, record.args = redacted, ()
            return record

        logging.setLogRecordFactory(make_redacted_record)
        _factory_installed = True


def _redact(message: str) -> str:
    for secret in _secrets:
        if secret in message:
            message = message.replace(secret, REDACTED)
    return message
