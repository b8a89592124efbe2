"""Schema evolution on the real broker and emulators (issue 23): a producer one
contract version ahead lands every record, with either policy and either BigQuery
writer; a type change is refused in one line; a table made before the extra column
gets it at setup. Counted in Kafka, GCS and BigQuery."""

from __future__ import annotations

import itertools

import orjson
import pytest

from pipeline_lib.clients.google import bigquery_client, storage_client
from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.lessons.schema_evolution import exchange_and_bid, send_messages, with_fields
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from tests.helpers import bq_event_ids, gcs_event_ids, produce_ticks, simulated, unique_dead_letters

pytestmark = pytest.mark.integration


def rows(settings: Settings, columns: str) -> list[dict]:
    sql = f"SELECT {columns} FROM {route(settings).table_sql} ORDER BY ts"  # noqa: S608
    return [dict(row) for row in bigquery_client(settings).query(sql).result()]


def raw_lines(settings: Settings) -> list[dict]:
    client = storage_client(settings)
    lines = []
    for blob in client.list_blobs(settings.gcs_bucket, prefix=route(settings).gcs_folder):
        lines += [orjson.loads(x) for x in blob.download_as_bytes().splitlines() if x]
    return lines


@pytest.mark.parametrize("bq_write", ["storage", "load"])
@pytest.mark.parametrize("policy", ["json", "add"])
def test_a_producer_one_version_ahead_lands_every_record(settings, bq_write, policy) -> None:
    mine = settings.with_overrides(bq_write=bq_write, schema_updates=policy)
    ticks = simulated(400, seed=31)
    produce_ticks(mine, ticks[:200])  # ticks/1.0
    send_messages(mine, with_fields(ticks[200:], exchange_and_bid), "1.1")
    report = SinkConsumer(mine).run(until_idle=3, handle_signals=False)
    assert report.consumed == report.written == 400 and report.dead_letters == 0
    assert report.counts.newer == 200
    assert report.counts.unknown_fields == {"exchange": 200, "bid": 200}
    ids = [t.event_id for t in ticks]
    assert bq_event_ids(mine, deduplicated=False) == dict.fromkeys(ids, 1)  # each once
    assert set(gcs_event_ids(mine)) == set(ids)
    newer = {t.event_id: exchange_and_bid(t) for t in ticks[200:]}
    for line in raw_lines(mine):  # GCS: what arrived, verbatim
        if line["event_id"] in newer:
            assert {k: line[k] for k in ("exchange", "bid")} == newer[line["event_id"]]
        else:
            assert "exchange" not in line
    if policy == "json":
        landed = rows(mine, "event_id, extra")
        kept = {r["event_id"]: orjson.loads(r["extra"]) for r in landed if r["extra"]}
        assert kept == newer
    else:
        landed = rows(mine, "event_id, exchange, bid, extra")
        assert all(r["extra"] is None for r in landed)
        got = {r["event_id"]: {"exchange": r["exchange"], "bid": r["bid"]} for r in landed}
        assert {k: v for k, v in got.items() if v["exchange"]} == newer
        columns = {
            f.name: f.field_type
            for f in bigquery_client(mine).get_table(route(mine).table_id).schema
        }
        assert columns["exchange"] == "STRING" and columns["bid"] in ("FLOAT", "FLOAT64")


def test_a_type_change_is_refused_in_one_line_and_the_rest_lands(settings) -> None:
    mine = settings.with_overrides(schema_updates="add")
    ticks = simulated(60, seed=32)
    send_messages(mine, with_fields(ticks[:40], exchange_and_bid), "1.1")
    changed = with_fields(ticks[40:50], lambda t: {"exchange": 7})
    send_messages(mine, changed, "1.1")
    send_messages(mine, with_fields(ticks[50:], exchange_and_bid), "1.1")
    report = SinkConsumer(mine).run(until_idle=3, handle_signals=False)
    assert report.consumed == 60 and report.written + report.dead_letters == 60
    letters = unique_dead_letters(mine)
    assert len(letters) == 10 == report.dead_letters
    reasons = {letter.reason for letter in letters}
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("field 'exchange' is STRING in ") and "INT64 7" in reason
    assert "\n" not in reason
    landed = set(bq_event_ids(mine, deduplicated=False))
    assert landed == {t.event_id for t in itertools.chain(ticks[:40], ticks[50:])}


def test_a_table_made_before_the_extra_column_gets_it_at_setup(settings) -> None:
    from google.cloud import bigquery

    from pipeline_lib.sinks.bigquery import BigQuerySink

    client = bigquery_client(settings)
    to = route(settings)
    client.create_dataset(f"{settings.gcp_project}.{settings.bq_dataset}", exists_ok=True)
    older = [
        bigquery.SchemaField(name, kind, mode=mode)
        for name, kind, mode, _ in TICKS.columns
        if name != "extra"
    ]
    client.create_table(bigquery.Table(to.table_id, schema=older))
    ticks = simulated(100, seed=33)
    send_messages(settings, with_fields(ticks, exchange_and_bid), "1.1")
    BigQuerySink(settings).setup()
    assert "extra" in [f.name for f in client.get_table(to.table_id).schema]
    report = SinkConsumer(settings).run(until_idle=3, handle_signals=False)
    assert report.written == 100
    assert all(orjson.loads(r["extra"])["exchange"] for r in rows(settings, "extra"))
