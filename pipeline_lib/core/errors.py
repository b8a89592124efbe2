"""One exception root for everything the pipeline raises on purpose.

Callers (the command line, notebooks, tests) catch :class:`PipelineError` and show
its message: every subclass says what went wrong and what to do next. Messages are
passed through :func:`pipeline_lib.core.secrets.mask` when the error is built, so no
error path can carry an API key to a terminal, a notebook or a log.
"""

from __future__ import annotations

from pipeline_lib.core.secrets import mask


class PipelineError(Exception):
    """Root of the pipeline's own errors; the message is safe to show (secrets masked)."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(mask(str(message)), *args)


class ConfigError(PipelineError, ValueError):
    """A setting is missing or malformed; the message says which variable to fix."""
