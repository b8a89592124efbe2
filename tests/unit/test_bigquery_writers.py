"""The BigQuery writers by composition: each holds a table manager (here a fake one)
and none extends another; the table's concerns (set-up, added columns, the run
summary, the schema check) are the manager's, the writing the writer's."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch, WriteResult
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks import Sink, SinkError
from pipeline_lib.sinks.bigquery import (
    BigQuerySink,
    DefaultStreamSink,
    StorageWriteSink,
    bigquery_schema,
)
from tests.helpers import simulated

pytestmark = pytest.mark.unit

SETTINGS = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
WRITERS = (BigQuerySink, StorageWriteSink, DefaultStreamSink)
TICKS_ = simulated(50, seed=7)


class FakeTableManager:
    """What a writer asks of its table manager, recorded."""

    def __init__(self, added: tuple = (), client=None) -> None:
        self.route = route(SETTINGS)
        self.stream = self.route.stream
        self.table_id = self.route.table_id
        self.added = added
        self.client = client
        self.calls: list[str] = []
        self.summarized: list[int] = []
        self.callbacks: list = []
        self.schema_problem: str | None = None

    def setup(self) -> None:
        self.calls.append("setup")

    def schema(self) -> list:
        return bigquery_schema(self.stream)

    def on_columns_changed(self, callback) -> None:
        self.callbacks.append(callback)

    def land(self, batch: Batch, land, stage: str) -> WriteResult:
        self.calls.append(f"land {stage}")
        result = land(batch)
        self.summarized.append(result.rows)
        return result

    def check_schema(self, error: Exception) -> None:
        self.calls.append("check_schema")
        if self.schema_problem:
            raise SinkError(self.schema_problem)

    def close(self) -> None:
        self.calls.append("close")


class FakeWriteApi:
    """Streams that take every request (or refuse each whole, ``refuse_whole``)."""

    def __init__(self) -> None:
        self.names = (f"s{i}" for i in itertools.count())
        self.rows: list[tuple[str, int]] = []  # (stream, kafka offset)
        self.columns: list[str] = []
        self.finalized: list[str] = []
        self.refuse_whole = False

    def create_write_stream(self, parent, write_stream, timeout=None, retry=None):
        return SimpleNamespace(name=next(self.names))

    def finalize_write_stream(self, name, timeout=None, retry=None):
        self.finalized.append(name)

    def append_rows(self, requests, timeout=None, retry=None):
        schema = None
        for request in requests:
            if request.arrow_rows.writer_schema.serialized_schema:
                schema = pa.ipc.read_schema(
                    pa.py_buffer(request.arrow_rows.writer_schema.serialized_schema)
                )
            rows = pa.ipc.read_record_batch(
                pa.py_buffer(request.arrow_rows.rows.serialized_record_batch), schema
            )
            self.columns = rows.schema.names
            code = 3 if self.refuse_whole else 0
            if not code:
                name = request.write_stream.rsplit("/", 1)[-1]
                self.rows += [(name, o) for o in rows.column("kafka_offset").to_pylist()]
            yield SimpleNamespace(row_errors=[], error=SimpleNamespace(code=code, message="no"))


class LoadClient:
    """The BigQuery client's load jobs: each payload kept, each job done at once."""

    def __init__(self) -> None:
        self.loads: list[tuple[bytes, str, str]] = []

    def load_table_from_file(self, file, table_id, job_config=None, timeout=None, num_retries=None):
        self.loads.append((file.read(), table_id, job_config.source_format))
        return SimpleNamespace(
            job_id="j", done=lambda retry=None, timeout=None: True, result=lambda **_: None
        )


def batch(first: int, last: int, generation: int = 1) -> Batch:
    part = TICKS.partition_batch("t", 0, TICKS_[first:last], list(range(first, last)))
    return Batch([part], datetime(2024, 1, 2, tzinfo=UTC), "g", generation)


def test_no_writer_extends_another_and_each_holds_a_table_manager():
    for one, other in itertools.permutations(WRITERS, 2):
        assert not issubclass(one, other)
    for writer in WRITERS:
        assert issubclass(writer, Sink)
        manager = FakeTableManager()
        assert writer(SETTINGS, table_manager=manager).table_manager is manager


def test_the_load_job_writer_loads_parquet_with_the_columns_its_manager_added():
    client = LoadClient()
    manager = FakeTableManager(added=(("exchange", "STRING"),), client=client)
    sink = BigQuerySink(SETTINGS, table_manager=manager)
    sink.setup()
    part = batch(0, 3).parts[0]
    part.extras = [{"exchange": "XNAS"}, None, {"exchange": "XNYS", "n": 1}]
    result = sink.write(Batch([part], datetime(2024, 1, 2, tzinfo=UTC), "g", 1))
    sink.close()
    assert result.rows == 3 and manager.calls == ["setup", "land bigquery", "close"]
    assert manager.summarized == [3]
    ((payload, table_id, source_format),) = client.loads
    assert table_id == manager.table_id and source_format == "PARQUET"
    table = pq.read_table(io.BytesIO(payload))
    assert table.column("exchange").to_pylist() == ["XNAS", None, "XNYS"]
    assert table.column("extra").to_pylist() == [None, None, '{"n":1}']


def test_the_exactly_once_writer_lands_through_its_manager_and_obeys_its_column_changes():
    api = FakeWriteApi()
    manager = FakeTableManager(added=(("exchange", "STRING"),))
    sink = StorageWriteSink(SETTINGS, client=api, table_manager=manager)
    sink.held_offsets = lambda parts: {(p.topic, p.partition): set() for p in parts}  # type: ignore[method-assign]
    assert sink.write(batch(0, 20)).rows == 20
    assert "exchange" in api.columns and manager.summarized == [20]
    (changed,) = manager.callbacks  # the table gained columns: a new stream next
    changed()
    assert api.finalized == ["s0"]
    assert sink.write(batch(20, 30)).rows == 10
    assert [name for name, _ in api.rows] == ["s0"] * 20 + ["s1"] * 10
    assert manager.calls == ["land bigquery", "land bigquery"]


def test_the_default_stream_writer_asks_its_manager_when_a_request_is_refused_whole():
    api = FakeWriteApi()
    api.refuse_whole = True
    manager = FakeTableManager()
    manager.schema_problem = "column volume is missing"
    sink = DefaultStreamSink(SETTINGS, client=api, table_manager=manager)
    with pytest.raises(SinkError, match="column volume is missing"):
        sink.write(batch(0, 10))
    assert manager.calls == ["land bigquery", "check_schema"] and api.rows == []
    api.refuse_whole = False
    assert sink.write(batch(0, 10)).rows == 10
    assert {name for name, _ in api.rows} == {"_default"} and manager.callbacks == []
