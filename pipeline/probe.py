"""The launcher's probe: will every record the workers form fit the encoder?

A module pair that loads is not yet a config that embeds. Before the job starts,
the launcher embeds (through ``EmbedText``, exactly as the workers do):

1. one short text, or pair with ``--text_pair_field``: pooling, layer, precision,
   XLA and the module pair itself (e.g. token ids beyond the encoder's vocabulary);
   a pair that fails where a single text works is a token-type table too small for
   the preprocessor's second segment (RoBERTa-style, ``type_vocab_size`` 1);
2. one input of exactly ``--max_seq_length`` tokens: the longest any worker forms,
   whatever ``--long_text`` says (truncated texts and chunk windows are that long).
   An encoder with fewer positions would turn every long text into an
   ``inference_error`` dead letter; here the run fails instead, naming the option
   and the longest length that does embed (found by bisection, starting from the
   size of the position table when the encoder declares one).

Where TensorFlow's gather does not check its indices, an encoder silently embeds
wrong vectors beyond its table instead of failing: XLA clamps the index (so the
length is probed without ``--jit_compile``), a GPU returns zeros (so there the
declared position table is checked as well).
"""
from __future__ import annotations

import logging
import re
from typing import Callable, Iterable, Optional

# How an encoder's variables are usually named (this project's modules, TF Hub's
# Keras BERT encoders: "position_embedding/embeddings:0", "type_embeddings/...").
_POSITION_TABLE = re.compile(r"position", re.IGNORECASE)
_TYPE_TABLE = re.compile(r"type", re.IGNORECASE)


class ProbeFailure(ValueError):
    """The options cannot work with these modules; the message names the option."""


def declared_table(encoder, pattern: re.Pattern) -> Optional[tuple[str, int]]:
    """(name, rows) of the encoder's 2-D embedding variable whose name matches ``pattern``
    (the largest if several do), if the SavedModel declares its variables."""
    tables = [(variable.name, int(variable.shape[0]))
              for variable in getattr(encoder, "variables", None) or ()
              if len(variable.shape) == 2 and variable.shape[0] is not None
              and pattern.search(variable.name)]
    return max(tables, key=lambda t: t[1]) if tables else None


def longest_working_length(works: Callable[[int], bool], good: int, bad: int,
                           guesses: Iterable[int] = ()) -> int:
    """The largest n in [good, bad) with ``works(n)``, given works(good) and not works(bad),
    and that lengths work up to a limit. ``guesses`` are tried first (a position table's
    size, and two less for RoBERTa's positions, which start after the padding index),
    so a declared table usually settles it in two calls instead of about ten."""
    for guess in guesses:
        if good < guess < bad:
            if works(guess):
                good = guess
            else:
                bad = guess
    while bad - good > 1:
        middle = (good + bad) // 2
        if works(middle):
            good = middle
        else:
            bad = middle
    return good


def check_pairs(embedder, encoder, error: Exception, error_text: Callable[[Exception], str],
                pair_option: str) -> None:
    """Called when the short pair probe failed with ``error``: blame pairs if a single
    text works."""
    try:
        embedder.probe()
    except Exception:  # single texts fail as well: not a matter of pairs
        return
    table = declared_table(encoder, _TYPE_TABLE)
    rows = f" (its token-type table {table[0]} has {table[1]} row{'s' * (table[1] != 1)})" if table else ""
    raise ProbeFailure(f"{pair_option}: the encoder embeds single texts but not pairs from this "
                       f"preprocessor ({error_text(error)}){rows}; use a module pair made for "
                       "text pairs, or embed single texts")


def check_finite(vector, what: str) -> None:
    """Workers turn a NaN or infinite vector into a dead letter; if the probe gets one,
    every record would."""
    import numpy as np
    if not np.isfinite(vector).all():
        raise ProbeFailure(f"--precision: the encoder gave a NaN or infinite embedding for {what}; "
                           "use --precision float32, or another encoder")


def check_max_length(embedder, encoder, max_seq_length: int, pair: bool, on_gpu: bool,
                     error_text: Callable[[Exception], str]) -> None:
    """Embed an input of ``max_seq_length`` tokens; raise ProbeFailure naming the option
    and the longest length that works if the encoder cannot take it."""
    import tensorflow as tf

    table = declared_table(encoder, _POSITION_TABLE)
    try:
        embedded, vector = embedder.probe_length(max_seq_length, pair=pair)
    except tf.errors.ResourceExhaustedError as e:
        # The launcher is often a smaller machine than the workers: not a verdict.
        logging.warning("the launcher ran out of memory embedding a probe of --max_seq_length "
                        "%d tokens; not checked here: %s", max_seq_length, error_text(e))
        return
    except tf.errors.OpError as e:
        failure = error_text(e)
    else:
        check_finite(vector, f"an input of {embedded} tokens")
        if embedded < max_seq_length:
            logging.warning("the probe text gave only %d tokens; --max_seq_length %d is checked "
                            "up to that length", embedded, max_seq_length)
        if on_gpu and table and table[1] < max_seq_length:
            raise ProbeFailure(
                f"--max_seq_length {max_seq_length} is more than the encoder takes: its "
                f"position table {table[0]} has {table[1]} rows; use --max_seq_length "
                f"{table[1]} or less")
        return

    def works(n: int) -> bool:
        try:
            embedder.probe_length(n, pair=pair)
            return True
        except tf.errors.OpError:
            return False

    shortest = 8  # resolve() refuses anything shorter
    if not works(shortest):
        raise ProbeFailure(f"--max_seq_length {max_seq_length}: the encoder fails on a probe of "
                           f"{max_seq_length} tokens and even of {shortest}: {failure}")
    guesses = (table[1], table[1] + 1, table[1] - 2, table[1] - 1) if table else ()
    limit = longest_working_length(works, shortest, max_seq_length, guesses)
    rows = f"; its position table {table[0]} has {table[1]} rows" if table else ""
    raise ProbeFailure(
        f"--max_seq_length {max_seq_length} is more than the encoder takes: it embeds inputs "
        f"of up to {limit} tokens and fails on longer ones ({failure}{rows}); use "
        f"--max_seq_length {limit} or less")
