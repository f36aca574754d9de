"""The model families: each is one module here (bert.py, roberta.py, xlm_roberta.py)
defining ``FAMILY`` (a models.families.base.Family), plus one line in ``_MODULES``.

A family is what sets a Hugging Face ``model_type`` apart over the shared encoder
(models/encoder.py): its tokenizer files and tokenizer, its packing, its position
numbering and the config facts ``beam-embed-models random`` fills in. Converting,
reading checkpoints, the config check and ``beam-embed-models``' choices all ask
``REGISTRY``. The family modules import only the standard library at the top, so
this registry is light (no TensorFlow).
"""
from __future__ import annotations

import importlib

from models.families.base import Family

# The order is the one error messages and --model-type's choices list.
_MODULES = (
    "bert",
    "roberta",
    "xlm_roberta",
)
REGISTRY: dict[str, Family] = {
    f.model_type: f for f in (importlib.import_module(f"{__name__}.{m}").FAMILY for m in _MODULES)}
MODEL_TYPES = tuple(REGISTRY)
