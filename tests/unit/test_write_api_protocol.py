"""The Storage Write API sink's commit protocol, on a fake Write API: each record
once in the table whatever step fails, refused rows as dead letters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest
from google.api_core.exceptions import ServiceUnavailable

from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.bigquery import (
    DefaultStreamSink,
    StorageWriteSink,
    TableManager,
    bigquery_schema,
)
from tests.helpers import simulated

pytestmark = pytest.mark.unit

NOW = datetime(2024, 1, 2, tzinfo=UTC)
TICKS_ = simulated(300, seed=12)


class FakeWriteApi:
    """COMMITTED streams: a request's rows are visible once appended, at the offset
    it names (ALREADY_EXISTS below the stream's end, OUT_OF_RANGE above). ``fail``
    names a step that fails once: create, append (nothing appended) or append_lost
    (appended, but the answer never arrives)."""

    def __init__(self) -> None:
        self.streams: dict[str, int] = {}  # name -> rows appended
        self.table: list[tuple[int, int]] = []  # (partition, offset) of the rows
        self.fail: set[str] = set()
        self.refuse_offsets: set[int] = set()  # rows with these offsets get row_errors
        self.refuse_whole = False
        self.names = (f"s{i}" for i in itertools.count())
        self.requests_per_call: list[int] = []
        self.finalized: list[str] = []
        self.refuse_whole_from: int | None = None  # kafka offsets from here refused whole
        self.log: list[str] = []  # finalize and held-offsets questions, in order

    def finalize_write_stream(self, name, timeout=None, retry="library's"):
        assert timeout and retry is None
        self.finalized.append(name)
        self.log.append(f"finalize {name}")

    def _maybe_fail(self, step: str) -> None:
        if step in self.fail:
            self.fail.discard(step)
            raise ServiceUnavailable(f"{step} failed")

    def create_write_stream(self, parent, write_stream, timeout=None, retry="library's"):
        assert timeout and retry is None  # bounded: the library's retry would take 20 min
        self._maybe_fail("create")
        name = next(self.names)
        self.streams[name] = 0
        return SimpleNamespace(name=name)

    def append_rows(self, requests, timeout=None, retry="library's"):
        assert timeout and retry is None  # bounded: the library's retry would take a day
        schema = None
        self.requests_per_call.append(0)
        for request in requests:
            self.requests_per_call[-1] += 1
            self._maybe_fail("append")
            if request.arrow_rows.writer_schema.serialized_schema:
                schema = pa.ipc.read_schema(
                    pa.py_buffer(request.arrow_rows.writer_schema.serialized_schema)
                )
            batch = pa.ipc.read_record_batch(
                pa.py_buffer(request.arrow_rows.rows.serialized_record_batch), schema
            )
            table = pa.Table.from_batches([batch])
            offsets = table.column("kafka_offset").to_pylist()
            errors = [
                SimpleNamespace(index=i, message="no")
                for i, o in enumerate(offsets)
                if o in self.refuse_offsets
            ]
            if request.write_stream.endswith("/streams/_default"):
                self.streams.setdefault(request.write_stream, 0)  # always there, no offsets
            end = self.streams[request.write_stream]
            given = request.offset if "offset" in request else end
            refused_whole = self.refuse_whole or (
                self.refuse_whole_from is not None and offsets[0] >= self.refuse_whole_from
            )
            code = 3 if refused_whole else 6 if given < end else 11 if given > end else 0
            if request.write_stream in self.finalized:
                code = 9  # FAILED_PRECONDITION: the stream is finalized
            if errors:
                code = 3
            if code == 0:
                self.streams[request.write_stream] += table.num_rows
                self.table += zip(table.column("kafka_partition").to_pylist(), offsets, strict=True)
                self._maybe_fail("append_lost")
            yield SimpleNamespace(
                row_errors=errors, error=SimpleNamespace(code=code, message="refused")
            )


class FakeTables:
    """The BigQuery client's get_table: the table's schema as the sink created it,
    or as someone changed it."""

    def __init__(self, schema: list) -> None:
        self.schema = schema
        self.summary: list[dict] = []  # rows of the run summary

    def get_table(self, table_id, timeout=None, retry=None):
        return SimpleNamespace(schema=self.schema)

    def insert_rows_json(self, table_id, rows, row_ids=None, timeout=None, retry=None):
        self.summary += rows
        return []


SETTINGS = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})


def on_tables(tables: FakeTables) -> TableManager:
    """A table manager on the fake BigQuery client."""
    return TableManager(SETTINGS, client=tables)


def sink_on(api: FakeWriteApi, tables: FakeTables | None = None) -> StorageWriteSink:
    tables = tables or FakeTables(bigquery_schema())
    sink = StorageWriteSink(SETTINGS, client=api, table_manager=on_tables(tables))

    def held(parts):
        api.log.append("held")
        return {
            (part.topic, part.partition): {
                o for p, o in api.table if p == part.partition and o in set(part.offsets)
            }
            for part in parts
        }

    sink.held_offsets = held  # type: ignore[method-assign]
    sink._write_rows = lambda batch: pytest.fail("no fallback expected")  # type: ignore[method-assign]
    return sink


def batch(first: int, last: int, generation: int = 1, partition: int = 0) -> Batch:
    part = TICKS.partition_batch(
        "t", partition, TICKS_[first:last], list(range(first, last)), keys=[b"K"] * (last - first)
    )
    return Batch([part], NOW, "g", generation)


def once(api: FakeWriteApi, count: int) -> None:
    assert len(api.table) == len(set(api.table)) == count


@pytest.mark.parametrize("step", ["create", "append", "append_lost"])
def test_a_failed_step_is_retried_and_leaves_each_record_once(step, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    api = FakeWriteApi()
    sink = sink_on(api)
    sink.write(batch(0, 100))
    api.fail = {step}
    sink.write(batch(100, 200))
    once(api, 200)


def test_a_replay_after_a_crash_or_a_rebalance_writes_only_what_is_missing():
    api = FakeWriteApi()
    sink_on(api).write(batch(0, 150))  # committed in BigQuery, the Kafka commit lost
    restarted = sink_on(api)
    assert restarted.write(batch(100, 250, generation=2)).rows == 100
    once(api, 250)
    assert restarted.write(batch(0, 250, generation=3)).rows == 0
    once(api, 250)


def test_a_batch_continuing_the_last_one_is_written_without_asking_the_table():
    api = FakeWriteApi()
    sink = sink_on(api)
    sink.write(batch(0, 100))
    asked = []
    sink.held_offsets = lambda parts: (
        asked.extend(p.partition for p in parts)
        or {  # type: ignore[method-assign]
            (p.topic, p.partition): set() for p in parts
        }
    )
    sink.write(batch(100, 200))
    assert asked == []
    sink.write(batch(50, 120))  # a rewind in the same generation: asks
    assert asked == [0]


def test_rows_bigquery_refuses_are_dead_letters_and_the_rest_lands():
    api = FakeWriteApi()
    api.refuse_offsets = {3, 7}
    result = sink_on(api).write(batch(0, 20))
    assert result.rows == 18 and [d.offset for d in result.rejected] == [3, 7]
    assert all(d.key == b"K" and d.stage == "bigquery" for d in result.rejected)
    assert sorted(o for _, o in api.table) == [o for o in range(20) if o not in (3, 7)]


def test_a_request_refused_whole_falls_back_to_load_jobs_by_halves():
    api = FakeWriteApi()
    api.refuse_whole = True
    sink = sink_on(api)
    fell_back = []
    sink._write_rows = lambda b: (
        fell_back.append(len(b))
        or SimpleNamespace(  # type: ignore[method-assign]
            rows=len(b), rejected=[]
        )
    )
    assert sink.write(batch(0, 20)).rows == 20 and fell_back == [20]
    assert api.table == []


def test_a_membership_lost_before_the_commit_publishes_nothing():
    from pipeline_lib.kafka_io.membership import Fenced

    api = FakeWriteApi()
    sink = sink_on(api)

    def fence(generation: int, doing: str) -> None:
        raise Fenced(f"generation {generation} is over while {doing}")

    sink.fence_check = fence
    with pytest.raises(Fenced):
        sink.write(batch(0, 50))
    assert api.table == []  # nothing appended


def test_at_least_once_appends_to_the_default_stream_without_offsets_or_questions():
    api = FakeWriteApi()
    tables = on_tables(FakeTables(bigquery_schema()))
    sink = DefaultStreamSink(SETTINGS, client=api, table_manager=tables)
    sink.held_offsets = lambda parts: pytest.fail("at least once asks the table nothing")  # type: ignore[method-assign]
    assert sink.write(batch(0, 100)).rows == 100
    assert sink.write(batch(0, 100, generation=2)).rows == 100  # a replay lands again...
    assert len(api.table) == 200 and len(set(api.table)) == 100  # ...for the view to hide
    assert list(api.streams) == [f"{sink.table_path}/streams/_default"]  # none created


def test_a_batch_of_many_polls_is_one_request_all_or_nothing():
    api = FakeWriteApi()
    sink = sink_on(api)
    parts = [
        TICKS.partition_batch("t", 0, TICKS_[i : i + 10], list(range(i, i + 10)))
        for i in range(0, 100, 10)
    ]
    merged = parts[0]
    for part in parts[1:]:  # a partition's batch holds one Arrow chunk per poll
        merged.chunks.extend(part.chunks)
        merged.offsets.extend(part.offsets)
        merged.keys.extend(part.keys)
        merged.values.extend(part.values)
        merged.headers.extend(part.headers)
        merged.lines.extend(part.lines)
    assert len(merged.chunks) == 10
    assert sink.write(Batch([merged], NOW, "g", 1)).rows == 100
    assert api.requests_per_call == [1]
    once(api, 100)


def test_a_table_changed_underneath_stops_the_sink_with_one_line():
    from google.cloud import bigquery

    from pipeline_lib.sinks import SinkError

    api = FakeWriteApi()
    api.refuse_whole = True
    changed = [
        bigquery.SchemaField(f.name, "STRING") if f.name == "close" else f
        for f in bigquery_schema()
        if f.name != "volume"
    ]
    sink = sink_on(api, FakeTables(changed))
    with pytest.raises(SinkError) as refused:
        sink.write(batch(0, 20))
    line = str(refused.value)
    assert "\n" not in line and "column volume is missing" in line
    assert "column close is STRING, the pipeline writes FLOAT" in line
    assert api.table == []


def test_a_stream_given_up_is_finalized_before_the_table_is_asked(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    api = FakeWriteApi()
    sink = sink_on(api)
    sink.write(batch(0, 100))
    api.fail = {"append_lost"}  # landed, its answer lost: it must not land again later
    sink.write(batch(100, 200))
    assert api.log == ["held", "finalize s0", "held"]
    once(api, 200)


def test_a_later_request_refused_whole_keeps_what_landed_and_loads_the_rest(monkeypatch):
    monkeypatch.setattr("pipeline_lib.sinks.bigquery.write_api.MAX_REQUEST_ROWS", 10)
    api = FakeWriteApi()
    api.refuse_whole_from = 20  # the third request of the batch
    sink = sink_on(api)
    loaded = []

    def load(rows):
        loaded.extend(o for part in rows.parts for o in part.offsets)
        return SimpleNamespace(rows=len(rows), rejected=[])

    sink._write_rows = load  # type: ignore[method-assign]
    result = sink.write(batch(0, 40))
    assert sorted(o for _, o in api.table) == list(range(20))  # once each
    assert loaded == list(range(20, 40)) and result.rows == 40


def test_at_least_once_sends_no_request_twice_after_refused_rows(monkeypatch):
    monkeypatch.setattr("pipeline_lib.sinks.bigquery.write_api.MAX_REQUEST_ROWS", 10)
    api = FakeWriteApi()
    api.refuse_offsets = {13}
    tables = on_tables(FakeTables(bigquery_schema()))
    sink = DefaultStreamSink(SETTINGS, client=api, table_manager=tables)
    result = sink.write(batch(0, 30))
    assert [d.offset for d in result.rejected] == [13] and result.rows == 29
    assert sorted(o for _, o in api.table) == [o for o in range(30) if o != 13]  # once each


def test_wide_rows_go_in_requests_under_the_byte_cap(monkeypatch):
    monkeypatch.setattr("pipeline_lib.sinks.bigquery.write_api.MAX_REQUEST_BYTES", 4_000)
    api = FakeWriteApi()
    sink = sink_on(api)
    sink.write(batch(0, 100))
    assert api.requests_per_call[-1] > 1
    once(api, 100)
