"""Analysis queries over the landed ticks and news, as DataFrames.

**Each event once, reading only what is shown.** Every query reads the raw table
through :func:`pipeline_lib.sinks.bigquery.table_manager.dedup_sql`: its filters (the symbol, the
run, the event-time window) apply to the table before de-duplication, so real
BigQuery prunes to the day partitions and ``symbol`` clusters shown, and a refresh
costs the same on day 30 as on day 1. The dedup view (``<table>_dedup``) stays for
ad-hoc SQL by people.

**Where the bounds come from.** The run summary (``<table>_runs``,
:mod:`pipeline_lib.sinks.bigquery.run_summary`), a small table the consumer keeps as it
lands: the runs, their symbols, the earliest event time of each and a lower bound of
the newest. :class:`RunSpans` is one read of it; the live widget reads it once per
refresh (:class:`LiveFeed`).

Values go in as BigQuery query parameters (``@symbol``, ``@since``...); the only text
placed into SQL is validated identifiers (:func:`pipeline_lib.core.sql.table_ref`). Times
come back in UTC and are shown in market time (:func:`to_market_time`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pipeline_lib.analysis import frames
from pipeline_lib.analysis.frames import EPOCH, MARKET_TZ, RunSpans
from pipeline_lib.clients.google import dry_run, no_estimate, run_query
from pipeline_lib.core.config import Settings
from pipeline_lib.records.routes import Route, route
from pipeline_lib.sinks.bigquery.table_manager import dedup_sql
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

# How far back the live widget reads the run summary first (see LiveFeed.spans).
RECENT = timedelta(days=1)
# Re-exported from pipeline_lib.analysis.frames, where the notebooks and plots find them.
HORIZONS, table, with_indicators = frames.HORIZONS, frames.table, frames.with_indicators
to_market_time = frames.to_market_time
with_tick_overlays, binned_volume = frames.with_tick_overlays, frames.binned_volume
sentiment_lead_lag, most_covered_symbol = frames.sentiment_lead_lag, frames.most_covered_symbol


@dataclass(frozen=True)
class Query:
    """One read as it is sent: its name (in messages and the bill table), SQL text and
    parameters."""

    name: str
    sql: str
    params: dict[str, Any]


def _parameters(params: dict[str, Any]) -> list[Any]:
    from google.cloud import bigquery

    def parameter(name: str, value: Any) -> Any:
        if isinstance(value, list | tuple):  # symbols
            return bigquery.ArrayQueryParameter(name, TYPES.for_python(str), list(value))
        if isinstance(value, datetime):  # a pandas Timestamp too
            value = pd.Timestamp(value).to_pydatetime()
        return TYPES.parameter(name, value)

    return [parameter(name, value) for name, value in params.items()]


def _query(settings: Settings, sql: str, *, name: str = "query", **params: Any) -> pd.DataFrame:
    rows = run_query(settings, sql, name=name, parameters=_parameters(params))
    frame = rows.to_dataframe(create_bqstorage_client=False)
    for column in frame.columns:  # one clock in every table and figure: market time
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(MARKET_TZ)
    return frame


def _read(settings: Settings, query: Query) -> pd.DataFrame:
    return _query(settings, query.sql, name=query.name, **query.params)


# Keeps the rows of one producer run ("" keeps all): a record's id starts with its tag.
def _run_filter(id_field: str) -> str:
    return f"(@run = '' OR STARTS_WITH({id_field}, CONCAT(@run, ':')))"


RUN_FILTER = _run_filter("event_id")
NEWS_RUN_FILTER = _run_filter("news_id")


def _picked(to: Route, where: str) -> str:
    """Each event once among the rows of ``to``'s table that match ``where``."""
    return dedup_sql(to.stream, to.table_sql, where)


# --- the run summary -------------------------------------------------------------------


def run_spans(
    settings: Settings, stream: str = "ticks", landed_since: datetime | None = None
) -> RunSpans:
    """Read the run summary of ``stream``: one small query, whatever the table's size.
    ``landed_since``: only what landed since then (its day partitions of the summary;
    a run's ``first_ts`` may then be later than its first event)."""
    return RunSpans(_read(settings, _spans_query(settings, stream, landed_since)))


def _spans_query(settings: Settings, stream: str, landed_since: datetime | None) -> Query:
    sql = f"""
        SELECT run, symbol, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts,
               MAX(landed_at) AS landed_at
        FROM {route(settings, stream).runs_sql}
        WHERE landed_at >= @landed_since
        GROUP BY run, symbol
    """  # noqa: S608
    name = "run_spans" if stream == "ticks" else f"run_spans({stream})"
    return Query(name, sql, {"landed_since": landed_since or EPOCH})


def runs(settings: Settings) -> pd.DataFrame:
    """Producer runs in the table, the one that landed last first: symbols, event-time
    span, when it last landed (from the run summary: no scan of the table).

    A simulator run's tag is ``sim<seed>-<start>``; CSV replays are ``csv``, AlphaVantage
    ``av``/``avq``. Two simulator runs started close together overlap in event time,
    so the plots show one run at a time. ``last_ts`` may be up to a minute behind
    while a run lands.
    """
    spans = run_spans(settings).frame
    if spans.empty:
        return pd.DataFrame(columns=["run", "symbols", "first_ts", "last_ts", "last_landed"])
    frame = spans.groupby("run", as_index=False).agg(
        symbols=("symbol", "nunique"),
        first_ts=("first_ts", "min"),
        last_ts=("last_ts", "max"),
        last_landed=("landed_at", "max"),
    )
    return frame.sort_values("last_landed", ascending=False).reset_index(drop=True)


def latest_run(settings: Settings) -> str:
    """Tag of the run that landed last ("" when the table is empty)."""
    return run_spans(settings).latest_run()


# --- ticks ---------------------------------------------------------------------------


def event_count(settings: Settings, run: str = "") -> int:
    """Distinct events of ``run`` ("" = all: the whole table) in BigQuery."""
    query = _event_count_query(settings, run, _run_since(settings, run))
    return int(_read(settings, query)["events"].iloc[0])


def _event_count_query(settings: Settings, run: str, since: datetime) -> Query:
    picked = _picked(route(settings, "ticks"), f"ts >= @since AND {RUN_FILTER}")
    sql = f"SELECT COUNT(*) AS events FROM ({picked})"  # noqa: S608
    return Query("event_count", sql, {"run": run, "since": since})


def symbol_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): ticks, first/last time, last close,
    total volume; reads the run's event times only."""
    return _read(settings, _symbol_summary_query(settings, run, _run_since(settings, run)))


def _symbol_summary_query(settings: Settings, run: str, since: datetime) -> Query:
    to = route(settings, "ticks")
    sql = f"""
        SELECT symbol, COUNT(*) AS ticks, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
               ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_close,
               SUM(volume) AS volume
        FROM ({_picked(to, f"ts >= @since AND {RUN_FILTER}")})
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return Query("symbol_summary", sql, {"run": run, "since": since})


def _windowed(
    settings: Settings, symbol: str, window: timedelta | None, run: str, spans: RunSpans | None
) -> tuple[str, dict[str, Any]]:
    """The ticks of ``symbol`` in ``run`` read from the lower bound of ``window`` (see
    :meth:`RunSpans.since`), and their parameters; ``picked`` and ``last`` in SQL."""
    to = route(settings, "ticks")
    spans = spans if spans is not None else run_spans(settings)
    since = spans.since(window, run, symbol)
    window_s = int(window.total_seconds()) if window else 200 * 365 * 86400
    where = f"symbol = @symbol AND ts >= @since AND {RUN_FILTER}"
    ctes = f"""
        WITH picked AS ({_picked(to, where)}),
        last AS (SELECT MAX(ts) AS newest FROM picked)
    """  # noqa: S608
    return ctes, {"symbol": symbol, "run": run, "since": since, "window_s": window_s}


def latest_ticks(
    settings: Settings,
    symbol: str,
    window: timedelta = timedelta(hours=1),
    run: str = "",
    spans: RunSpans | None = None,
) -> pd.DataFrame:
    """Ticks of ``symbol`` (of one ``run``, or all with "") in the last ``window`` of
    event time; ``spans``: a run summary read already (else read now)."""
    return _read(settings, _latest_ticks_query(settings, symbol, window, run, spans))


def _latest_ticks_query(
    settings: Settings, symbol: str, window: timedelta, run: str, spans: RunSpans | None
) -> Query:
    ctes, params = _windowed(settings, symbol, window, run, spans)
    sql = f"""{ctes}
        SELECT ts, open, high, low, close, volume
        FROM picked, last
        WHERE ts > TIMESTAMP_SUB(last.newest, INTERVAL @window_s SECOND)
        ORDER BY ts
    """  # noqa: S608
    return Query("latest_ticks", sql, params)


# The live widget reads again only what landed lately (see LiveFeed.ticks).
LATE = timedelta(seconds=30)  # rows whose batch closed this long before the last read
FULL_EVERY_S = 60.0  # and the whole window at least this often
TICK_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


def landed_ticks(
    settings: Settings, symbol: str, run: str, since: datetime, landed_after: datetime = EPOCH
) -> pd.DataFrame:
    """Ticks of ``symbol`` in ``run`` from event time ``since`` that landed (their
    batch closed) at or after ``landed_after``, each once, with their ``event_id``."""
    to = route(settings, "ticks")
    where = f"symbol = @symbol AND ts >= @since AND ingested_at >= @landed_after AND {RUN_FILTER}"
    columns = ", ".join(["event_id", *TICK_COLUMNS])
    sql = f"SELECT {columns} FROM ({_picked(to, where)})"  # noqa: S608
    params = {"symbol": symbol, "run": run, "since": since, "landed_after": landed_after}
    return _query(settings, sql, name="landed_ticks", **params)


@dataclass
class _Shown:
    """The window the live widget shows: its ticks, when they were last read (wall
    clock, compared with ``ingested_at``) and when the whole window was."""

    key: tuple[str, str, timedelta]
    frame: pd.DataFrame
    read_at: datetime
    full_at: float


class LiveFeed:
    """What the live widget asks at every refresh, reading the run summary once per
    refresh: the symbols (of the run shown), the ticks of one symbol in a window, the
    stories about it. ``run="latest"`` follows the run that landed last, so a producer
    started after the widget shows up by itself; any other tag stays on that run.

    A refresh costs three small queries: the summary, the ticks, the news, each
    bounded by symbol and event time. The ticks of the window shown are kept: a
    refresh reads the rows that landed since the last one (and :data:`LATE` before
    it: a batch is stamped when it closes, before it lands) and adds the new ones by
    ``event_id``; the whole window is read again at least every
    :data:`FULL_EVERY_S`, and when the run, symbol or window changes."""

    def __init__(self, settings: Settings, run: str = "latest", max_age_s: float = 1.0) -> None:
        self.settings = settings
        self.run = run
        self.max_age_s = max_age_s  # a refresh's calls share one read of the summary
        self._spans: RunSpans | None = None
        self._read_at = float("-inf")
        self._shown: _Shown | None = None

    def spans(self) -> RunSpans:
        """The run summary, read again when older than ``max_age_s``: what landed in
        the last :data:`RECENT` (the summary's newest day partitions: a run that
        lands writes a row a minute), or all of it when the run shown is not there."""
        if self._spans is None or time.monotonic() - self._read_at > self.max_age_s:
            recent = run_spans(self.settings, landed_since=datetime.now(UTC) - RECENT)
            wanted = recent.latest_run() if self.run == "latest" else self.run
            if recent.frame.empty or (wanted and wanted not in set(recent.frame["run"])):
                recent = run_spans(self.settings)  # nothing recent: the whole summary
            self._spans = recent
            self._read_at = time.monotonic()
        return self._spans

    def shown_run(self) -> str:
        return self.spans().latest_run() if self.run == "latest" else self.run

    def symbols(self) -> list[str]:
        return self.spans().symbols(self.shown_run())

    def ticks(self, symbol: str, window: timedelta) -> pd.DataFrame:
        """The ticks of ``symbol`` in the last ``window`` of the run's event time, as
        :func:`latest_ticks` returns them."""
        run = self.shown_run()
        since = self.spans().since(window, run, symbol)
        key = (run, symbol, window)
        shown = self._shown if self._shown is not None and self._shown.key == key else None
        started = datetime.now(UTC)
        if shown is None or time.monotonic() - shown.full_at > FULL_EVERY_S:
            frame = landed_ticks(self.settings, symbol, run, since)
            full_at = time.monotonic()
        else:
            new = landed_ticks(self.settings, symbol, run, since, shown.read_at - LATE)
            frame = pd.concat([shown.frame, new]) if len(new) else shown.frame
            frame = frame.drop_duplicates("event_id", keep="first")
            full_at = shown.full_at
        frame = frame.sort_values("ts", kind="stable")
        if len(frame):
            frame = frame[frame["ts"] > frame["ts"].iloc[-1] - window]
        self._shown = _Shown(key, frame, started, full_at)
        return frame[TICK_COLUMNS].reset_index(drop=True)

    def news(self, symbol: str, since: Any) -> pd.DataFrame:
        return latest_news(
            self.settings, symbol, pd.Timestamp(since).to_pydatetime(), self.shown_run()
        )


def minute_bars(
    settings: Settings, symbol: str, window: timedelta | None = None, run: str = ""
) -> pd.DataFrame:
    """Per-minute OHLCV bars with VWAP, from ticks (first open, max high, min low, last
    close), over the last ``window`` of the run's event time (None: all of it)."""
    return _read(settings, _minute_bars_query(settings, symbol, window, run, None))


def _minute_bars_query(
    settings: Settings, symbol: str, window: timedelta | None, run: str, spans: RunSpans | None
) -> Query:
    ctes, params = _windowed(settings, symbol, window, run, spans)
    sql = f"""{ctes}
        SELECT
          TIMESTAMP_TRUNC(ts, MINUTE) AS ts,
          ARRAY_AGG(open ORDER BY ts LIMIT 1)[OFFSET(0)] AS open,
          MAX(high) AS high,
          MIN(low) AS low,
          ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS close,
          SUM(volume) AS volume,
          SAFE_DIVIDE(SUM(close * volume), SUM(volume)) AS vwap,
          COUNT(*) AS ticks
        FROM picked, last
        WHERE ts > TIMESTAMP_SUB(last.newest, INTERVAL @window_s SECOND)
        GROUP BY 1
        ORDER BY 1
    """  # noqa: S608
    return Query("minute_bars", sql, params)


def _minute_closes(settings: Settings) -> str:
    """SQL: the last close of each symbol and minute in the run (``@run``), from
    ``@since`` (the run's first event time) on."""
    picked = _picked(route(settings, "ticks"), f"ts >= @since AND {RUN_FILTER}")
    return f"""
          SELECT symbol, TIMESTAMP_TRUNC(ts, MINUTE) AS minute,
                 ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS close
          FROM ({picked})
          GROUP BY symbol, minute
    """  # noqa: S608


def _run_since(settings: Settings, run: str, stream: str = "ticks") -> datetime:
    """The lower bound of a read of all of ``run`` ("" = every run: none)."""
    return run_spans(settings, stream).first_ts(run) if run else EPOCH


def returns_and_volatility(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): return over the data, volatility of
    minute returns (annualised)."""
    frame = _read(settings, _returns_query(settings, run, _run_since(settings, run)))
    frame["return_pct"] = 100 * (frame["last_close"] / frame["first_close"] - 1)
    frame["annualised_volatility"] = frame["minute_volatility"] * (252 * 390) ** 0.5
    return frame


def _returns_query(settings: Settings, run: str, since: datetime) -> Query:
    sql = f"""
        WITH bars AS ({_minute_closes(settings)}),
        rets AS (
          SELECT symbol, minute, close,
                 LN(close / LAG(close) OVER (PARTITION BY symbol ORDER BY minute)) AS r
          FROM bars
        )
        SELECT symbol,
               COUNT(*) AS minutes,
               ARRAY_AGG(close ORDER BY minute LIMIT 1)[OFFSET(0)] AS first_close,
               ARRAY_AGG(close ORDER BY minute DESC LIMIT 1)[OFFSET(0)] AS last_close,
               STDDEV_SAMP(r) AS minute_volatility
        FROM rets
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return Query("returns_and_volatility", sql, {"run": run, "since": since})


def top_movers(settings: Settings, limit: int = 5, run: str = "") -> pd.DataFrame:
    """Symbols with the largest absolute move from first to last close."""
    frame = returns_and_volatility(settings, run)
    order = frame["return_pct"].abs().sort_values(ascending=False).index
    return frame.loc[order].head(limit).reset_index(drop=True)


# --- the news stream -----------------------------------------------------------------


def _stories(settings: Settings, where: str) -> str:
    """Each story once among the news rows that match ``where`` (with the run's)."""
    return _picked(route(settings, "news"), f"{where} AND {NEWS_RUN_FILTER}")


def news_count(settings: Settings, run: str = "") -> int:
    """Distinct stories of ``run`` ("" = all: the whole table) in BigQuery."""
    query = _news_count_query(settings, run, _run_since(settings, run, "news"))
    return int(_read(settings, query)["stories"].iloc[0])


def _news_count_query(settings: Settings, run: str, since: datetime) -> Query:
    sql = f"SELECT COUNT(*) AS stories FROM ({_stories(settings, 'ts >= @since')})"  # noqa: S608
    return Query("news_count", sql, {"run": run, "since": since})


def news_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): stories, how many positive and
    negative, mean sentiment, and the last headline."""
    since = _run_since(settings, run, "news")
    return _read(settings, _news_summary_query(settings, run, since))


def _news_summary_query(settings: Settings, run: str, since: datetime) -> Query:
    sql = f"""
        SELECT symbol, COUNT(*) AS stories,
               COUNTIF(sentiment_label = 'positive') AS positive,
               COUNTIF(sentiment_label = 'negative') AS negative,
               AVG(sentiment) AS mean_sentiment,
               ARRAY_AGG(headline ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_headline
        FROM ({_stories(settings, "ts >= @since")})
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return Query("news_summary", sql, {"run": run, "since": since})


def latest_news(
    settings: Settings, symbol: str, since: datetime | None = None, run: str = ""
) -> pd.DataFrame:
    """Stories about ``symbol`` (of one ``run``) published at or after ``since`` (None:
    all of the run), oldest first: what the figures mark on the price line."""
    start = since or (run_spans(settings, "news").first_ts(run, symbol) if run else EPOCH)
    return _read(settings, _latest_news_query(settings, symbol, run, start))


def _latest_news_query(settings: Settings, symbol: str, run: str, since: datetime) -> Query:
    sql = f"""
        SELECT ts, headline, sentiment, sentiment_label, provider_sentiment, publisher
        FROM ({_stories(settings, "symbol = @symbol AND ts >= @since")})
        ORDER BY ts
    """  # noqa: S608
    return Query("latest_news", sql, {"symbol": symbol, "run": run, "since": since})


def news_and_returns(settings: Settings, run: str = "") -> pd.DataFrame:
    """One row per symbol and minute of prices: stories published in the minute, their
    mean sentiment (NaN without news), and log returns over the minute itself
    (``return_0``), the next minute (``return_1``) and the next five (``return_5``).

    Built in SQL: per-minute closes from the ticks, forward returns with window
    functions, news per minute, joined on (symbol, minute); both streams read from
    the run's first event time on.
    """
    since, news_since = _run_since(settings, run), _run_since(settings, run, "news")
    return _read(settings, _news_and_returns_query(settings, run, since, news_since))


def _news_and_returns_query(
    settings: Settings, run: str, since: datetime, news_since: datetime
) -> Query:
    sql = f"""
        WITH bars AS ({_minute_closes(settings)}),
        moves AS (
          SELECT symbol, minute, close,
                 LN(close / LAG(close) OVER (PARTITION BY symbol ORDER BY minute)) AS return_0,
                 LN(LEAD(close, 1) OVER (PARTITION BY symbol ORDER BY minute) / close)
                   AS return_1,
                 LN(LEAD(close, 5) OVER (PARTITION BY symbol ORDER BY minute) / close)
                   AS return_5
          FROM bars
        ),
        stories AS (
          SELECT symbol, TIMESTAMP_TRUNC(ts, MINUTE) AS minute, COUNT(*) AS stories,
                 AVG(sentiment) AS sentiment
          FROM ({_stories(settings, "ts >= @news_since")})
          GROUP BY symbol, minute
        )
        SELECT moves.symbol, moves.minute, moves.close,
               COALESCE(stories.stories, 0) AS stories, stories.sentiment,
               moves.return_0, moves.return_1, moves.return_5
        FROM moves
        LEFT JOIN stories
          ON stories.symbol = moves.symbol AND stories.minute = moves.minute
        ORDER BY moves.symbol, moves.minute
    """  # noqa: S608
    params = {"run": run, "since": since, "news_since": news_since}
    return Query("news_and_returns", sql, params)


# --- what the notebook's reads would bill -----------------------------------------------


def bill_estimates(
    settings: Settings,
    run: str = "latest",
    symbol: str = "",
    window: timedelta = timedelta(hours=1),
) -> pd.DataFrame:
    """What each read of notebook 04 would bill, by dry runs: nothing runs but the run
    summaries, which bound the reads as the notebook will. Per read: bytes processed,
    tables referenced, the least BigQuery bills on demand (rounded up to the MB, 10 MB
    a table at least) and whether that is within ``BQ_MAX_BYTES_BILLED`` (``ceiling``).
    A dry run does not count clustering, so a read by ``symbol`` may bill less. Where
    the service does not estimate (the emulator) the numbers stay empty and ``note``
    says so."""
    spans, news = run_spans(settings), run_spans(settings, "news")
    run = spans.latest_run() if run == "latest" else run
    symbol = symbol or next(iter(spans.symbols(run)), "")
    since, news_since = (spans.first_ts(run), news.first_ts(run)) if run else (EPOCH, EPOCH)
    story_since = news.first_ts(run, symbol) if run else EPOCH
    reads = [
        _spans_query(settings, "ticks", None),
        _event_count_query(settings, run, since),
        _symbol_summary_query(settings, run, since),
        _minute_bars_query(settings, symbol, window, run, spans),
        _returns_query(settings, run, since),
        _latest_ticks_query(settings, symbol, window, run, spans),
        _spans_query(settings, "news", None),
        _news_summary_query(settings, run, news_since),
        _news_count_query(settings, run, news_since),
        _latest_news_query(settings, symbol, run, story_since),
        _news_and_returns_query(settings, run, since, news_since),
    ]
    ceiling, rows = settings.bq_max_bytes_billed, []
    for read in reads:
        guess = dry_run(settings, read.sql, _parameters(read.params))
        billed = guess.billed_at_least if guess else None
        rows.append(
            {
                "query": read.name,
                "bytes_processed": guess.bytes_processed if guess else None,
                "tables": guess.tables if guess else None,
                "billed_at_least": billed,
                "ceiling": ceiling,
                "within_ceiling": None if billed is None else billed <= ceiling,
                "note": "" if guess else no_estimate(settings),
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("bytes_processed", "tables", "billed_at_least", "ceiling"):
        frame[column] = frame[column].astype("Int64")
    frame["within_ceiling"] = frame["within_ceiling"].astype("boolean")
    return frame
