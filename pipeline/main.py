"""``beam-embed`` / ``python -m pipeline``: parse, check, run, print the summary."""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading

from pipeline.logs import configure_logging, printable


def main(argv=None, wait: bool = True) -> int:
    """``wait=False`` submits the job and returns (the Flex Template launcher's way)."""
    argv = list(argv if argv is not None else sys.argv[1:])
    configure_logging(argv)
    with _interrupts() as interrupted:
        try:
            return _main(argv, wait)
        except BaseException as e:  # Beam wraps an interrupt in a bundle as a RuntimeError
            if not interrupted or isinstance(e, SystemExit):
                raise
            print(f"beam-embed: interrupted by {interrupted[0].name}; a prefix without its "
                  "-summary.json holds no complete output", file=sys.stderr)
            return 128 + interrupted[0]


def _main(argv: list[str], wait: bool) -> int:
    # Imported here, under the signal handlers: importing Beam and TensorFlow takes seconds.
    from pipeline.config import OptionError, resolve
    from pipeline.options import EmbedOptions
    options = EmbedOptions(argv)
    try:
        config = resolve(options)
    except OptionError as e:
        print(f"beam-embed: error: {printable(str(e))}", file=sys.stderr)
        return 2
    from pipeline.prefix_lock import LockError, LockLost
    from pipeline.run import run, submit
    try:
        if not wait:
            submit(config)
            return 0
        summary = run(config)
    except LockError as e:  # another run took the prefix since resolve() looked, or
        print(f"beam-embed: error: {e}", file=sys.stderr)  # took it over mid-run (lost)
        return 1 if isinstance(e, LockLost) else 2
    print(json.dumps(summary, indent=2))
    return 0


@contextlib.contextmanager
def _interrupts():
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, as Python's own
    SIGINT handler does, so that ``finally`` blocks (an output lock's release, say) run
    on the way out; the signals received are recorded, since Beam re-raises what
    interrupts a bundle as another exception. Once interrupted, nothing more is logged:
    Beam's tracebacks of the aborted bundles would bury the one line that matters."""
    received: list[signal.Signals] = []

    def on_signal(signum, frame):
        received.append(signal.Signals(signum))
        logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals need the main thread
        yield received
        return
    # A signal ignored when the process started stays ignored: a shell starts background
    # jobs with SIGINT ignored, so that the terminal's Ctrl-C does not reach them.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        logging.disable(logging.NOTSET)


if __name__ == "__main__":
    sys.exit(main())
