"""The Storage Write API sink against the emulator's gRPC Write API: each record once
in the raw table itself, whatever moment the consumer is killed at."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest

from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.records.schema import encode
from pipeline_lib.sinks.landing import landing_sinks
from tests.helpers import (
    bq_event_ids,
    committed_offsets,
    consumer_process,
    finish,
    gcs_event_ids,
    simulated,
)

pytestmark = pytest.mark.integration

TICKS = 50_000


def test_each_tick_once_in_the_raw_table_after_five_sigkills_at_random_moments(settings):
    ticks = simulated(TICKS, seed=41)
    produced = {}
    producer = threading.Thread(
        target=lambda: produced.setdefault("report", produce(settings, ticks, rate=5_000))
    )
    producer.start()
    rng = random.Random(7)
    kills = 0
    while kills < 5:
        victim = consumer_process(
            settings, "--bq-write", "storage", "--batch-size", "1500", "--flush-interval", "0.3"
        )
        time.sleep(rng.uniform(1.5, 4.0))  # mid-batch, mid-append, mid-commit: anywhere
        victim.kill()
        victim.communicate(timeout=30)
        assert victim.returncode == -9
        kills += 1
    producer.join(timeout=120)
    assert produced["report"].ok, produced["report"].summary()
    assert sum(o or 0 for o in committed_offsets(settings).values()) < TICKS  # work was left
    final = SinkConsumer(settings, sinks=landing_sinks(settings, bq_write="storage"))
    final.run(until_idle=3, handle_signals=False)

    ids = {t.event_id for t in ticks}
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw) == ids, f"{len(ids - set(raw))} missing from the raw table"
    doubled = {i: n for i, n in raw.items() if n > 1}
    assert not doubled, f"{len(doubled)} events twice in the raw table, e.g. {list(doubled)[:3]}"
    assert set(gcs_event_ids(settings)) == ids


def test_sigkill_between_the_sinks_and_the_kafka_commit_leaves_no_copy_in_the_table(settings):
    """The moment that doubles rows with load jobs (test_delivery shows it): the batch
    is in both sinks, its offsets are not committed, the consumer dies."""
    ticks = simulated(10_000, seed=42)
    assert produce(settings, ticks).ok
    script = (
        "import os, signal\n"
        "from pipeline_lib import load_settings\n"
        "from pipeline_lib.kafka_io.consumer import SinkConsumer\n"
        "from pipeline_lib.sinks.landing import landing_sinks\n"
        "closed = []\n"
        "def die(batch):\n"
        "    closed.append(batch)\n"
        "    if len(closed) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "settings = load_settings()\n"
        "SinkConsumer(settings, sinks=landing_sinks(settings, bq_write='storage'),\n"
        "    batch_size=2000, flush_interval=30, before_commit=die).run(until_idle=10)\n"
    )
    victim = consumer_process(settings, script=script)
    victim.communicate(timeout=120)
    assert victim.returncode == -9
    committed = sum(o or 0 for o in committed_offsets(settings).values())
    assert committed < sum(bq_event_ids(settings, deduplicated=False).values())  # held, uncommitted
    final = SinkConsumer(settings, sinks=landing_sinks(settings, bq_write="storage"))
    report = final.run(until_idle=3, handle_signals=False)
    assert report.consumed == 10_000 - committed  # the batch was read again...
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw) == {t.event_id for t in ticks} and set(raw.values()) == {1}  # ...not doubled


def test_a_rebalance_mid_stream_leaves_each_tick_once_in_the_raw_table(settings):
    ticks = simulated(12_000, seed=43)
    assert produce(settings, ticks[:6_000]).ok
    first = consumer_process(
        settings, "--bq-write", "storage", "--batch-size", "1000", "--until-idle", "8"
    )
    time.sleep(3)
    second = consumer_process(
        settings, "--bq-write", "storage", "--batch-size", "1000", "--until-idle", "8"
    )
    assert produce(settings, ticks[6_000:]).ok
    for member in (first, second):
        member.communicate(timeout=240)
        assert member.returncode == 0
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw) == {t.event_id for t in ticks} and set(raw.values()) == {1}


def test_a_bad_value_is_a_dead_letter_and_the_table_still_holds_each_tick_once(settings):
    ticks = simulated(3_000, seed=44)
    assert produce(settings, ticks).ok
    from pipeline_lib.kafka_io.producer import send_raw

    send_raw(settings, encode(ticks[0])[:-5], key=b"AAPL")
    sinks = landing_sinks(settings, bq_write="storage")
    report = SinkConsumer(settings, sinks=sinks).run(until_idle=3, handle_signals=False)
    assert report.dead_letters == 1 and report.written == 3_000
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw.values()) == {1} and len(raw) == 3_000


def test_the_emulator_restarted_mid_consume_costs_nothing_and_doubles_nothing(own_bigquery):
    """A BigQuery emulator of its own, restarted between two batches: every write
    stream it held is gone; committed rows stay."""
    settings, emulator = own_bigquery
    ticks = simulated(6_000, seed=45)
    assert produce(settings, ticks).ok

    def restart_after_the_second_batch(report):
        if report.number == 2:
            emulator.down()
            emulator.up()

    consumer = SinkConsumer(
        settings,
        sinks=landing_sinks(settings, bq_write="storage"),
        batch_size=1_500,
        on_batch=restart_after_the_second_batch,
    )
    report = consumer.run(until_idle=3, handle_signals=False)
    assert report.written == 6_000
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw) == {t.event_id for t in ticks} and set(raw.values()) == {1}


def test_queries_while_the_consumer_appends_neither_hang_nor_read_another_result(settings):
    """bqemulator's appends used DuckDB from a gRPC thread: with queries polling (as the
    live chart does) it hung, or a query could read the insert's result instead of its
    own. The emulator the project starts runs them on one thread."""
    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.records.routes import route

    ticks = simulated(8_000, seed=46)
    assert produce(settings, ticks).ok
    for sink in landing_sinks(settings, bq_write="storage"):
        sink.setup()  # the table the poll reads
    client, table = bigquery_client(settings), route(settings).table_sql
    answers: list[tuple[tuple[str, ...], int]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            job = client.query(f"SELECT COUNT(*) AS landed FROM {table}")  # noqa: S608
            row = next(iter(job.result(timeout=60)))
            answers.append((tuple(row.keys()), row[0]))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    consumer = consumer_process(
        settings, "--bq-write", "storage", "--batch-size", "400", "--until-idle", "3"
    )
    try:
        report = finish(consumer, timeout=180)
    except subprocess.TimeoutExpired:
        consumer.kill()
        raise AssertionError("the emulator hung: the consumer did not end") from None
    finally:
        done.set()
        poller.join(timeout=60)
    assert not poller.is_alive(), "the emulator hung: a query did not end"
    assert report["written"] == 8_000 and report["batches"] >= 10
    counts = [count for _, count in answers]
    assert len(answers) >= 5 and {names for names, _ in answers} == {("landed",)}
    assert counts == sorted(counts) and counts[-1] == 8_000
    raw = bq_event_ids(settings, deduplicated=False)
    assert set(raw) == {t.event_id for t in ticks} and set(raw.values()) == {1}


def test_a_column_retyped_underneath_stops_the_consumer_with_one_line(settings):
    """The Write API refuses a batch whole when a column's type no longer fits: the
    consumer stops naming the column, and commits nothing."""
    from google.cloud import bigquery

    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.records.routes import route
    from pipeline_lib.sinks import SinkError
    from pipeline_lib.sinks.bigquery import bigquery_schema

    client = bigquery_client(settings)
    client.create_dataset(settings.bq_dataset)
    drifted = [
        bigquery.SchemaField(f.name, "INT64" if f.name == "symbol" else f.field_type, mode=f.mode)
        for f in bigquery_schema()
    ]
    client.create_table(bigquery.Table(route(settings).table_id, schema=drifted))
    assert produce(settings, simulated(500, seed=47)).ok
    consumer = SinkConsumer(settings, sinks=landing_sinks(settings, bq_write="storage"))
    with pytest.raises(SinkError) as stopped:
        consumer.run(until_idle=3, handle_signals=False)
    line = str(stopped.value)
    assert "\n" not in line and "column symbol is INT64, the pipeline writes STRING" in line
    assert not any(committed_offsets(settings).values())
    assert not bq_event_ids(settings, deduplicated=False)
