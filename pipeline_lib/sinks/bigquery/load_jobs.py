"""The load-job writer: each batch as one BigQuery **load job** into the table its
:class:`~pipeline_lib.sinks.bigquery.table_manager.TableManager` keeps.

* Rows go in as one load job per micro-batch, as Parquet built column-wise with
  pyarrow: atomic (all rows or none), free of streaming-insert quotas, and never SQL
  text built from message data.
* **Refused rows**: if BigQuery refuses a load as invalid, the batch is loaded again
  as NDJSON rows, split in halves until the offending rows are isolated
  (:class:`RowLoader`, which the Write API writers hold too, for a request refused
  whole); they are returned as rejected (the consumer sends them to the dead-letter
  topic) and the rest is loaded.
"""

from __future__ import annotations

import io
import time
from typing import Any

from pipeline_lib.core.config import Settings
from pipeline_lib.core.retry import QUICK_CHECK_BACKOFF, SLOW_CHECK_BACKOFF
from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch, WriteResult
from pipeline_lib.records.routes import Route
from pipeline_lib.records.schema import iso
from pipeline_lib.sinks import Sink, SinkError, reraise_refusal, with_retries
from pipeline_lib.sinks.bigquery.rows import REPEATING_COLUMNS, batch_table, row_bytes
from pipeline_lib.sinks.bigquery.table_manager import TableManager, quick_retry

LOAD_TIMEOUT_S = 120
QUICK_POLL_FOR_S = 2.0  # how long wait_for_job checks a fresh load job often
# Bisecting costs one load job per step: past this many, the table (not a few rows)
# is the problem, and the consumer stops instead of dead-lettering everything.
MAX_BISECT_LOADS = 40
LOAD_EVERY_S = 60.0  # on real BigQuery: at most a load a minute per table (see BigQuerySink)
REFUSED_HINT = "Create it with `python -m pipeline_lib setup` and check permissions."


def wait_for_job(job: Any, timeout: float) -> None:
    """Wait for a job, checking often: the client's own polling sleeps 1 s after the
    first check, which alone would put a fresh tick a second behind. At most 25 ms
    apart during the first ``QUICK_POLL_FOR_S`` (a micro-batch's load takes tens to
    hundreds of milliseconds: doubling waits would overshoot its end by up to as much
    again), then backing off to 0.5 s for long jobs (:mod:`pipeline_lib.core.retry`).
    Raises the job's error (e.g. BadRequest for refused rows) like ``job.result()``."""
    started = time.monotonic()
    deadline = started + timeout
    delays, quick = QUICK_CHECK_BACKOFF.delays(), True
    while not job.done(retry=quick_retry(), timeout=30):
        delay = next(delays)
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"BigQuery job {job.job_id} not done after {timeout:g}s")
        time.sleep(delay)
        if quick and time.monotonic() - started >= QUICK_POLL_FOR_S:
            delays, quick = SLOW_CHECK_BACKOFF.delays(), False
    job.result(retry=quick_retry(), timeout=30)


class RowLoader:
    """Load jobs into a manager's table: a payload as it is, or a batch as NDJSON rows
    with the refused ones isolated by halves (returned as dead letters of ``stage``)."""

    def __init__(self, table_manager: TableManager, stage: str) -> None:
        self.table_manager = table_manager
        self.stage = stage

    def load(self, payload: bytes, source_format: str) -> None:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=source_format,
            schema=self.table_manager.schema(),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        # A file object without size= makes the client use a resumable upload, which
        # works at any size on real BigQuery and on the emulator.
        job = self.table_manager.client.load_table_from_file(
            io.BytesIO(payload),
            self.table_manager.table_id,
            job_config=config,
            timeout=30,
            num_retries=0,  # with_retries() is the one retry policy
        )
        wait_for_job(job, LOAD_TIMEOUT_S)

    def _load_ndjson(self, rows: list[bytes]) -> None:
        from google.cloud.bigquery import SourceFormat

        self.load(b"\n".join(rows), SourceFormat.NEWLINE_DELIMITED_JSON)

    def _load_isolating_bad_rows(
        self,
        rows: list[bytes],
        origins: list[tuple[PartitionBatch, int]],
        budget: list[int],
    ) -> list[DeadLetter]:
        """Load; on an invalid-data refusal, bisect to find and return the bad rows."""
        from google.api_core.exceptions import BadRequest

        table_id = self.table_manager.table_id
        try:
            with_retries(
                lambda: self._load_ndjson(rows), f"loading {len(rows)} rows into {table_id}"
            )
            return []
        except BadRequest as error:
            budget[0] -= 1
            if budget[0] <= 0:
                raise SinkError(
                    f"BigQuery refuses most rows of the batch ({error.message}). The table "
                    f"{table_id} probably does not match the pipeline's schema: drop it "
                    "or point BQ_TABLE at a new one. Nothing was committed."
                ) from error
            if len(rows) == 1:
                part, index = origins[0]
                reason = f"BigQuery rejected the row: {error.message}"[:1000]
                return [part.letter(index, reason, self.stage)]
            middle = len(rows) // 2
            return self._load_isolating_bad_rows(
                rows[:middle], origins[:middle], budget
            ) + self._load_isolating_bad_rows(rows[middle:], origins[middle:], budget)
        except Exception as error:
            reraise_refusal(error, f"BigQuery refused the load into {table_id}", REFUSED_HINT)

    def write_rows(self, batch: Batch) -> WriteResult:
        """NDJSON rows; refused rows are isolated by bisection and returned as rejected."""
        ingested_at = iso(batch.closed_at)
        rows: list[bytes] = []
        origins: list[tuple[PartitionBatch, int]] = []  # where each row came from
        unencodable: list[DeadLetter] = []
        added = dict(self.table_manager.added)
        for part in batch.parts:
            for index, (record, offset) in enumerate(zip(part.records, part.offsets, strict=True)):
                extras = part.extras[index] if part.extras else None
                try:
                    rows.append(
                        row_bytes(
                            record, part.topic, part.partition, offset, ingested_at, extras, added
                        )
                    )
                except (TypeError, ValueError) as error:  # never let one record stop the flow
                    reason = f"cannot encode as a BigQuery row: {error}"
                    unencodable.append(part.letter(index, reason, self.stage))
                    continue
                origins.append((part, index))
        rejected = list(unencodable)
        if rows:
            rejected += self._load_isolating_bad_rows(rows, origins, [MAX_BISECT_LOADS])
        return WriteResult(
            self.stage,
            len(rows) + len(unencodable) - len(rejected),
            [f"bq://{self.table_manager.table_id}"],
            rejected,
        )


class BigQuerySink(Sink):
    """Loads each batch as one Parquet load job; isolates refused rows via NDJSON.

    ``file_format="ndjson"`` loads NDJSON directly (slower on the emulator; kept for
    comparison in the benchmark). ``table_manager``: the table it loads into (made
    from the settings and ``stream`` when not given).
    """

    name = "bigquery"

    def __init__(
        self,
        settings: Settings,
        file_format: str = "parquet",
        stream: str | Route = "ticks",
        table_manager: TableManager | None = None,
    ) -> None:
        if file_format not in {"parquet", "ndjson"}:
            raise SinkError("BigQuery load format must be 'parquet' or 'ndjson'")
        self.settings = settings
        self.file_format = file_format
        # Nothing streams: the run summary goes in by load job too (the sandbox).
        self.table_manager = table_manager or TableManager(settings, stream, summary_by_load=True)
        self.route = self.table_manager.route
        # Real BigQuery runs at most 1,500 load jobs a table a day: one a minute keeps
        # a consumer that runs all day under it (1,440); the emulator has no quota.
        self.min_batch_interval_s = 0.0 if settings.bigquery_emulator_host else LOAD_EVERY_S
        self.stream = self.table_manager.stream
        self.loader = RowLoader(self.table_manager, self.name)

    def setup(self) -> None:
        """The table, its view and run summary (see the table manager); idempotent."""
        self.table_manager.setup()

    def write(self, batch: Batch) -> WriteResult:
        """Land the batch by load jobs, through the table manager (added columns,
        the run summary)."""
        return self.table_manager.land(batch, self._land, self.name)

    def close(self) -> None:
        self.table_manager.close()

    def _parquet(self, batch: Batch) -> bytes | None:
        """The batch as Parquet, or None when some record does not fit the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = batch_table(batch, self.stream, self.table_manager.added)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return None
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression="snappy",
            # Dictionaries only where values repeat, no statistics (a load job reads
            # every row): 2.5x less CPU than the defaults, the same size.
            use_dictionary=[c for c in table.column_names if c in REPEATING_COLUMNS],
            write_statistics=False,
        )
        return buffer.getvalue()

    def _land(self, batch: Batch) -> WriteResult:
        from google.api_core.exceptions import BadRequest
        from google.cloud.bigquery import SourceFormat

        count = len(batch)
        location = [f"bq://{self.route.table_id}"]
        if count == 0:
            return WriteResult(self.name, 0, location)
        if self.file_format == "parquet":
            payload = self._parquet(batch)
            if payload is not None:
                try:
                    with_retries(
                        lambda: self.loader.load(payload, SourceFormat.PARQUET),
                        f"loading {count} rows into {self.route.table_id}",
                    )
                    return WriteResult(self.name, count, location)
                except BadRequest:
                    pass  # some rows are refused: find them row by row below
                except Exception as error:
                    reraise_refusal(
                        error, f"BigQuery refused the load into {self.route.table_id}", REFUSED_HINT
                    )
        return self.loader.write_rows(batch)
