"""Progress of a run: documents embedded, tokens/s, percent and ETA.

One process-wide tally (``PROGRESS``) that the stages update as work flows: the
file reader per file read (documents and bytes), the BigQuery reader with its read
session's row estimate, deduplication and --skip_existing for documents settled
without embedding, the encoder per batch. A daemon thread shows it: every 10 s as a
log line (workers, CI, Dataflow's logs), or, once the command line hands it a
display (pipeline/console.py: a tqdm bar on a terminal), as often as that asks.

The expected total comes from the input: the matched files' size in bytes, scaled
by the documents per byte of the files read so far (exact once every file is
read), or the read session's row estimate. It is per process: on the local runner
the workers share the launcher's process and the figures cover the whole run;
elsewhere each worker reports its own share, without a total.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Optional

INTERVAL_SECONDS = 10.0
LOGGER = logging.getLogger("beam_embed.progress")


@dataclasses.dataclass(frozen=True)
class Figures:
    docs: int  # texts (pieces, with --long_text chunk) embedded
    settled: int  # documents done without embedding: duplicates, skipped as existing
    tokens: int
    seconds: float  # since the first text was embedded
    expected: Optional[int]  # documents the run is expected to see, if known
    exact: bool = False  # expected is a count (every file read), not an estimate

    @property
    def done(self) -> int:
        return self.docs + self.settled

    @property
    def fraction(self) -> Optional[float]:
        if not self.expected:
            return None
        return min(self.done / self.expected, 1.0)

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> Optional[float]:
        fraction = self.fraction
        if fraction is None or fraction >= 1 or self.done == 0 or self.seconds <= 0:
            return None
        return self.seconds * (1 - fraction) / fraction

    def line(self) -> str:
        """``progress: 1,200 of ~4,800 documents (25%), 310.2 docs/s, 4,100 tokens/s, ETA 12s``."""
        fraction, eta = self.fraction, self.eta_seconds
        of = f" of {'' if self.exact else '~'}{self.expected:,}" if self.expected else ""
        percent = f" ({fraction:.0%})" if fraction is not None else ""
        settled = f" ({self.settled:,} without embedding)" if self.settled else ""
        tail = f", ETA {format_seconds(eta)}" if eta is not None else ""
        return (f"progress: {self.done:,}{of} documents{percent}{settled}, "
                f"{self.docs_per_second:,.1f} docs/s, {self.tokens_per_second:,.0f} tokens/s{tail}")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def log_line(figures: Figures) -> None:
    LOGGER.info("%s", figures.line())


class Progress:
    """Process-wide tally; thread-safe (a worker's threads all add to it)."""

    def __init__(self, interval: float = INTERVAL_SECONDS):
        self._lock = threading.Lock()
        self._reset(interval, log_line)

    def _reset(self, interval: float, display: Callable[[Figures], None]) -> None:
        self._interval, self._display = interval, display
        self._start: Optional[float] = None
        self._docs = self._tokens = self._settled = 0
        self._total_bytes: Optional[int] = None
        self._total_records: Optional[int] = None
        self._read_docs = self._read_bytes = 0
        self._shown = None
        self._thread: Optional[threading.Thread] = None
        self._generation = getattr(self, "_generation", 0) + 1

    def show_with(self, display: Callable[[Figures], None], interval: float) -> None:
        """Start over (a new run in this process) and show figures with ``display``
        every ``interval`` seconds instead of logging them every 10 s."""
        with self._lock:
            self._reset(interval, display)

    def expect(self, total_bytes: Optional[int] = None, total_records: Optional[int] = None):
        """What the input holds: the matched files' bytes, or a row estimate."""
        with self._lock:
            if total_bytes:
                self._total_bytes = total_bytes
            if total_records:
                self._total_records = total_records

    def read(self, docs: int, nbytes: int) -> None:
        """A reader finished a file of ``nbytes`` bytes that held ``docs`` documents."""
        with self._lock:
            self._read_docs += docs
            self._read_bytes += nbytes

    def settle(self, docs: int) -> None:
        """``docs`` documents are done without being embedded."""
        with self._lock:
            self._settled += docs

    def add(self, docs: int, tokens: int) -> None:
        with self._lock:
            if self._start is None:
                self._start = time.monotonic()
                self._thread = threading.Thread(target=self._report_forever,
                                                args=(self._generation,), daemon=True,
                                                name="beam-embed-progress")
                self._thread.start()
            self._docs += docs
            self._tokens += tokens

    def figures(self) -> Figures:
        with self._lock:
            return self._figures()

    def _figures(self) -> Figures:
        seconds = time.monotonic() - self._start if self._start is not None else 0.0
        expected, exact = self._expected()
        return Figures(self._docs, self._settled, self._tokens, seconds, expected, exact)

    def _expected(self) -> tuple[Optional[int], bool]:
        if self._total_records:
            return self._total_records, False
        if self._total_bytes and self._read_bytes:
            if self._read_bytes >= self._total_bytes:
                return self._read_docs, True
            return round(self._read_docs * self._total_bytes / self._read_bytes), False
        return None, False

    def finish(self) -> None:
        """The run is over: show the last figures once more (if anything was embedded)."""
        with self._lock:
            started, display = self._start is not None, self._display
            figures = self._figures()
            self._generation += 1  # the reporting thread stops
            self._start = None
        if started and figures != self._shown:
            display(figures)

    def _report_forever(self, generation: int):
        while True:
            time.sleep(self._interval)
            with self._lock:
                if generation != self._generation:
                    return
                figures, display = self._figures(), self._display
                if self._shown is not None and figures.done == self._shown.done:
                    continue
                self._shown = figures
            display(figures)


PROGRESS = Progress()
