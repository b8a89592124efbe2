"""BigQuery sink on the Storage Write API: each Kafka record once in the raw table
itself, one call per batch.

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
halves, as the load sink does, to find the bad ones. A stream given up after an
error or a lost answer is finalized first, so that an append still on its way
cannot land after the retry has asked the table what it holds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline_lib.clients.google import bigquery_write_client
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch, WriteResult
from pipeline_lib.records.routes import Route
from pipeline_lib.sinks import SinkError, with_retries
from pipeline_lib.sinks.bigquery import BigQuerySink, batch_table, quick_retry

log = logging.getLogger(__name__)
MAX_REQUEST_ROWS = 20_000  # a 10 MB request is about 40k ticks: stay well below
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # and below 10 MB for wide records (news summaries)
# No call may block the writer for ever (the emulator was seen to leave an append
# unanswered): past this, the call fails, the stream is dropped, the batch retried.
CALL_TIMEOUT_S = 30.0


class StreamLost(PipelineError, ConnectionError):
    """The write stream vanished (the service restarted): write the batch again."""


class StorageWriteSink(BigQuerySink):
    """Lands each batch with one append to a COMMITTED write stream (see above).
    Shares the table, its schema, the dedup view and refused-row handling with the
    load-job sink it extends."""

    exactly_once = True  # ask the table, write at offsets (else: the default stream)

    def __init__(self, settings: Settings, stream: str | Route = "ticks", client: Any = None):
        super().__init__(settings, stream=stream)
        self._write_client = client
        self._lock = threading.Lock()  # one batch at a time: the stream's offsets
        # (topic, partition) -> (generation, offset after the last record committed)
        self._written: dict[tuple[str, int], tuple[int, int]] = {}
        self._stream: str | None = None  # this sink's COMMITTED write stream
        self._stream_generation: int | None = -2  # None: made at setup, for the first one
        self._stream_rows = 0  # rows appended to it: the next request's offset

    @property
    def write_client(self) -> Any:
        if self._write_client is None:
            self._write_client = bigquery_write_client(self.settings)
        return self._write_client

    def setup(self) -> None:
        """The table (as the load sink makes it), the Write API client connected, the
        first write stream made and the query client warmed now: at the first write,
        they made the first batch 0.5 s late (imports, connecting, the first
        CreateWriteStream, the first query)."""
        super().setup()
        import grpc
        from google.cloud.bigquery_storage_v1 import types  # noqa: F401

        try:  # and connected: the first call would wait for it (0.2 s on the emulator)
            grpc.channel_ready_future(self.write_client.transport.grpc_channel).result(
                timeout=CALL_TIMEOUT_S
            )
        except grpc.FutureTimeoutError:
            log.warning("the Storage Write API is not answering yet; the writes will retry")
            return
        if not self.exactly_once:
            return
        try:  # the first batch's stream, made before it is due
            self._open_stream(None)
        except Exception as error:
            log.warning("no write stream yet (%s); the first write makes one", error)
        try:  # the first query of a process takes 0.2 s more: a dry run (free) of one
            from google.cloud import bigquery

            sql = f"SELECT kafka_offset FROM {self.route.table_sql} LIMIT 0"  # noqa: S608
            config = bigquery.QueryJobConfig(dry_run=True)
            self.client.query(
                sql, job_config=config, timeout=CALL_TIMEOUT_S, retry=quick_retry(), job_retry=None
            )
        except Exception as error:
            log.warning("BigQuery did not answer a dry run (%s); the writes will retry", error)

    @property
    def table_path(self) -> str:
        to = self.route
        return f"projects/{to.project}/datasets/{to.dataset}/tables/{to.table}"

    # --- what the table holds ---------------------------------------------------------

    def held_offsets(self, parts: list[PartitionBatch]) -> dict[tuple[str, int], set[int]]:
        """Offsets of each part the table holds already, by (topic, partition): one
        query, pruned to the parts' event-time days and each part's offset range."""
        import pyarrow.compute as pc
        from google.cloud import bigquery

        times = [pc.min_max(part.table.column("ts")).as_py() for part in parts]
        parameters = [
            bigquery.ScalarQueryParameter("first_ts", "TIMESTAMP", min(t["min"] for t in times)),
            bigquery.ScalarQueryParameter("last_ts", "TIMESTAMP", max(t["max"] for t in times)),
        ]
        ranges = []
        for i, part in enumerate(parts):  # the text names parameters only
            ranges.append(
                f"(kafka_topic = @t{i} AND kafka_partition = @p{i} "
                f"AND kafka_offset BETWEEN @first{i} AND @last{i})"
            )
            parameters += [
                bigquery.ScalarQueryParameter(f"t{i}", "STRING", part.topic),
                bigquery.ScalarQueryParameter(f"p{i}", "INT64", part.partition),
                bigquery.ScalarQueryParameter(f"first{i}", "INT64", part.offsets[0]),
                bigquery.ScalarQueryParameter(f"last{i}", "INT64", part.offsets[-1]),
            ]
        where = f"ts BETWEEN @first_ts AND @last_ts AND ({' OR '.join(ranges)})"
        columns = "DISTINCT kafka_topic, kafka_partition, kafka_offset"
        sql = f"SELECT {columns} FROM {self.route.table_sql} WHERE {where}"  # noqa: S608
        config = bigquery.QueryJobConfig(query_parameters=parameters)
        job = self.client.query(  # bounded: the client's own retries take 10 minutes
            sql, job_config=config, timeout=CALL_TIMEOUT_S, retry=quick_retry(), job_retry=None
        )
        held: dict[tuple[str, int], set[int]] = {(p.topic, p.partition): set() for p in parts}
        rows = job.result(timeout=CALL_TIMEOUT_S, retry=quick_retry(), job_retry=None)
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

    def check_table_schema(self, error: Exception) -> None:
        """Raise one clear SinkError if the table no longer has the columns the
        pipeline writes (a column dropped, or of another type): every batch would be
        refused, so stop with nothing committed rather than dead-letter them all."""
        from pipeline_lib.sinks.bigquery import bigquery_schema

        try:
            table = self.client.get_table(
                self.route.table_id, timeout=CALL_TIMEOUT_S, retry=quick_retry()
            )
        except Exception:  # cannot tell: treat the refusal as the rows'
            return
        have = {field.name: field.field_type for field in table.schema}
        problems = []
        for field in bigquery_schema(self.stream):
            found = have.get(field.name)
            if found is None:
                problems.append(f"column {field.name} is missing")
            elif _standard(found) != _standard(field.field_type):
                problems.append(
                    f"column {field.name} is {found}, the pipeline writes {field.field_type}"
                )
        if problems:
            raise SinkError(
                f"BigQuery table {self.route.table_id} changed underneath the pipeline: "
                f"{'; '.join(problems)} (the Write API refused the batch: {error}). Restore "
                "the columns, or point BQ_TABLE at a new table and run "
                "`python -m pipeline_lib setup`; nothing of this batch was committed."
            )

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
        todo = self._unwritten(batch, continuing) if self.exactly_once else batch
        location = [f"bq://{self.route.table_id}"]
        if len(todo) == 0:
            return WriteResult(self.name, 0, location)
        table = batch_table(todo, self.stream, self.added)
        origins = [(part, i) for part in todo.parts for i in range(len(part))]
        rejected: list[DeadLetter] = []
        landed = 0
        while table.num_rows:
            try:
                appended, refused = self._append_all(table, batch.generation)
            except _RequestRefused as error:
                self.check_table_schema(error)
                landed += error.appended  # requests before the refused one landed
                rest = origins[error.appended :]
                log.warning(
                    "the Write API refused %d rows whole (%s); loading them by halves",
                    len(rest),
                    error,
                )
                loaded = self._write_rows(_rows_of(todo, rest))
                return WriteResult(
                    self.name, landed + loaded.rows, location, rejected + loaded.rejected
                )
            landed += appended
            for index, message in sorted(refused.items()):
                part, i = origins[index]
                reason = f"BigQuery rejected the row: {message}"[:1000]
                rejected.append(part.letter(i, reason, self.name))
            keep = [i for i in range(appended, table.num_rows) if i not in refused]
            table = table.take(keep) if keep else table.slice(0, 0)
            origins = [origins[i] for i in keep]
        return WriteResult(self.name, landed, location, rejected)

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

        if not self.exactly_once:
            self._stream = f"{self.table_path}/streams/_default"
        elif self._stream is not None and self._stream_generation is None:
            self._stream_generation = generation  # made at setup: the first generation's
        elif self._stream is None or self._stream_generation != generation:
            self._open_stream(generation)
        if self.fence_check is not None:  # the last step before rows become visible
            self.fence_check(generation, f"appending {table.num_rows} rows")
        try:
            offset = self._stream_rows if self.exactly_once else None
            appended, refused = self._append(self._stream, table, offset)
        except (gexc.NotFound, gexc.AlreadyExists, gexc.OutOfRange, gexc.Aborted) as error:
            self._give_up_stream()  # gone (the service restarted) or out of step
            raise StreamLost(f"write stream lost: {error}") from error
        except BaseException:
            self._give_up_stream()  # its state is unknown now
            raise
        self._stream_rows += appended
        return appended, refused

    def schema_changed(self) -> None:
        """New columns: the next append opens a new stream (real BigQuery fixes a
        stream's columns when it is made, and shows a new column to new streams some
        minutes after it is added: until then a refused append lands through load
        jobs, as any request refused whole). Called under the sink's write lock."""
        if self.exactly_once and self._stream is not None:
            self._give_up_stream()

    def _give_up_stream(self) -> None:
        """Finalize this sink's COMMITTED stream and forget it: an append still on its
        way (its answer lost, its deadline passed) is refused from now on instead of
        landing after the retry has asked the table what it holds. Best effort: a
        stream the service lost, or a service that does not answer within the
        deadline, leaves that window open (the dedup view still shows each event once)."""
        stream, self._stream = self._stream, None
        if not self.exactly_once or stream is None:
            return
        try:
            self.write_client.finalize_write_stream(name=stream, timeout=CALL_TIMEOUT_S, retry=None)
        except Exception as error:
            log.info("write stream %s not finalized (%s)", stream, error)

    def _open_stream(self, generation: int | None) -> None:
        """A new COMMITTED stream for ``generation`` (None: the first one seen)."""
        from google.api_core import exceptions as gexc
        from google.cloud.bigquery_storage_v1 import types

        try:
            created = self.write_client.create_write_stream(
                parent=self.table_path,
                write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
                timeout=CALL_TIMEOUT_S,
                retry=None,  # with_retries retries; the library's own would wait 20 min
            )
        except gexc.NotFound as error:
            raise SinkError(
                f"BigQuery table {self.route.table_id} not found: {error}. Create it "
                "with `python -m pipeline_lib setup`."
            ) from error
        self._stream, self._stream_generation, self._stream_rows = created.name, generation, 0

    def _append(
        self, stream_name: str, table: Any, offset: int | None
    ) -> tuple[int, dict[int, str]]:
        """Every row of ``table`` at ``offset`` on the stream (None: wherever the stream
        ends, as the default stream wants), in requests of at most MAX_REQUEST_ROWS (the
        first carries the Arrow schema)."""
        from google.api_core import exceptions as gexc
        from google.cloud.bigquery_storage_v1 import types

        schema = types.ArrowSchema(serialized_schema=table.schema.serialize().to_pybytes())
        # One request per MAX_REQUEST_ROWS rows (and MAX_REQUEST_BYTES), not per chunk:
        # a batch's table joins its polls' chunks, and a request per chunk landed a
        # batch bit by bit.
        table = table.combine_chunks()
        row_bytes = max(1, table.nbytes // max(1, table.num_rows))
        per_request = max(1, min(MAX_REQUEST_ROWS, MAX_REQUEST_BYTES // row_bytes))
        requests, sizes = [], []
        for piece in table.to_batches(max_chunksize=per_request):
            rows = types.ArrowRecordBatch(serialized_record_batch=piece.serialize().to_pybytes())
            request = types.AppendRowsRequest(
                write_stream=stream_name,  # the emulator wants it on every request
                arrow_rows=types.AppendRowsRequest.ArrowData(rows=rows),
            )
            if offset is not None:
                request.offset = offset + sum(sizes)
            if offset is None or not requests:  # each call's first request
                request.arrow_rows.writer_schema = schema
            requests.append(request)
            sizes.append(piece.num_rows)
        # On the default stream nothing refuses a request twice: one request per call,
        # so that those after a refused one are not sent (they would land twice).
        calls = (
            [[i] for i in range(len(requests))] if offset is None else [list(range(len(requests)))]
        )
        appended = 0
        for call in calls:
            responses = self.write_client.append_rows(  # its own retry would wait a day
                iter([requests[i] for i in call]), timeout=CALL_TIMEOUT_S, retry=None
            )
            answered = 0
            try:
                for i, response in zip(call, responses, strict=False):
                    answered += 1
                    if response.row_errors:
                        refused = {appended + e.index: e.message for e in response.row_errors}
                        return appended, refused
                    code = response.error.code
                    if code == 3:  # INVALID_ARGUMENT: the request refused whole
                        raise _RequestRefused(f"code 3: {response.error.message}", appended)
                    if code:  # NOT_FOUND (a restart), ALREADY_EXISTS, OUT_OF_RANGE, UNAVAILABLE
                        raise StreamLost(f"append refused (code {code}): {response.error.message}")
                    appended += sizes[i]
            except gexc.InvalidArgument as error:  # the same refusal, raised by the call
                # (e.g. a column the stream does not know yet: real BigQuery shows a new
                # column to write streams minutes after it is added)
                raise _RequestRefused(str(error), appended) from error
            if answered < len(call):
                break
        if appended < table.num_rows:
            raise StreamLost(f"{table.num_rows - appended} rows got no answer")
        return appended, {}


def _rows_of(batch: Batch, origins: list[tuple[PartitionBatch, int]]) -> Batch:
    """The rows ``origins`` names ((part, index) pairs, in order) as a batch of their own."""
    chosen: dict[int, tuple[PartitionBatch, list[int]]] = {}
    for part, i in origins:
        chosen.setdefault(id(part), (part, []))[1].append(i)
    parts = [part.take(indices) for part, indices in chosen.values()]
    return Batch(parts, batch.closed_at, batch.group, batch.generation)


def _standard(kind: str) -> str:
    """Legacy and standard SQL names of one BigQuery type, as one."""
    return {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(kind, kind)


class DefaultStreamSink(StorageWriteSink):
    """At least once through the table's default stream (see the module's text): no
    stream to create, no offsets, no query before a write; duplicates of a replayed
    batch are left to the dedup view."""

    exactly_once = False


class _RequestRefused(PipelineError):
    """An append refused whole (a type that does not fit the table), after
    ``appended`` rows of the earlier requests of the call had landed."""

    def __init__(self, message: str, appended: int = 0) -> None:
        super().__init__(message)
        self.appended = appended
