"""BigQuery sink: batch load jobs into a day-partitioned table clustered by symbol.

* The table is created if missing, with an explicit schema (:data:`TABLE_SCHEMA`):
  the tick fields plus where each row came from (Kafka topic, partition, offset) and
  when the batch was closed (``ingested_at``).
* Rows go in as one NDJSON **load job** per micro-batch: atomic (all rows or none),
  free of streaming-insert quotas, and never SQL text built from message data.
* **Duplicates**: a batch redelivered after a crash (written, not yet committed) is
  loaded again. Queries read the view ``<table>_dedup``, which keeps the first copy
  of each ``event_id`` (``QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ...) = 1``),
  so every event is seen once — the same on real BigQuery and on the emulator (which
  ignores streaming insert ids). The same view also absorbs a source replayed twice.
* **Rejected rows**: if BigQuery refuses a load as invalid, the batch is split in
  halves until the offending rows are isolated; they are returned as rejected (the
  consumer sends them to the dead-letter topic) and the rest is loaded.
"""

from __future__ import annotations

import io
from datetime import datetime

import orjson

from pipeline_lib.clients import bigquery_client
from pipeline_lib.config import Settings
from pipeline_lib.schema import Tick
from pipeline_lib.sinks import (
    Batch,
    Rejected,
    Sink,
    SinkError,
    WriteResult,
    reraise_refusal,
    with_retries,
)
from pipeline_lib.sql import table_ref

LOAD_TIMEOUT_S = 120
# Bisecting costs one load job per step: past this many, the table (not a few rows)
# is the problem, and the consumer stops instead of dead-lettering everything.
MAX_BISECT_LOADS = 40

# (name, type, mode, description)
TABLE_SCHEMA: tuple[tuple[str, str, str, str], ...] = (
    ("event_id", "STRING", "REQUIRED", "stable id: <source>:<symbol>:<event time µs>"),
    ("symbol", "STRING", "REQUIRED", "ticker symbol"),
    ("ts", "TIMESTAMP", "REQUIRED", "event time (UTC), start of the bar"),
    ("open", "FLOAT64", "REQUIRED", "open price"),
    ("high", "FLOAT64", "REQUIRED", "high price"),
    ("low", "FLOAT64", "REQUIRED", "low price"),
    ("close", "FLOAT64", "REQUIRED", "close price"),
    ("adj_close", "FLOAT64", "NULLABLE", "adjusted close, where the source gives one"),
    ("volume", "INT64", "REQUIRED", "shares traded in the bar"),
    ("source", "STRING", "REQUIRED", "simulator, csv or alphavantage"),
    ("produced_at", "TIMESTAMP", "NULLABLE", "when the producer sent it"),
    ("ingested_at", "TIMESTAMP", "REQUIRED", "when the consumer closed the batch"),
    ("kafka_topic", "STRING", "REQUIRED", "Kafka topic it was read from"),
    ("kafka_partition", "INT64", "REQUIRED", "Kafka partition"),
    ("kafka_offset", "INT64", "REQUIRED", "Kafka offset"),
)


def _quick_retry():
    """The client's own retry, capped: with_retries() decides when to give up."""
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(10)


def bigquery_schema() -> list:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(name, kind, mode=mode, description=text)
        for name, kind, mode, text in TABLE_SCHEMA
    ]


def dedup_view_name(settings: Settings) -> str:
    return f"{settings.bq_table}_dedup"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def row_bytes(tick: Tick, topic: str, partition: int, offset: int, ingested_at: str) -> bytes:
    """One NDJSON row of the table."""
    return orjson.dumps(
        {
            "event_id": tick.event_id,
            "symbol": tick.symbol,
            "ts": _iso(tick.ts),
            "open": tick.open,
            "high": tick.high,
            "low": tick.low,
            "close": tick.close,
            "adj_close": tick.adj_close,
            "volume": tick.volume,
            "source": tick.source,
            "produced_at": _iso(tick.produced_at),
            "ingested_at": ingested_at,
            "kafka_topic": topic,
            "kafka_partition": partition,
            "kafka_offset": offset,
        }
    )


class BigQuerySink(Sink):
    name = "bigquery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table_id = settings.table_id
        self.view_id = f"{settings.gcp_project}.{settings.bq_dataset}.{dedup_view_name(settings)}"
        # Validates the identifiers once; they are the only text ever put into SQL.
        self.table_sql = table_ref(settings.gcp_project, settings.bq_dataset, settings.bq_table)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = bigquery_client(self.settings)
        return self._client

    def setup(self) -> None:
        """Dataset, partitioned + clustered table, and the dedup view; all idempotent."""
        from google.cloud import bigquery

        def create() -> None:
            dataset = bigquery.Dataset(f"{self.settings.gcp_project}.{self.settings.bq_dataset}")
            dataset.location = self.settings.bq_location
            retry = _quick_retry()
            self.client.create_dataset(dataset, exists_ok=True, timeout=30, retry=retry)
            table = bigquery.Table(self.table_id, schema=bigquery_schema())
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="ts"
            )
            table.clustering_fields = ["symbol"]
            table.description = "Stock ticks landed from Kafka by pipeline_lib (raw, may repeat)"
            self.client.create_table(table, exists_ok=True, timeout=30, retry=retry)
            view = bigquery.Table(self.view_id)
            view.view_query = (
                f"SELECT * FROM {self.table_sql} WHERE TRUE "  # noqa: S608 - validated identifier
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at, "
                "kafka_partition, kafka_offset) = 1"
            )
            view.description = "Each event once: use this for analysis"
            self.client.create_table(view, exists_ok=True, timeout=30, retry=retry)

        with_retries(create, f"creating BigQuery table {self.table_id}")

    def _load(self, rows: list[bytes]) -> None:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=bigquery_schema(),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        # A file object without size= makes the client use a resumable upload, which
        # works at any size on real BigQuery and on the emulator.
        job = self.client.load_table_from_file(
            io.BytesIO(b"\n".join(rows)),
            self.table_id,
            job_config=config,
            timeout=30,
            num_retries=0,  # with_retries() is the one retry policy
        )
        job.result(timeout=LOAD_TIMEOUT_S, retry=_quick_retry())

    def _load_isolating_bad_rows(
        self,
        rows: list[bytes],
        origins: list[tuple[str, int, int, bytes]],
        budget: list[int],
    ) -> list[Rejected]:
        """Load; on an invalid-data refusal, bisect to find and return the bad rows."""
        from google.api_core.exceptions import BadRequest

        try:
            with_retries(lambda: self._load(rows), f"loading {len(rows)} rows into {self.table_id}")
            return []
        except BadRequest as error:
            budget[0] -= 1
            if budget[0] <= 0:
                raise SinkError(
                    f"BigQuery refuses most rows of the batch ({error.message}). The table "
                    f"{self.table_id} probably does not match the pipeline's schema: drop it "
                    "or point BQ_TABLE at a new one. Nothing was committed."
                ) from error
            if len(rows) == 1:
                topic, partition, offset, value = origins[0]
                reason = f"BigQuery rejected the row: {error.message}"[:1000]
                return [Rejected(topic, partition, offset, value, reason)]
            middle = len(rows) // 2
            return self._load_isolating_bad_rows(
                rows[:middle], origins[:middle], budget
            ) + self._load_isolating_bad_rows(rows[middle:], origins[middle:], budget)
        except Exception as error:
            reraise_refusal(
                error,
                f"BigQuery refused the load into {self.table_id}",
                "Create it with `python -m pipeline_lib setup` and check permissions.",
            )

    def write(self, batch: Batch) -> WriteResult:
        ingested_at = _iso(batch.closed_at)
        rows: list[bytes] = []
        origins: list[tuple[str, int, int, bytes]] = []
        unencodable: list[Rejected] = []
        for part in batch.parts:
            for tick, offset, value in zip(part.ticks, part.offsets, part.values, strict=True):
                try:
                    rows.append(row_bytes(tick, part.topic, part.partition, offset, ingested_at))
                except (TypeError, ValueError) as error:  # never let one record stop the flow
                    reason = f"cannot encode as a BigQuery row: {error}"
                    unencodable.append(Rejected(part.topic, part.partition, offset, value, reason))
                    continue
                origins.append((part.topic, part.partition, offset, value))
        rejected = unencodable
        if rows:
            rejected += self._load_isolating_bad_rows(rows, origins, [MAX_BISECT_LOADS])
        return WriteResult(
            self.name,
            len(rows) + len(unencodable) - len(rejected),
            [f"bq://{self.table_id}"],
            rejected,
        )
