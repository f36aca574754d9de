"""Bad options fail before the pipeline starts, naming the option."""
from __future__ import annotations

import os

import pytest

from tests.pipeline_helpers import fails_with


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "1", "text": "hello"}\n', encoding="utf-8")
    return str(path)


def test_unknown_pooling(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--pooling=median"], "--pooling", "median", "mean")


def test_missing_text_field_for_jsonl(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", f"--output={tmp_path}/o"], "--text_field", "jsonl")


def test_layer_out_of_range(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--layer=6"], "--layer 6", "6 layers")


def test_unreadable_model_handle(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        f"--encoder={tmp_path}/nowhere"], "--encoder", "nowhere")


def test_unknown_model_preset(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--model=gpt-17"], "--model", "gpt-17", "xlm-roberta-large")


def test_input_matching_nothing(capsys, tmp_path):
    fails_with(capsys, [f"--input={tmp_path}/none-*.txt", f"--output={tmp_path}/o"],
               "--input", "matches no files")


def test_no_source_and_two_sources(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--output={tmp_path}/o"], "--input")
    fails_with(capsys, [f"--input={corpus}", "--bigquery_table=p:d.t", "--text_field=text",
                        f"--output={tmp_path}/o"], "--input", "--bigquery_table")


def test_chunking_pairs_is_refused(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", "--text_pair_field=p",
                        "--long_text=chunk", f"--output={tmp_path}/o"], "--long_text chunk")


def test_nothing_written_on_bad_options(capsys, corpus, tmp_path):
    fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                        "--pooling=median"], "--pooling")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("o")]


def test_encoder_that_cannot_run_with_the_preprocessor(capsys, corpus, tmp_path, minilm_dir):
    """A vocabulary mismatch (the default preprocessor's ids do not fit this encoder's
    1,000-row embedding table) loads fine; the launcher's probe text finds it before
    the job starts."""
    from models.config import EncoderConfig
    from models.convert import build_random_module
    from tests.conftest import BERT_LIKE, TINY
    with open(os.path.join(minilm_dir, "vocab.txt"), encoding="utf-8") as f:
        head = [next(f) for _ in range(1000)]
    (tmp_path / "vocab.txt").write_text("".join(head), encoding="utf-8")
    small = build_random_module(EncoderConfig("bert", 1000, **TINY, **BERT_LIKE),
                                {"vocab.txt": str(tmp_path / "vocab.txt")},
                                str(tmp_path / "small-vocab"), lower_case=True)
    err = fails_with(capsys, [f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                              f"--encoder={small.encoder}"],
                     "--encoder", "small-vocab", "probe text", "InvalidArgumentError: indices[0,1] = ")
    assert "not in [0, 1000)" in err and "Graph execution error" not in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith("o")]


def test_model_facts_from_declared_outputs_match_a_run(tiny_random_model):
    """The launcher reads the embedding size and layer count from the encoder's declared
    output specs (nothing runs); running the modules once must give the same facts."""
    from pipeline.config import _declared_outputs, _run_once
    from transforms.text_modules import load_encoder, load_module
    preprocessor = load_module(tiny_random_model.preprocessor)
    encoder = load_encoder(tiny_random_model.encoder)
    declared, ran = _declared_outputs(encoder), _run_once(preprocessor, encoder)
    assert declared["sequence_output"].shape[-1] == ran["sequence_output"].shape[-1] == 32
    assert len(declared["encoder_outputs"]) == len(ran["encoder_outputs"]) == 2
    assert _declared_outputs(object()) is None
