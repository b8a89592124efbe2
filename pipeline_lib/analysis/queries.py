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

from pipeline_lib.clients.google import bigquery_client
from pipeline_lib.core.config import Settings
from pipeline_lib.records.routes import Route, route
from pipeline_lib.sinks.bigquery.table_manager import dedup_sql
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

MARKET_TZ = "America/New_York"
# Before any event of the table: the lower bound of a read without one.
EPOCH = datetime(1900, 1, 1, tzinfo=UTC)
# How far back the live widget reads the run summary first (see LiveFeed.spans).
RECENT = timedelta(days=1)


def _query(settings: Settings, sql: str, **params: Any) -> pd.DataFrame:
    from google.cloud import bigquery

    def parameter(name: str, value: Any) -> Any:
        if isinstance(value, list | tuple):  # symbols
            return bigquery.ArrayQueryParameter(name, TYPES.for_python(str), list(value))
        if isinstance(value, datetime):  # a pandas Timestamp too
            value = pd.Timestamp(value).to_pydatetime()
        return TYPES.parameter(name, value)

    config = bigquery.QueryJobConfig(
        query_parameters=[parameter(name, value) for name, value in params.items()]
    )
    job = bigquery_client(settings).query(sql, job_config=config)
    frame = job.result(timeout=120).to_dataframe(create_bqstorage_client=False)
    for column in frame.columns:  # one clock in every table and figure: market time
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(MARKET_TZ)
    return frame


# Keeps the rows of one producer run ("" keeps all): a record's id starts with its tag.
def _run_filter(id_field: str) -> str:
    return f"(@run = '' OR STARTS_WITH({id_field}, CONCAT(@run, ':')))"


RUN_FILTER = _run_filter("event_id")
NEWS_RUN_FILTER = _run_filter("news_id")


def _picked(to: Route, where: str) -> str:
    """Each event once among the rows of ``to``'s table that match ``where``."""
    return dedup_sql(to.stream, to.table_sql, where)


def to_market_time(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
    """A copy with ``column`` in New York time (what traders read on a chart)."""
    out = frame.copy()
    out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert(MARKET_TZ)
    return out


# --- the run summary -------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpans:
    """One read of a stream's run summary, per (run, symbol): ``first_ts`` (no later
    than the pair's earliest event), ``last_ts`` (a lower bound of its newest) and
    ``landed_at`` (when it last landed). Tens of rows, whatever the table's size."""

    frame: pd.DataFrame

    def _rows(self, run: str = "", symbol: str = "") -> pd.DataFrame:
        rows = self.frame
        if run:
            rows = rows[rows["run"] == run]
        if symbol:
            rows = rows[rows["symbol"] == symbol]
        return rows

    def latest_run(self) -> str:
        """The run that landed last ("" when nothing landed)."""
        if self.frame.empty:
            return ""
        return str(self.frame.sort_values("landed_at")["run"].iloc[-1])

    def symbols(self, run: str = "") -> list[str]:
        """The symbols of ``run`` ("" = of every run), sorted."""
        return sorted(self._rows(run)["symbol"].unique().tolist())

    def first_ts(self, run: str = "", symbol: str = "") -> datetime:
        """No later than the earliest event of ``run`` and ``symbol`` ("" = any): the
        lower bound of a read of the whole run (:data:`EPOCH` when unknown)."""
        rows = self._rows(run, symbol)
        return EPOCH if rows.empty else rows["first_ts"].min().to_pydatetime()

    def since(self, window: timedelta | None, run: str = "", symbol: str = "") -> datetime:
        """The lower bound of a read of the last ``window`` of event time (None: the
        whole run): the newest event time known, minus the window. The newest known
        is never later than the newest landed, so the read holds the whole window."""
        rows = self._rows(run, symbol)
        if rows.empty:
            return EPOCH
        if window is None:
            return self.first_ts(run, symbol)
        return max(EPOCH, rows["last_ts"].max().to_pydatetime() - window)


def run_spans(
    settings: Settings, stream: str = "ticks", landed_since: datetime | None = None
) -> RunSpans:
    """Read the run summary of ``stream``: one small query, whatever the table's size.
    ``landed_since``: only what landed since then (its day partitions of the summary;
    a run's ``first_ts`` may then be later than its first event)."""
    to = route(settings, stream)
    sql = f"""
        SELECT run, symbol, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts,
               MAX(landed_at) AS landed_at
        FROM {to.runs_sql}
        WHERE landed_at >= @landed_since
        GROUP BY run, symbol
    """  # noqa: S608
    return RunSpans(_query(settings, sql, landed_since=landed_since or EPOCH))


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
    to = route(settings, "ticks")
    since = run_spans(settings).first_ts(run) if run else EPOCH
    picked = _picked(to, f"ts >= @since AND {RUN_FILTER}")
    sql = f"SELECT COUNT(*) AS events FROM ({picked})"  # noqa: S608
    return int(_query(settings, sql, run=run, since=since)["events"].iloc[0])


def symbol_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): ticks, first/last time, last close,
    total volume; reads the run's event times only."""
    to = route(settings, "ticks")
    since = run_spans(settings).first_ts(run) if run else EPOCH
    sql = f"""
        SELECT symbol, COUNT(*) AS ticks, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
               ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_close,
               SUM(volume) AS volume
        FROM ({_picked(to, f"ts >= @since AND {RUN_FILTER}")})
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return _query(settings, sql, run=run, since=since)


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
    ctes, params = _windowed(settings, symbol, window, run, spans)
    sql = f"""{ctes}
        SELECT ts, open, high, low, close, volume
        FROM picked, last
        WHERE ts > TIMESTAMP_SUB(last.newest, INTERVAL @window_s SECOND)
        ORDER BY ts
    """  # noqa: S608
    return _query(settings, sql, **params)


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
    return _query(settings, sql, symbol=symbol, run=run, since=since, landed_after=landed_after)


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
    ctes, params = _windowed(settings, symbol, window, run, None)
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
    return _query(settings, sql, **params)


def table(frame: pd.DataFrame) -> Any:
    """A frame as a reader wants it: thousands separators, prices with 2 decimals,
    percents as percents, times in market time with their zone, no index, no NaN."""
    formats: dict[str, Any] = {}
    for column in frame.columns:
        dtype = frame[column].dtype
        if column.endswith("_pct"):
            formats[column] = "{:+.2f} %"
        elif "volatility" in column:
            formats[column] = "{:.1%}"
        elif isinstance(dtype, pd.DatetimeTZDtype):
            formats[column] = lambda t: f"{t:%Y-%m-%d %H:%M:%S %Z}"
        elif pd.api.types.is_integer_dtype(dtype):
            formats[column] = "{:,}"
        elif pd.api.types.is_float_dtype(dtype):
            formats[column] = "{:,.2f}"
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]  # read left
    styled = frame.style.format(formats, na_rep="–").hide(axis="index")
    return styled.set_properties(subset=text, **{"text-align": "left"}) if text else styled


def with_tick_overlays(ticks: pd.DataFrame, sma: int = 20) -> pd.DataFrame:
    """Ticks with ``sma_<n>`` (moving average of close over n ticks) and ``vwap``
    (volume-weighted average price since the first tick shown), for the live chart."""
    out = ticks.copy()
    if out.empty:
        return out
    out[f"sma_{sma}"] = out["close"].rolling(sma, min_periods=1).mean()
    traded = out["volume"].cumsum()
    out["vwap"] = (out["close"] * out["volume"]).cumsum() / traded.where(traded > 0)
    return out


def binned_volume(ticks: pd.DataFrame, max_bars: int = 120) -> tuple[pd.DataFrame, str]:
    """Volume summed into at most ``max_bars`` equal time bins (a long window of
    one-second bars reads as noise), and the bin width as text."""
    if len(ticks) <= max_bars:
        return ticks[["ts", "volume"]], "bar"
    span = (ticks["ts"].iloc[-1] - ticks["ts"].iloc[0]).total_seconds()
    widths = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400]
    width = next((w for w in widths if span / w <= max_bars), widths[-1])
    binned = ticks.set_index("ts")["volume"].resample(f"{width}s").sum().reset_index()
    label = f"{width // 60} min" if width >= 60 else f"{width} s"
    return binned, label


def with_indicators(bars: pd.DataFrame, short: int = 5, long: int = 20) -> pd.DataFrame:
    """Moving averages, log returns and rolling volatility on top of :func:`minute_bars`."""
    import numpy as np

    out = bars.copy()
    out[f"sma_{short}"] = out["close"].rolling(short, min_periods=1).mean()
    out[f"sma_{long}"] = out["close"].rolling(long, min_periods=1).mean()
    out["log_return"] = np.log(out["close"]).diff()
    out["volatility"] = out["log_return"].rolling(long, min_periods=2).std()
    return out


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
    frame = _query(settings, sql, run=run, since=_run_since(settings, run))
    frame["return_pct"] = 100 * (frame["last_close"] / frame["first_close"] - 1)
    frame["annualised_volatility"] = frame["minute_volatility"] * (252 * 390) ** 0.5
    return frame


def top_movers(settings: Settings, limit: int = 5, run: str = "") -> pd.DataFrame:
    """Symbols with the largest absolute move from first to last close."""
    frame = returns_and_volatility(settings, run)
    order = frame["return_pct"].abs().sort_values(ascending=False).index
    return frame.loc[order].head(limit).reset_index(drop=True)


# --- the news stream -----------------------------------------------------------------

# Forward returns the lead-lag table reports, in minutes after the story's minute.
HORIZONS = (0, 1, 5)


def _stories(settings: Settings, where: str) -> str:
    """Each story once among the news rows that match ``where`` (with the run's)."""
    return _picked(route(settings, "news"), f"{where} AND {NEWS_RUN_FILTER}")


def news_count(settings: Settings, run: str = "") -> int:
    """Distinct stories of ``run`` ("" = all: the whole table) in BigQuery."""
    sql = f"SELECT COUNT(*) AS stories FROM ({_stories(settings, 'ts >= @since')})"  # noqa: S608
    since = _run_since(settings, run, "news")
    return int(_query(settings, sql, run=run, since=since)["stories"].iloc[0])


def news_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): stories, how many positive and
    negative, mean sentiment, and the last headline."""
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
    return _query(settings, sql, run=run, since=_run_since(settings, run, "news"))


def latest_news(
    settings: Settings, symbol: str, since: datetime | None = None, run: str = ""
) -> pd.DataFrame:
    """Stories about ``symbol`` (of one ``run``) published at or after ``since`` (None:
    all of the run), oldest first: what the figures mark on the price line."""
    sql = f"""
        SELECT ts, headline, sentiment, sentiment_label, provider_sentiment, publisher
        FROM ({_stories(settings, "symbol = @symbol AND ts >= @since")})
        ORDER BY ts
    """  # noqa: S608
    start = since or (run_spans(settings, "news").first_ts(run, symbol) if run else EPOCH)
    return _query(settings, sql, symbol=symbol, run=run, since=start)


def news_and_returns(settings: Settings, run: str = "") -> pd.DataFrame:
    """One row per symbol and minute of prices: stories published in the minute, their
    mean sentiment (NaN without news), and log returns over the minute itself
    (``return_0``), the next minute (``return_1``) and the next five (``return_5``).

    Built in SQL: per-minute closes from the ticks, forward returns with window
    functions, news per minute, joined on (symbol, minute); both streams read from
    the run's first event time on.
    """
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
    since, news_since = _run_since(settings, run), _run_since(settings, run, "news")
    return _query(settings, sql, run=run, since=since, news_since=news_since)


def sentiment_lead_lag(minutes: pd.DataFrame) -> pd.DataFrame:
    """Does news lead price? For each horizon (0: the story's own minute, 1: the next
    minute, 5: the next five), the correlation of a minute's mean sentiment with the
    return over that horizon, across every symbol-minute that had news; with the count
    and the mean return after positive and after negative news (in basis points).
    """
    rows = []
    news = minutes[minutes["stories"] > 0]
    for horizon in HORIZONS:
        column = f"return_{horizon}"
        pairs = news[["sentiment", column]].dropna()
        positive = pairs[pairs["sentiment"] >= 0.05][column]
        negative = pairs[pairs["sentiment"] <= -0.05][column]
        correlation = pairs["sentiment"].corr(pairs[column]) if len(pairs) > 2 else float("nan")
        rows.append(
            {
                "horizon": {0: "same minute", 1: "next minute"}.get(horizon, f"next {horizon} min"),
                "minutes_with_news": len(pairs),
                "correlation": correlation,
                "after_positive_bp": 1e4 * positive.mean() if len(positive) else float("nan"),
                "after_negative_bp": 1e4 * negative.mean() if len(negative) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def most_covered_symbol(news_summary_frame: pd.DataFrame, fallback: str) -> str:
    """The symbol with the most stories (ties: alphabetical), or ``fallback`` without news:
    the one whose news figure has the most to show."""
    if news_summary_frame.empty:
        return fallback
    ranked = news_summary_frame.sort_values(["stories", "symbol"], ascending=[False, True])
    return str(ranked["symbol"].iloc[0])
