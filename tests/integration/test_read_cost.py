"""Bounded reads on the emulator (issue 22): the same answers as reading the whole
dedup view, with duplicate rows and an older run in the table; a new run shows up by
itself; a table that predates the run summary gets one at setup."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from pipeline_lib.analysis import queries
from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks.bigquery import BigQuerySink, DefaultStreamSink
from tests.helpers import simulated

pytestmark = pytest.mark.integration
WINDOW = timedelta(minutes=3)


def batch(ticks: list, first: int, partition: int = 0) -> Batch:
    from datetime import UTC, datetime

    offsets = list(range(first, first + len(ticks)))
    part = TICKS.partition_batch("t", partition, ticks, offsets)
    return Batch([part], datetime.now(UTC), "g", 1)


def old_run(n: int) -> list:
    """Ticks of another run, with later event times than ``simulated``'s: the run
    that lands last is not the one with the newest events (a replay of old days)."""
    import itertools

    from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

    start = pd.Timestamp("2025-11-01T14:30:00Z").to_pydatetime()
    return list(itertools.islice(MarketSimulator(SimulatorConfig(seed=9, start=start)), n))


def view_frame(settings: Settings, sql: str, **params) -> pd.DataFrame:
    return queries._query(settings, sql, **params)


def whole_view_ticks(settings: Settings, symbol: str, run: str) -> pd.DataFrame:
    """The reference: today's query before issue 22, over the whole dedup view."""
    view = route(settings).view_sql
    sql = f"""
        WITH picked AS (SELECT * FROM {view} WHERE symbol = @symbol AND {queries.RUN_FILTER}),
        last AS (SELECT MAX(ts) AS newest FROM picked)
        SELECT ts, open, high, low, close, volume FROM picked, last
        WHERE ts > TIMESTAMP_SUB(last.newest, INTERVAL @window_s SECOND) ORDER BY ts
    """  # noqa: S608
    window_s = int(WINDOW.total_seconds())
    return view_frame(settings, sql, symbol=symbol, run=run, window_s=window_s)


def whole_view_symbols(settings: Settings, run: str) -> pd.DataFrame:
    view = route(settings).view_sql
    sql = f"""
        SELECT symbol, COUNT(*) AS ticks, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
               ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_close,
               SUM(volume) AS volume
        FROM {view} WHERE {queries.RUN_FILTER} GROUP BY symbol ORDER BY symbol
    """  # noqa: S608
    return view_frame(settings, sql, run=run)


def whole_view_bars(settings: Settings, symbol: str, run: str) -> pd.DataFrame:
    view = route(settings).view_sql
    sql = f"""
        SELECT TIMESTAMP_TRUNC(ts, MINUTE) AS ts,
               SAFE_DIVIDE(SUM(close * volume), SUM(volume)) AS vwap, COUNT(*) AS ticks
        FROM {view} WHERE symbol = @symbol AND {queries.RUN_FILTER}
        GROUP BY 1 ORDER BY 1
    """  # noqa: S608
    return view_frame(settings, sql, symbol=symbol, run=run)


@pytest.fixture
def landed(settings: Settings) -> tuple[Settings, str, str]:
    """An older run, then the latest one written twice over (duplicates in the raw
    table, as an at-least-once writer leaves them), through both BigQuery writers."""
    load = BigQuerySink(settings)
    load.setup()
    older = old_run(600)
    load.write(batch(older, 0))
    latest = simulated(1200, seed=3)
    stream = DefaultStreamSink(settings)
    stream.setup()
    stream.write(batch(latest[:700], 600))
    load.write(batch(latest[500:], 1100))  # 200 records again, then the rest
    load.write(batch(latest[1000:1100], 1600, partition=1))  # 100 more copies
    stream.close()
    load.close()
    return settings, older[0].event_id.split(":")[0], latest[0].event_id.split(":")[0]


def test_bounded_reads_answer_as_the_whole_view_does_with_duplicates(landed) -> None:
    settings, older, latest = landed
    raw = bigquery_client(settings).query(
        f"SELECT COUNT(*) AS n FROM {route(settings).table_sql}"  # noqa: S608
    )
    assert next(iter(raw.result())).n == 600 + 1200 + 300  # the copies are in the table
    assert queries.latest_run(settings) == latest
    assert queries.runs(settings)["run"].tolist() == [latest, older]
    assert queries.event_count(settings, latest) == 1200
    assert queries.event_count(settings, older) == 600
    assert queries.event_count(settings) == 1800
    for run in (latest, older):
        bounded = queries.symbol_summary(settings, run)
        pd.testing.assert_frame_equal(bounded, whole_view_symbols(settings, run))
        for symbol in bounded["symbol"].head(3):
            got = queries.latest_ticks(settings, symbol, WINDOW, run)
            pd.testing.assert_frame_equal(got, whole_view_ticks(settings, symbol, run))
            assert len(got) > 0
            bars = queries.minute_bars(settings, symbol, None, run)
            reference = whole_view_bars(settings, symbol, run)
            pd.testing.assert_frame_equal(
                bars[["ts", "vwap", "ticks"]].reset_index(drop=True), reference
            )


def test_the_live_feed_follows_a_new_run_by_itself(landed) -> None:
    settings, _, latest = landed
    feed = queries.LiveFeed(settings, max_age_s=0.0)
    assert feed.shown_run() == latest
    first = feed.symbols()
    ticks = feed.ticks(first[0], WINDOW)
    assert len(ticks) > 0 and ticks["ts"].is_monotonic_increasing
    newer = simulated(240, seed=4, symbols=["ZZZ", first[0]])
    sink = BigQuerySink(settings)
    sink.write(batch(newer, 5000, partition=2))
    tag = newer[0].event_id.split(":")[0]
    assert feed.shown_run() == tag != latest
    assert feed.symbols() == sorted({first[0], "ZZZ"})
    assert set(feed.ticks("ZZZ", WINDOW)["ts"]) <= {t.ts for t in newer if t.symbol == "ZZZ"}


def test_setup_fills_the_summary_of_a_table_that_predates_it(settings: Settings) -> None:
    sink = BigQuerySink(settings)
    sink.setup()
    ticks = simulated(300, seed=5)
    sink._land(batch(ticks, 0))  # rows landed without the summary (an older version)
    to = route(settings)
    client = bigquery_client(settings)
    client.delete_table(to.runs_id)
    BigQuerySink(settings).setup()
    assert queries.latest_run(settings) == ticks[0].event_id.split(":")[0]
    spans = queries.run_spans(settings).frame
    assert len(spans) == len({t.symbol for t in ticks})
    assert spans["first_ts"].min() == pd.Timestamp(min(t.ts for t in ticks))


def test_the_live_feed_adds_new_ticks_as_a_full_read_would_show_them(landed) -> None:
    settings, _, latest = landed
    feed = queries.LiveFeed(settings, max_age_s=0.0)
    symbol = feed.symbols()[0]
    before = feed.ticks(symbol, WINDOW)
    more = simulated(1800, seed=3)[1200:]  # the same run goes on
    sink = DefaultStreamSink(settings)
    sink.write(batch(more[:300], 7000, partition=0))
    sink.write(batch(more[200:], 7300, partition=0))  # with copies of 100
    after = feed.ticks(symbol, WINDOW)  # only what landed since the first read
    assert after["ts"].iloc[-1] > before["ts"].iloc[-1]
    full = queries.latest_ticks(settings, symbol, WINDOW, latest)
    pd.testing.assert_frame_equal(after, full)
