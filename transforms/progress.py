"""Progress of a long run, logged by each worker process at least every 10 seconds."""
from __future__ import annotations

import logging
import threading
import time

INTERVAL_SECONDS = 10.0


class Progress:
    """Process-wide documents/tokens tally; a daemon thread logs rates while work flows."""

    def __init__(self, interval: float = INTERVAL_SECONDS):
        self._lock = threading.Lock()
        self._interval = interval
        self._start = None
        self._docs = self._tokens = 0
        self._logged_docs = -1

    def add(self, docs: int, tokens: int) -> None:
        with self._lock:
            if self._start is None:
                self._start = time.monotonic()
                threading.Thread(target=self._report_forever, daemon=True,
                                 name="beam-embed-progress").start()
            self._docs += docs
            self._tokens += tokens

    def _report_forever(self):
        while True:
            time.sleep(self._interval)
            with self._lock:
                docs, tokens, elapsed = self._docs, self._tokens, time.monotonic() - self._start
                if docs == self._logged_docs:
                    continue
                self._logged_docs = docs
            logging.info("progress: %d texts, %d tokens in %.0f s (%.1f texts/s, %.0f tokens/s)",
                         docs, tokens, elapsed, docs / elapsed, tokens / elapsed)


PROGRESS = Progress()
