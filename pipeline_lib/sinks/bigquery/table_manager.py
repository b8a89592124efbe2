"""The BigQuery table a stream lands in, and everything about it that is not writing
rows: held by each writer (load jobs, the Storage Write API at offsets, its default
stream), so all three share one table, one schema and one run summary.

* **The table**, created if missing, with an explicit schema (the ``columns`` of the
  stream it lands, :data:`TABLE_SCHEMA` for ticks): the record's fields plus where
  each row came from (Kafka topic, partition, offset) and when the batch was closed
  (``ingested_at``); day-partitioned on ``ts`` (or, with ``BQ_PARTITION_BY=ingestion``,
  on ``ingested_at``), clustered by ``symbol``.
* **Partitions that expire** (a dataset's default, as in the BigQuery sandbox's 60
  days): a row whose event day is older lands in a partition already expired and is
  gone without an error. Before a batch lands, its oldest event is held against the
  expiration, and a batch that would vanish is refused in one line.
* **Duplicates**: a batch redelivered after a crash (written, not yet committed) may
  land again. Queries read the view ``<table>_dedup``, which keeps the first copy of
  each id (``QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ...) = 1``; news
  stories by ``news_id``), so every event is seen once — the same on real BigQuery
  and on the emulator (which ignores streaming insert ids). The same view also
  absorbs a source replayed twice.
* **The run summary** beside it (:mod:`~pipeline_lib.sinks.bigquery.run_summary`),
  noted after each batch lands.
* **Added columns**: fields of a newer contract (:mod:`~pipeline_lib.sinks.bigquery.evolution`)
  get columns of their own when the policy says so, before the batch is written.
* **The emulator's differences** are a capability the manager holds
  (:class:`EmulatorQuirks`), not a branch of the writers.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline_lib.clients.google import bigquery_client, run_query
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch, DeadLetter, WriteResult
from pipeline_lib.records.routes import Route, route
from pipeline_lib.records.streams import TICKS, Stream
from pipeline_lib.sinks import SinkError, reraise_refusal, with_retries
from pipeline_lib.sinks.bigquery import evolution
from pipeline_lib.sinks.bigquery.run_summary import COLUMNS as SUMMARY_COLUMNS
from pipeline_lib.sinks.bigquery.run_summary import RunSummary, rebuild_sql
from pipeline_lib.sinks.bigquery.type_mapper import TYPES, BigQueryTypeMapper

log = logging.getLogger(__name__)
DDL_TIMEOUT_S = 120
FILL_TIMEOUT_S = 900  # the run summary's one fill scans the whole table
FILLED_LABEL = "pipeline_summary_filled"
DAY_MS = 86_400_000
# A batch is refused when its oldest event's partition expires within this many days:
# a row that lands now must stay long enough to be read.
EXPIRY_MARGIN_DAYS = 1.0
# Column the table's day partitions follow, by BQ_PARTITION_BY.
PARTITION_COLUMN = {"event": "ts", "ingestion": "ingested_at"}

# The tick table's columns: the tick fields, then where each row came from. Derived
# from the one field table in pipeline_lib.records.schema: (name, BigQuery type, mode, description).
TABLE_SCHEMA: tuple[tuple[str, str, str, str], ...] = TICKS.columns


def quick_retry():
    """The client's own retry, capped: with_retries() decides when to give up."""
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(10)


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


def bigquery_schema(stream: Stream = TICKS) -> list:
    """The stream's table columns as the BigQuery client's SchemaFields."""
    return TYPES.schema_fields(stream.columns)


class EmulatorQuirks:
    """What the local emulator needs beyond the BigQuery API. It records a patched
    schema but does not add the columns to its storage (tried: tables.patch, and
    loads with ALLOW_FIELD_ADDITION, which drop the field); its DDL does. Held by the
    table manager on the emulator only: real BigQuery needs none of it."""

    def __init__(self, settings: Settings, types: BigQueryTypeMapper = TYPES) -> None:
        self.settings = settings
        self.types = types

    def columns_added(self, client: Any, table_sql: str, columns: list) -> None:
        """Make patched-in ``columns`` real: each name checked as an identifier and
        backquoted, each type one the pipeline writes (no text of a message in SQL)."""
        from pipeline_lib.core.checks import check_name

        for column in columns:
            name = check_name(column.name, "column")
            kind = self.types.standard(column.field_type)
            if kind not in self.types.bigquery_types:
                raise SinkError(f"cannot add a column of type {kind}")
            ddl = f"ALTER TABLE {table_sql} ADD COLUMN IF NOT EXISTS `{name}` {kind}"
            run_query(
                self.settings,
                ddl,
                name=f"add column {name}",
                client=client,
                timeout=DDL_TIMEOUT_S,
                request_timeout=30,
            )

    def fill_summary(self, client: Any, runs_sql: str, select: str) -> None:
        """The run summary's one fill: the emulator writes no query results into a
        table (a destination is ignored), so it takes them by INSERT ... SELECT."""
        fill = f"INSERT INTO {runs_sql} (run, symbol, first_ts, last_ts, landed_at) {select}"
        run_query(
            self.settings,
            fill,
            name="the run summary's fill",
            client=client,
            timeout=FILL_TIMEOUT_S,
            request_timeout=60,
        )


class TableManager:
    """One stream's table, dedup view, run summary and added columns, on one client.

    ``client`` (the BigQuery client, made on first use when not given) is the one the
    writers run their load jobs and queries on. ``quirks``: the emulator's
    (:class:`EmulatorQuirks`), chosen from the settings when not given.
    ``summary_by_load``: the run summary's rows go in by load job, not streaming
    insert (the load-job writer's choice: nothing streams, as the sandbox needs).
    """

    def __init__(
        self,
        settings: Settings,
        stream: str | Route = "ticks",
        client: Any = None,
        quirks: EmulatorQuirks | None = None,
        types: BigQueryTypeMapper = TYPES,
        summary_by_load: bool = False,
    ) -> None:
        self.settings = settings
        self.route = route(settings, stream)
        self.stream = self.route.stream
        _ = self.route.table_sql  # checks the identifiers now: the only text put in SQL
        self._client = client
        self.types = types
        if quirks is None and settings.bigquery_emulator_host:
            quirks = EmulatorQuirks(settings, types)
        self.quirks = quirks
        self.summary_by_load = summary_by_load
        self.run_summary = RunSummary(self.stream, self._insert_summary)
        # (days, what set them) after which the table's event-day partitions expire,
        # read before the first batch; None: no expiry, or not partitioned by event day.
        self._expiry: tuple[float, str] | bool | None = False  # False: not read yet
        # Columns of the table beyond the stream's, added for fields of a newer
        # contract: (name, BigQuery type), read at setup, grown by PIPELINE_SCHEMA_UPDATES.
        self.added: tuple[tuple[str, str], ...] = ()
        self._columns_changed: list[Callable[[], None]] = []
        self._write_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = bigquery_client(self.settings)
        return self._client

    @property
    def table_id(self) -> str:
        return self.route.table_id

    def on_columns_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the table gains columns (here or by another member),
        under the write lock: a Write API stream fixes its columns when it is made."""
        self._columns_changed.append(callback)

    # --- setting up -------------------------------------------------------------------

    def setup(self) -> None:
        """Dataset, partitioned + clustered table, and the dedup view; all idempotent."""
        from google.cloud import bigquery

        def create() -> None:
            dataset = bigquery.Dataset(f"{self.settings.gcp_project}.{self.settings.bq_dataset}")
            dataset.location = self.settings.bq_location
            retry = quick_retry()
            self.client.create_dataset(dataset, exists_ok=True, timeout=30, retry=retry)
            new = not self._exists(self.route.table_id)
            table = bigquery.Table(self.route.table_id, schema=bigquery_schema(self.stream))
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY,
                field=PARTITION_COLUMN[self.settings.bq_partition_by],
            )
            table.clustering_fields = ["symbol"]
            table.description = self.stream.description
            self.client.create_table(table, exists_ok=True, timeout=30, retry=retry)
            view = bigquery.Table(self.route.view_id)
            view.view_query = dedup_sql(self.stream, self.route.table_sql)
            view.description = "Each event once: use this for analysis"
            self.client.create_table(view, exists_ok=True, timeout=30, retry=retry)
            self._create_summary(fill=not new)
            self.add_columns(())  # a table made by an older version: its new columns

        with_retries(create, f"creating BigQuery table {self.route.table_id}")
        self._expiry = False  # read again before the next batch
        expiry = self.partition_expiry()
        if expiry is not None:
            warnings.warn(
                f"{self.route.table_id}: its event-day partitions expire after "
                f"{expiry[0]:g} days ({expiry[1]}); a run of older events would vanish: "
                "for replays, BQ_PARTITION_BY=ingestion with a new BQ_TABLE",
                stacklevel=2,
            )

    def _exists(self, table_id: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(table_id, timeout=30, retry=quick_retry())
        except NotFound:
            return False
        return True

    def _create_summary(self, fill: bool = True) -> None:
        """The run summary beside the table, filled from an older table once (one
        scan, at setup, instead of one per refresh; a table made now has nothing to
        fill). A label marks it filled: a fill that failed is run again at the next
        setup (rows written twice are harmless: readers take MIN and MAX). The fill is a
        query whose results append to the summary, not DML (the sandbox has none)."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        retry = quick_retry()
        try:
            summary = self.client.get_table(self.route.runs_id, timeout=30, retry=retry)
        except NotFound:
            summary = bigquery.Table(
                self.route.runs_id, schema=self.types.schema_fields(SUMMARY_COLUMNS)
            )
            summary.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="landed_at"
            )
            summary.clustering_fields = ["run", "symbol"]
            summary.description = (
                f"Runs and symbols landed in {self.route.table}, their event-time span: "
                "what the live chart asks first (pipeline_lib.sinks.bigquery.run_summary)"
            )
            summary = self.client.create_table(summary, exists_ok=True, timeout=30, retry=retry)
        if (summary.labels or {}).get(FILLED_LABEL) == "yes":
            return
        if fill:
            select = rebuild_sql(self.stream, self.route.table_sql)
            if self.quirks is not None:
                self.quirks.fill_summary(self.client, self.route.runs_sql, select)
            else:
                run_query(  # results appended to the summary: a query, not DML
                    self.settings,
                    select,
                    name="the run summary's fill",
                    client=self.client,
                    timeout=FILL_TIMEOUT_S,
                    request_timeout=60,
                    retry=retry,
                    destination=self.route.runs_id,
                    write_disposition="WRITE_APPEND",
                )
        summary.labels = {**(summary.labels or {}), FILLED_LABEL: "yes"}
        self.client.update_table(summary, ["labels"], timeout=30, retry=retry)

    # --- the table's columns ----------------------------------------------------------

    def schema(self) -> list:
        """The table's columns as the writers write them: the stream's and those added."""
        from google.cloud import bigquery

        return bigquery_schema(self.stream) + [
            bigquery.SchemaField(name, kind, mode="NULLABLE") for name, kind in self.added
        ]

    def add_columns(self, new: tuple[tuple[str, str], ...] | list) -> None:
        """Add NULLABLE columns to the table: the stream's it lacks (a table made by an
        older version) and ``new`` ones; then note every column beyond the stream's."""
        from google.cloud import bigquery

        retry = quick_retry()
        table = self.client.get_table(self.route.table_id, timeout=30, retry=retry)
        have = {f.name.lower() for f in table.schema}
        wanted = self.types.schema_fields(
            column for column in self.stream.columns if column[2] == "NULLABLE"
        ) + [
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
                if self.quirks is not None:
                    self.quirks.columns_added(self.client, self.route.table_sql, missing)
            except Exception as error:
                from google.api_core.exceptions import PreconditionFailed

                if isinstance(error, PreconditionFailed):  # another member changed it first
                    return self.add_columns(new)
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
            (f.name, self.types.standard(f.field_type)) for f in table.schema if f.name not in own
        )
        if missing or self.added != before:  # added here, or by another member
            for callback in self._columns_changed:
                callback()

    def evolve(self, batch: Batch, stage: str) -> tuple[Batch, list[DeadLetter]]:
        """Fields of a newer contract (see :mod:`pipeline_lib.sinks.bigquery.evolution`):
        add the columns the policy adds, and leave out the records whose value does not
        fit its column (returned as dead letters of ``stage``)."""
        if not any(part.extras for part in batch.parts):
            return batch, []
        reserved = frozenset(name.lower() for name, *_ in self.stream.columns)
        add = self.settings.schema_updates == "add"
        for _ in range(3):  # plan, add, plan again against what the table now has
            added = {name.lower(): (name, kind) for name, kind in self.added}
            plan = evolution.plan(batch, added, reserved, add, self.route.table_id, stage)
            if not plan.new_columns:
                break
            with_retries(
                lambda plan=plan: self.add_columns(plan.new_columns),
                f"adding columns to {self.route.table_id}",
            )
        else:
            raise SinkError(f"the columns of {self.route.table_id} keep changing underneath")
        if not plan.refused:
            return batch, []
        parts = [part.take(keep) for part, keep in zip(batch.parts, plan.keep, strict=True) if keep]
        return Batch(parts, batch.closed_at, batch.group, batch.generation), plan.refused

    def check_schema(self, error: Exception) -> None:
        """Raise one clear SinkError if the table no longer has the columns the
        pipeline writes (a column dropped, or of another type): every batch would be
        refused, so stop with nothing committed rather than dead-letter them all."""
        try:
            table = self.client.get_table(self.route.table_id, timeout=30, retry=quick_retry())
        except Exception:  # cannot tell: treat the refusal as the rows'
            return
        have = {field.name: field.field_type for field in table.schema}
        problems = []
        for name, kind, *_ in self.stream.columns:
            found = have.get(name)
            if found is None:
                problems.append(f"column {name} is missing")
            elif not self.types.same(found, kind):
                problems.append(f"column {name} is {found}, the pipeline writes {kind}")
        if problems:
            raise SinkError(
                f"BigQuery table {self.route.table_id} changed underneath the pipeline: "
                f"{'; '.join(problems)} (the Write API refused the batch: {error}). Restore "
                "the columns, or point BQ_TABLE at a new table and run "
                "`python -m pipeline_lib setup`; nothing of this batch was committed."
            )

    # --- a batch through a writer -----------------------------------------------------

    def land(self, batch: Batch, land: Callable[[Batch], WriteResult], stage: str) -> WriteResult:
        """Land the batch with the writer's ``land`` (its fields of a newer contract as
        the policy says), then note it in the run summary before it counts as written.
        One batch at a time (two may be in flight): the columns a batch was checked
        against are the ones it is written with."""
        with self._write_lock:
            self.check_expiry(batch)
            batch, refused = self.evolve(batch, stage)
            result = land(batch)
        if len(batch):
            self.summarize(batch, result)
        result.rejected = refused + result.rejected
        return result

    def summarize(self, batch: Batch, result: WriteResult) -> None:
        """After a batch landed: note its runs and symbols in the run summary."""
        refused = {(letter.topic, letter.partition, letter.offset) for letter in result.rejected}
        self.run_summary.note(batch, refused)

    def _insert_summary(self, rows: list[dict[str, Any]]) -> None:
        if self.summary_by_load:
            return self._load_summary(rows)

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

    def _load_summary(self, rows: list[dict[str, Any]]) -> None:
        """The summary's rows by one load job (NDJSON): no streaming. At most one a
        batch, and for a (run, symbol) that keeps landing one a minute (EVERY_S)."""
        import io

        import orjson
        from google.cloud import bigquery

        def load() -> None:
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                schema=self.types.schema_fields(SUMMARY_COLUMNS),
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            )
            payload = b"\n".join(orjson.dumps(row) for row in rows)
            job = self.client.load_table_from_file(  # no size=: a resumable upload
                io.BytesIO(payload),
                self.route.runs_id,
                job_config=config,
                timeout=30,
                num_retries=0,
            )
            job.result(timeout=120, retry=quick_retry())

        with_retries(load, f"loading the run summary {self.route.runs_id}")

    # --- partitions that expire -------------------------------------------------------

    def partition_expiry(self) -> tuple[float, str] | None:
        """(days, what set them) after which the table's event-day partitions expire:
        the table's own partition expiration, else the dataset's default; None when
        nothing expires or the table is partitioned by landing time (its rows land in
        today's partition). Read once, before the first batch."""
        if self._expiry is not False:
            return self._expiry  # type: ignore[return-value]
        retry = quick_retry()
        table = self.client.get_table(self.route.table_id, timeout=30, retry=retry)
        partitioning = getattr(table, "time_partitioning", None)
        expiry: tuple[float, str] | None = None
        if partitioning is not None and (partitioning.field or "") == "ts":
            if partitioning.expiration_ms:
                expiry = (partitioning.expiration_ms / DAY_MS, "the table's partition expiration")
            else:
                dataset = self.client.get_dataset(
                    f"{self.settings.gcp_project}.{self.settings.bq_dataset}",
                    timeout=30,
                    retry=retry,
                )
                default = dataset.default_partition_expiration_ms
                if default:
                    expiry = (int(default) / DAY_MS, "the dataset's default partition expiration")
        self._expiry = expiry
        return expiry

    def check_expiry(self, batch: Batch, now: datetime | None = None) -> None:
        """Refuse, in one line, a batch whose oldest event lands in a partition that has
        expired already or expires within EXPIRY_MARGIN_DAYS: BigQuery would drop it
        without an error."""
        if not len(batch):
            return
        expiry = self.partition_expiry()
        if expiry is None:
            return
        oldest = oldest_event(batch)
        if oldest is None:
            return
        days, source = expiry
        age = ((now or datetime.now(UTC)) - oldest).total_seconds() / 86_400
        if age < days - EXPIRY_MARGIN_DAYS:
            return
        when = "have expired already" if age >= days else "expire within a day"
        raise SinkError(
            f"{self.route.table_id} is partitioned by event day and its partitions expire "
            f"after {days:g} days ({source}): this batch's events from {oldest:%Y-%m-%d} "
            f"would land in partitions that {when}, and BigQuery would drop them without "
            "an error. Either set BQ_PARTITION_BY=ingestion and a new BQ_TABLE "
            "(partitions by landing time), or use a dataset without partition "
            "expiration. Nothing of this batch was committed."
        )

    def close(self) -> None:
        """The summary's last rows (the newest event times seen)."""
        try:
            self.run_summary.flush(datetime.now(UTC))
        except Exception as error:  # the next consumer writes its own rows
            log.warning("run summary not brought up to date at close: %s", error)


def oldest_event(batch: Batch) -> datetime | None:
    """The earliest event time (``ts``) of a batch's records."""
    import pyarrow.compute as pc

    oldest = None
    for part in batch.parts:
        for chunk in part.chunks:
            if chunk.num_rows and "ts" in chunk.column_names:
                low = pc.min(chunk.column("ts")).as_py()
                if low is not None and (oldest is None or low < oldest):
                    oldest = low
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return oldest
