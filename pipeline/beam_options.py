"""beam-embed's options as Beam PipelineOptions (declared in pipeline/options.py),
and what Beam's parser knows, for refusing unknown flags (pipeline/flags.py)."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import declare


class EmbedOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        declare(parser)
