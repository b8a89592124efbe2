"""The original design, kept only as a yardstick: one GCS object and one INSERT per message.

It wrote every Kafka message as its own object and ran one BigQuery INSERT query per
message. (The original built that INSERT by string formatting; this copy uses query
parameters, which costs the same and is safe.) Nothing else uses this module.
"""

from __future__ import annotations

import time

from google.cloud import bigquery

from pipeline_lib.clients.google import bigquery_client, storage_client
from pipeline_lib.clients.kafka import kafka_security
from pipeline_lib.core.config import Settings
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import decode
from pipeline_lib.sinks.bigquery import BigQuerySink
from pipeline_lib.sinks.gcs import GcsSink


def run_baseline(settings: Settings, count: int, group: str) -> dict:
    """Consume ``count`` messages the old way; records per second and time per message."""
    from kafka import KafkaConsumer

    GcsSink(settings).setup()
    BigQuerySink(settings).setup()
    bucket = storage_client(settings).bucket(settings.gcs_bucket)
    client = bigquery_client(settings)
    table = route(settings).table_sql
    insert = (
        f"INSERT INTO {table} (event_id, symbol, ts, open, high, low, close, volume, source, "  # noqa: S608
        "ingested_at, kafka_topic, kafka_partition, kafka_offset) VALUES (@event_id, @symbol, "
        "@ts, @open, @high, @low, @close, @volume, @source, CURRENT_TIMESTAMP(), @topic, "
        "@partition, @offset)"
    )
    consumer = KafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        consumer_timeout_ms=20_000,
        **kafka_security(settings),
    )
    done = 0
    started = time.perf_counter()
    try:
        for message in consumer:
            tick = decode(message.value)
            name = f"baseline/{message.partition}/{message.offset}.json"
            bucket.blob(name).upload_from_string(message.value)
            values = {
                "event_id": ("STRING", tick.event_id),
                "symbol": ("STRING", tick.symbol),
                "ts": ("TIMESTAMP", tick.ts),
                **{f: ("FLOAT64", getattr(tick, f)) for f in ("open", "high", "low", "close")},
                "volume": ("INT64", tick.volume),
                "source": ("STRING", tick.source),
                "topic": ("STRING", message.topic),
                "partition": ("INT64", message.partition),
                "offset": ("INT64", message.offset),
            }
            params = [bigquery.ScalarQueryParameter(k, t, v) for k, (t, v) in values.items()]
            config = bigquery.QueryJobConfig(query_parameters=params)
            client.query(insert, job_config=config).result()
            done += 1
            if done >= count:
                break
    finally:
        consumer.close()
    seconds = time.perf_counter() - started
    return {"records": done, "seconds": seconds, "records_per_s": done / seconds if seconds else 0}
