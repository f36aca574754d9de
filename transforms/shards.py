"""The names of sharded outputs: which files belong to a prefix, and which are debris.

A writer with prefix ``out/emb`` produces ``out/emb-00000-of-00002.parquet`` and
``out/emb-00001-of-00002.parquet``. While it runs, Beam's file sink writes into
``out/beam-temp-emb-<32 hex digits>/`` and renames the files at the end; a run
that is killed leaves that directory behind.

Matching is done with regular expressions on the exact prefix, never with a bare
``PREFIX-*`` glob: ``out/emb-*`` would also match ``out/emb-v2-00000-of-00001.parquet``,
another run's output, and ``out/emb-errors-...``, this run's dead letters.

Beam itself does glob with the prefix: its sink's finalize step lists and deletes
``PREFIX-*-of-NNNNN.<ext>``, and on local disks ``FileSystems.delete`` expands every
path it is given as a pattern. So a prefix that holds a glob character would make
Beam delete files that are not its own (``out/em?`` clears ``out/emb-...``), and
``prefix_problem`` refuses one before anything runs.
"""
from __future__ import annotations

import os
import re

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem


def is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def absolute(path: str) -> str:
    """Local paths made absolute, so that names compare whatever the working directory
    (Beam's local glob also finds nothing for a bare relative ``emb-*``: it lists the
    pattern's directory, which is "" there); other file systems' paths unchanged."""
    return os.path.abspath(path) if is_local(path) else path


# What Beam's FileSystems.match reads as a pattern (``*``, ``**``, ``?``, ``[...]``;
# there is no way to quote them), and ``\``, which its ``*`` treats as a directory
# separator. ``{`` and ``}`` are literal to Beam and stay allowed.
GLOB_CHARACTERS = "*?[]\\"
# Beam's sink names its temporary directory after the prefix's last component.
TEMP_DIR_PREFIX = "beam-temp-"


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name this tool's sharded outputs, or None.

    Every name the tool and Beam derive from the prefix (shards, the summary, the
    lock, Beam's temporary directory and its finalize glob) must mean exactly one
    file: no glob characters anywhere in the path, a last component that is a real
    name (``out/`` would write ``out/-00000-of-00001.parquet``), and no component
    that is another prefix's Beam temporary directory, which that prefix's next run
    deletes whole.
    """
    found = sorted({c for c in prefix if c in GLOB_CHARACTERS})
    if found:
        return (f"holds {' '.join(found)}: Beam reads glob characters (and \\ as a "
                "separator) when it matches or deletes the output's files, so it would "
                "delete other files the pattern matches; use a path without any of "
                f"{' '.join(GLOB_CHARACTERS)}")
    path = prefix.split("://", 1)[1] if "://" in prefix else prefix
    if "://" in prefix:
        bucket, _, path = path.partition("/")
        if not path:
            return "names no object prefix after the bucket (gs://BUCKET/DIR/NAME)"
    *directories, name = path.split("/")
    if name in ("", ".", ".."):
        return (f"ends in {name or '/'!r}: a prefix must end with a file name part, such as "
                "out/emb (which writes out/emb-00000-of-00001.parquet)")
    temp = next((d for d in directories if d.startswith(TEMP_DIR_PREFIX)), None)
    if temp:
        return (f"lies inside {temp!r}, a name Beam gives its temporary directories "
                "(another prefix's next run deletes it whole); write elsewhere")
    return None


def shard_glob(prefix: str) -> str:
    """A glob that lists at least every shard of ``prefix`` (filter with ``shard_pattern``)."""
    return f"{prefix}-*-of-*"


def shard_pattern(prefix: str, extensions: tuple[str, ...]) -> re.Pattern:
    """Matches the full path of a shard ``PREFIX-SSSSS-of-NNNNN.<ext>``, nothing else
    (Beam's ``-SSSSS-of-NNNNN`` template pads to at least 5 digits)."""
    alternatives = "|".join(re.escape(ext) for ext in extensions)
    return re.compile(rf"{re.escape(prefix)}-\d{{5,}}-of-\d{{5,}}\.(?:{alternatives})\Z")


def shard_glob_pattern(prefix: str, extensions: tuple[str, ...]) -> re.Pattern:
    """What Beam's sink deletes before it renames its shards into place: its glob
    ``PREFIX-*-of-NNNNN.<ext>``, whose ``*`` also matches ``v2-00000`` (another prefix)."""
    alternatives = "|".join(re.escape(ext) for ext in extensions)
    return re.compile(rf"{re.escape(prefix)}-[^/\\]*-of-\d{{5,}}\.(?:{alternatives})\Z")


def example_shard(prefix: str, extension: str) -> str:
    """The first shard's name, to test what a glob would match before anything exists."""
    return f"{prefix}-00000-of-00001.{extension}"


def temp_dir_glob(prefix: str) -> str:
    """Lists the files inside Beam's temporary directories for ``prefix``."""
    directory, name = FileSystems.split(prefix)
    return FileSystems.join(directory, f"beam-temp-{name}-*", "*")


def temp_dir_name_pattern(name: str) -> re.Pattern:
    """The name of a temporary directory Beam's sink makes for a prefix named ``name``."""
    return re.compile(rf"{re.escape(TEMP_DIR_PREFIX + name)}-[0-9a-f]{{32}}\Z")


def temp_dir_of(path: str, prefix: str) -> str | None:
    """The temporary directory of ``prefix`` that ``path`` lies in, if it does."""
    directory, name = FileSystems.split(prefix)
    temp_root = FileSystems.join(directory, f"beam-temp-{name}-")
    match = re.match(rf"({re.escape(temp_root)}[0-9a-f]{{32}})[/\\]", path)
    return match.group(1) if match else None


def example_temp_file(prefix: str, extension: str) -> str:
    """A name like the ones Beam writes while a run is in progress."""
    directory, name = FileSystems.split(prefix)
    return FileSystems.join(directory, f"beam-temp-{name}-{'0' * 32}",
                            f"00000000-0000-0000-0000-000000000000.{name}.{extension}")
