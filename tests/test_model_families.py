"""The model-family registry (models/families): each family one module plus one line,
light enough for the config check and beam-embed-models' parser, and its facts the
ones Hugging Face's configs carry."""
import pathlib

import pytest

import models.families
from tests.pipeline_helpers import heavy_modules_loaded_by
from models.families import MODEL_TYPES, REGISTRY


def test_every_family_module_is_registered_under_its_model_type():
    # A new family's file that misses its registration line (or the reverse) fails here.
    folder = pathlib.Path(models.families.__file__).parent
    files = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
    assert {t.replace("-", "_") for t in MODEL_TYPES} == files
    assert MODEL_TYPES == ("bert", "roberta", "xlm-roberta")  # error messages' order


def test_the_registry_and_its_users_do_not_import_tensorflow():
    assert heavy_modules_loaded_by("models.families, models.config, models.checkpoint, models.cli",
                                   ("tensorflow",)) == []


def test_the_families_facts():
    # HF's RobertaConfig/XLMRobertaConfig: pad 1, eps 1e-5, one token type, and a
    # position table 2 rows longer (fairseq numbers positions from pad + 1).
    facts = {t: (f.tokenizer_files, f.positions_from_padding, f.position_offset,
                 f.type_vocab_size, f.layer_norm_eps, f.pad_token_id) for t, f in REGISTRY.items()}
    assert facts == {
        "bert": (("vocab.txt",), False, 0, 2, 1e-12, 0),
        "roberta": (("vocab.json", "merges.txt"), True, 2, 1, 1e-5, 1),
        "xlm-roberta": (("sentencepiece.bpe.model",), True, 2, 1, 1e-5, 1),
    }


def test_the_config_check_and_the_cli_choices_come_from_the_registry(tmp_path, capsys):
    from models.cli import main
    from models.config import EncoderConfig, ModelConfigError
    with pytest.raises(ModelConfigError, match="supported: bert, roberta, xlm-roberta"):
        EncoderConfig("gpt2", 10, 8, 1, 2, 16)
    with pytest.raises(SystemExit) as e:
        main(["random", str(tmp_path / "m"), "--model-type", "gpt2", "--tokenizer-dir",
              str(tmp_path), "--vocab-size", "10"])
    assert e.value.code == 2
    assert "'bert', 'roberta', 'xlm-roberta'" in capsys.readouterr().err
