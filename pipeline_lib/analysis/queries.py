"""Analysis queries over the landed ticks, as DataFrames.

Every query reads the dedup view (each event once) and takes its values as BigQuery
query parameters (``@symbol``, ``@since``...); the only text placed into SQL is the
view's identifier, validated by :func:`pipeline_lib.sql.table_ref`. Times come back
in UTC; :func:`to_market_time` converts them for display.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pipeline_lib.clients import bigquery_client
from pipeline_lib.config import Settings
from pipeline_lib.routes import route

MARKET_TZ = "America/New_York"


def _view(settings: Settings) -> str:
    return route(settings, "ticks").view_sql


def _query(settings: Settings, sql: str, **params: Any) -> pd.DataFrame:
    from google.cloud import bigquery

    def parameter(name: str, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return bigquery.ArrayQueryParameter(name, "STRING", list(value))
        kind = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING"}.get(type(value))
        if isinstance(value, datetime):
            kind = "TIMESTAMP"
        if kind is None:
            raise TypeError(f"unsupported parameter {name}={value!r}")
        return bigquery.ScalarQueryParameter(name, kind, value)

    config = bigquery.QueryJobConfig(
        query_parameters=[parameter(name, value) for name, value in params.items()]
    )
    job = bigquery_client(settings).query(sql, job_config=config)
    frame = job.result(timeout=120).to_dataframe(create_bqstorage_client=False)
    for column in frame.columns:  # one clock in every table and figure: market time
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(MARKET_TZ)
    return frame


# Keeps the rows of one producer run ("" keeps all): the event id starts with its tag.
RUN_FILTER = "(@run = '' OR STARTS_WITH(event_id, CONCAT(@run, ':')))"


def to_market_time(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
    """A copy with ``column`` in New York time (what traders read on a chart)."""
    out = frame.copy()
    out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert(MARKET_TZ)
    return out


def runs(settings: Settings) -> pd.DataFrame:
    """Producer runs in the table, newest first: the event-id prefix (source tag) of each.

    A simulator run's tag is ``sim<seed>-<start>``; CSV replays are ``csv``, AlphaVantage
    ``av``/``avq``. Two simulator runs started close together overlap in event time,
    so the plots show one run at a time.
    """
    sql = f"""
        SELECT REGEXP_EXTRACT(event_id, r'^([^:]+)') AS run, COUNT(*) AS events,
               MIN(ts) AS first_ts, MAX(ts) AS last_ts, MAX(ingested_at) AS last_ingested
        FROM {_view(settings)}
        GROUP BY run
        ORDER BY last_ingested DESC
    """  # noqa: S608
    return _query(settings, sql)


def latest_run(settings: Settings) -> str:
    """Tag of the run that landed last ("" when the table is empty)."""
    frame = runs(settings)
    return "" if frame.empty else str(frame["run"].iloc[0])


def event_count(settings: Settings) -> int:
    """Distinct events in BigQuery."""
    sql = f"SELECT COUNT(*) AS events FROM {_view(settings)}"  # noqa: S608
    return int(_query(settings, sql)["events"].iloc[0])


def symbol_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): ticks, first/last time, last close,
    total volume."""
    sql = f"""
        SELECT symbol, COUNT(*) AS ticks, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
               ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_close,
               SUM(volume) AS volume
        FROM {_view(settings)}
        WHERE {RUN_FILTER}
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return _query(settings, sql, run=run)


def latest_ticks(
    settings: Settings, symbol: str, window: timedelta = timedelta(hours=1), run: str = ""
) -> pd.DataFrame:
    """Ticks of ``symbol`` (of one ``run``, or all with "") in the last ``window`` of event time."""
    sql = f"""
        WITH picked AS (
          SELECT * FROM {_view(settings)}
          WHERE symbol = @symbol AND {RUN_FILTER}
        ),
        last AS (SELECT MAX(ts) AS newest FROM picked)
        SELECT ts, open, high, low, close, volume
        FROM picked, last
        WHERE ts > TIMESTAMP_SUB(last.newest, INTERVAL @window_s SECOND)
        ORDER BY ts
    """  # noqa: S608
    return _query(settings, sql, symbol=symbol, run=run, window_s=int(window.total_seconds()))


def live_feed(
    settings: Settings, run: str = "latest"
) -> tuple[Callable[[str, timedelta], pd.DataFrame], Callable[[], list[str]]]:
    """What the live widget asks at every refresh: the ticks of a symbol in the run
    (with ``"latest"``, re-read each time, so a producer started after the widget
    shows up), and the symbols in BigQuery."""

    def fetch(symbol: str, window: timedelta) -> pd.DataFrame:
        return latest_ticks(
            settings, symbol, window, latest_run(settings) if run == "latest" else run
        )

    def symbols() -> list[str]:
        return symbol_summary(settings)["symbol"].tolist()

    return fetch, symbols


def live_news(settings: Settings, run: str = "latest") -> Callable[[str, Any], pd.DataFrame]:
    """What the live widget asks for its news markers: the stories about a symbol
    since a time, in the same run as the ticks it shows."""

    def fetch(symbol: str, since: Any) -> pd.DataFrame:
        tag = latest_run(settings) if run == "latest" else run
        return latest_news(settings, symbol, pd.Timestamp(since).to_pydatetime(), tag)

    return fetch


def minute_bars(
    settings: Settings, symbol: str, window: timedelta | None = None, run: str = ""
) -> pd.DataFrame:
    """Per-minute OHLCV bars with VWAP, from ticks (first open, max high, min low, last close)."""
    window_s = int(window.total_seconds()) if window else 10 * 365 * 86400
    sql = f"""
        WITH picked AS (
          SELECT * FROM {_view(settings)}
          WHERE symbol = @symbol AND {RUN_FILTER}
        ),
        last AS (SELECT MAX(ts) AS newest FROM picked)
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
    return _query(settings, sql, symbol=symbol, run=run, window_s=window_s)


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
    """SQL: the last close of each symbol and minute in the run (``@run``)."""
    return f"""
          SELECT symbol, TIMESTAMP_TRUNC(ts, MINUTE) AS minute,
                 ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS close
          FROM {_view(settings)}
          WHERE {RUN_FILTER}
          GROUP BY symbol, minute
    """  # noqa: S608


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
    frame = _query(settings, sql, run=run)
    frame["return_pct"] = 100 * (frame["last_close"] / frame["first_close"] - 1)
    frame["annualised_volatility"] = frame["minute_volatility"] * (252 * 390) ** 0.5
    return frame


def top_movers(settings: Settings, limit: int = 5, run: str = "") -> pd.DataFrame:
    """Symbols with the largest absolute move from first to last close."""
    frame = returns_and_volatility(settings, run)
    order = frame["return_pct"].abs().sort_values(ascending=False).index
    return frame.loc[order].head(limit).reset_index(drop=True)


# --- the news stream -----------------------------------------------------------------

# Keeps the stories of one producer run: a simulator run's news ids share its tag.
NEWS_RUN_FILTER = "(@run = '' OR STARTS_WITH(news_id, CONCAT(@run, ':')))"
# Forward returns the lead-lag table reports, in minutes after the story's minute.
HORIZONS = (0, 1, 5)


def _news_view(settings: Settings) -> str:
    return route(settings, "news").view_sql


def news_count(settings: Settings) -> int:
    """Distinct stories in BigQuery."""
    sql = f"SELECT COUNT(*) AS stories FROM {_news_view(settings)}"  # noqa: S608
    return int(_query(settings, sql)["stories"].iloc[0])


def news_summary(settings: Settings, run: str = "") -> pd.DataFrame:
    """Per symbol (of one ``run``, or all with ""): stories, how many positive and
    negative, mean sentiment, and the last headline."""
    sql = f"""
        SELECT symbol, COUNT(*) AS stories,
               COUNTIF(sentiment_label = 'positive') AS positive,
               COUNTIF(sentiment_label = 'negative') AS negative,
               AVG(sentiment) AS mean_sentiment,
               ARRAY_AGG(headline ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS last_headline
        FROM {_news_view(settings)}
        WHERE {NEWS_RUN_FILTER}
        GROUP BY symbol
        ORDER BY symbol
    """  # noqa: S608
    return _query(settings, sql, run=run)


def latest_news(
    settings: Settings, symbol: str, since: datetime | None = None, run: str = ""
) -> pd.DataFrame:
    """Stories about ``symbol`` (of one ``run``) published at or after ``since``,
    oldest first: what the figures mark on the price line."""
    sql = f"""
        SELECT ts, headline, sentiment, sentiment_label, provider_sentiment, publisher
        FROM {_news_view(settings)}
        WHERE symbol = @symbol AND {NEWS_RUN_FILTER} AND ts >= @since
        ORDER BY ts
    """  # noqa: S608
    start = since or datetime(1900, 1, 1, tzinfo=UTC)
    return _query(settings, sql, symbol=symbol, run=run, since=start)


def news_and_returns(settings: Settings, run: str = "") -> pd.DataFrame:
    """One row per symbol and minute of prices: stories published in the minute, their
    mean sentiment (NaN without news), and log returns over the minute itself
    (``return_0``), the next minute (``return_1``) and the next five (``return_5``).

    Built in SQL: per-minute closes from the ticks, forward returns with window
    functions, news per minute, joined on (symbol, minute).
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
          FROM {_news_view(settings)}
          WHERE {NEWS_RUN_FILTER}
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
    return _query(settings, sql, run=run)


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
