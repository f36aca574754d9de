"""The pooling registry (transforms/poolings): each mode one module plus one line,
the names --help shows are the registry's, and each mode's arithmetic on arrays."""
import pathlib

import numpy as np
import pytest

from tests.pipeline_helpers import heavy_modules_loaded_by
from transforms import poolings
from transforms.constants import DEFAULT_POOLING
from transforms.poolings import POOLING_MODES, REGISTRY


def test_every_mode_module_is_registered_and_every_registered_mode_has_one():
    # A new mode's file that misses its registration line (or the reverse) fails here.
    folder = pathlib.Path(poolings.__file__).parent
    files = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
    assert files == {p.module for p in REGISTRY.values()}
    for p in REGISTRY.values():
        assert callable(p.function())


def test_help_and_the_config_check_name_the_registry_modes():
    from pipeline.options import help_parser
    (action,) = [a for a in help_parser()._actions if "--pooling" in a.option_strings]
    assert action.help == f"one of {', '.join(POOLING_MODES)}"
    assert action.default == DEFAULT_POOLING in POOLING_MODES
    assert POOLING_MODES == ("mean", "cls", "pooled_output", "max")  # --help's order


def test_the_registry_does_not_import_tensorflow():
    assert heavy_modules_loaded_by("transforms.poolings, pipeline.options", ("tensorflow",)) == []


def test_each_mode_on_arrays():
    import tensorflow as tf
    from transforms.pooling import pool
    rng = np.random.default_rng(0)
    last = rng.normal(size=(2, 4, 3)).astype(np.float32)
    layer0 = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.int32)
    outputs = {"sequence_output": tf.constant(last), "encoder_outputs": [tf.constant(layer0)],
               "pooled_output": tf.constant(last[:, 1, :])}
    m = mask[:, :, None].astype(bool)
    expected = {
        "mean": (last * m).sum(1) / m.sum(1),
        "cls": last[:, 0, :],
        "max": np.where(m, last, -np.inf).max(1),
        "pooled_output": last[:, 1, :],
    }
    for mode, want in expected.items():
        np.testing.assert_allclose(pool(outputs, tf.constant(mask), mode, None).numpy(), want, rtol=1e-6)
    # --layer picks the encoder layer (pooled_output has none).
    np.testing.assert_allclose(pool(outputs, tf.constant(mask), "cls", 0).numpy(), layer0[:, 0, :])
    with pytest.raises(ValueError, match="unknown pooling 'sum'; expected one of mean, cls"):
        pool(outputs, tf.constant(mask), "sum", None)
