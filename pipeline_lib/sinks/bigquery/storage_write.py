"""The Storage Write API writers: each Kafka record once in the raw table itself, one
call per batch (:class:`StorageWriteSink`), or at least once through the table's
default stream (:class:`DefaultStreamSink`). Neither extends another writer: each
holds a table manager, the Write API and a row loader.

Load jobs are capped at 1,500 per table per day on real BigQuery (a 1 s flush spends
that in 25 minutes); the Storage Write API is what streaming landers use instead.

**The stream.** The sink appends each batch, as the Arrow table the consumer decoded,
to a COMMITTED write stream of its own at explicit offsets: a request's rows become
visible on its append, all or none, and an offset is never taken twice. One stream
serves every batch of a group generation (Google advises against creating streams
at a high rate): one call per batch. Any doubt about the stream (an error, a lost
answer, a new generation, the service restarted) opens a new one.

**Each record once.** Kafka's committed offset alone cannot prevent duplicates: a
batch may be committed in BigQuery and its Kafka commit lost (a crash between the
two, a rebalance, a refused commit). So the sink asks BigQuery itself. Per partition
it remembers the offset after the last record it committed there, in the group
generation it committed it in. A batch that continues exactly from there, in that
generation, is written as it is. Any other batch (the first after a start, an
assignment, a rewind or a failed write) first queries which of its offsets the table
already holds (``kafka_topic``, ``kafka_partition``, the batch's offset range and
event-time range, so real BigQuery prunes to the batch's day partitions), and leaves
those rows out.

**Zombies.** Right before the append the sink checks once more that the membership
the batch was read in is confirmed and current (:mod:`pipeline_lib.kafka_io.membership`,
through ``fence_check``, which the committer sets). What remains: a member frozen
during the append call itself, while the group gives its partitions to another member
that checks the table before the frozen one's rows land. The window is that one
call; the dedup view still shows each event once.

**At least once** (:class:`DefaultStreamSink`, ``BQ_WRITE=storage-at-least-once``):
the table's default stream, no offsets, no question to the table before a write. A
batch written and not committed in Kafka lands again when it is read again; the
dedup view shows it once. One call per batch and nothing more: the lowest latency.

Rows BigQuery refuses (``row_errors``) are left out and returned as dead letters
with their original key, value and headers. A request refused whole is checked
against the table first: a column dropped or retyped underneath stops the sink with
one line; otherwise the rows from that request on go to NDJSON load jobs split in
halves, as the load-job writer does, to find the bad ones. A stream given up after an
error or a lost answer is finalized first, so that an append still on its way
cannot land after the retry has asked the table what it holds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline_lib.clients.google import dry_run, run_query
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch, PartitionBatch, WriteResult
from pipeline_lib.records.routes import Route
from pipeline_lib.sinks import Sink, with_retries
from pipeline_lib.sinks.bigquery.load_jobs import RowLoader
from pipeline_lib.sinks.bigquery.table_manager import TableManager, quick_retry
from pipeline_lib.sinks.bigquery.write_api import (
    CALL_TIMEOUT_S,
    StreamLost,
    WriteApi,
    append_batch,
)

log = logging.getLogger(__name__)


class StorageWriteSink(Sink):
    """Exactly once: each batch one append to a COMMITTED write stream at offsets (see
    above). Holds the table manager (the table, its columns, the run summary), the
    Write API and a row loader (a request refused whole lands by load jobs)."""

    name = "bigquery"

    def __init__(
        self,
        settings: Settings,
        stream: str | Route = "ticks",
        client: Any = None,
        table_manager: TableManager | None = None,
    ) -> None:
        self.settings = settings
        self.table_manager = table_manager or TableManager(settings, stream)
        self.route = self.table_manager.route
        self.stream = self.table_manager.stream
        self.write_api = WriteApi(settings, self.route, client)
        self.loader = RowLoader(self.table_manager, self.name)
        self.table_manager.on_columns_changed(self._columns_changed)
        self._lock = threading.Lock()  # one batch at a time: the stream's offsets
        # (topic, partition) -> (generation, offset after the last record committed)
        self._written: dict[tuple[str, int], tuple[int, int]] = {}
        self._stream: str | None = None  # this sink's COMMITTED write stream
        self._stream_generation: int | None = -2  # None: made at setup, for the first one
        self._stream_rows = 0  # rows appended to it: the next request's offset

    @property
    def table_path(self) -> str:
        return self.write_api.table_path

    def setup(self) -> None:
        """The table (see the table manager), the Write API client connected, the
        first write stream made and the query client warmed now: at the first write,
        they made the first batch 0.5 s late (imports, connecting, the first
        CreateWriteStream, the first query)."""
        self.table_manager.setup()
        if not self.write_api.connect():
            return
        try:  # the first batch's stream, made before it is due
            self._open_stream(None)
        except Exception as error:
            log.warning("no write stream yet (%s); the first write makes one", error)
        try:  # the first query of a process takes 0.2 s more: a dry run (free) of one
            sql = f"SELECT kafka_offset FROM {self.route.table_sql} LIMIT 0"  # noqa: S608
            dry_run(
                self.settings,
                sql,
                client=self.table_manager.client,
                request_timeout=CALL_TIMEOUT_S,
                retry=quick_retry(),
            )
        except Exception as error:
            log.warning("BigQuery did not answer a dry run (%s); the writes will retry", error)

    def write(self, batch: Batch) -> WriteResult:
        """Land the batch through the table manager (added columns, the run summary)."""
        return self.table_manager.land(batch, self._land, self.name)

    def close(self) -> None:
        self.table_manager.close()

    # --- what the table holds ---------------------------------------------------------

    def held_offsets(self, parts: list[PartitionBatch]) -> dict[tuple[str, int], set[int]]:
        """Offsets of each part the table holds already, by (topic, partition): one
        query, pruned to the parts' event-time days and each part's offset range."""
        import pyarrow.compute as pc
        from google.cloud import bigquery

        types = {name: kind for name, kind, *_ in self.stream.columns}

        def parameter(name: str, column: str, value: Any) -> Any:  # typed as its column
            return bigquery.ScalarQueryParameter(name, types[column], value)

        times = [pc.min_max(part.table.column("ts")).as_py() for part in parts]
        parameters = [
            parameter("first_ts", "ts", min(t["min"] for t in times)),
            parameter("last_ts", "ts", max(t["max"] for t in times)),
        ]
        ranges = []
        for i, part in enumerate(parts):  # the text names parameters only
            ranges.append(
                f"(kafka_topic = @t{i} AND kafka_partition = @p{i} "
                f"AND kafka_offset BETWEEN @first{i} AND @last{i})"
            )
            parameters += [
                parameter(f"t{i}", "kafka_topic", part.topic),
                parameter(f"p{i}", "kafka_partition", part.partition),
                parameter(f"first{i}", "kafka_offset", part.offsets[0]),
                parameter(f"last{i}", "kafka_offset", part.offsets[-1]),
            ]
        where = f"ts BETWEEN @first_ts AND @last_ts AND ({' OR '.join(ranges)})"
        columns = "DISTINCT kafka_topic, kafka_partition, kafka_offset"
        sql = f"SELECT {columns} FROM {self.route.table_sql} WHERE {where}"  # noqa: S608
        rows = run_query(  # bounded: the client's own retries take 10 min
            self.settings,
            sql,
            name="held offsets",
            parameters=parameters,
            client=self.table_manager.client,
            timeout=CALL_TIMEOUT_S,
            request_timeout=CALL_TIMEOUT_S,
            retry=quick_retry(),
            retry_job=False,
        )
        held: dict[tuple[str, int], set[int]] = {(p.topic, p.partition): set() for p in parts}
        for row in rows:
            held[(row.kafka_topic, row.kafka_partition)].add(row.kafka_offset)
        return held

    def _unwritten(self, batch: Batch, continuing: set[tuple[str, int]]) -> Batch:
        """The batch without the records the table holds already; the parts of
        ``continuing`` partitions follow what this sink committed: nothing to ask."""
        parts = [part for part in batch.parts if len(part)]
        unsure = [part for part in parts if (part.topic, part.partition) not in continuing]
        if not unsure:
            return Batch(parts, batch.closed_at, batch.group, batch.generation)
        held = self.held_offsets(unsure)
        kept = []
        for part in parts:
            key = (part.topic, part.partition)
            have = held[key] if key not in continuing else set()
            if have:
                log.info(
                    "partition %d: %d of %d records of this batch are in %s already; left out",
                    part.partition,
                    len(have),
                    len(part),
                    self.route.table_id,
                )
                keep = [i for i, offset in enumerate(part.offsets) if offset not in have]
                if not keep:
                    continue
                part = part.take(keep)
            kept.append(part)
        return Batch(kept, batch.closed_at, batch.group, batch.generation)

    # --- writing ------------------------------------------------------------------------

    def _land(self, batch: Batch) -> WriteResult:
        with self._lock:  # SinkConsumer(max_inflight=2) may call it from two threads
            return self._write(batch)

    def _write(self, batch: Batch) -> WriteResult:
        location = [f"bq://{self.route.table_id}"]
        if len(batch) == 0:
            return WriteResult(self.name, 0, location)
        continuing = {
            (p.topic, p.partition)
            for p in batch.parts
            if len(p)
            and self._written.get((p.topic, p.partition)) == (batch.generation, p.offsets[0])
        }
        for part in batch.parts:  # unknown until this write ends well
            self._written.pop((part.topic, part.partition), None)
        attempts = iter([continuing])  # a retry asks the table: the failed try may have landed

        def attempt() -> WriteResult:
            return self._write_once(batch, next(attempts, set()))

        result = with_retries(attempt, f"writing {len(batch)} rows to {self.route.table_id}")
        for part in batch.parts:
            if len(part):
                self._written[(part.topic, part.partition)] = (
                    batch.generation,
                    part.offsets[-1] + 1,
                )
        return result

    def _write_once(self, batch: Batch, continuing: set[tuple[str, int]]) -> WriteResult:
        return append_batch(
            self._unwritten(batch, continuing),
            self.name,
            self.table_manager,
            lambda table: self._append_all(table, batch.generation),
            self._write_rows,
        )

    def _write_rows(self, batch: Batch) -> WriteResult:
        """The fallback: NDJSON load jobs, refused rows isolated by halves."""
        return self.loader.write_rows(batch)

    def _append_all(self, table: Any, generation: int) -> tuple[int, dict[int, str]]:
        """Append ``table`` to this sink's COMMITTED stream at its next offsets.

        Returns how many leading rows were appended and the rows refused (by index,
        within the first request that failed; later requests are not appended). A
        COMMITTED stream makes each row visible on its append (one request is atomic)
        and refuses an offset twice, and one stream serves every batch of a group
        generation: one call per batch and few streams created, as Google advises.
        Any doubt about the stream (an error, a new generation) opens a new one, and
        the retry asks the table what it holds first."""
        from google.api_core import exceptions as gexc

        if self._stream is not None and self._stream_generation is None:
            self._stream_generation = generation  # made at setup: the first generation's
        elif self._stream is None or self._stream_generation != generation:
            self._open_stream(generation)
        if self.fence_check is not None:  # the last step before rows become visible
            self.fence_check(generation, f"appending {table.num_rows} rows")
        try:
            appended, refused = self.write_api.append(self._stream, table, self._stream_rows)
        except (gexc.NotFound, gexc.AlreadyExists, gexc.OutOfRange, gexc.Aborted) as error:
            self._give_up_stream()  # gone (the service restarted) or out of step
            raise StreamLost(f"write stream lost: {error}") from error
        except BaseException:
            self._give_up_stream()  # its state is unknown now
            raise
        self._stream_rows += appended
        return appended, refused

    def _columns_changed(self) -> None:
        """New columns: the next append opens a new stream (real BigQuery fixes a
        stream's columns when it is made, and shows a new column to new streams some
        minutes after it is added: until then a refused append lands through load
        jobs, as any request refused whole). Called under the table's write lock."""
        if self._stream is not None:
            self._give_up_stream()

    def _give_up_stream(self) -> None:
        """Finalize this sink's COMMITTED stream and forget it: an append still on its
        way (its answer lost, its deadline passed) is refused from now on instead of
        landing after the retry has asked the table what it holds. Best effort: a
        stream the service lost, or a service that does not answer within the
        deadline, leaves that window open (the dedup view still shows each event once)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self.write_api.finalize(stream)

    def _open_stream(self, generation: int | None) -> None:
        """A new COMMITTED stream for ``generation`` (None: the first one seen)."""
        name = self.write_api.create_committed_stream()
        self._stream, self._stream_generation, self._stream_rows = name, generation, 0


class DefaultStreamSink(Sink):
    """At least once through the table's default stream (see the module's text): no
    stream to create, no offsets, no query before a write; duplicates of a replayed
    batch are left to the dedup view. Holds what :class:`StorageWriteSink` holds."""

    name = "bigquery"

    def __init__(
        self,
        settings: Settings,
        stream: str | Route = "ticks",
        client: Any = None,
        table_manager: TableManager | None = None,
    ) -> None:
        self.settings = settings
        self.table_manager = table_manager or TableManager(settings, stream)
        self.route = self.table_manager.route
        self.stream = self.table_manager.stream
        self.write_api = WriteApi(settings, self.route, client)
        self.loader = RowLoader(self.table_manager, self.name)
        self._lock = threading.Lock()  # one batch at a time, as the other writers

    @property
    def table_path(self) -> str:
        return self.write_api.table_path

    def setup(self) -> None:
        """The table (see the table manager) and the Write API client connected now."""
        self.table_manager.setup()
        self.write_api.connect()

    def write(self, batch: Batch) -> WriteResult:
        """Land the batch through the table manager (added columns, the run summary)."""
        return self.table_manager.land(batch, self._land, self.name)

    def close(self) -> None:
        self.table_manager.close()

    def _land(self, batch: Batch) -> WriteResult:
        with self._lock:
            return with_retries(
                lambda: append_batch(
                    batch,
                    self.name,
                    self.table_manager,
                    lambda table: self._append(table, batch.generation),
                    self._write_rows,
                ),
                f"writing {len(batch)} rows to {self.route.table_id}",
            )

    def _write_rows(self, batch: Batch) -> WriteResult:
        """The fallback: NDJSON load jobs, refused rows isolated by halves."""
        return self.loader.write_rows(batch)

    def _append(self, table: Any, generation: int) -> tuple[int, dict[int, str]]:
        """Append ``table`` to the default stream, one request per call (nothing
        refuses a request twice there)."""
        from google.api_core import exceptions as gexc

        if self.fence_check is not None:  # the last step before rows become visible
            self.fence_check(generation, f"appending {table.num_rows} rows")
        try:
            return self.write_api.append(f"{self.table_path}/streams/_default", table, None)
        except (gexc.NotFound, gexc.AlreadyExists, gexc.OutOfRange, gexc.Aborted) as error:
            raise StreamLost(f"write stream lost: {error}") from error
