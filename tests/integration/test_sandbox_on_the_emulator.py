"""A student's own Google Cloud, free (issue 33), on the local broker and emulator:
GCS off lands BigQuery alone; load jobs write the run summary by load too; a dataset
whose partitions expire refuses a replay of old days in one line, committing
nothing, and the same replay lands with partitions by landing time.

The emulator keeps expiration settings as metadata and expires nothing (so the check
reads them as real BigQuery would), and it has no quota and no billing: what the
sandbox refuses is played by the unit tests' doubles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline_lib.clients.google import bigquery_client, storage_client
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.records.routes import route
from pipeline_lib.sinks import SinkError
from pipeline_lib.sinks.landing import landing_sinks
from tests.helpers import bq_event_ids, committed_offsets, produce_ticks, simulated

pytestmark = pytest.mark.integration

SIXTY_DAYS_MS = 60 * 86_400_000


def recent(n: int, seed: int = 4) -> list:
    now = datetime.now(UTC)
    return [t._replace(ts=now - timedelta(seconds=n - i)) for i, t in enumerate(simulated(n, seed))]


def land(settings, **consumer) -> SinkConsumer:
    sinks = landing_sinks(settings)
    for sink in sinks:
        sink.setup()
    member = SinkConsumer(settings, sinks=sinks, batch_size=500, **consumer)
    member.run(until_idle=3, handle_signals=False)
    return member


def test_with_gcs_off_the_stream_lands_in_bigquery_alone_with_its_summary(settings):
    off = settings.with_overrides(gcs_target="off", bq_write="load")
    ticks = recent(600)
    produce_ticks(off, ticks)
    with pytest.warns(UserWarning, match="GCS_TARGET=off"):
        land(off)
    assert set(bq_event_ids(off)) == {t.event_id for t in ticks}
    bucket = storage_client(off).bucket(off.gcs_bucket)
    assert not bucket.exists()  # nothing made, nothing written
    runs = bigquery_client(off).query(
        f"SELECT COUNT(*) AS n FROM {route(off).runs_sql}"  # noqa: S608 - checked names
    )
    assert next(iter(runs.result())).n > 0  # written by load job, not streaming


def test_a_replay_of_old_days_into_expiring_partitions_is_refused_then_lands_by_landing_time(
    settings,
):
    from google.cloud import bigquery

    client = bigquery_client(settings)
    dataset = bigquery.Dataset(f"{settings.gcp_project}.{settings.bq_dataset}")
    dataset.default_partition_expiration_ms = SIXTY_DAYS_MS  # as the sandbox's
    client.create_dataset(dataset, exists_ok=True)
    assert client.get_dataset(dataset.reference).default_partition_expiration_ms  # kept
    old = simulated(600, seed=6)  # events of 2024: past 60 days
    produce_ticks(settings, old)

    by_event = settings.with_overrides(bq_write="load")
    with pytest.raises(SinkError) as caught:
        land(by_event)
    message = str(caught.value)
    assert "\n" not in message and "BQ_PARTITION_BY=ingestion" in message
    assert "the dataset's default partition expiration" in message
    assert set(committed_offsets(by_event).values()) <= {None, 0}  # nothing committed
    assert not bq_event_ids(by_event)

    by_landing = by_event.with_overrides(bq_partition_by="ingestion", bq_table="ticks_landed")
    land(by_landing)
    assert set(bq_event_ids(by_landing)) == {t.event_id for t in old}
    table = client.get_table(route(by_landing).table_id)
    assert table.time_partitioning.field == "ingested_at"
