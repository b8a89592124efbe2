"""BigQuery sink on the Storage Write API: each batch one atomic commit, each Kafka
record once in the raw table itself.

Load jobs are capped at 1,500 per table per day on real BigQuery (a 1 s flush spends
that in 25 minutes); the Storage Write API is what streaming landers use instead.

**Each batch is atomic.** Its rows go to a PENDING write stream of the table, as the
batch's Arrow table (the columns the consumer decoded), then the stream is finalized
and committed with ``BatchCommitWriteStreams`` (``parent`` = the table: real BigQuery
commits streams of one table only). Until the commit nothing is visible; after it,
all of the batch is.

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

**What remains.** Two writers of one partition at once: a member frozen after its
last fence check (:mod:`pipeline_lib.kafka_io.membership`) and before its commit
call, while the group gives its partitions to another member that checks the table
before the frozen one's commit lands. The window is that one call; the dedup view
still shows each event once.

Rows BigQuery refuses (``row_errors``) are left out and returned as dead letters
with their original key, value and headers; a request refused whole (a type that
does not fit) falls back to NDJSON load jobs split in halves, as the load sink does.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline_lib.clients import bigquery_write_client
from pipeline_lib.config import Settings
from pipeline_lib.errors import PipelineError
from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch, WriteResult
from pipeline_lib.routes import Route
from pipeline_lib.sinks import SinkError, with_retries
from pipeline_lib.sinks.bigquery import BigQuerySink, batch_table

log = logging.getLogger(__name__)
MAX_REQUEST_ROWS = 20_000  # a 10 MB request is about 40k ticks: stay well below


class StreamLost(PipelineError, ConnectionError):
    """The write stream vanished (the service restarted): write the batch again."""


class StorageWriteSink(BigQuerySink):
    """Lands each batch through a PENDING write stream committed as one (see above).
    Shares the table, its schema, the dedup view and refused-row handling with the
    load-job sink it extends."""

    def __init__(self, settings: Settings, stream: str | Route = "ticks", client: Any = None):
        super().__init__(settings, stream=stream)
        self._write_client = client
        # (topic, partition) -> (generation, offset after the last record committed)
        self._written: dict[tuple[str, int], tuple[int, int]] = {}

    @property
    def write_client(self) -> Any:
        if self._write_client is None:
            self._write_client = bigquery_write_client(self.settings)
        return self._write_client

    @property
    def table_path(self) -> str:
        to = self.route
        return f"projects/{to.project}/datasets/{to.dataset}/tables/{to.table}"

    # --- what the table holds ---------------------------------------------------------

    def held_offsets(self, part: PartitionBatch) -> set[int]:
        """Offsets of ``part`` the table holds already (a query pruned to the part's
        offset range and event-time days)."""
        import pyarrow.compute as pc
        from google.cloud import bigquery

        times = pc.min_max(part.table.column("ts")).as_py()
        sql = (
            f"SELECT DISTINCT kafka_offset FROM {self.route.table_sql} "  # noqa: S608 - checked
            "WHERE ts BETWEEN @first_ts AND @last_ts AND kafka_topic = @topic "
            "AND kafka_partition = @partition AND kafka_offset BETWEEN @first AND @last"
        )
        parameters = [
            bigquery.ScalarQueryParameter("first_ts", "TIMESTAMP", times["min"]),
            bigquery.ScalarQueryParameter("last_ts", "TIMESTAMP", times["max"]),
            bigquery.ScalarQueryParameter("topic", "STRING", part.topic),
            bigquery.ScalarQueryParameter("partition", "INT64", part.partition),
            bigquery.ScalarQueryParameter("first", "INT64", part.offsets[0]),
            bigquery.ScalarQueryParameter("last", "INT64", part.offsets[-1]),
        ]
        config = bigquery.QueryJobConfig(query_parameters=parameters)
        rows = self.client.query(sql, job_config=config).result(timeout=60)
        return {row.kafka_offset for row in rows}

    def _unwritten(self, batch: Batch, continuing: set[tuple[str, int]]) -> Batch:
        """The batch without the records the table holds already; the parts of
        ``continuing`` partitions follow what this sink committed: nothing to ask."""
        parts = []
        for part in batch.parts:
            if not len(part):
                continue
            if (part.topic, part.partition) in continuing:
                parts.append(part)
                continue
            held = self.held_offsets(part)
            if held:
                log.info(
                    "partition %d: %d of %d records of this batch are in %s already; left out",
                    part.partition,
                    len(held),
                    len(part),
                    self.route.table_id,
                )
                keep = [i for i, offset in enumerate(part.offsets) if offset not in held]
                if not keep:
                    continue
                part = part.take(keep)
            parts.append(part)
        return Batch(parts, batch.closed_at, batch.group, batch.generation)

    # --- writing ------------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
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
        todo = self._unwritten(batch, continuing)
        if len(todo) == 0:
            return WriteResult(self.name, 0, [f"bq://{self.route.table_id}"])
        table = batch_table(todo, self.stream)
        origins = [(part, i) for part in todo.parts for i in range(len(part))]
        rejected: list[DeadLetter] = []
        while True:
            try:
                refused = self._commit(table)
            except _RequestRefused as error:
                log.warning("the Write API refused the batch whole (%s); loading by halves", error)
                return self._write_rows(todo)
            if not refused:
                break
            for index, message in sorted(refused.items()):
                part, i = origins[index]
                rejected.append(
                    part.letter(i, f"BigQuery rejected the row: {message}"[:1000], self.name)
                )
            keep = [i for i in range(table.num_rows) if i not in refused]
            table = table.take(keep)
            origins = [origins[i] for i in keep]
            if not keep:
                break
        return WriteResult(self.name, table.num_rows, [f"bq://{self.route.table_id}"], rejected)

    def _commit(self, table: Any) -> dict[int, str]:
        """Append ``table`` to a new PENDING stream, finalize and commit it. Returns the
        rows refused (index -> reason; then nothing was committed), else {}."""
        from google.api_core import exceptions as gexc
        from google.cloud.bigquery_storage_v1 import types

        client = self.write_client
        try:
            stream = client.create_write_stream(
                parent=self.table_path,
                write_stream=types.WriteStream(type_=types.WriteStream.Type.PENDING),
            )
        except gexc.NotFound as error:
            raise SinkError(
                f"BigQuery table {self.route.table_id} not found: {error}. Create it with "
                "`python -m pipeline_lib setup`."
            ) from error
        try:
            refused = self._append(stream.name, table)
            if refused:
                return refused
            client.finalize_write_stream(name=stream.name)
            response = client.batch_commit_write_streams(
                request=types.BatchCommitWriteStreamsRequest(
                    parent=self.table_path, write_streams=[stream.name]
                )
            )
        except gexc.NotFound as error:
            raise StreamLost(f"write stream {stream.name} is gone: {error}") from error
        if response.stream_errors:
            errors = "; ".join(e.error_message for e in response.stream_errors)
            raise StreamLost(f"the commit of {stream.name} was refused: {errors}")
        return {}

    def _append(self, stream_name: str, table: Any) -> dict[int, str]:
        """Every row of ``table`` on the stream, in requests of at most MAX_REQUEST_ROWS
        (the first carries the Arrow schema). Rows refused are returned by index."""
        from google.cloud.bigquery_storage_v1 import types

        schema = types.ArrowSchema(serialized_schema=table.schema.serialize().to_pybytes())
        requests, starts, start = [], [], 0
        for i, piece in enumerate(table.to_batches(max_chunksize=MAX_REQUEST_ROWS)):
            rows = types.ArrowRecordBatch(serialized_record_batch=piece.serialize().to_pybytes())
            request = types.AppendRowsRequest(
                write_stream=stream_name,  # the emulator wants it on every request
                arrow_rows=types.AppendRowsRequest.ArrowData(rows=rows),
            )
            if i == 0:
                request.arrow_rows.writer_schema = schema
            requests.append(request)
            starts.append(start)
            start += piece.num_rows
        refused: dict[int, str] = {}
        responses = self.write_client.append_rows(iter(requests))
        for start, response in zip(starts, responses, strict=False):
            for row_error in response.row_errors:
                refused[start + row_error.index] = row_error.message
            if response.error.code and not response.row_errors:
                if response.error.code in (5, 14):  # NOT_FOUND, UNAVAILABLE: try again
                    raise StreamLost(response.error.message)
                raise _RequestRefused(f"code {response.error.code}: {response.error.message}")
        return refused


class _RequestRefused(PipelineError):
    """An append refused whole (a type that does not fit the table)."""
