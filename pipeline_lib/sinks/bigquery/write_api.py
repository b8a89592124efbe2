"""The Storage Write API as both of its writers use it: the client, an Arrow table
appended in requests under the size caps, and what an append's answer means for a
batch (rows refused, a request refused whole, a stream lost).

Held, not inherited, by both writers of :mod:`pipeline_lib.sinks.bigquery.storage_write`:
``StorageWriteSink`` appends to COMMITTED streams at offsets, ``DefaultStreamSink`` to
the table's default stream; each hands :func:`append_batch` its own way to append.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline_lib.clients.google import bigquery_write_client
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch, WriteResult
from pipeline_lib.records.routes import Route
from pipeline_lib.sinks import SinkError
from pipeline_lib.sinks.bigquery.rows import batch_table
from pipeline_lib.sinks.bigquery.table_manager import TableManager

log = logging.getLogger(__name__)
MAX_REQUEST_ROWS = 20_000  # a 10 MB request is about 40k ticks: stay well below
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # and below 10 MB for wide records (news summaries)
# No call may block the writer for ever (the emulator was seen to leave an append
# unanswered): past this, the call fails, the stream is dropped, the batch retried.
CALL_TIMEOUT_S = 30.0


class StreamLost(PipelineError, ConnectionError):
    """The write stream vanished (the service restarted): write the batch again."""


class RequestRefused(PipelineError):
    """An append refused whole (a type that does not fit the table), after
    ``appended`` rows of the earlier requests of the call had landed."""

    def __init__(self, message: str, appended: int = 0) -> None:
        super().__init__(message)
        self.appended = appended


class WriteApi:
    """The Storage Write API client of one table (made on first use when not given)."""

    def __init__(self, settings: Settings, to: Route, client: Any = None) -> None:
        self.settings = settings
        self.route = to
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = bigquery_write_client(self.settings)
        return self._client

    @property
    def table_path(self) -> str:
        to = self.route
        return f"projects/{to.project}/datasets/{to.dataset}/tables/{to.table}"

    def connect(self) -> bool:
        """Connect now (the first call would wait for it: 0.2 s on the emulator);
        False when the service does not answer yet."""
        import grpc
        from google.cloud.bigquery_storage_v1 import types  # noqa: F401 - imported now

        try:
            grpc.channel_ready_future(self.client.transport.grpc_channel).result(
                timeout=CALL_TIMEOUT_S
            )
        except grpc.FutureTimeoutError:
            log.warning("the Storage Write API is not answering yet; the writes will retry")
            return False
        return True

    def create_committed_stream(self) -> str:
        """A new COMMITTED stream on the table: its name."""
        from google.api_core import exceptions as gexc
        from google.cloud.bigquery_storage_v1 import types

        try:
            created = self.client.create_write_stream(
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
        return created.name

    def finalize(self, stream: str) -> None:
        """Finalize a stream, best effort: appends to it are refused from now on."""
        try:
            self.client.finalize_write_stream(name=stream, timeout=CALL_TIMEOUT_S, retry=None)
        except Exception as error:
            log.info("write stream %s not finalized (%s)", stream, error)

    def append(
        self, stream_name: str, table: Any, offset: int | None
    ) -> tuple[int, dict[int, str]]:
        """Every row of ``table`` at ``offset`` on the stream (None: wherever the stream
        ends, as the default stream wants), in requests of at most MAX_REQUEST_ROWS (the
        first carries the Arrow schema). Returns how many leading rows were appended
        and the rows refused (by index, within the first request that failed; later
        requests are not appended)."""
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
            responses = self.client.append_rows(  # its own retry would wait a day
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
                        raise RequestRefused(f"code 3: {response.error.message}", appended)
                    if code:  # NOT_FOUND (a restart), ALREADY_EXISTS, OUT_OF_RANGE, UNAVAILABLE
                        raise StreamLost(f"append refused (code {code}): {response.error.message}")
                    appended += sizes[i]
            except gexc.InvalidArgument as error:  # the same refusal, raised by the call
                # (e.g. a column the stream does not know yet: real BigQuery shows a new
                # column to write streams minutes after it is added)
                raise RequestRefused(str(error), appended) from error
            if answered < len(call):
                break
        if appended < table.num_rows:
            raise StreamLost(f"{table.num_rows - appended} rows got no answer")
        return appended, {}


def append_batch(
    todo: Batch,
    stage: str,
    table_manager: TableManager,
    append_all: Callable[[Any], tuple[int, dict[int, str]]],
    load_rows: Callable[[Batch], WriteResult],
) -> WriteResult:
    """Land ``todo`` as one Arrow table through ``append_all`` (the writer's append:
    leading rows appended, rows refused). Refused rows become dead letters of
    ``stage`` and the rest is appended again; a request refused whole is checked
    against the table (a column dropped or retyped stops the sink), then the rows from
    it on go to ``load_rows`` (NDJSON load jobs by halves)."""
    location = [f"bq://{table_manager.table_id}"]
    if len(todo) == 0:
        return WriteResult(stage, 0, location)
    table = batch_table(todo, table_manager.stream, table_manager.added)
    origins = [(part, i) for part in todo.parts for i in range(len(part))]
    rejected: list[DeadLetter] = []
    landed = 0
    while table.num_rows:
        try:
            appended, refused = append_all(table)
        except RequestRefused as error:
            table_manager.check_schema(error)
            landed += error.appended  # requests before the refused one landed
            rest = origins[error.appended :]
            log.warning(
                "the Write API refused %d rows whole (%s); loading them by halves",
                len(rest),
                error,
            )
            loaded = load_rows(rows_of(todo, rest))
            return WriteResult(stage, landed + loaded.rows, location, rejected + loaded.rejected)
        landed += appended
        for index, message in sorted(refused.items()):
            part, i = origins[index]
            reason = f"BigQuery rejected the row: {message}"[:1000]
            rejected.append(part.letter(i, reason, stage))
        keep = [i for i in range(appended, table.num_rows) if i not in refused]
        table = table.take(keep) if keep else table.slice(0, 0)
        origins = [origins[i] for i in keep]
    return WriteResult(stage, landed, location, rejected)


def rows_of(batch: Batch, origins: list[tuple[PartitionBatch, int]]) -> Batch:
    """The rows ``origins`` names ((part, index) pairs, in order) as a batch of their own."""
    chosen: dict[int, tuple[PartitionBatch, list[int]]] = {}
    for part, i in origins:
        chosen.setdefault(id(part), (part, []))[1].append(i)
    parts = [part.take(indices) for part, indices in chosen.values()]
    return Batch(parts, batch.closed_at, batch.group, batch.generation)
