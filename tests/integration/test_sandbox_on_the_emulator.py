"""A student's own Google Cloud, free (issue 33), on the local broker and emulator:
GCS off lands BigQuery alone; load jobs write the run summary by load too; a dataset
whose partitions expire refuses a replay of old days in one line, committing
nothing, and the same replay lands with partitions by landing time.

The emulator keeps expiration settings as metadata and expires nothing (so the check
reads them as real BigQuery would), and it has no quota and no billing: what the
sandbox refuses is played by the unit tests' doubles.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_lib.clients.google import bigquery_client, storage_client
from pipeline_lib.core.config import SAMPLE_CSV
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.records.routes import route
from pipeline_lib.sinks import SinkError
from pipeline_lib.sinks.landing import landing_sinks
from pipeline_lib.sources.csv_replay import CsvReplay
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


def test_a_csv_replay_into_expiring_partitions_is_refused_then_lands_by_landing_time(
    settings,
):
    from google.cloud import bigquery

    client = bigquery_client(settings)
    dataset = bigquery.Dataset(f"{settings.gcp_project}.{settings.bq_dataset}")
    dataset.default_partition_expiration_ms = SIXTY_DAYS_MS  # as the sandbox's
    client.create_dataset(dataset, exists_ok=True)
    assert client.get_dataset(dataset.reference).default_partition_expiration_ms  # kept
    old = list(itertools.islice(CsvReplay(SAMPLE_CSV, symbols=["IBM"]), 600))  # of 2000
    produce_ticks(settings, old)

    by_event = settings.with_overrides(bq_write="load")
    with pytest.raises(SinkError) as caught:
        land(by_event)
    message = str(caught.value)
    assert "\n" not in message and "BQ_PARTITION_BY=ingestion" in message
    assert "the dataset's default partition expiration" in message
    assert "events from 2000-" in message
    assert set(committed_offsets(by_event).values()) <= {None, 0}  # nothing committed
    assert not bq_event_ids(by_event)

    by_landing = by_event.with_overrides(bq_partition_by="ingestion", bq_table="ticks_landed")
    land(by_landing)
    assert set(bq_event_ids(by_landing)) == {t.event_id for t in old}
    table = client.get_table(route(by_landing).table_id)
    assert table.time_partitioning.field == "ingested_at"


# --- streaming refused at the transport, as the sandbox refuses it -------------------

# Google's documented answer to a streaming insert in a project without billing, in
# BigQuery's usual error body.
FREE_TIER = "Streaming insert is not allowed in the free tier"


class SandboxTransport:
    """The BigQuery client's HTTP transport, refusing every streaming insert
    (``tables.insertAll``) with the sandbox's 403 and passing the rest to the emulator;
    it counts what it refused."""

    def __init__(self, client) -> None:
        import requests

        self.refused = 0
        transport = self

        class Adapter(requests.adapters.HTTPAdapter):
            def send(self, request, **kwargs):
                if request.url.split("?")[0].endswith("/insertAll"):
                    transport.refused += 1
                    return transport.forbidden(request)
                return super().send(request, **kwargs)

        client._http.mount("http://", Adapter())

    @staticmethod
    def forbidden(request):
        import json

        import requests

        response = requests.Response()
        response.status_code = 403
        response.url = request.url
        response.request = request
        response.headers["Content-Type"] = "application/json"
        error = {"message": f"Access Denied: {FREE_TIER}", "reason": "accessDenied"}
        body = {"error": {"code": 403, "message": error["message"], "errors": [error]}}
        response._content = json.dumps({**body, "status": "PERMISSION_DENIED"}).encode()
        return response


def sandbox_sinks(settings):
    """The load-job writer (or the Write API's) on a client whose streaming inserts the
    sandbox refuses; GCS off, as the sandbox has no bucket."""
    from pipeline_lib.sinks.bigquery import BigQuerySink, StorageWriteSink, TableManager

    client = bigquery_client(settings)
    transport = SandboxTransport(client)
    load = settings.bq_write == "load"
    manager = TableManager(settings, client=client, summary_by_load=load)
    writer = BigQuerySink if load else StorageWriteSink
    sink = writer(settings, table_manager=manager)
    sink.setup()
    return [sink], transport


def test_load_jobs_land_a_run_and_its_summary_where_streaming_is_refused(settings):
    sandbox = settings.with_overrides(gcs_target="off", bq_write="load")
    ticks = recent(800, seed=7)
    produce_ticks(sandbox, ticks)
    sinks, transport = sandbox_sinks(sandbox)
    SinkConsumer(sandbox, sinks=sinks, batch_size=300).run(until_idle=3, handle_signals=False)
    assert set(bq_event_ids(sandbox)) == {t.event_id for t in ticks}
    runs = bigquery_client(sandbox).query(
        f"SELECT COUNT(DISTINCT symbol) AS n FROM {route(sandbox).runs_sql}"  # noqa: S608
    )
    assert next(iter(runs.result())).n == len({t.symbol for t in ticks})
    assert transport.refused == 0  # no streaming call at all


def test_a_streaming_writer_where_streaming_is_refused_stops_in_one_line_naming_the_setting(
    settings,
):
    sandbox = settings.with_overrides(gcs_target="off", bq_write="storage")
    produce_ticks(sandbox, recent(300, seed=8))
    sinks, transport = sandbox_sinks(sandbox)
    with pytest.raises(SinkError) as caught:
        SinkConsumer(sandbox, sinks=sinks, batch_size=300).run(until_idle=3, handle_signals=False)
    message = str(caught.value)
    assert "\n" not in message and FREE_TIER in message and "BQ_WRITE=load" in message
    assert transport.refused >= 1
    assert set(committed_offsets(sandbox).values()) <= {None, 0}  # nothing committed
