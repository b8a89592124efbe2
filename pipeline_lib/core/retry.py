"""The one backoff policy: how the sinks, the commits and the waits space their tries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first`` seconds, doubling, never more than ``longest``."""

    first: float
    longest: float

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.longest)


# A sink call that failed transiently: 5 tries over about 8 s (0.5, 1, 2, 4).
SINK_BACKOFF = Backoff(0.5, 8.0)
# A commit the broker could not take: retried until the committer's deadline.
COMMIT_BACKOFF = Backoff(0.2, 5.0)
# Checking whether a fresh BigQuery load job is done: often at first (it takes tens
# to hundreds of milliseconds), then less (see sinks.bigquery.load_jobs.wait_for_job).
QUICK_CHECK_BACKOFF = Backoff(0.01, 0.025)
SLOW_CHECK_BACKOFF = Backoff(0.025, 0.5)
