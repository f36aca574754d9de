"""Bad checkpoints fail with a ModelConfigError naming the file or field, and the CLI
(``beam-embed-models``) turns that into exit code 2 with the message on stderr."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from models.cli import main
from models.config import ModelConfigError
from models.convert import convert_checkpoint


def _edit_config(directory: str, **changes):
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    with open(path, "w") as f:
        json.dump(config, f)


def _remove(directory: str, name: str):
    os.remove(os.path.join(directory, name))


def _write(directory: str, name: str, text: str):
    with open(os.path.join(directory, name), "w") as f:
        f.write(text)


# (id, family of the tiny checkpoint to start from, how to break it, what the message must name)
CASES = [
    ("missing-dir", "xlm-roberta", lambda d: shutil.rmtree(d), ["checkpoint directory", "{dir}"]),
    ("missing-config", "xlm-roberta", lambda d: _remove(d, "config.json"), ["{dir}/config.json"]),
    ("missing-weights", "xlm-roberta", lambda d: _remove(d, "model.safetensors"),
     ["{dir}/model.safetensors"]),
    ("missing-spm", "xlm-roberta", lambda d: _remove(d, "sentencepiece.bpe.model"),
     ["{dir}/sentencepiece.bpe.model"]),
    ("missing-vocab-txt", "bert", lambda d: _remove(d, "vocab.txt"), ["{dir}/vocab.txt"]),
    ("missing-merges", "roberta", lambda d: _remove(d, "merges.txt"), ["{dir}/merges.txt"]),
    ("gpt2", "xlm-roberta", lambda d: _edit_config(d, model_type="gpt2"),
     ["model_type", "'gpt2'", "config.json"]),
    ("hidden-size", "xlm-roberta", lambda d: _edit_config(d, hidden_size=36),
     ["embeddings.word_embeddings.weight", "36)"]),
    ("intermediate-size", "bert", lambda d: _edit_config(d, intermediate_size=48),
     ["encoder.layer.0.intermediate.dense.weight", "(48, 32)"]),
    ("vocab-size", "xlm-roberta", lambda d: _edit_config(d, vocab_size=900),
     ["embeddings.word_embeddings.weight", "(900, 32)"]),
    ("missing-field", "xlm-roberta", lambda d: _edit_config(d, num_attention_heads=None),
     ["num_attention_heads", "config.json"]),
    ("not-json", "xlm-roberta", lambda d: _write(d, "config.json", '{"model_type": "bert",'),
     ["{dir}/config.json", "JSON"]),
    ("not-an-object", "xlm-roberta", lambda d: _write(d, "config.json", '["bert"]'),
     ["{dir}/config.json"]),
]


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def broken(request, tiny_models, tmp_path):
    """(checkpoint dir, output dir, strings the error message must contain)."""
    _, family, breaker, expected = request.param
    directory = shutil.copytree(tiny_models.checkpoint(family), tmp_path / "checkpoint")
    breaker(str(directory))
    return str(directory), str(tmp_path / "module"), [e.format(dir=directory) for e in expected]


def test_convert_names_the_problem(broken):
    checkpoint, output, expected = broken
    with pytest.raises(ModelConfigError) as error:
        convert_checkpoint(checkpoint, output)
    for text in expected:
        assert text in str(error.value)
    assert not os.path.exists(output)


def test_cli_exits_2_with_the_message(broken, capsys):
    checkpoint, output, expected = broken
    assert main(["convert", checkpoint, output]) == 2
    err = capsys.readouterr().err
    assert err.startswith("beam-embed-models: error:")
    for text in expected:
        assert text in err
    assert not os.path.exists(output)


def test_cli_random_names_the_missing_tokenizer_file(tmp_path, capsys):
    argv = ["random", str(tmp_path / "module"), "--model-type", "bert",
            "--tokenizer-dir", str(tmp_path), "--vocab-size", "100"]
    assert main(argv) == 2
    assert f"{tmp_path}/vocab.txt" in capsys.readouterr().err
