"""``beam-embed`` / ``python -m pipeline``: parse, check, run, print the summary."""
from __future__ import annotations

import json
import sys

from pipeline.config import OptionError, resolve
from pipeline.logs import configure_logging
from pipeline.options import EmbedOptions


def main(argv=None, wait: bool = True) -> int:
    """``wait=False`` submits the job and returns (the Flex Template launcher's way)."""
    argv = list(argv if argv is not None else sys.argv[1:])
    configure_logging(argv)
    options = EmbedOptions(argv)
    try:
        config = resolve(options)
    except OptionError as e:
        print(f"beam-embed: error: {e}", file=sys.stderr)
        return 2
    from pipeline.prefix_lock import LockError, LockLost
    from pipeline.run import run, submit
    try:
        if not wait:
            submit(config)
            return 0
        summary = run(config)
    except LockError as e:  # another run took the prefix since resolve() looked, or
        print(f"beam-embed: error: {e}", file=sys.stderr)  # took it over mid-run (lost)
        return 1 if isinstance(e, LockLost) else 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
