"""``beam-embed`` / ``python -m pipeline``: parse, check, run, print the summary."""
from __future__ import annotations

import json
import logging
import sys

from pipeline.config import OptionError, resolve
from pipeline.options import EmbedOptions


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    options = EmbedOptions(argv if argv is not None else sys.argv[1:])
    try:
        config = resolve(options)
    except OptionError as e:
        print(f"beam-embed: error: {e}", file=sys.stderr)
        return 2
    from pipeline.run import run
    summary = run(config)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
