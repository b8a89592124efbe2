"""A snapshot of the pipeline: what is in Kafka, how far the consumer group is, what landed.

Used by ``python -m pipeline_lib status`` and the notebooks. Every part is best
effort: a service that does not answer shows up as an error string, not a crash.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.reports import partition_lag
from pipeline_lib.records.routes import Route, route
from pipeline_lib.sinks.bigquery.type_mapper import TYPES


def kafka_summary(
    settings: Settings, timeout_s: float = 5.0, stream: str | Route = "ticks"
) -> dict[str, Any]:
    """End offsets of the stream's topic and dead-letter topic, committed offsets, lag."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from pipeline_lib.clients.kafka import ConnectionFailed, kafka_consumer

    to = route(settings, stream)
    try:
        consumer = kafka_consumer(
            settings,
            group=to.group,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000) + 2000,
        )
    except ConnectionFailed as error:
        return {"error": str(error)}
    try:
        summary: dict[str, Any] = {}
        topics = consumer.topics()
        if to.topic not in topics:
            return {"topic": to.topic, "exists": False}
        partitions = sorted(consumer.partitions_for_topic(to.topic) or [])
        tps = [TopicPartition(to.topic, p) for p in partitions]
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        committed = {tp.partition: consumer.committed(tp) for tp in tps}
        summary.update(
            topic=to.topic,
            exists=True,
            partitions=len(partitions),
            messages=sum(ends[tp] - starts[tp] for tp in tps),
            group=to.group,
            committed={p: c for p, c in committed.items() if c is not None},
            lag=sum(partition_lag(ends[tp], starts[tp], committed[tp.partition]) for tp in tps),
        )
        if to.dead_letter_topic in topics:
            dlq = [
                TopicPartition(to.dead_letter_topic, p)
                for p in sorted(consumer.partitions_for_topic(to.dead_letter_topic) or [])
            ]
            dlq_ends, dlq_starts = consumer.end_offsets(dlq), consumer.beginning_offsets(dlq)
            summary["dead_letters"] = sum(dlq_ends[tp] - dlq_starts[tp] for tp in dlq)
        else:
            summary["dead_letters"] = 0
        return summary
    except KafkaError as error:
        return {"error": f"Kafka error: {error}"}
    finally:
        consumer.close()


def partition_offsets(
    settings: Settings, timeout_s: float = 5.0, stream: str | Route = "ticks"
) -> Any:
    """Per partition of the stream's topic: first offset, the group's committed offset,
    log end, lag (log end − committed), as a DataFrame for the notebooks."""
    import pandas as pd
    from kafka import TopicPartition

    from pipeline_lib.clients.kafka import kafka_consumer

    to = route(settings, stream)
    consumer = kafka_consumer(
        settings,
        group=to.group,
        bootstrap_timeout_ms=int(timeout_s * 1000),
        request_timeout_ms=int(timeout_s * 1000) + 2000,
    )
    try:
        partitions = sorted(consumer.partitions_for_topic(to.topic) or [])
        tps = [TopicPartition(to.topic, p) for p in partitions]
        starts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        rows = []
        for tp in tps:
            committed = consumer.committed(tp)
            rows.append(
                {
                    "partition": tp.partition,
                    "first_offset": starts[tp],
                    "committed_offset": committed,
                    "log_end_offset": ends[tp],
                    "lag": partition_lag(ends[tp], starts[tp], committed),
                }
            )
        return pd.DataFrame(rows).set_index("partition")
    finally:
        consumer.close()


def bigquery_summary(settings: Settings, stream: str | Route = "ticks") -> dict[str, Any]:
    """Rows in the stream's table and distinct events in its dedup view."""
    from google.api_core.exceptions import GoogleAPIError, NotFound

    from pipeline_lib.clients.google import BytesBilledLimit, run_query

    to = route(settings, stream)
    try:
        view, raw = to.view_sql, to.table_sql
        sql = (
            f"SELECT (SELECT COUNT(*) FROM {raw}) AS rows_loaded, "  # noqa: S608
            f"(SELECT COUNT(*) FROM {view}) AS events"
        )
        row = next(iter(run_query(settings, sql, name="bigquery_summary", timeout=30)))
        return {"table": to.table_id, "rows_loaded": row.rows_loaded, "events": row.events}
    except NotFound:
        return {"table": to.table_id, "exists": False}
    except BytesBilledLimit as error:  # one line that says what to do: all of it
        return {"table": to.table_id, "error": str(error)}
    except (GoogleAPIError, OSError, ValueError) as error:
        return {"table": to.table_id, "error": f"{type(error).__name__}: {error}"[:300]}


def bigquery_event_ids(
    settings: Settings,
    prefix: str = "",
    deduplicated: bool = True,
    stream: str | Route = "ticks",
) -> Counter:
    """How often each record id (starting with ``prefix``) of the stream is in its
    dedup view or raw table: the count a delivery check compares with what Kafka
    acknowledged."""
    from pipeline_lib.clients.google import run_query

    to = route(settings, stream)
    table = to.view_sql if deduplicated else to.table_sql
    key = to.stream.id_field  # a column name from the registry
    sql = (
        f"SELECT {key} AS event_id, COUNT(*) AS n FROM {table} "  # noqa: S608 - validated
        f"WHERE STARTS_WITH({key}, @prefix) GROUP BY {key}"
    )
    prefix_parameter = [TYPES.parameter("prefix", prefix)]
    rows = run_query(
        settings, sql, name="bigquery_event_ids", parameters=prefix_parameter, timeout=None
    )
    return Counter({row.event_id: row.n for row in rows})


def gcs_event_ids(settings: Settings, prefix: str = "", stream: str | Route = "ticks") -> Counter:
    """How often each record id (starting with ``prefix``) is in the stream's raw objects."""
    import orjson

    from pipeline_lib.clients.google import storage_client

    to = route(settings, stream)
    key = to.stream.id_field
    seen: Counter = Counter()
    blobs = storage_client(settings).list_blobs(settings.gcs_bucket, prefix=to.gcs_folder)
    for blob in blobs:
        for line in blob.download_as_bytes().splitlines():
            if line:
                event_id = orjson.loads(line).get(key, "")
                if event_id.startswith(prefix):
                    seen[event_id] += 1
    return seen
