"""google-cloud-bigquery against the BigQuery emulator over HTTP."""

import io
import json
from datetime import UTC, datetime

import pytest
from google.cloud import bigquery

from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.core.sql import table_ref
from pipeline_lib.records.routes import route

SCHEMA = [
    bigquery.SchemaField("event_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("symbol", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("ts", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("close", "FLOAT64"),
    bigquery.SchemaField("volume", "INT64"),
]


def test_partitioned_table_load_and_parameterised_query(settings):
    client = bigquery_client(settings)
    client.create_dataset(settings.bq_dataset)
    table = bigquery.Table(f"{settings.gcp_project}.{settings.bq_dataset}.ticks", schema=SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field="ts"
    )
    table.clustering_fields = ["symbol"]
    created = client.create_table(table)
    assert created.time_partitioning.field == "ts"

    hostile = "x'); DROP TABLE t;--"
    rows = [
        {
            "event_id": f"e{i}",
            "symbol": hostile if i % 4 == 0 else "AAPL",
            "ts": f"2024-01-02T14:{30 + i % 30:02d}:00Z",
            "close": 100.0 + i,
            "volume": 10 * i,
        }
        for i in range(100)
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        schema=SCHEMA,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    # A file object without size= makes the client use a resumable upload.
    client.load_table_from_file(io.BytesIO(body), created, job_config=job_config).result(timeout=60)

    table_sql = table_ref(settings.gcp_project, settings.bq_dataset, "ticks")
    query = f"""
        SELECT symbol, COUNT(*) AS n, SUM(volume) AS volume
        FROM {table_sql}
        WHERE symbol = @symbol
        GROUP BY symbol
    """  # noqa: S608 - the identifier passed table_ref's check; values are parameters
    for symbol, expected in ((hostile, 25), ("AAPL", 75)):
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("symbol", "STRING", symbol)]
        )
        result = list(client.query(query, job_config=config).result())
        assert [(r.symbol, r.n) for r in result] == [(symbol, expected)]
        assert result[0].volume == sum(r["volume"] for r in rows if r["symbol"] == symbol)
    # The hostile text was data, not SQL: the table is intact.
    assert client.get_table(created).num_rows == 100


def test_writes_do_not_copy_the_table_and_time_travel_is_refused(settings):
    """The emulator as pipeline_lib starts it: a write costs the batch, not the table.

    Stock bqemulator copies the whole table after each write to serve time travel: 30
    one-row loads after a 50,000-row one would copy 1.5 million rows into its file.
    """
    from google.api_core.exceptions import GoogleAPICallError

    from pipeline_lib.local.bigquery import BigQueryEmulator
    from pipeline_lib.records.batches import Batch
    from pipeline_lib.records.streams import TICKS
    from pipeline_lib.sinks.bigquery import BigQuerySink
    from tests.helpers import simulated

    ticks = simulated(50_030)

    def batch_of(first: int, count: int) -> Batch:
        part = TICKS.partition_batch(
            settings.topic, 0, ticks[first : first + count], list(range(first, first + count))
        )
        return Batch([part], datetime.now(UTC))

    sink = BigQuerySink(settings)
    sink.setup()
    data = BigQueryEmulator(settings).data_dir

    def size() -> int:
        return sum(f.stat().st_size for f in data.iterdir() if f.is_file())

    sink.write(batch_of(0, 50_000))
    before = size()
    for n in range(30):
        sink.write(batch_of(50_000 + n, 1))
    grown = size() - before
    # Each copy of 50k ticks takes over 1 MB in DuckDB's file: 30 would add 30+ MB.
    assert grown < 8 * 2**20, f"the emulator's file grew {grown / 2**20:.1f} MiB"

    client = bigquery_client(settings)
    sql = (
        f"SELECT COUNT(*) AS n FROM {route(settings).table_sql} "  # noqa: S608 - validated identifier
        "FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 SECOND)"
    )
    with pytest.raises(GoogleAPICallError, match=r"(?i)retention|system_time"):
        client.query(sql).result(timeout=30)
