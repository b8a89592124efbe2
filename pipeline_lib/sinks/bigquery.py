"""BigQuery sink: batch load jobs into a day-partitioned table clustered by symbol.

* The table is created if missing, with an explicit schema (the ``columns`` of the
  stream it lands, :data:`TABLE_SCHEMA` for ticks): the record's fields plus where
  each row came from (Kafka topic, partition, offset) and
  when the batch was closed (``ingested_at``).
* Rows go in as one **load job** per micro-batch, as Parquet built column-wise with
  pyarrow: atomic (all rows or none), free of streaming-insert quotas, and never SQL
  text built from message data.
* **Duplicates**: a batch redelivered after a crash (written, not yet committed) is
  loaded again. Queries read the view ``<table>_dedup``, which keeps the first copy
  of each id (``QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ...) = 1``; news
  stories by ``news_id``),
  so every event is seen once — the same on real BigQuery and on the emulator (which
  ignores streaming insert ids). The same view also absorbs a source replayed twice.
* **Refused rows**: if BigQuery refuses a load as invalid, the batch is loaded again
  as NDJSON rows, split in halves until the offending rows are isolated; they are
  returned as rejected (the consumer sends them to the dead-letter topic) and the
  rest is loaded.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

import orjson

from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.core.config import Settings
from pipeline_lib.core.retry import QUICK_CHECK_BACKOFF, SLOW_CHECK_BACKOFF
from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch, WriteResult
from pipeline_lib.records.columns import record_schema
from pipeline_lib.records.routes import Route, route
from pipeline_lib.records.schema import LANDING_FIELDS, iso
from pipeline_lib.records.streams import TICKS, Stream
from pipeline_lib.sinks import Sink, SinkError, evolution, reraise_refusal, with_retries
from pipeline_lib.sinks.run_summary import COLUMNS as SUMMARY_COLUMNS
from pipeline_lib.sinks.run_summary import RunSummary, rebuild_sql

log = logging.getLogger(__name__)
LOAD_TIMEOUT_S = 120
FILL_TIMEOUT_S = 900  # the run summary's one fill scans the whole table
FILLED_LABEL = "pipeline_summary_filled"
QUICK_POLL_FOR_S = 2.0  # how long wait_for_job checks a fresh load job often
# Bisecting costs one load job per step: past this many, the table (not a few rows)
# is the problem, and the consumer stops instead of dead-lettering everything.
MAX_BISECT_LOADS = 40
# Text columns with few distinct values, dictionary-encoded in the Parquet of a load.
REPEATING_COLUMNS = frozenset({"symbol", "source", "sentiment_label", "publisher", "kafka_topic"})

# The tick table's columns: the tick fields, then where each row came from. Derived
# from the one field table in pipeline_lib.records.schema: (name, BigQuery type, mode, description).
TABLE_SCHEMA: tuple[tuple[str, str, str, str], ...] = TICKS.columns


def quick_retry():
    """The client's own retry, capped: with_retries() decides when to give up."""
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(10)


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


def dedup_sql(stream: Stream, table_sql: str, where: str = "TRUE") -> str:
    """SELECT of each event once among the rows of ``table_sql`` that match ``where``:
    the dedup view's text (``TRUE``), and every bounded read's. Copies of an event
    are the same record (same ``ts``, same ``symbol``, same run), so a filter on those
    applied before the window function keeps exactly the events the view would show;
    applied after it, the window runs over the whole table. (A filter on when a copy
    landed, as the live widget's, may keep a later copy of an event: the caller drops
    the events it holds already.) ``where`` is SQL written in the package with
    ``@parameters``, never message text."""
    return (
        f"SELECT * FROM {table_sql} WHERE {where} "  # noqa: S608 - validated identifier
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {stream.id_field} "
        "ORDER BY ingested_at, kafka_partition, kafka_offset) = 1"
    )


def _standard_type(kind: str) -> str:
    """A BigQuery type by its standard SQL name (the API answers legacy ones)."""
    return {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(kind, kind)


def bigquery_schema(stream: Stream = TICKS) -> list:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(name, kind, mode=mode, description=text)
        for name, kind, mode, text in stream.columns
    ]


def arrow_schema(stream: Stream = TICKS) -> Any:
    """The table's columns as an Arrow schema (types from the one table, schema.KINDS)."""
    return record_schema((*stream.fields, *LANDING_FIELDS))


def row_bytes(
    record: Any,
    topic: str,
    partition: int,
    offset: int,
    ingested_at: str,
    extras: dict[str, Any] | None = None,
    added: dict[str, str] | None = None,
) -> bytes:
    """One NDJSON row of the table (the fallback path that isolates refused rows):
    with the record's fields of a newer contract in their ``added`` columns or
    ``extra``."""
    row = record.to_dict()
    row["ingested_at"] = ingested_at
    row["kafka_topic"] = topic
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    into, rest = evolution.split(extras, added or {})
    row.update(into)
    row["extra"] = rest
    return orjson.dumps(row)


_ARROW_OF = {"STRING": "string", "INT64": "int64", "FLOAT64": "float64", "BOOL": "bool"}


def batch_table(batch: Batch, stream: Stream = TICKS, added: tuple = ()) -> Any:
    """The whole batch as one Arrow table: the partitions' record columns joined (not
    copied), then where each row came from (per-batch values repeated), then the
    fields of a newer contract: in the ``added`` columns ((name, BigQuery type), in
    the table already) or as JSON in ``extra``."""
    import pyarrow as pa

    schema = arrow_schema(stream)
    for name, kind in added:
        schema = schema.append(pa.field(name, pa.type_for_alias(_ARROW_OF[kind])))
    parts = [p for p in batch.parts if len(p)]
    tables = [chunk for p in parts for chunk in p.chunks]
    records = pa.concat_tables(tables) if tables else record_schema(stream.fields).empty_table()
    n = records.num_rows

    def repeated(values: list[tuple[Any, int]], kind: Any) -> Any:
        pieces = [pa.repeat(pa.scalar(v, type=kind), count) for v, count in values if count]
        return pa.concat_arrays(pieces) if pieces else pa.array([], type=kind)

    sizes = [(p, len(p)) for p in parts]
    landing = {
        "ingested_at": lambda kind: repeated([(batch.closed_at, n)], kind),
        "kafka_topic": lambda kind: repeated([(p.topic, c) for p, c in sizes], kind),
        "kafka_partition": lambda kind: repeated([(p.partition, c) for p, c in sizes], kind),
        "kafka_offset": lambda kind: pa.array([o for p in parts for o in p.offsets], type=kind),
        "extra": lambda kind: pa.nulls(n, type=kind),
    }
    if any(p.extras for p in parts):  # records of a newer contract: their fields
        columns = dict(added)
        split = [
            evolution.split(p.extras[i] if p.extras else None, columns)
            for p in parts
            for i in range(len(p))
        ]
        landing["extra"] = lambda kind: pa.array([rest for _, rest in split], type=kind)
        for name, _ in added:
            landing[name] = lambda kind, name=name: pa.array(
                [into.get(name) for into, _ in split], type=kind
            )
    else:
        for name, _ in added:
            landing[name] = lambda kind: pa.nulls(n, type=kind)
    arrays = [
        landing[f.name](f.type) if f.name in landing else records.column(f.name) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class BigQuerySink(Sink):
    """Loads each batch as one Parquet load job; isolates refused rows via NDJSON.

    ``file_format="ndjson"`` loads NDJSON directly (slower on the emulator; kept for
    comparison in the benchmark).
    """

    name = "bigquery"

    def __init__(
        self, settings: Settings, file_format: str = "parquet", stream: str | Route = "ticks"
    ) -> None:
        if file_format not in {"parquet", "ndjson"}:
            raise SinkError("BigQuery load format must be 'parquet' or 'ndjson'")
        self.settings = settings
        self.route = route(settings, stream)
        self.stream = self.route.stream
        self.file_format = file_format
        _ = self.route.table_sql  # checks the identifiers now: the only text put in SQL
        self._client = None
        self.run_summary = RunSummary(self.stream, self._insert_summary)
        # Columns of the table beyond the stream's, added for fields of a newer
        # contract: (name, BigQuery type), read at setup, grown by PIPELINE_SCHEMA_UPDATES.
        self.added: tuple[tuple[str, str], ...] = ()
        self._write_lock = threading.Lock()

    @property
    def client(self):
        if self._client is None:
            self._client = bigquery_client(self.settings)
        return self._client

    def setup(self) -> None:
        """Dataset, partitioned + clustered table, and the dedup view; all idempotent."""
        from google.cloud import bigquery

        def create() -> None:
            dataset = bigquery.Dataset(f"{self.settings.gcp_project}.{self.settings.bq_dataset}")
            dataset.location = self.settings.bq_location
            retry = quick_retry()
            self.client.create_dataset(dataset, exists_ok=True, timeout=30, retry=retry)
            table = bigquery.Table(self.route.table_id, schema=bigquery_schema(self.stream))
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="ts"
            )
            table.clustering_fields = ["symbol"]
            table.description = self.stream.description
            self.client.create_table(table, exists_ok=True, timeout=30, retry=retry)
            view = bigquery.Table(self.route.view_id)
            view.view_query = dedup_sql(self.stream, self.route.table_sql)
            view.description = "Each event once: use this for analysis"
            self.client.create_table(view, exists_ok=True, timeout=30, retry=retry)
            self._create_summary()
            self._add_columns(())  # a table made by an older version: its new columns

        with_retries(create, f"creating BigQuery table {self.route.table_id}")

    def _create_summary(self) -> None:
        """The run summary beside the table, filled from the table once (one scan, at
        setup, instead of one per refresh). A label marks it filled: a fill that
        failed is run again at the next setup (rows written twice are harmless:
        readers take MIN and MAX)."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        retry = quick_retry()
        try:
            summary = self.client.get_table(self.route.runs_id, timeout=30, retry=retry)
        except NotFound:
            summary = bigquery.Table(
                self.route.runs_id,
                schema=[
                    bigquery.SchemaField(name, kind, mode=mode, description=text)
                    for name, kind, mode, text in SUMMARY_COLUMNS
                ],
            )
            summary.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="landed_at"
            )
            summary.clustering_fields = ["run", "symbol"]
            summary.description = (
                f"Runs and symbols landed in {self.route.table}, their event-time span: "
                "what the live chart asks first (pipeline_lib.sinks.run_summary)"
            )
            summary = self.client.create_table(summary, exists_ok=True, timeout=30, retry=retry)
        if (summary.labels or {}).get(FILLED_LABEL) == "yes":
            return
        fill = (
            f"INSERT INTO {self.route.runs_sql} (run, symbol, first_ts, last_ts, landed_at) "
            + rebuild_sql(self.stream, self.route.table_sql)
        )
        self.client.query(fill, timeout=60, retry=retry).result(timeout=FILL_TIMEOUT_S)
        summary.labels = {**(summary.labels or {}), FILLED_LABEL: "yes"}
        self.client.update_table(summary, ["labels"], timeout=30, retry=retry)

    def table_schema(self) -> list:
        """The table's columns as the sink writes them: the stream's and those added."""
        from google.cloud import bigquery

        return bigquery_schema(self.stream) + [
            bigquery.SchemaField(name, kind, mode="NULLABLE") for name, kind in self.added
        ]

    def _add_columns(self, new: tuple[tuple[str, str], ...] | list) -> None:
        """Add NULLABLE columns to the table: the stream's it lacks (a table made by an
        older version) and ``new`` ones; then note every column beyond the stream's."""
        from google.cloud import bigquery

        retry = quick_retry()
        table = self.client.get_table(self.route.table_id, timeout=30, retry=retry)
        have = {f.name.lower() for f in table.schema}
        wanted = [
            bigquery.SchemaField(name, kind, mode=mode, description=text)
            for name, kind, mode, text in self.stream.columns
            if mode == "NULLABLE"
        ] + [
            bigquery.SchemaField(
                name, kind, mode="NULLABLE", description="a field of a newer record contract"
            )
            for name, kind in new
        ]
        missing = [f for f in wanted if f.name.lower() not in have]
        if missing:
            try:
                # The schema as data (tables.patch): no SQL text.
                table.schema = [*table.schema, *missing]
                table = self.client.update_table(table, ["schema"], timeout=30, retry=retry)
                if self.settings.bigquery_emulator_host:
                    self._alter_emulator_storage(missing)
            except Exception as error:
                from google.api_core.exceptions import PreconditionFailed

                if isinstance(error, PreconditionFailed):  # another member changed it first
                    return self._add_columns(new)
                reraise_refusal(
                    error,
                    f"BigQuery refused to add column(s) "
                    f"{', '.join(f.name for f in missing)} to {self.route.table_id}",
                    "PIPELINE_SCHEMA_UPDATES=add needs the right to update the table "
                    "(bigquery.tables.update); or leave it at json (the extra column).",
                )
        own = {name for name, *_ in self.stream.columns}
        before = self.added
        self.added = tuple(
            (f.name, _standard_type(f.field_type)) for f in table.schema if f.name not in own
        )
        if missing or self.added != before:  # added here, or by another member
            self.schema_changed()

    def _alter_emulator_storage(self, columns: list) -> None:
        """The local emulator records a patched schema but does not add the columns to
        its storage (tried: tables.patch, and loads with ALLOW_FIELD_ADDITION, which
        drop the field); its DDL does. Emulator only: each name is checked as an
        identifier and backquoted, each type is one of a fixed few."""
        from pipeline_lib.core.checks import check_name

        for column in columns:
            name = check_name(column.name, "column")
            kind = _standard_type(column.field_type)
            if kind not in {"STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP"}:
                raise SinkError(f"cannot add a column of type {kind}")
            ddl = f"ALTER TABLE {self.route.table_sql} ADD COLUMN IF NOT EXISTS `{name}` {kind}"
            self.client.query(ddl, timeout=30).result(timeout=LOAD_TIMEOUT_S)

    def schema_changed(self) -> None:
        """The table gained columns (the Storage Write API sink opens a new stream)."""

    def _evolve(self, batch: Batch) -> tuple[Batch, list[DeadLetter]]:
        """Fields of a newer contract (see :mod:`pipeline_lib.sinks.evolution`): add
        the columns the policy adds, and leave out the records whose value does not
        fit its column (returned as dead letters)."""
        if not any(part.extras for part in batch.parts):
            return batch, []
        reserved = frozenset(name.lower() for name, *_ in self.stream.columns)
        add = self.settings.schema_updates == "add"
        for _ in range(3):  # plan, add, plan again against what the table now has
            added = {name.lower(): (name, kind) for name, kind in self.added}
            plan = evolution.plan(batch, added, reserved, add, self.route.table_id, self.name)
            if not plan.new_columns:
                break
            with_retries(
                lambda plan=plan: self._add_columns(plan.new_columns),
                f"adding columns to {self.route.table_id}",
            )
        else:
            raise SinkError(f"the columns of {self.route.table_id} keep changing underneath")
        if not plan.refused:
            return batch, []
        parts = [part.take(keep) for part, keep in zip(batch.parts, plan.keep, strict=True) if keep]
        return Batch(parts, batch.closed_at, batch.group, batch.generation), plan.refused

    def _insert_summary(self, rows: list[dict[str, Any]]) -> None:
        def insert() -> None:
            errors = self.client.insert_rows_json(
                self.route.runs_id,
                rows,
                row_ids=[None] * len(rows),
                timeout=30,
                retry=quick_retry(),
            )
            if errors:
                raise SinkError(f"BigQuery refused run summary rows: {errors[:3]}")

        with_retries(insert, f"writing the run summary {self.route.runs_id}")

    def summarize(self, batch: Batch, result: WriteResult) -> None:
        """After a batch landed: note its runs and symbols in the run summary, before
        the batch counts as written (both BigQuery writers land through :meth:`write`)."""
        refused = {(letter.topic, letter.partition, letter.offset) for letter in result.rejected}
        self.run_summary.note(batch, refused)

    def close(self) -> None:
        """The summary's last rows (the newest event times seen)."""
        from datetime import UTC, datetime

        try:
            self.run_summary.flush(datetime.now(UTC))
        except Exception as error:  # the next consumer writes its own rows
            log.warning("run summary not brought up to date at close: %s", error)

    def _load(self, payload: bytes, source_format: str) -> None:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=source_format,
            schema=self.table_schema(),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        # A file object without size= makes the client use a resumable upload, which
        # works at any size on real BigQuery and on the emulator.
        job = self.client.load_table_from_file(
            io.BytesIO(payload),
            self.route.table_id,
            job_config=config,
            timeout=30,
            num_retries=0,  # with_retries() is the one retry policy
        )
        wait_for_job(job, LOAD_TIMEOUT_S)

    def _load_ndjson(self, rows: list[bytes]) -> None:
        from google.cloud.bigquery import SourceFormat

        self._load(b"\n".join(rows), SourceFormat.NEWLINE_DELIMITED_JSON)

    def _load_isolating_bad_rows(
        self,
        rows: list[bytes],
        origins: list[tuple[PartitionBatch, int]],
        budget: list[int],
    ) -> list[DeadLetter]:
        """Load; on an invalid-data refusal, bisect to find and return the bad rows."""
        from google.api_core.exceptions import BadRequest

        try:
            with_retries(
                lambda: self._load_ndjson(rows),
                f"loading {len(rows)} rows into {self.route.table_id}",
            )
            return []
        except BadRequest as error:
            budget[0] -= 1
            if budget[0] <= 0:
                raise SinkError(
                    f"BigQuery refuses most rows of the batch ({error.message}). The table "
                    f"{self.route.table_id} probably does not match the pipeline's schema: drop it "
                    "or point BQ_TABLE at a new one. Nothing was committed."
                ) from error
            if len(rows) == 1:
                part, index = origins[0]
                reason = f"BigQuery rejected the row: {error.message}"[:1000]
                return [part.letter(index, reason, self.name)]
            middle = len(rows) // 2
            return self._load_isolating_bad_rows(
                rows[:middle], origins[:middle], budget
            ) + self._load_isolating_bad_rows(rows[middle:], origins[middle:], budget)
        except Exception as error:
            reraise_refusal(
                error,
                f"BigQuery refused the load into {self.route.table_id}",
                "Create it with `python -m pipeline_lib setup` and check permissions.",
            )

    def _parquet(self, batch: Batch) -> bytes | None:
        """The batch as Parquet, or None when some record does not fit the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = batch_table(batch, self.stream, self.added)
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

    def write(self, batch: Batch) -> WriteResult:
        """Land the batch (its fields of a newer contract as the policy says), then
        note it in the run summary. One batch at a time (two may be in flight): the
        columns a batch was checked against are the ones it is written with."""
        with self._write_lock:
            batch, refused = self._evolve(batch)
            result = self._land(batch)
        if len(batch):
            self.summarize(batch, result)
        result.rejected = refused + result.rejected
        return result

    def _land(self, batch: Batch) -> WriteResult:
        from google.api_core.exceptions import BadRequest
        from google.cloud.bigquery import SourceFormat

        count = len(batch)
        if count == 0:
            return WriteResult(self.name, 0, [f"bq://{self.route.table_id}"])
        if self.file_format == "parquet":
            payload = self._parquet(batch)
            if payload is not None:
                try:
                    with_retries(
                        lambda: self._load(payload, SourceFormat.PARQUET),
                        f"loading {count} rows into {self.route.table_id}",
                    )
                    return WriteResult(self.name, count, [f"bq://{self.route.table_id}"])
                except BadRequest:
                    pass  # some rows are refused: find them row by row below
                except Exception as error:
                    reraise_refusal(
                        error,
                        f"BigQuery refused the load into {self.route.table_id}",
                        "Create it with `python -m pipeline_lib setup` and check permissions.",
                    )
        return self._write_rows(batch)

    def _write_rows(self, batch: Batch) -> WriteResult:
        """NDJSON rows; refused rows are isolated by bisection and returned as rejected."""
        ingested_at = iso(batch.closed_at)
        rows: list[bytes] = []
        origins: list[tuple[PartitionBatch, int]] = []  # where each row came from
        unencodable: list[DeadLetter] = []
        added = dict(self.added)
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
                    unencodable.append(part.letter(index, reason, self.name))
                    continue
                origins.append((part, index))
        rejected = list(unencodable)
        if rows:
            rejected += self._load_isolating_bad_rows(rows, origins, [MAX_BISECT_LOADS])
        return WriteResult(
            self.name,
            len(rows) + len(unencodable) - len(rejected),
            [f"bq://{self.route.table_id}"],
            rejected,
        )
