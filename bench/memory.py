"""``python -m bench.memory``: the figures behind the README's memory plan.

* weights of each preset: the embedded MiniLM's read from its SavedModel's variables;
  the large presets' (not downloadable here) from their published configurations,
  by the parameter count of this project's encoder, checked against the variables
  of every SavedModel at hand (MiniLM, and the bench's XLM-R-base-shaped model if
  built);
* the resident memory of one SDK-like process on the CPU: Python + Beam, then
  TensorFlow, tensorflow_text and tensorflow_hub imported, then MiniLM loaded and
  called once.
"""
from __future__ import annotations

import json
import os


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def parameters(vocab, hidden, layers, intermediate, positions, types, pooler=True) -> int:
    embeddings = (vocab + positions + types) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
    return embeddings + layers * layer + (hidden * hidden + hidden if pooler else 0)


PRESETS = {  # the published configurations (config.json of each Hugging Face checkpoint)
    "all-MiniLM-L6-v2": dict(vocab=30522, hidden=384, layers=6, intermediate=1536, positions=512, types=2),
    "roberta-large": dict(vocab=50265, hidden=1024, layers=24, intermediate=4096, positions=514, types=1),
    "xlm-roberta-large": dict(vocab=250002, hidden=1024, layers=24, intermediate=4096, positions=514, types=1),
}


def variable_bytes(encoder) -> tuple[int, int]:
    n = sum(v.shape.num_elements() for v in encoder.variables)
    return n, sum(v.shape.num_elements() * v.dtype.size for v in encoder.variables)


def main() -> None:
    import apache_beam  # noqa: F401
    figures = {"rss_python_beam": rss_bytes()}
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401
    figures["rss_with_tensorflow"] = rss_bytes()
    from models.default_model import ensure_default_model
    model = ensure_default_model()
    preprocessor, encoder = hub.load(model.preprocessor), hub.load(model.encoder)
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(["a probe text"] * 32))],
                                           seq_length=128)
    encoder(packed)["sequence_output"].numpy()
    figures["rss_with_minilm_loaded_and_called"] = rss_bytes()
    count, size = variable_bytes(encoder)
    figures["minilm_variables"] = {"parameters": count, "bytes": size}
    checks = {"all-MiniLM-L6-v2": (count, parameters(**PRESETS["all-MiniLM-L6-v2"]))}
    shaped = os.path.join(os.path.dirname(__file__), ".cache", "xlmr-base-shaped-L4", "encoder")
    if os.path.isdir(shaped):
        checks["xlmr-base-shaped-L4"] = (variable_bytes(hub.load(shaped))[0],
                                         parameters(250002, 768, 4, 3072, 514, 1))
    figures["formula_checks"] = checks
    figures["presets"] = {name: {"parameters": parameters(**c), "float32_gib": parameters(**c) * 4 / 2**30}
                          for name, c in PRESETS.items()}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
