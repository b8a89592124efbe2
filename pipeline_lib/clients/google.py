"""Google Cloud clients (Cloud Storage, BigQuery, the Storage Write API) built from
:class:`Settings`, and the one way the package runs a BigQuery query.

The only module that knows the difference between an emulator and real Google
Cloud: with an emulator host set, clients use anonymous credentials and that
endpoint; without one, Application Default Credentials and Google's endpoints.

**A ceiling on bytes billed.** Every query the package runs goes through
:func:`run_query`, whose job carries ``maximum_bytes_billed`` =
``BQ_MAX_BYTES_BILLED``: real BigQuery refuses, and bills nothing for, a query that
would bill more (a sandbox month is 1 TB of queries). The refusal becomes one line,
:class:`BytesBilledLimit`, naming the query, its estimate (a dry run) and the
setting. :func:`dry_run` estimates without running; dry runs carry no ceiling (they
bill nothing, and must estimate a query over the ceiling too). The local emulator
accepts the ceiling and enforces nothing, and answers every dry run with 0 bytes (it
has no cost model): on it, :func:`dry_run` says ``None``, never a number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError

if TYPE_CHECKING:
    from google.cloud import bigquery, storage
    from google.cloud.bigquery.table import RowIterator

MIB = 1 << 20
# On-demand billing: rounded up to the MB, at least 10 MB per table referenced.
MIN_BILLED_PER_TABLE = 10 * MIB
# The reason real BigQuery gives a query refused for BQ_MAX_BYTES_BILLED.
OVER_CEILING_REASON = "bytesBilledLimitExceeded"
QUERY_TIMEOUT_S = 120.0  # the default wait for a query's result


def storage_client(settings: Settings) -> storage.Client:
    """google-cloud-storage client for the emulator or real GCS."""
    from google.cloud import storage

    if settings.storage_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.storage_emulator_host),
        )
    return storage.Client(project=settings.gcp_project)


def bigquery_client(settings: Settings) -> bigquery.Client:
    """google-cloud-bigquery client for the emulator or real BigQuery."""
    from google.cloud import bigquery

    if settings.bigquery_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.bigquery_emulator_host),
        )
    return bigquery.Client(project=settings.gcp_project, location=settings.bq_location)


def bigquery_write_client(settings: Settings) -> Any:
    """The Storage Write API client: on the emulator's gRPC port (the library does not
    read BIGQUERY_EMULATOR_HOST, and needs no credentials on a plain channel), or real
    BigQuery with Application Default Credentials."""
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    if settings.bigquery_emulator_host:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
            BigQueryWriteGrpcTransport,
        )

        host = urlparse(settings.bigquery_emulator_host).hostname
        channel = grpc.insecure_channel(f"{host}:{settings.bigquery_emulator_grpc_port}")
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    return BigQueryWriteClient()


# --- running queries under the ceiling --------------------------------------------------


class BytesBilledLimit(PipelineError):
    """BigQuery refused a query that would bill more than ``BQ_MAX_BYTES_BILLED`` (and
    billed nothing): the message names the query, its estimate and the setting."""


@dataclass(frozen=True)
class DryRun:
    """What a dry run says of a query: the bytes it would process, and how many tables
    it references."""

    bytes_processed: int
    tables: int

    @property
    def billed_at_least(self) -> int:
        """The least it would bill on demand: its bytes rounded up to the MB, and at
        least 10 MB per table referenced (per query when none)."""
        rounded = -(-self.bytes_processed // MIB) * MIB
        return max(rounded, MIN_BILLED_PER_TABLE * max(self.tables, 1))


def bytes_text(n: int) -> str:
    """``1,073,741,824 bytes (1.0 GiB)``: exact, then readable."""
    size, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n:,} bytes" if unit == "bytes" else f"{n:,} bytes ({size:.1f} {unit})"


def query_job_config(
    settings: Settings, parameters: Sequence[Any] = (), **options: Any
) -> bigquery.QueryJobConfig:
    """A query job's configuration: its parameters, ``options`` (any
    ``QueryJobConfig`` property), and the ceiling ``BQ_MAX_BYTES_BILLED`` (on every
    job but a dry run: it bills nothing, and must estimate past the ceiling too)."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=list(parameters), **options)
    if not config.dry_run:
        config.maximum_bytes_billed = settings.bq_max_bytes_billed
    return config


def _calls(retry: Any, retry_job: bool) -> dict[str, Any]:
    """The client's retry options: its defaults unless given."""
    calls: dict[str, Any] = {} if retry is None else {"retry": retry}
    return calls if retry_job else {**calls, "job_retry": None}


def _sent(calls: dict[str, Any], request_timeout: float | None) -> dict[str, Any]:
    """The options of the call that sends a job: ``calls``, and its own timeout."""
    return calls if request_timeout is None else {**calls, "timeout": request_timeout}


def run_query(
    settings: Settings,
    sql: str,
    *,
    name: str,
    parameters: Sequence[Any] = (),
    client: Any = None,
    timeout: float | None = QUERY_TIMEOUT_S,
    request_timeout: float | None = None,
    retry: Any = None,
    retry_job: bool = True,
    **job_options: Any,
) -> RowIterator:
    """Run ``sql`` with ``parameters`` under the ceiling and wait for its rows.
    ``name``: the query, as the refusal names it. ``timeout``: the whole wait (None:
    no limit); ``request_timeout``, ``retry``: each API call's (None: the client's
    defaults); ``retry_job=False``: a failed job is not run again (the caller
    retries); ``job_options``: more ``QueryJobConfig`` properties. A query over
    ``BQ_MAX_BYTES_BILLED`` raises :class:`BytesBilledLimit`."""
    from google.api_core.exceptions import GoogleAPICallError

    client = client if client is not None else bigquery_client(settings)
    config = query_job_config(settings, parameters, **job_options)
    calls = _calls(retry, retry_job)
    try:
        job = client.query(sql, job_config=config, **_sent(calls, request_timeout))
        return job.result(timeout=timeout, **calls)
    except GoogleAPICallError as error:
        if not over_ceiling(error):
            raise
        raise _refused(settings, name, sql, parameters, client, error) from error


def over_ceiling(error: BaseException) -> bool:
    """BigQuery refused the query for ``maximum_bytes_billed``: the error's reason
    (HTTP 400 on the request, or the failed job's result, which the client raises as
    a 500), or its message."""
    reasons = [e.get("reason") for e in getattr(error, "errors", None) or [] if isinstance(e, dict)]
    said = str(getattr(error, "message", "") or error).lower()
    return OVER_CEILING_REASON in reasons or "exceeded limit for bytes billed" in said


def _refused(
    settings: Settings,
    name: str,
    sql: str,
    parameters: Sequence[Any],
    client: Any,
    error: BaseException,
) -> BytesBilledLimit:
    """The one line for a query refused over the ceiling (the estimate: a dry run)."""
    try:
        estimate = dry_run(settings, sql, parameters, client)
    except Exception:  # the refusal matters more than its estimate
        estimate = None
    required = re.search(r"(\d+) or higher required", str(error))
    if estimate is not None:
        said = (
            f"a dry run estimates {bytes_text(estimate.bytes_processed)} processed, "
            f"at least {bytes_text(estimate.billed_at_least)} billed"
        )
    else:
        said = "no dry run estimate"
    if required:
        said += f"; BigQuery wants a ceiling of at least {bytes_text(int(required[1]))}"
    return BytesBilledLimit(
        f"BigQuery refused the query {name!r}: it would bill more than "
        f"BQ_MAX_BYTES_BILLED = {bytes_text(settings.bq_max_bytes_billed)} ({said}). "
        "Nothing was billed. Raise BQ_MAX_BYTES_BILLED, or read less (one run, one "
        "symbol, a shorter window)."
    )


def dry_run(
    settings: Settings,
    sql: str,
    parameters: Sequence[Any] = (),
    client: Any = None,
    *,
    request_timeout: float | None = None,
    retry: Any = None,
) -> DryRun | None:
    """What ``sql`` would process, without running it (nothing is billed, the cache
    is not used, no ceiling); None where the service does not estimate: the emulator
    answers every dry run with 0 bytes, so its answer is no estimate. The query is
    still sent (a query that cannot run fails here as it would)."""
    client = client if client is not None else bigquery_client(settings)
    config = query_job_config(settings, parameters, dry_run=True, use_query_cache=False)
    job = client.query(sql, job_config=config, **_sent(_calls(retry, False), request_timeout))
    if settings.bigquery_emulator_host or job.total_bytes_processed is None:
        return None
    return DryRun(int(job.total_bytes_processed), len(job.referenced_tables or []))


def no_estimate(settings: Settings) -> str:
    """Why :func:`dry_run` gave no estimate, in a few words."""
    if settings.bigquery_emulator_host:
        return "the emulator does not estimate (it has no cost model)"
    return "BigQuery gave no estimate"


def dry_run_bytes(
    settings: Settings, sql: str, parameters: Sequence[Any] = (), client: Any = None
) -> int | None:
    """The bytes ``sql`` would process (a dry run), or None where the service does
    not estimate (the emulator)."""
    estimate = dry_run(settings, sql, parameters, client)
    return None if estimate is None else estimate.bytes_processed
