"""``beam-embed`` / ``python -m pipeline``: parse, check, run, print the summary.

Importing this module costs nothing: ``--help`` and ``--version`` are answered from
plain argparse (pipeline/options.py) before Beam or TensorFlow is imported, which
takes seconds each.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback

from pipeline.logs import configure_logging, printable, quiet_worker_prints, without_native_preamble
from pipeline.options import declare_cli, help_parser, version_line

# TensorFlow's C++ log levels by the level asked for: 0 shows its start-up preamble
# (CUDA, oneDNN, CPU features), 2 its errors. The default, 3, hides even the error
# every machine without a GPU logs ("failed call to cuInit"); TensorFlow's real
# errors reach the run as Python exceptions, and -v shows them all.
_TF_CPP_LEVELS = {"DEBUG": "0", "INFO": "0", "WARNING": "1", "ERROR": "2"}
_TF_CPP_QUIET = "3"


class _UsageError(Exception):
    pass


class _CliParser(argparse.ArgumentParser):
    def error(self, message):  # one line naming the option, not argparse's usage block
        raise _UsageError(message)


def parse_command_line(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command line's own options (--help, --version, --json, -v, --log_level),
    and the pipeline's flags (everything else, in order)."""
    parser = _CliParser(add_help=False, allow_abbrev=False)
    declare_cli(parser)
    cli, rest = parser.parse_known_args(argv)
    if cli.verbose and cli.log_level is None:
        cli.log_level = "INFO"
    return cli, rest


def main(argv=None, wait: bool = True) -> int:
    """``wait=False`` submits the job and returns (the Flex Template launcher's way)."""
    argv = list(argv if argv is not None else sys.argv[1:])
    try:
        cli, argv = parse_command_line(argv)
    except _UsageError as e:
        print(f"beam-embed: error: {printable(str(e))}", file=sys.stderr)
        return 2
    if cli.help:
        help_parser().print_help()
        return 0
    if cli.version:
        print(version_line())
        return 0
    # Before anything imports TensorFlow: its C++ logging reads this once, at load.
    if cli.log_level is not None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = _TF_CPP_LEVELS[cli.log_level]
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _TF_CPP_QUIET)
    configure_logging(argv, cli.log_level)
    with _interrupts() as interrupted:
        try:
            return _main(argv, wait, cli, interrupted)
        except BaseException as e:  # Beam wraps an interrupt in a bundle as a RuntimeError
            if not interrupted or isinstance(e, SystemExit):
                raise
            print(f"beam-embed: interrupted by {interrupted[0].name}; a prefix without its "
                  "-summary.json holds no complete output", file=sys.stderr)
            return 128 + interrupted[0]


def _main(argv: list[str], wait: bool, cli: argparse.Namespace, interrupted: list) -> int:
    # Imported here, under the signal handlers: importing Beam and TensorFlow takes
    # seconds. Flags are checked with Beam's options alone, before TensorFlow loads.
    from pipeline.flags import FlagError, check_flags
    try:
        check_flags(argv, extra_known=_cli_flags())
    except FlagError as e:
        print(f"beam-embed: error: {printable(str(e))}", file=sys.stderr)
        return 2
    from pipeline.options import EmbedOptions
    from pipeline import local_memory, local_workers
    options = EmbedOptions(argv)
    local_workers.apply_default(options, argv)  # two bundles in flight on a local runner
    if local_workers.is_local(options):
        local_memory.apply()  # before TensorFlow's and the workers' threads start (see there)
    with (without_native_preamble() if cli.log_level is None else contextlib.nullcontext()):
        from pipeline.config import OptionError, resolve
    if cli.log_level is None:
        quiet_worker_prints()
    try:
        config = resolve(options)
    except OptionError as e:
        print(f"beam-embed: error: {printable(str(e))}", file=sys.stderr)
        return 2
    from pipeline import console
    from pipeline.prefix_lock import LockError, LockLost
    from pipeline.run import run, submit
    from pipeline.summary import summary_path
    console.say(console.plan_line(config))
    try:
        if not wait:
            result = submit(config)
            job_id = getattr(result, "job_id", None)  # DataflowPipelineResult's
            console.say(f"job submitted{f': {job_id()}' if callable(job_id) else ''}")
            return 0
        display = console.RunDisplay()
        try:
            summary = run(config)
        finally:
            display.close()
    except LockError as e:  # another run took the prefix since resolve() looked, or
        print(f"beam-embed: error: {e}", file=sys.stderr)  # took it over mid-run (lost)
        return 1 if isinstance(e, LockLost) else 2
    except Exception as e:  # the job failed: a full disk, a table that refused rows...
        # Beam re-raises an interrupted bundle as a RuntimeError; a launcher's failed
        # submission keeps its traceback, which is all a Flex Template's log shows.
        if interrupted or not wait:
            raise
        verbose = cli.log_level is not None
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else "; -v shows the traceback"
        print(f"beam-embed: error: the run failed: {printable(failure_cause(e))}; "
              f"{_what_the_prefix_holds(summary_path(config.options.output))}{hint}", file=sys.stderr)
        return 1
    o = config.options
    for line in console.summary_lines(summary, o.output, o.output_format, config.dead_letter,
                                      summary_path(o.output)):
        console.say(line)
    if cli.json:
        print(json.dumps(summary, indent=2))
    return 0


def _what_the_prefix_holds(summary: str) -> str:
    """After a failed run. A run deletes the prefix's summary before anything else
    and writes it last, whole or not at all (pipeline/summary.py), so its presence
    tells: an earlier run's output, untouched (the run failed before clearing), or
    this run's, complete (it failed after)."""
    from apache_beam.io.filesystems import FileSystems
    try:
        present = FileSystems.exists(summary)
    except Exception:  # an unreachable store: reported as no summary, since a prefix
        present = False  # whose summary cannot be read is not known to be complete
    if present:
        return f"{summary} is in place, so the output it describes is complete"
    return (f"there is no {summary}, so the prefix holds no complete output "
            "(re-running the command clears what this run left)")


def failure_cause(error: BaseException, limit: int = 600) -> str:
    """One line for what made a run fail. Beam wraps a worker's exception in a
    RuntimeError whose message is the worker's traceback text, ending in the
    original ``Type: message [while running 'Step']``: that last line is the cause."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    name = type(error).__name__
    if name == "RuntimeError" and last.split(" ", 1)[0].endswith(":"):  # already "Type: ..."
        cause = last
    else:
        cause = f"{name}: {last}" if last else name
    return cause if len(cause) <= limit else cause[:limit - 3] + "..."


def _cli_flags() -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    declare_cli(parser)
    return [name for action in parser._actions for name in action.option_strings]


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
