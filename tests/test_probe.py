"""The launcher's probe: a --max_seq_length or a text pair the encoder cannot take fails
before the run (exit 2, naming the option and the limit found), instead of turning
every long record into an inference_error dead letter."""
from __future__ import annotations

import json
import os

import pytest

from pipeline.probe import longest_working_length
from tests.pipeline_helpers import (fails_with, module_args, read_dead_letters, run_cli)

LONG = " ".join(f"word{i % 97}" for i in range(700))  # about 1,400 WordPiece tokens


class EncoderBeside:
    """The tiny random model's preprocessor with an encoder of another shape (only the
    encoder is built: saving a preprocessor is what takes most of the time)."""

    def __init__(self, preprocessor, encoder):
        self.preprocessor, self.encoder = preprocessor, encoder


def tiny_encoder(tmp_path_factory, minilm_dir, tiny_random_model, name, model_type="bert",
                 **overrides):
    import tensorflow as tf

    from models.config import EncoderConfig
    from models.encoder import TransformerEncoder
    from models.random_weights import random_weights
    from tests.conftest import BERT_LIKE, TINY, _vocab_size
    config = EncoderConfig(model_type, _vocab_size("bert", minilm_dir), **TINY,
                           **dict(BERT_LIKE, **overrides))
    path = str(tmp_path_factory.mktemp(name) / "encoder")
    tf.saved_model.save(TransformerEncoder(config, random_weights(config)), path)
    return EncoderBeside(tiny_random_model.preprocessor, path)


@pytest.fixture(scope="module")
def short_positions(tmp_path_factory, minilm_dir, tiny_random_model):
    """An encoder whose position table has 128 rows (BERT numbering: 128 tokens)."""
    return tiny_encoder(tmp_path_factory, minilm_dir, tiny_random_model, "pos128",
                        max_position_embeddings=128)


@pytest.fixture(scope="module")
def roberta_positions(tmp_path_factory, minilm_dir, tiny_random_model):
    """RoBERTa numbering: positions start after the padding index, so a 130-row table
    takes 128 tokens."""
    return tiny_encoder(tmp_path_factory, minilm_dir, tiny_random_model, "roberta130",
                        model_type="roberta", max_position_embeddings=130, pad_token_id=1)


@pytest.fixture(scope="module")
def one_token_type(tmp_path_factory, minilm_dir, tiny_random_model):
    """A BERT preprocessor (second segment: type id 1) with a 1-row token-type table."""
    return tiny_encoder(tmp_path_factory, minilm_dir, tiny_random_model, "type1",
                        type_vocab_size=1)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, (text, pair) in enumerate([("short one", "a pair"), (LONG, LONG), ("two", "b")]):
            f.write(json.dumps({"id": str(i), "text": text, "pair": pair}) + "\n")
    return str(path)


def nothing_written(tmp_path):
    return not [p for p in os.listdir(tmp_path) if p.startswith("o")]


def test_default_length_beyond_a_128_position_table(capsys, corpus, tmp_path, short_positions):
    err = fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                              *module_args(short_positions)],
                     "--max_seq_length 512", "up to 128 tokens", "use --max_seq_length 128 or less",
                     "position_embeddings")
    assert err.count("beam-embed: error:") == 1
    assert nothing_written(tmp_path)


def test_roberta_positions_two_fewer_than_the_table(capsys, corpus, tmp_path, roberta_positions):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--max_seq_length=129", *module_args(roberta_positions)],
               "--max_seq_length 129", "up to 128 tokens", "has 130 rows",
               "--max_seq_length 128 or less")


def test_1024_on_a_512_position_encoder(capsys, corpus, tmp_path, tiny_random_model):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--max_seq_length=1024", *module_args(tiny_random_model)],
               "--max_seq_length 1024", "up to 512 tokens", "--max_seq_length 512 or less")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("extra", [["--long_text=chunk"], ["--long_text=reject"],
                                   ["--text_pair_field=pair"], ["--jit_compile"]])
def test_every_policy_and_pairs_are_probed_at_the_full_length(capsys, corpus, tmp_path,
                                                              short_positions, extra):
    """Chunk windows, rejected texts' limit and truncated pairs are all max_seq_length long."""
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--max_seq_length=200", *extra, *module_args(short_positions)],
               "--max_seq_length 200", "up to 128 tokens")


def test_the_limit_found_works_and_long_texts_embed(corpus, tmp_path, short_positions):
    """At the limit the probe names, nothing is a dead letter and long texts are
    truncated rows, counted as such."""
    out = f"{tmp_path}/out/emb"
    summary = run_cli(f"--input={corpus}", "--text_field=text", "--text_pair_field=pair",
                      f"--output={out}", "--max_seq_length=128", *module_args(short_positions))
    assert summary["embedded"] == 3 and summary["dead_lettered"] == {}
    assert summary["truncated"] == 1
    assert read_dead_letters(f"{out}-errors") == []


def test_pairs_on_a_one_row_token_type_table(capsys, corpus, tmp_path, one_token_type):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", "--text_pair_field=pair",
                        f"--output={tmp_path}/o", *module_args(one_token_type)],
               "--text_pair_field pair", "not pairs", "token_type_embeddings", "has 1 row",
               "not in [0, 1)")
    assert nothing_written(tmp_path)
    # Single texts are fine with that encoder.
    summary = run_cli(f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/ok/emb",
                      *module_args(one_token_type))
    assert summary["embedded"] == 3


def test_longest_working_length():
    calls = []

    def works_up_to(limit):
        def works(n):
            calls.append(n)
            return n <= limit
        return works

    for limit in (8, 9, 100, 127, 128, 510, 511):
        calls.clear()
        assert longest_working_length(works_up_to(limit), 8, 512) == limit
        assert len(calls) <= 9
    # A declared table settles it in two calls (BERT: all rows; RoBERTa: two fewer).
    for table, limit in ((128, 128), (514, 512)):
        calls.clear()
        guesses = (table, table + 1, table - 2, table - 1)
        assert longest_working_length(works_up_to(limit), 8, 1024, guesses) == limit
        assert len(calls) <= 4
