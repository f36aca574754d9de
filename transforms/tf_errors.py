"""Short, readable text for TensorFlow errors (dead-letter details, option errors)."""
from __future__ import annotations

import tensorflow as tf


def error_text(error: Exception, limit: int = 300) -> str:
    """What went wrong, without TensorFlow's preamble: a graph error's message starts
    with "Graph execution error: Detected at node ... defined at" and the Python stack
    that built the node, which would crowd the cause out of a short message."""
    if not isinstance(error, tf.errors.OpError):
        return f"{type(error).__name__}: {error}"[:limit]
    cause = [line for line in error.message.splitlines()
             if line.strip() and not line[0].isspace()
             and not line.startswith(("Graph execution error", "Detected at node", "<stack trace"))]
    return f"{type(error).__name__}: {' '.join(cause) or error.message}"[:limit]
