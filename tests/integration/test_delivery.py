"""Producer → Kafka → consumer → GCS + BigQuery on the real broker and emulators."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from pipeline_lib.clients.kafka import ensure_topic
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import encode
from pipeline_lib.sinks import SinkUnavailable
from tests.helpers import (
    bq_count_where_event_id,
    bq_event_ids,
    committed_offsets,
    consumer_process,
    finish,
    gcs_event_ids,
    produce_ticks,
    simulated,
    unique_dead_letters,
)


def exactly_once(counter, expected_ids) -> None:
    assert set(counter) == set(expected_ids)
    assert set(counter.values()) == {1}


def test_ten_thousand_ticks_exactly_once(settings):
    ticks = simulated(10_000, seed=21)
    produce_ticks(settings, ticks)
    report = SinkConsumer(settings, batch_size=2_500).run(until_idle=3)
    assert report.consumed == 10_000 and report.written == 10_000 and report.dead_letters == 0
    assert report.lag == 0
    ids = [t.event_id for t in ticks]
    exactly_once(bq_event_ids(settings), ids)
    exactly_once(bq_event_ids(settings, deduplicated=False), ids)  # no replay: raw has no copies
    exactly_once(gcs_event_ids(settings), ids)
    assert sum(o for o in committed_offsets(settings).values() if o) == 10_000


def test_sigkill_between_sinks_and_commit_then_restart_with_load_jobs(settings):
    """The worst moment to die: both sinks written, offsets not committed. Load jobs
    write the batch again (the Write API does not: test_storage_write)."""
    settings = settings.with_overrides(bq_write="load")
    ticks = simulated(10_000, seed=22)
    produce_ticks(settings, ticks)
    script = (
        "import os, signal\n"
        "from pipeline_lib import load_settings\n"
        "from pipeline_lib.kafka_io.consumer import SinkConsumer\n"
        "closed = []\n"
        "def die(batch):\n"
        "    closed.append(batch)\n"
        "    if len(closed) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "SinkConsumer(load_settings(), batch_size=2000, flush_interval=30, before_commit=die)"
        ".run(until_idle=10)\n"
    )
    victim = consumer_process(settings, script=script)
    victim.communicate(timeout=120)
    assert victim.returncode == -9
    # The second batch is in both sinks but uncommitted: BigQuery's raw table holds it.
    committed_before = sum(o or 0 for o in committed_offsets(settings).values())
    landed_raw = sum(bq_event_ids(settings, deduplicated=False).values())
    assert committed_before < landed_raw <= 10_000

    report = SinkConsumer(settings, batch_size=2_000).run(until_idle=3)
    assert report.consumed == 10_000 - committed_before
    ids = [t.event_id for t in ticks]
    raw = bq_event_ids(settings, deduplicated=False)
    assert sum(raw.values()) > 10_000, "the redelivered batch was loaded twice"
    exactly_once(bq_event_ids(settings), ids)  # ...and the view shows each event once
    exactly_once(gcs_event_ids(settings), ids)  # replayed objects were overwritten


def test_sigkill_at_a_random_moment_then_restart(settings):
    ticks = simulated(10_000, seed=23)
    produce_ticks(settings, ticks)
    victim = consumer_process(settings, "--batch-size", "700", "--flush-interval", "0.3")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(o or 0 for o in committed_offsets(settings).values()) >= 2_000:
            break
        time.sleep(0.05)
    victim.kill()
    victim.communicate(timeout=30)
    assert victim.returncode == -9
    SinkConsumer(settings, batch_size=2_000).run(until_idle=3)
    ids = [t.event_id for t in ticks]
    exactly_once(bq_event_ids(settings), ids)
    exactly_once(gcs_event_ids(settings), ids)


def test_quiet_topic_gets_its_last_batch_flushed_in_time(settings):
    ensure_topic(settings)
    batches = []
    consumer = SinkConsumer(
        settings, batch_size=100_000, flush_interval=1.5, on_batch=batches.append
    )
    runner = threading.Thread(target=lambda: batches.append(consumer.run(duration=60)))
    runner.start()
    try:
        produce_ticks(settings, simulated(37, seed=24))
        deadline = time.monotonic() + 20
        while not batches and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop()
        runner.join(timeout=60)
    first = batches[0]
    assert first.records == 37, "the time flush fired with nothing new arriving"
    assert 1.5 <= first.age < 1.5 + 1.0
    assert batches[-1].stopped_because == "stop requested"
    assert len(bq_event_ids(settings)) == 37


BAD_MESSAGES = [
    (b"{not json", "malformed JSON"),
    (b"\xff\xfe garbage", "malformed JSON"),
    (b"[1,2,3]", "JSON object"),
    (b"null", "JSON object"),
    (b'{"symbol": "AAPL"}', "missing field"),
]


def invalid_variants(tick) -> list[tuple[bytes, str]]:
    base = orjson.loads(encode(tick))
    changes = [
        ({"open": -5.0}, "positive"),
        ({"low": base["high"] + 1}, "above high"),
        ({"symbol": ""}, "empty"),
        ({"symbol": "x'); DROP TABLE t;--"}, "not a ticker"),
        ({"volume": 1.5}, "whole number"),
        ({"ts": "2024-01-02T14:30:00"}, "no time zone"),
        ({"close": "NaN"}, "number"),
        ({"source": "rumour"}, "not one of"),
    ]
    return [(orjson.dumps({**base, **change}), reason) for change, reason in changes]


def test_bad_messages_go_to_the_dead_letter_topic_and_good_ones_survive(settings):
    from kafka import KafkaProducer

    good = simulated(1_000, seed=25)
    bad: list[tuple[bytes | None, str]] = []
    for i in range(100):
        if i % 13 == 0:
            bad.append(BAD_MESSAGES[i % len(BAD_MESSAGES)])
        else:
            variants = invalid_variants(good[i])
            bad.append(variants[i % len(variants)])
    ensure_topic(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for i, tick in enumerate(good):
        producer.send(settings.topic, key=tick.symbol.encode(), value=encode(tick))
        if i % 10 == 5:
            value, _ = bad[i // 10]
            producer.send(settings.topic, key=b"AAPL", value=value)
    producer.flush()
    producer.close()

    report = SinkConsumer(settings, batch_size=300).run(until_idle=3)
    assert report.consumed == 1_100 and report.written == 1_000 and report.dead_letters == 100
    ids = [t.event_id for t in good]
    exactly_once(bq_event_ids(settings), ids)
    exactly_once(gcs_event_ids(settings), ids)

    letters = unique_dead_letters(settings)
    assert len(letters) == 100
    assert sorted(letter.value for letter in letters) == sorted(v for v, _ in bad)
    by_value = {letter.value: letter for letter in letters}
    for value, reason in bad:
        assert reason in by_value[value].reason
        assert by_value[value].stage == "decode"
        assert by_value[value].topic == settings.topic and by_value[value].offset >= 0


def test_sql_in_text_fields_is_data_never_code(settings):
    hostile = "x'); DROP TABLE t;--"
    tick = simulated(1, seed=26)[0]._replace(event_id=hostile)
    evil_symbol = orjson.loads(encode(tick))
    evil_symbol.update(symbol="AAPL'; DROP TABLE ticks;--", event_id="other")
    ensure_topic(settings)
    produce_ticks(settings, [tick, *simulated(10, seed=27)])
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    producer.send(settings.topic, value=orjson.dumps(evil_symbol)).get(timeout=10)
    producer.close()

    report = SinkConsumer(settings).run(until_idle=3)
    assert report.written == 11 and report.dead_letters == 1
    assert bq_count_where_event_id(settings, hostile) == 1  # stored verbatim, found by parameter
    assert len(bq_event_ids(settings)) == 11  # the table is intact
    assert unique_dead_letters(settings)[0].field == "symbol"


def test_bigquery_down_commits_nothing_and_restart_loses_nothing(own_bigquery):
    """A BigQuery emulator of its own, stopped while the consumer runs."""
    settings, emulator = own_bigquery
    ticks = simulated(6_000, seed=28)
    produce_ticks(settings, ticks)

    def stop_bigquery_after_first_batch(report):
        if report.number == 1:
            emulator.down()

    consumer = SinkConsumer(settings, batch_size=1_500, on_batch=stop_bigquery_after_first_batch)
    with pytest.raises(SinkUnavailable, match="Nothing of this batch was committed"):
        consumer.run(until_idle=5)
    after_failure = {p: o or 0 for p, o in committed_offsets(settings).items()}
    committed = sum(after_failure.values())
    # At least the first batch; one more may have gone through a keep-alive
    # connection while the emulator shut down gracefully. Never all of them.
    assert 1_500 <= committed < 6_000

    emulator.up()  # same data folder: what was loaded is still there
    from pipeline_lib.clients.google import bigquery_client

    sql = f"SELECT kafka_partition, kafka_offset FROM {route(settings).table_sql}"  # noqa: S608
    landed = {(r[0], r[1]) for r in bigquery_client(settings).query(sql).result()}
    for partition, offset in after_failure.items():  # commits never pass what landed
        assert all((partition, o) in landed for o in range(offset)), partition
    report = SinkConsumer(settings, batch_size=1_500).run(until_idle=3)
    assert report.consumed == 6_000 - committed
    ids = [t.event_id for t in ticks]
    exactly_once(bq_event_ids(settings), ids)
    exactly_once(gcs_event_ids(settings), ids)


def test_two_consumer_processes_split_six_partitions(settings):
    from kafka import KafkaAdminClient

    settings = settings.with_overrides(partitions=6)
    ensure_topic(settings, partitions=6)
    symbols = [f"S{i:02d}" for i in range(30)]
    ticks = simulated(6_000, seed=29, symbols=symbols)
    members = [
        consumer_process(settings, "--until-idle", "15", "--batch-size", "500") for _ in range(2)
    ]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            group = admin.describe_groups([settings.consumer_group])[settings.consumer_group]
            if len(group["members"]) == 2 and group["group_state"] == "Stable":
                break
            time.sleep(0.2)
        else:
            pytest.fail("two members never joined the group")
    finally:
        admin.close()
    produce_ticks(settings, ticks)
    reports = [finish(member) for member in members]

    # Both members joined and shared the work, unless kafka-python stalled one (seen:
    # partitions assigned, nothing fetched): then its watchdog replaced its client
    # and the group moved the partitions, which is what must not lose anything.
    assert all(r["rebalances"] >= 1 for r in reports), reports
    assert all(r["consumed"] > 0 or r["reconnects"] > 0 for r in reports), reports
    assert sum(r["consumed"] for r in reports) >= 6_000
    ids = [t.event_id for t in ticks]
    exactly_once(bq_event_ids(settings), ids)
    exactly_once(gcs_event_ids(settings), ids)
    partitions_written = {
        int(obj.split("/partition=")[1].split("/")[0]) for r in reports for obj in r["objects"]
    }
    assert partitions_written == set(range(6))


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_flushes_and_commits_the_open_batch(settings, signal_name):
    import signal

    ensure_topic(settings)
    consumer = consumer_process(settings, "--batch-size", "100000", "--flush-interval", "120")
    ticks = simulated(500, seed=30)
    produce_ticks(settings, ticks)
    deadline = time.monotonic() + 60  # wait until the consumer has read everything
    while time.monotonic() < deadline:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        try:
            members = admin.describe_groups([settings.consumer_group])[settings.consumer_group][
                "members"
            ]
        finally:
            admin.close()
        if members:
            break
        time.sleep(0.2)
    time.sleep(4)  # joined: give it time to poll the 500 records into its open batch
    assert committed_offsets(settings) and all(
        o is None for o in committed_offsets(settings).values()
    )
    consumer.send_signal(getattr(signal, signal_name))
    report = finish(consumer, timeout=60)
    assert report["consumed"] == 500 and report["batches"] == 1
    assert sum(report["committed"].values()) == 500
    exactly_once(bq_event_ids(settings), [t.event_id for t in ticks])


def test_rows_bigquery_refuses_are_isolated_and_dead_lettered(settings):
    """A table whose `symbol` column drifted to INT64: load jobs refuse the letter
    symbols (the Write API refuses the whole batch: test_storage_write)."""
    from google.cloud import bigquery

    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.sinks.bigquery import bigquery_schema

    client = bigquery_client(settings)
    client.create_dataset(settings.bq_dataset)
    drifted = [
        bigquery.SchemaField(f.name, "INT64" if f.name == "symbol" else f.field_type, mode=f.mode)
        for f in bigquery_schema()
    ]
    client.create_table(bigquery.Table(route(settings).table_id, schema=drifted))
    ticks = simulated(43, seed=31, symbols=["1234"])
    refused = {5, 17, 38}
    ticks = [t._replace(symbol="AAPL") if i in refused else t for i, t in enumerate(ticks)]
    produce_ticks(settings, ticks)

    settings = settings.with_overrides(bq_write="load")
    report = SinkConsumer(settings).run(until_idle=3)
    assert report.consumed == 43 and report.written == 40 and report.dead_letters == 3
    letters = unique_dead_letters(settings)
    assert {letter.stage for letter in letters} == {"bigquery"}
    assert all("BigQuery rejected the row" in letter.reason for letter in letters)
    assert {letter.key for letter in letters} == {b"AAPL"}  # the original key, kept
    assert sorted(orjson.loads(letter.value)["event_id"] for letter in letters) == sorted(
        ticks[i].event_id for i in refused
    )
    assert len(bq_event_ids(settings, deduplicated=False)) == 40
    assert len(gcs_event_ids(settings)) == 43  # raw objects keep every accepted message


def test_poison_pills_and_oversized_messages_end_as_dead_letters(settings):
    """Out-of-range times and values too big for the dead-letter topic stop nothing."""
    import json

    from kafka import KafkaProducer

    from pipeline_lib.kafka_io.dead_letters import MAX_VALUE_BYTES

    good = simulated(200, seed=32)
    base = orjson.loads(encode(good[0]))
    huge_compressible = b"[" + b" " * (2 * 1024 * 1024) + b"]"  # 2 MB, lz4 makes it tiny
    just_under_limit = b"x" * 1_048_300  # the broker takes it; with dlq headers it is over
    poison = [
        json.dumps({**base, "event_id": "p1", "ts": "9999-12-31T23:59:59-01:00"}).encode(),
        json.dumps({**base, "event_id": "p2", "produced_at": "0001-01-01T00:00:00+01:00"}).encode(),
        json.dumps({**base, "event_id": "p3", "volume": 2**63 - 1}).encode(),
        huge_compressible,
        just_under_limit,
    ]
    ensure_topic(settings)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        compression_type="lz4",
        max_request_size=4 * 1024 * 1024,
    )
    for i, tick in enumerate(good):
        producer.send(settings.topic, key=b"AAPL", value=encode(tick))
        if i % 40 == 20:
            producer.send(settings.topic, key=b"AAPL", value=poison[i // 40])
    producer.flush()
    producer.close()

    report = SinkConsumer(settings, batch_size=50).run(until_idle=3)
    assert report.written == 200 and report.dead_letters == 5
    exactly_once(bq_event_ids(settings), [t.event_id for t in good])
    letters = unique_dead_letters(settings)
    assert len(letters) == 5
    sizes = {letter.original_value_bytes: letter for letter in letters if letter.truncated}
    assert set(sizes) == {len(huge_compressible), len(just_under_limit)}
    for letter in sizes.values():
        assert letter.truncated == "value" and len(letter.value) == MAX_VALUE_BYTES
        assert letter.offset >= 0 and letter.topic == settings.topic
    assert all("1900-2100" in letter.reason for letter in letters[:2])
    assert "above the bound" in letters[2].reason
