"""google-cloud-bigquery against the BigQuery emulator over HTTP."""

import io
import json

from google.cloud import bigquery

from pipeline_lib.clients import bigquery_client
from pipeline_lib.sql import table_ref

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
