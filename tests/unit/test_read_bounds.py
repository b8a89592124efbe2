"""Reads that touch only what they show (issue 22), without a network: the run
summary's bookkeeping, and the SQL every read sends (bounded on the raw table before
any window function, never the dedup view)."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipeline_lib.analysis import queries
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import TICKS
from pipeline_lib.sinks import SinkError
from pipeline_lib.sinks.bigquery.run_summary import RunSummary
from tests.helpers import simulated

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def batch_of(ticks: list, first_offset: int = 0) -> Batch:
    offsets = list(range(first_offset, first_offset + len(ticks)))
    return Batch([TICKS.partition_batch("t", 0, ticks, offsets)], NOW, "g", 1)


def summary(clock: Clock) -> tuple[RunSummary, list[list[dict]]]:
    sent: list[list[dict]] = []
    return RunSummary(TICKS, sent.append, every_s=30.0, clock=clock), sent


def test_a_new_run_and_symbol_is_written_with_the_batch_that_brings_it() -> None:
    clock = Clock()
    runs, sent = summary(clock)
    ticks = simulated(40, symbols=["AAA", "BBB"])
    assert runs.note(batch_of(ticks)) == 2
    rows = {row["symbol"]: row for row in sent[0]}
    run = ticks[0].event_id.split(":")[0]
    assert {row["run"] for row in sent[0]} == {run}
    aaa = [t.ts for t in ticks if t.symbol == "AAA"]
    assert rows["AAA"]["first_ts"] == min(aaa).isoformat()
    assert rows["AAA"]["last_ts"] == max(aaa).isoformat()
    assert rows["AAA"]["landed_at"] == NOW.isoformat()


def test_a_pair_that_keeps_landing_is_rewritten_at_most_every_interval() -> None:
    clock = Clock()
    runs, sent = summary(clock)
    ticks = simulated(120, symbols=["AAA"])
    runs.note(batch_of(ticks[:40]))
    clock.now = 10.0
    assert runs.note(batch_of(ticks[40:80], 40)) == 0  # newer, but not due yet
    clock.now = 31.0
    assert runs.note(batch_of(ticks[80:], 80)) == 1
    assert sent[-1][0]["last_ts"] == ticks[-1].ts.isoformat()
    clock.now = 70.0
    assert runs.note(batch_of(ticks[80:], 80)) == 0  # nothing new: nothing written


def test_an_earlier_event_is_written_at_once_so_first_ts_is_never_too_late() -> None:
    clock = Clock()
    runs, sent = summary(clock)
    ticks = simulated(60, symbols=["AAA"])
    runs.note(batch_of(ticks[30:]))
    clock.now = 1.0
    assert runs.note(batch_of(ticks[:30], 100)) == 1
    assert sent[-1][0]["first_ts"] == ticks[0].ts.isoformat()


def test_close_writes_what_is_newer_and_refused_records_are_left_out() -> None:
    clock = Clock()
    runs, sent = summary(clock)
    ticks = simulated(60, symbols=["AAA"])
    runs.note(batch_of(ticks[:30]))
    clock.now = 1.0
    later = batch_of(ticks[30:], 30)
    refused = {("t", 0, 59)}  # the newest record was refused by BigQuery
    runs.note(later, refused)
    assert runs.flush(NOW) == 1
    assert sent[-1][0]["last_ts"] == ticks[58].ts.isoformat()


def test_a_failed_insert_fails_the_write_and_the_rows_stay_due() -> None:
    clock = Clock()
    calls = []

    def insert(rows: list[dict]) -> None:
        calls.append(rows)
        if len(calls) == 1:
            raise SinkError("BigQuery refused run summary rows")

    runs = RunSummary(TICKS, insert, clock=clock)
    ticks = simulated(20, symbols=["AAA"])
    with pytest.raises(SinkError):
        runs.note(batch_of(ticks))
    assert runs.note(batch_of(ticks)) == 1  # the batch is written again: so is its row


# --- the SQL the reads send ------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Record every query; answer the run summary with one run of two symbols and
    everything else with no rows."""
    log: list[tuple[str, dict]] = []
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    runs_sql = route(settings, "ticks").runs_sql
    news_runs_sql = route(settings, "news").runs_sql

    def fake(settings: Settings, sql: str, **params):
        log.append((sql, params))
        if runs_sql in sql or news_runs_sql in sql:
            return pd.DataFrame(
                {
                    "run": ["old", "new", "new"],
                    "symbol": ["AAA", "AAA", "BBB"],
                    "first_ts": pd.to_datetime([NOW - timedelta(days=40), NOW, NOW], utc=True),
                    "last_ts": pd.to_datetime(
                        [NOW - timedelta(days=39), NOW + timedelta(hours=2), NOW], utc=True
                    ),
                    "landed_at": pd.to_datetime(
                        [NOW - timedelta(days=39), NOW + timedelta(hours=2), NOW], utc=True
                    ),
                }
            )
        return pd.DataFrame(
            {
                "event_id": [],
                "ts": pd.to_datetime([], utc=True),
                "symbol": [],
                "open": [],
                "high": [],
                "low": [],
                "volume": [],
                "close": [],
                "first_close": [],
                "last_close": [],
                "minute_volatility": [],
            }
        )

    monkeypatch.setattr(queries, "_query", fake)
    return log


def bounded_before_dedup(sql: str, table_sql: str, view_sql: str, *needles: str) -> None:
    """Every read of the raw table filters it (``needles``) before its QUALIFY, and
    nothing reads the dedup view."""
    assert view_sql not in sql
    reads = re.findall(re.escape(table_sql) + r" WHERE (.*?) QUALIFY ", sql, flags=re.S)
    assert reads, sql
    for where in reads:
        for needle in needles:
            assert needle in where, (needle, where)


def test_a_live_refresh_reads_the_summary_once_then_one_symbol_and_window(sent) -> None:
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    ticks, news = route(settings, "ticks"), route(settings, "news")
    feed = queries.LiveFeed(settings)  # run="latest"
    assert feed.symbols() == ["AAA", "BBB"]  # of the latest run only
    feed.ticks("AAA", timedelta(minutes=60))
    feed.news("AAA", NOW)
    summary_reads = [sql for sql, _ in sent if ticks.runs_sql in sql]
    assert len(summary_reads) == 1  # one read of the summary serves the refresh
    assert sent[0][1]["landed_since"] > queries.EPOCH  # of its newest day partitions
    assert len(sent) == 3
    (tick_sql, tick_params), (news_sql, news_params) = sent[1], sent[2]
    bounded_before_dedup(
        tick_sql, ticks.table_sql, ticks.view_sql, "symbol = @symbol", "ts >= @since"
    )
    assert tick_params["run"] == "new" and tick_params["symbol"] == "AAA"
    # from the newest event time known minus the window: the whole window, no more
    assert tick_params["since"] == NOW + timedelta(hours=2) - timedelta(minutes=60)
    bounded_before_dedup(
        news_sql, news.table_sql, news.view_sql, "symbol = @symbol", "ts >= @since"
    )
    assert news_params["since"] == NOW


@pytest.mark.parametrize(
    "read",
    [
        lambda s: queries.symbol_summary(s, "new"),
        lambda s: queries.event_count(s, "new"),
        lambda s: queries.minute_bars(s, "AAA", timedelta(minutes=30), "new"),
        lambda s: queries.minute_bars(s, "AAA", None, "new"),
        lambda s: queries.top_movers(s, run="new"),
        lambda s: queries.news_summary(s, "new"),
        lambda s: queries.latest_news(s, "AAA", None, "new"),
        lambda s: queries.news_and_returns(s, "new"),
    ],
    ids=[
        "symbol_summary",
        "event_count",
        "minute_bars_window",
        "minute_bars_run",
        "top_movers",
        "news_summary",
        "latest_news",
        "news_and_returns",
    ],
)
def test_the_analysis_reads_are_bounded_by_the_run_they_show(sent, read) -> None:
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    with contextlib.suppress(KeyError, IndexError, ValueError):
        read(settings)  # the fake answers no rows; only the SQL matters here
    for name in ("ticks", "news"):
        to = route(settings, name)
        for sql, params in sent:
            assert to.view_sql not in sql
            if to.table_sql in sql:
                bounded_before_dedup(sql, to.table_sql, to.view_sql, "ts >= @")
                bound = params.get("since") if "@since" in sql else None
                assert bound is None or bound >= NOW - timedelta(hours=1), (sql, params)


def test_the_widget_reads_the_recent_summary_first_and_all_of_it_only_when_needed(
    sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    ticks = route(settings, "ticks")
    fake = queries._query

    def quiet_lately(settings: Settings, sql: str, **params):
        frame = fake(settings, sql, **params)
        if ticks.runs_sql in sql and params["landed_since"] > queries.EPOCH:
            return frame.iloc[0:0]  # nothing landed in the last day
        return frame

    monkeypatch.setattr(queries, "_query", quiet_lately)
    recent = queries.LiveFeed(settings, max_age_s=0.0)
    assert recent.symbols() == ["AAA", "BBB"]
    reads = [params["landed_since"] for sql, params in sent if ticks.runs_sql in sql]
    assert reads[0] > queries.EPOCH and reads[1] == queries.EPOCH  # the last day, then all


def test_the_widget_adds_what_landed_since_its_last_read_and_rereads_the_window_at_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    start = NOW
    table = pd.DataFrame(  # one tick a second, with when each landed
        {
            "event_id": [f"new:{i}" for i in range(600)],
            "ts": pd.to_datetime([start + timedelta(seconds=i) for i in range(600)], utc=True),
            "landed": [start + timedelta(seconds=i) for i in range(600)],
        }
    )
    for column in ("open", "high", "low", "close", "volume"):
        table[column] = 1.0
    landed = {"now": start + timedelta(seconds=300)}
    reads: list[datetime] = []

    def fake_landed(settings, symbol, run, since, landed_after=queries.EPOCH):
        reads.append(landed_after)
        rows = table[(table["landed"] <= landed["now"]) & (table["landed"] >= landed_after)]
        rows = rows[rows["ts"] >= pd.Timestamp(since)]
        return pd.concat([rows, rows.head(3)]).drop(columns="landed")  # copies, as landed

    spans = queries.RunSpans(
        pd.DataFrame(
            {
                "run": ["new"],
                "symbol": ["AAA"],
                "first_ts": pd.to_datetime([start], utc=True),
                "last_ts": pd.to_datetime([start + timedelta(seconds=200)], utc=True),
                "landed_at": pd.to_datetime([start], utc=True),
            }
        )
    )
    clock = {"wall": landed["now"], "mono": 0.0}
    monkeypatch.setattr(queries, "landed_ticks", fake_landed)
    monkeypatch.setattr(queries.LiveFeed, "spans", lambda self: spans)
    monkeypatch.setattr(queries.time, "monotonic", lambda: clock["mono"])

    class Wall(datetime):
        @classmethod
        def now(cls, tz=None):
            return clock["wall"]

    monkeypatch.setattr(queries, "datetime", Wall)
    feed = queries.LiveFeed(settings)
    window = timedelta(minutes=1)
    first = feed.ticks("AAA", window)
    assert reads == [queries.EPOCH]  # the whole window first
    assert len(first) == 60 and first["ts"].iloc[-1] == table["ts"].iloc[300]
    landed["now"] = clock["wall"] = start + timedelta(seconds=305)
    clock["mono"] = 5.0
    later = feed.ticks("AAA", window)
    assert reads[-1] == start + timedelta(seconds=300) - queries.LATE  # what landed lately
    assert len(later) == 60 and later["ts"].is_unique
    assert later["ts"].iloc[-1] == table["ts"].iloc[305]
    clock["mono"] = 5.0 + queries.FULL_EVERY_S + 1
    feed.ticks("AAA", window)
    assert reads[-1] == queries.EPOCH  # the whole window again, now and then
    feed.ticks("AAA", timedelta(minutes=2))
    assert reads[-1] == queries.EPOCH  # and when the window changes


def test_a_part_refused_whole_and_ids_without_a_run_tag_are_summarised_safely() -> None:
    clock = Clock()
    runs, sent = summary(clock)
    ticks = simulated(4, symbols=["AAA"])
    refused = {("t", 0, i) for i in range(4)}
    assert runs.note(batch_of(ticks), refused) == 0  # nothing of it landed: no row
    untagged = [t._replace(event_id=f"no-tag-{i}") for i, t in enumerate(ticks)]
    assert runs.note(batch_of(untagged)) == 1  # one run "", not one run per id
    assert sent[-1][0]["run"] == ""
