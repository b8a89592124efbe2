"""The schema-evolution lesson (notebook 07): a producer one contract version ahead
of the consumer, as rolling upgrades go, and what lands where.

On names of its own (a topic, dead-letter topic and group per run, the table
``<BQ_TABLE>_schema_lesson`` made anew), the lesson:

1. sends ticks of contract ``ticks/1.0`` and of ``ticks/1.1``, which adds the fields
   ``exchange`` (text) and ``bid`` (a price), and lands them with the default policy
   (``PIPELINE_SCHEMA_UPDATES=json``): every record lands, the new fields in the
   ``extra`` JSON column and verbatim in GCS;
2. sends more ``ticks/1.1`` and lands them with ``add``: the table gains the NULLABLE
   columns ``exchange`` and ``bid`` before the batch that first carries them;
3. sends ticks whose ``exchange`` is a number (a type change) and one message of
   ``ticks/2.0`` (a major version): both are refused, each with one line.

Everything that counts is derived from what Kafka, GCS and BigQuery hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records import contract
from pipeline_lib.records.routes import drill_settings, route
from pipeline_lib.records.streams import TICKS, Stream

NEWER = "1.1"  # the producer's contract: ticks/1.0 plus exchange and bid


class SchemaLessonError(PipelineError):
    """The lesson could not run a step; the message says which."""


def with_fields(
    records: list[Any], fields: Callable[[Any], dict[str, Any]], stream: Stream = TICKS
) -> list[tuple[bytes, bytes]]:
    """(key, value) of each record with ``fields(record)`` added: what a producer of a
    newer contract sends."""
    now = datetime.now(UTC)
    messages = []
    for record in records:
        data = orjson.loads(stream.encode(record, produced_at=now))
        data.update(fields(record))
        messages.append((record.symbol.encode(), orjson.dumps(data)))
    return messages


def send_messages(
    settings: Settings, messages: list[tuple[bytes, bytes]], version: str, stream: Stream = TICKS
) -> int:
    """Send ``messages`` to the stream's topic stamped ``<stream>/<version>``; returns
    how many Kafka acknowledged (all, or this raises)."""
    from pipeline_lib.clients.kafka import ensure_topic, kafka_producer

    topic = route(settings, stream).topic
    ensure_topic(settings, topic)
    headers = [(contract.HEADER, f"{stream.name}/{version}".encode())]
    producer = kafka_producer(settings)
    try:
        futures = [producer.send(topic, key=k, value=v, headers=headers) for k, v in messages]
        producer.flush(timeout=settings.delivery_timeout_s + 10)
        failed = [f for f in futures if f.failed()]
        if failed:
            raise SchemaLessonError(f"{len(failed)} messages were not acknowledged")
    finally:
        producer.close(timeout=10)
    return len(messages)


def exchange_and_bid(tick: Any) -> dict[str, Any]:
    """The two fields ``ticks/1.1`` adds."""
    return {"exchange": "XNAS" if tick.symbol < "M" else "XNYS", "bid": round(tick.close - 0.01, 2)}


def lesson_settings(settings: Settings) -> Settings:
    """The lesson's own names: a topic and group for this run, the lesson's table."""
    return drill_settings(settings, "schema-lesson").with_overrides(schema_updates="json")


@dataclass
class SchemaLesson:
    """What each step landed, as the notebook shows it."""

    table: str
    reports: dict[str, str] = field(default_factory=dict)  # step -> the run report
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> counts
    json_rows: Any = None  # rows of ticks/1.1 with their extra column (json policy)
    raw_line: str = ""  # one ticks/1.1 line as GCS holds it
    columns: list[tuple[str, str]] = field(default_factory=list)  # the table's, after add
    added_rows: Any = None  # rows with the new columns (add policy)
    refusals: list[str] = field(default_factory=list)  # the dead letters' reasons


def _query(settings: Settings, sql: str, name: str) -> Any:
    from pipeline_lib.clients.google import run_query

    rows = run_query(settings, sql, name=f"schema lesson: {name}")
    return rows.to_dataframe(create_bqstorage_client=False)


def run_schema_lesson(settings: Settings, ticks: int = 600, seed: int = 21) -> SchemaLesson:
    """Run the three steps (see the module's text) and gather what each landed."""
    from pipeline_lib.clients.google import bigquery_client, storage_client
    from pipeline_lib.kafka_io.consumer import SinkConsumer
    from pipeline_lib.kafka_io.dead_letters import read_dead_letters
    from pipeline_lib.kafka_io.producer import produce
    from pipeline_lib.sinks.landing import landing_sinks
    from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

    mine = lesson_settings(settings)
    to = route(mine)
    bigquery_client(mine).delete_table(to.table_id, not_found_ok=True)
    for sink in landing_sinks(mine):
        sink.setup()
    source = iter(MarketSimulator(SimulatorConfig(seed=seed)))
    lesson = SchemaLesson(table=to.table_id)
    table = to.table_sql

    def land(step: str, policy: str) -> None:
        report = SinkConsumer(mine.with_overrides(schema_updates=policy)).run(
            until_idle=3, handle_signals=False
        )
        lesson.reports[step] = report.summary()
        lesson.counts[step] = {
            "consumed": report.consumed,
            "landed": report.written,
            "dead letters": report.dead_letters,
            "newer contract": report.counts.newer,
        }

    # 1. ticks/1.0 and ticks/1.1 side by side, the default policy
    old = produce(mine, list(itertools.islice(source, ticks)))
    if not old.ok:
        raise SchemaLessonError(f"the lesson's ticks did not all reach Kafka: {old.summary()}")
    send_messages(mine, with_fields(list(itertools.islice(source, ticks)), exchange_and_bid), NEWER)
    land("1.0 and 1.1, json", "json")
    lesson.json_rows = _query(
        mine,
        f"SELECT symbol, close, extra, JSON_VALUE(extra, '$.exchange') AS exchange "  # noqa: S608
        f"FROM {table} WHERE extra IS NOT NULL ORDER BY ts LIMIT 5",
        "the extra column",
    )
    for blob in storage_client(mine).list_blobs(mine.gcs_bucket, prefix=to.gcs_folder):
        line = next((x for x in blob.download_as_bytes().splitlines() if b'"exchange"' in x), b"")
        if line:
            lesson.raw_line = line.decode()
            break

    # 2. more ticks/1.1, the columns added
    more = list(itertools.islice(source, ticks))
    send_messages(mine, with_fields(more, exchange_and_bid), NEWER)
    land("1.1, add", "add")
    schema = bigquery_client(mine).get_table(to.table_id).schema
    lesson.columns = [(f.name, f.field_type) for f in schema]
    lesson.added_rows = _query(
        mine,
        f"SELECT symbol, close, bid, exchange, extra FROM {table} "  # noqa: S608
        "WHERE exchange IS NOT NULL ORDER BY ts DESC LIMIT 5",
        "the added columns",
    )

    # 3. a type change and a major version: refused, each with one line
    changed = with_fields(list(itertools.islice(source, 5)), lambda t: {"exchange": 12})
    send_messages(mine, changed, NEWER)
    send_messages(mine, with_fields(list(itertools.islice(source, 1)), lambda t: {}), "2.0")
    land("type change and 2.0, add", "add")
    letters = read_dead_letters(mine, timeout=5)
    lesson.refusals = sorted({letter.reason for letter in letters})
    return lesson
