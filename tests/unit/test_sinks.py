"""Sink logic that needs no service: naming, retries, records that cannot be encoded."""

from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import BadRequest, ServiceUnavailable

from pipeline_lib.core.retry import QUICK_CHECK_BACKOFF
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.schema import Tick
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks import SinkUnavailable, with_retries
from pipeline_lib.sinks.gcs import object_name

WHEN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def part(ticks, first=120):
    return TICKS.partition_batch(
        "stock-ticks",
        2,
        ticks,
        offsets=list(range(first, first + len(ticks))),
        keys=[tick.symbol.encode() for tick in ticks],
        values=[b"{}"] * len(ticks),
    )


def test_object_name_is_fixed_by_partition_and_first_offset():
    tick = Tick("e", "AAPL", WHEN, 1.0, 1.0, 1.0, 1.0, 1, "simulator")
    name = object_name(part([tick]), "raw", "ndjson")
    assert name == "raw/topic=stock-ticks/date=2024-01-02/partition=2/00000000000000000120.ndjson"


def test_transient_failures_are_retried_then_reported():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ServiceUnavailable("down")
        return "ok"

    assert with_retries(flaky, "x", sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    def down():
        raise ConnectionError("refused")

    with pytest.raises(SinkUnavailable, match=r"failed 5 times.*Nothing of this batch"):
        with_retries(down, "loading", sleep=sleeps.append)


def test_permanent_failures_are_not_retried():
    calls = []

    def bad():
        calls.append(1)
        raise BadRequest("invalid")

    with pytest.raises(BadRequest):
        with_retries(bad, "x", sleep=lambda s: None)
    assert len(calls) == 1


def test_unencodable_record_is_rejected_not_fatal():
    """A Tick built in code with an out-of-range volume goes to the dead letters.

    Batches hold records as columns, so such a record is refused where it would
    enter one (the consumer's core), with its key, and the rest of the poll lands."""
    from pipeline_lib.kafka_io.batching import Batcher
    from tests.fakes import Record

    huge = Tick("e", "AAPL", WHEN, 1.0, 1.0, 1.0, 1.0, 2**70, "simulator")
    fine = huge._replace(event_id="f", volume=7)
    core = Batcher("stock-ticks", decode=lambda v: huge if v == b"huge" else fine, columns=TICKS)
    core.add(
        2, [Record("stock-ticks", 2, 120 + i, b"AAPL", v) for i, v in enumerate([b"huge", b"ok"])]
    )
    sealed = core.seal(WHEN)
    assert [len(p) for p in sealed.batch.parts] == [1]
    assert [d.offset for d in sealed.dead_letters] == [120]
    assert sealed.dead_letters[0].key == b"AAPL" and sealed.dead_letters[0].value == b"huge"
    assert "64-bit" in sealed.dead_letters[0].reason


def test_parquet_objects_hold_the_batch_columns():
    import io

    import pyarrow.parquet as pq

    from pipeline_lib.sinks.gcs import parquet_bytes

    ticks = [
        Tick(f"e{i}", "AAPL", WHEN, 1.0 + i, 2.0 + i, 0.5, 1.5 + i, 100 * i, "csv", adj_close=1.4)
        for i in range(3)
    ]
    table = pq.read_table(io.BytesIO(parquet_bytes(part(ticks))))
    assert table.num_rows == 3
    assert table.column("event_id").to_pylist() == ["e0", "e1", "e2"]
    assert table.column("volume").to_pylist() == [0, 100, 200]
    assert table.column("ts").to_pylist()[0].timestamp() == WHEN.timestamp()


def test_the_bigquery_schema_and_arrow_columns_come_from_the_one_field_table():
    from pipeline_lib.records.schema import LANDING_FIELDS, TICK_FIELDS
    from pipeline_lib.sinks.bigquery import TABLE_SCHEMA, arrow_schema, batch_table

    names = [f.name for f in (*TICK_FIELDS, *LANDING_FIELDS)]
    assert [c[0] for c in TABLE_SCHEMA] == names == arrow_schema().names
    assert dict((c[0], c[1]) for c in TABLE_SCHEMA)["volume"] == "INT64"
    ticks = [
        Tick("a", "AAPL", WHEN, 1.0, 2.0, 0.5, 1.5, 10, "csv", adj_close=1.4),
        Tick("b", "IBM", WHEN, 3.0, 4.0, 2.5, 3.5, 2**40, "simulator", produced_at=WHEN),
    ]
    closed = datetime(2024, 1, 3, tzinfo=UTC)
    table = batch_table(Batch([part(ticks, first=7)], closed))
    rows = table.to_pylist()
    assert rows[0]["adj_close"] == 1.4 and rows[1]["adj_close"] is None
    assert rows[1]["produced_at"] == WHEN and rows[0]["produced_at"] is None
    assert rows[1]["volume"] == 2**40 and rows[1]["kafka_offset"] == 8
    assert {r["ingested_at"] for r in rows} == {closed}
    assert {r["kafka_topic"] for r in rows} == {"stock-ticks"}
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"


def test_a_load_job_is_checked_often_at_first_then_with_backoff(monkeypatch):
    """A fresh micro-batch's load ends within tens or hundreds of milliseconds: its end
    is noticed within 25 ms (not up to twice its length), a long job is polled gently."""
    from pipeline_lib.sinks.bigquery import load_jobs as sink

    class Clock:
        def __init__(self):
            self.now = 0.0
            self.sleeps: list[float] = []

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.sleeps.append(seconds)
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(sink, "time", clock)

    class Job:
        job_id = "j"

        def __init__(self, ends_at):
            self.ends_at = ends_at

        def done(self, retry=None, timeout=None):
            return clock.now >= self.ends_at

        def result(self, retry=None, timeout=None):
            return None

    sink.wait_for_job(Job(0.33), timeout=60)
    assert 0.33 <= clock.now <= 0.33 + QUICK_CHECK_BACKOFF.longest
    clock.now, clock.sleeps = 0.0, []
    sink.wait_for_job(Job(30.0), timeout=60)
    assert max(clock.sleeps) == 0.5 and len(clock.sleeps) < 150  # backed off after 2 s
    clock.now = 0.0
    with pytest.raises(TimeoutError):
        sink.wait_for_job(Job(100.0), timeout=5)
