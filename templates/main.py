"""The Flex Template's entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): the launcher runs
this file with the template's parameters as ``--name=value`` flags. It submits the
job and returns; the run summary is then the job's ``beam_embed`` counters.

It lives here, not in pipeline/, because Python puts a script's own directory
first on sys.path: pipeline/main.py run as a file would make pipeline's modules
(config, run, options ...) importable as top-level names.
"""
import sys

from pipeline.main import main

if __name__ == "__main__":
    # The launcher must return once the job is submitted (Google's samples call
    # pipeline.run() without waiting); waiting would hold the launch until the job ends.
    sys.exit(main(wait=False))
