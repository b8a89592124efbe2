"""Helpers for integration tests: read back what landed, run consumers as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime

from google.cloud import bigquery

from pipeline_lib.analysis.monitor import bigquery_event_ids, gcs_event_ids
from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.records.routes import route
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, symbol_specs

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def simulated(n: int, seed: int = 1, symbols: list[str] | None = None) -> list:
    config = SimulatorConfig(seed=seed, start=START, symbols=symbol_specs(symbols))
    ticks = []
    for tick in MarketSimulator(config):
        ticks.append(tick)
        if len(ticks) == n:
            return ticks
    return ticks


def produce_ticks(settings: Settings, ticks: list) -> None:
    report = produce(settings, ticks)
    assert report.failed == 0 and report.delivered == len(ticks), report.summary()


def bq_event_ids(settings: Settings, deduplicated: bool = True, stream: str = "ticks") -> Counter:
    """How often each event id is seen in the dedup view (or the raw table)."""
    return bigquery_event_ids(settings, deduplicated=deduplicated, stream=stream)


def bq_count_where_event_id(settings: Settings, event_id: str) -> int:
    table = route(settings).view_sql
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("event_id", "STRING", event_id)]
    )
    sql = f"SELECT COUNT(*) AS n FROM {table} WHERE event_id = @event_id"  # noqa: S608
    return next(iter(bigquery_client(settings).query(sql, job_config=config).result())).n


def consumer_process(
    settings: Settings, *args: str, script: str | None = None, stream: str = "ticks"
) -> subprocess.Popen:
    """`python -m pipeline_lib consume --stream STREAM --json --quiet ARGS` (or a
    script) with these settings."""
    env = {**os.environ, **settings.to_env()}
    command = (
        [sys.executable, "-c", script]
        if script
        else [
            sys.executable,
            "-m",
            "pipeline_lib",
            "consume",
            "--stream",
            stream,
            "--json",
            "--quiet",
            *args,
        ]
    )
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def member(settings: Settings, idle: float = 8.0) -> subprocess.Popen:
    """A consumer process of the group in small, quick batches (the group-change tests)."""
    return consumer_process(
        settings, "--until-idle", str(idle), "--batch-size", "400", "--flush-interval", "0.5"
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> dict:
    """Wait for a consumer process; its JSON report, with its stderr tail for diagnosis."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}\n{err[-3000:]}"
    report = json.loads(out.strip().splitlines()[-1])
    report["stderr_tail"] = err[-1500:]
    return report


def committed_offsets(settings: Settings, stream: str = "ticks") -> dict[int, int | None]:
    from kafka import TopicPartition

    from pipeline_lib.clients.kafka import kafka_consumer

    to = route(settings, stream)
    consumer = kafka_consumer(settings, to.group)
    try:
        partitions = consumer.partitions_for_topic(to.topic) or set()
        return {p: consumer.committed(TopicPartition(to.topic, p)) for p in sorted(partitions)}
    finally:
        consumer.close()


def unique_dead_letters(settings: Settings, stream: str = "ticks") -> list:
    """The dead letters, one per source record (the topic is at least once: a batch
    re-read after a rebalance sends its dead letters again)."""
    from pipeline_lib.kafka_io.dead_letters import read_dead_letters

    letters = read_dead_letters(settings, stream=stream)
    by_origin = {(d.topic, d.partition, d.offset): d for d in letters}
    return [by_origin[key] for key in sorted(by_origin)]


SYMBOLS = [f"S{i:02d}" for i in range(24)]


class SteadyProducer:
    """Streams ``n`` ticks at ``rate`` per second in a thread."""

    def __init__(self, settings, n: int, rate: float, seed: int) -> None:
        self.ticks = simulated(n, seed=seed, symbols=SYMBOLS)
        self.report = None
        self.acknowledged: set[int] = set()  # source positions Kafka acknowledged
        self.thread = threading.Thread(
            target=lambda: setattr(
                self,
                "report",
                produce(settings, self.ticks, rate=rate, on_acknowledged=self.acknowledged.add),
            )
        )

    def acknowledged_ids(self) -> list[str]:
        return [self.ticks[i].event_id for i in sorted(self.acknowledged)]

    def __enter__(self) -> SteadyProducer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=300)

    def check(self) -> list[str]:
        assert self.report is not None and self.report.ok, self.report and self.report.summary()
        return [t.event_id for t in self.ticks]


def all_landed_once(settings: Settings, ids: list[str], stream: str = "ticks") -> None:
    """Every id of ``stream`` once in its BigQuery dedup view, nothing else there, and
    all in GCS."""
    view = bq_event_ids(settings, stream=stream)
    missing = set(ids) - set(view)
    assert not missing, f"{len(missing)} records missing from BigQuery, e.g. {sorted(missing)[:3]}"
    assert set(view) == set(ids) and set(view.values()) == {1}
    in_gcs = gcs_event_ids(settings, stream=stream)
    missing = set(ids) - set(in_gcs)
    assert not missing, f"{len(missing)} of {len(ids)} records missing from GCS"
    assert set(in_gcs) == set(ids)


def nothing_left(settings: Settings, stream: str = "ticks") -> None:
    """A later consumer of the group finds nothing: no commit jumped past a record."""
    report = SinkConsumer(settings, stream=stream).run(until_idle=2)
    assert report.consumed == 0, f"a later consumer still found {report.consumed} records"
