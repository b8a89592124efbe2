"""A consumer crash drill: each tick once in BigQuery's raw table after a SIGKILL at
the worst moment.

Notebook 03 runs it. On names of its own (a topic and group per run, the table
``<BQ_TABLE>_crash_drill`` made anew), it sends ticks to Kafka, then starts a
consumer in a process of its own that kills itself (SIGKILL, nothing flushed) once a
batch is in GCS and BigQuery and its offsets are not yet committed: the moment after
which a writer that trusts Kafka's committed offset writes the batch twice. A new
consumer then lands the rest, and the drill counts what Kafka holds against what
the raw table holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records import routes
from pipeline_lib.records.routes import route

VICTIM = "pipeline_lib.lessons.crash_victim"  # the consumer that dies (a module)


class CrashDrillError(PipelineError):
    """The drill could not run its steps; the message says which."""


@dataclass(frozen=True)
class CrashCounts:
    """Kafka's records against the raw table, at the crash and at the end."""

    table: str
    bq_write: str
    in_kafka: int  # records in the drill's topic
    committed_at_crash: int  # offsets the group had committed when the consumer died
    rows_at_crash: int  # rows the raw table held then
    rows: int  # rows in the raw table at the end
    records: int  # distinct (partition, offset) among them
    events: int  # distinct event ids among them

    @property
    def written_not_committed(self) -> int:
        """Records in BigQuery whose offsets Kafka did not have committed: read again
        after the restart."""
        return self.rows_at_crash - self.committed_at_crash

    @property
    def duplicates(self) -> int:
        return self.rows - self.records

    @property
    def each_once(self) -> bool:
        return self.rows == self.records == self.in_kafka

    def line(self) -> str:
        verdict = "each once" if self.each_once else f"{self.duplicates:,} duplicates"
        return (
            f"{self.in_kafka:,} records in Kafka; at the SIGKILL {self.rows_at_crash:,} "
            f"rows in BigQuery but {self.committed_at_crash:,} offsets committed "
            f"({self.written_not_committed:,} to be read again); after the restart "
            f"{self.rows:,} rows, {self.records:,} distinct Kafka records: {verdict} "
            f"(BQ_WRITE={self.bq_write})"
        )


def drill_settings(settings: Settings, bq_write: str | None = None) -> Settings:
    """The drill's own names: a topic and group for this run, the drill's table."""
    mine = routes.drill_settings(settings, "crash-drill")
    return mine.with_overrides(bq_write=bq_write or settings.bq_write)


def raw_counts(settings: Settings) -> tuple[int, int, int]:
    """(rows, distinct Kafka records, distinct event ids) in the ticks' raw table."""
    from pipeline_lib.clients.google import run_query

    table = route(settings).table_sql
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {table}) AS row_count, "  # noqa: S608 - checked names
        f"(SELECT COUNT(*) FROM (SELECT DISTINCT kafka_partition, kafka_offset FROM {table})) "
        f"AS records, (SELECT COUNT(DISTINCT event_id) FROM {table}) AS events"
    )
    row = next(iter(run_query(settings, sql, name="crash drill counts")))
    return row.row_count, row.records, row.events


def run_crash_drill(
    settings: Settings,
    ticks: int = 3_000,
    batch_size: int = 500,
    kill_at: int = 3,
    bq_write: str | None = None,
    seed: int = 11,
) -> CrashCounts:
    """Send ``ticks``, kill a consumer between the sinks and the commit of its batch
    ``kill_at``, land the rest with a new consumer, and count (see the module's text)."""
    from pipeline_lib.analysis.monitor import kafka_summary
    from pipeline_lib.clients.google import bigquery_client
    from pipeline_lib.kafka_io.consumer import SinkConsumer
    from pipeline_lib.kafka_io.producer import produce
    from pipeline_lib.sinks.landing import landing_sinks
    from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

    mine = drill_settings(settings, bq_write)
    bigquery_client(mine).delete_table(route(mine).table_id, not_found_ok=True)
    for sink in landing_sinks(mine):
        sink.setup()
    sent = produce(mine, MarketSimulator(SimulatorConfig(seed=seed)), max_records=ticks)
    if not sent.ok:
        raise CrashDrillError(f"the drill's ticks did not all reach Kafka: {sent.summary()}")
    victim = subprocess.run(
        [sys.executable, "-m", VICTIM, str(kill_at), str(batch_size)],
        env={**os.environ, **mine.to_env()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if victim.returncode != -9:
        raise CrashDrillError(
            f"the drill's consumer was to die by SIGKILL, it ended with {victim.returncode}: "
            f"{victim.stderr.strip().splitlines()[-1:] or ''}"
        )
    at_crash = kafka_summary(mine)
    rows_at_crash, _, _ = raw_counts(mine)
    SinkConsumer(mine, batch_size=batch_size).run(until_idle=3, handle_signals=False)
    rows, records, events = raw_counts(mine)
    return CrashCounts(
        table=route(mine).table_id,
        bq_write=mine.bq_write,
        in_kafka=at_crash.get("messages", 0),
        committed_at_crash=sum(at_crash.get("committed", {}).values()),
        rows_at_crash=rows_at_crash,
        rows=rows,
        records=records,
        events=events,
    )


def drill_table(drills: list[CrashCounts]) -> Any:
    """The drills side by side, one row per BigQuery writer (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "BQ_WRITE": d.bq_write,
                "records in Kafka": d.in_kafka,
                "committed at the kill": d.committed_at_crash,
                "rows at the kill": d.rows_at_crash,
                "rows now": d.rows,
                "distinct records": d.records,
                "duplicates": d.duplicates,
            }
            for d in drills
        ]
    ).set_index("BQ_WRITE")
