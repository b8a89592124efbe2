"""Where consumed batches land: GCS objects and a BigQuery table.

Sinks share a tiny interface — ``setup()`` once, ``write(batch)`` per micro-batch,
``close()`` — and one retry policy (:func:`with_retries`): transient failures are
retried with exponential backoff, then :class:`SinkUnavailable` stops the consumer
*without* committing, so a restart re-reads the batch and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NoReturn, TypeVar

from pipeline_lib.core.errors import PipelineError
from pipeline_lib.core.retry import SINK_BACKOFF, Backoff
from pipeline_lib.records.batches import Batch, WriteResult

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkError(PipelineError):
    """A sink failed in a way retrying will not fix (bad configuration, permissions)."""


class SinkUnavailable(SinkError):
    """A sink stayed unreachable through every retry; nothing was committed."""


# What BigQuery says when a project without billing (the sandbox) streams: the one
# documented text is "Streaming insert is not allowed in the free tier".
NO_BILLING_WORDS = ("free tier", "billing has not been enabled", "billing account")


def streaming_refused(error: BaseException) -> SinkError | None:
    """One line naming the cause and the setting, when BigQuery refused to stream
    because the project has no billing (the BigQuery sandbox); else None."""
    said = str(error)
    if isinstance(error, SinkError) or not any(w in said.lower() for w in NO_BILLING_WORDS):
        return None
    first = said.strip().splitlines()[0][:300] if said.strip() else type(error).__name__
    return SinkError(
        f"BigQuery refused to stream into this project: it has no billing account (the "
        f"BigQuery sandbox; BigQuery said: {first}). Set BQ_WRITE=load: load jobs are "
        "free there, and nothing streams. Nothing of this batch was committed."
    )


class Sink(ABC):
    name = "sink"
    # Set by the committer: raises Fenced when the group membership a batch was read
    # in (its generation) has moved on. A sink whose last step makes a batch visible
    # (the Write API's commit) checks it right before that step, so a member frozen
    # mid-write cannot publish a batch its successor has written already.
    fence_check: Callable[[int, str], None] | None = None
    # The shortest time between two batches this sink can take (load jobs on real
    # BigQuery: a quota of 1,500 a table a day): the consumer's time-based flush waits
    # at least this long.
    min_batch_interval_s: float = 0.0

    @abstractmethod
    def setup(self) -> None:
        """Create what is missing (bucket, dataset, table). Idempotent."""

    @abstractmethod
    def write(self, batch: Batch) -> WriteResult:
        """Write the whole batch, replay-safe: writing it twice leaves one copy visible."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


def transient(error: BaseException) -> bool:
    """True for failures that may pass: the service is down, slow, or overloaded."""
    from google.api_core import exceptions as gexc

    if isinstance(
        error,
        gexc.ServiceUnavailable
        | gexc.InternalServerError
        | gexc.TooManyRequests
        | gexc.BadGateway
        | gexc.GatewayTimeout
        | gexc.RetryError
        | ConnectionError
        | TimeoutError,
    ):
        return True
    try:
        import requests

        if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
    except ImportError:  # pragma: no cover - requests comes with the Google clients
        pass
    import concurrent.futures

    return isinstance(error, concurrent.futures.TimeoutError)


def reraise_refusal(error: Exception, what: str, hint: str) -> NoReturn:
    """A missing resource or permission is a SinkError that says what to do; else re-raise."""
    from google.api_core.exceptions import Forbidden, NotFound

    if isinstance(error, NotFound | Forbidden):
        raise SinkError(f"{what}: {error}. {hint}") from error
    raise error


def with_retries(
    action: Callable[[], T],
    what: str,
    attempts: int = 5,
    backoff: Backoff = SINK_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action``; retry transient failures with exponential backoff."""
    delays = backoff.delays()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if not transient(error):
                refused = streaming_refused(error)
                if refused is not None:
                    raise refused from error
                raise
            if attempt == attempts:
                raise SinkUnavailable(
                    f"{what} failed {attempts} times ({type(error).__name__}: {error}). "
                    "Nothing of this batch was committed: fix the sink, then restart the "
                    "consumer and it resumes from the last committed offsets."
                ) from error
            delay = next(delays)
            log.warning(
                "%s failed (%s), retry %d/%d in %.1fs", what, error, attempt, attempts, delay
            )
            sleep(delay)
    raise AssertionError("unreachable")
