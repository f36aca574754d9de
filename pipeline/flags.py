"""Refusing command-line flags that nothing reads.

Beam parses pipeline options with ``parse_known_args`` and drops what it does not
know with one WARNING ("Unparseable argument: --normalise"), so a misspelled flag
used to run with the default it was meant to change. Here every flag must be one of
beam-embed's options or one that a PipelineOptions subclass declares (Beam's own,
Dataflow's included: GoogleCloudOptions, WorkerOptions, DebugOptions ...), collected
the way Beam's ``PipelineOptions.get_all_options`` collects them; anything else is
an error naming the flag and the closest known name.
"""
from __future__ import annotations

import difflib
from typing import Sequence


class FlagError(ValueError):
    """An unknown flag, or a known one with a bad value; the message names it."""


def _strict_parser():
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    import pipeline.beam_options  # noqa: F401 - registers EmbedOptions as a subclass

    class Parser(_BeamArgumentParser):
        def error(self, message):  # argparse would print usage and exit
            raise FlagError(message)

    # allow_abbrev=False as Beam's: "--norm" is not taken for --normalize.
    # conflict_handler="resolve": two subclasses may declare the same flag (a
    # pipeline's own options repeating one of Beam's); either declaration knows it.
    parser = Parser(allow_abbrev=False, conflict_handler="resolve", add_help=False)
    seen = {}
    for cls in _subclasses(PipelineOptions):
        if "_add_argparse_args" in cls.__dict__:
            seen.setdefault(str(cls), cls)  # Beam's dedupe of re-imported classes
    for cls in seen.values():
        cls._add_argparse_args(parser)
    return parser


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def known_flags(parser=None) -> list[str]:
    parser = parser or _strict_parser()
    return sorted({name for action in parser._actions for name in action.option_strings})


def check_flags(argv: Sequence[str], extra_known: Sequence[str] = ()) -> None:
    """Raises FlagError for the first unknown flag of ``argv`` (or a stray value,
    or a value Beam's or beam-embed's parser refuses)."""
    parser = _strict_parser()
    _, unknown = parser.parse_known_args(list(argv))
    known = known_flags(parser) + list(extra_known)
    problems = []
    for i, arg in enumerate(unknown):
        if arg == "--":
            break
        if not arg.startswith("-"):
            if i > 0 and unknown[i - 1].startswith("-") and "=" not in unknown[i - 1]:
                continue  # the value of the unknown flag before it
            problems.append(f"unexpected argument {arg!r} (every option is --name=value)")
            continue
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        problems.append(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    if problems:
        raise FlagError(", ".join(problems))

