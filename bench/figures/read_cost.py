"""Issue 22: what the live chart's refresh and notebook 04's queries cost as the table grows."""

from __future__ import annotations

import itertools
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.services import START, services, simulated_ticks
from pipeline_lib.core.config import Settings
from pipeline_lib.records.routes import route
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig


def _land(settings: Settings, ticks: Any, count: int, first: int) -> str:
    """Land the next ``count`` ticks of ``ticks`` (an iterator of one run) through the
    load-job sink (which keeps the run summary), 250,000 a batch, from Kafka offset
    ``first``; returns the run's tag."""
    from pipeline_lib.records.batches import Batch
    from pipeline_lib.records.streams import TICKS
    from pipeline_lib.sinks.bigquery import BigQuerySink

    sink = BigQuerySink(settings)
    tag, offset = "", first
    while offset < first + count:
        chunk = list(itertools.islice(ticks, min(250_000, first + count - offset)))
        tag = chunk[0].event_id.split(":")[0]
        part = TICKS.partition_batch("t", 0, chunk, list(range(offset, offset + len(chunk))))
        sink.write(Batch([part], datetime.now(UTC), "bench", 1))
        offset += len(chunk)
    sink.close()
    return tag


def _rows_touched(settings: Settings, symbol: str, since: datetime) -> int:
    """Rows real BigQuery would read for one symbol from ``since``: the day partitions
    from that day on, the symbol's clustered blocks (counted as its rows)."""
    from pipeline_lib.analysis.queries import _query

    sql = (
        f"SELECT COUNT(*) AS n FROM {route(settings).table_sql} "  # noqa: S608
        "WHERE symbol = @symbol AND DATE(ts) >= DATE(@since)"
    )
    return int(_query(settings, sql, symbol=symbol, since=since)["n"].iloc[0])


def read_cost(size: str) -> dict:
    """Issue 22: what one refresh of the live chart, and notebook 04's queries, cost as
    the table grows, the shown run, window and symbol the same.

    Two tables side by side in one run: the latest run (50,000 ticks, a 60-minute
    window of one symbol = 3,600 ticks plotted) on top of an older run, 100,000 rows
    in all and 5,000,000. Rows land through the load-job sink, so the run summary is
    kept as the consumer keeps it. A refresh is what the widget calls: the symbols,
    the window of ticks, the news since the first tick (:class:`LiveFeed`). The
    first refresh reads the whole window (``first_refresh_s``); then, as in class,
    each round lands 5 s of ticks of the latest run and refreshes (the widget reads
    what landed since its last read); rounds alternate between the tables and the
    medians are compared.

    Bytes: the emulator reports no ``total_bytes_processed`` (it answers 0, dry run
    or not), so they are estimated as BigQuery bills them: rows read after pruning
    (the day partitions from the window's first day on, the symbol's clustered rows,
    the whole run summary) times the bytes of the columns read (8 per number or
    timestamp, 2 + length per string), with the on-demand minimum of 10 MB per query.
    ``before_*`` is the same for the reads before this change: four reads of the
    whole table through the dedup view per refresh.
    """
    from pipeline_lib.analysis import queries
    from pipeline_lib.sinks.bigquery import BigQuerySink

    full = size == "full"
    latest_n = 50_000 if full else 2_000
    sizes = {"small": 100_000 if full else 4_000, "large": 5_000_000 if full else 40_000}
    window = timedelta(minutes=60 if full else 2)
    rounds = 5 if full else 2
    older_start = START - timedelta(days=30)
    tables: dict[str, Settings] = {}
    live: dict[str, Any] = {}  # the latest run of each table, to go on landing
    offsets: dict[str, int] = {}
    for label, rows in sizes.items():
        settings = services().fresh(f"read-{label}")
        BigQuerySink(settings).setup()
        BigQuerySink(settings, stream="news").setup()
        older = iter(MarketSimulator(SimulatorConfig(seed=2, start=older_start)))
        _land(settings, older, rows - latest_n, first=0)
        live[label] = iter(MarketSimulator(SimulatorConfig(seed=1, start=START)))
        tag = _land(settings, live[label], latest_n, first=rows)
        tables[label], offsets[label] = settings, rows + latest_n
    rows_in_table = {label: queries.event_count(settings) for label, settings in tables.items()}
    symbol = "AAPL"
    feeds = {label: queries.LiveFeed(settings) for label, settings in tables.items()}

    def refresh(feed: queries.LiveFeed) -> int:
        if symbol not in feed.symbols():  # as the widget does: symbols, ticks, news
            raise RuntimeError(f"{symbol} is not among the symbols of the latest run")
        ticks = feed.ticks(symbol, window)
        feed.news(symbol, ticks["ts"].iloc[0])
        return len(ticks)

    def notebook(settings: Settings) -> None:
        run = queries.latest_run(settings)
        queries.runs(settings)
        queries.event_count(settings, run)
        queries.symbol_summary(settings, run)
        queries.minute_bars(settings, symbol, window, run)
        queries.top_movers(settings, run=run)
        queries.latest_ticks(settings, symbol, window, run)
        queries.latest_news(settings, symbol, None, run)
        queries.news_summary(settings, run)
        queries.news_count(settings, run)
        queries.news_and_returns(settings, run)

    first_refresh_s: dict[str, float] = {}
    for label, feed in feeds.items():  # the widget's first refresh reads the whole window
        started = time.perf_counter()
        refresh(feed)
        first_refresh_s[label] = time.perf_counter() - started
    # Then as in class: 5 s of ticks land (60, five per symbol), the widget refreshes.
    if full:  # the initial landing behind us (the smoke run does not wait)
        time.sleep(queries.LATE.total_seconds())
    refresh_s: dict[str, list[float]] = {label: [] for label in tables}
    notebook_s: dict[str, list[float]] = {label: [] for label in tables}
    plotted: dict[str, int] = {}
    for round_ in range(rounds):
        for label in tables if round_ % 2 == 0 else list(tables)[::-1]:
            _land(tables[label], live[label], 60, first=offsets[label])
            offsets[label] += 60
            started = time.perf_counter()
            plotted[label] = refresh(feeds[label])
            refresh_s[label].append(time.perf_counter() - started)
            if round_ < 3:
                started = time.perf_counter()
                notebook(tables[label])
                notebook_s[label].append(time.perf_counter() - started)
    median = {label: statistics.median(times) for label, times in refresh_s.items()}
    ratio = median["large"] / median["small"]

    # Bytes a refresh would process on real BigQuery (see above).
    sample = simulated_ticks(1000)
    id_bytes = 2 + statistics.mean(len(t.event_id) for t in sample)
    symbol_bytes = 2 + statistics.mean(len(t.symbol) for t in sample)
    tick_row = 9 * 8 + id_bytes + symbol_bytes  # ts, OHLCV, ingested_at, kafka_* + strings
    summary_row = (2 + len(tag)) + symbol_bytes + 3 * 8
    minimum = 10 * 2**20
    bytes_by_size = {}
    for label, settings in tables.items():
        spans = queries.run_spans(settings)
        since = spans.since(window, tag, symbol)
        touched = _rows_touched(settings, symbol, since)
        reads = [len(spans.frame) * summary_row, touched * tick_row, 0]  # news: none here
        bytes_by_size[label] = {
            "estimated_bytes_per_refresh": int(sum(reads)),
            "billed_bytes_per_refresh": int(sum(max(minimum, r) for r in reads)),
            "before_estimated_bytes_per_refresh": int(4 * sizes[label] * tick_row),
            "before_billed_bytes_per_refresh": int(4 * max(minimum, sizes[label] * tick_row)),
        }
    hourly = 3600 / 5.0  # the widget's default refresh
    return {
        "name": "read_cost",
        "rows": sizes,
        "rows_in_table": rows_in_table,
        "latest_run_rows": latest_n,
        "window_minutes": int(window.total_seconds() // 60),
        "ticks_plotted": plotted,
        "rounds": rounds,
        "first_refresh_s": {k: round(v, 3) for k, v in first_refresh_s.items()},
        "refresh_s": {k: [round(t, 3) for t in v] for k, v in refresh_s.items()},
        "median_refresh_s": {k: round(v, 3) for k, v in median.items()},
        "large_over_small_refresh": round(ratio, 2),
        "notebook_04_queries_s": {k: [round(t, 2) for t in v] for k, v in notebook_s.items()},
        "bytes": bytes_by_size,
        "billed_gib_per_hour_at_5s_refresh": {
            k: round(v["billed_bytes_per_refresh"] * hourly / 2**30, 2)
            for k, v in bytes_by_size.items()
        },
        "before_billed_gib_per_hour_at_5s_refresh": {
            k: round(v["before_billed_bytes_per_refresh"] * hourly / 2**30, 1)
            for k, v in bytes_by_size.items()
        },
        "goal": "refresh at 5M rows / at 100k <= 1.2, and < 0.3 s at 5M (medians)",
        "met": ratio <= 1.2 and median["large"] < 0.3,
    }
