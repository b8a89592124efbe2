"""Pure pandas over what :mod:`pipeline_lib.analysis.queries` returns (which
re-exports all of it, where the notebooks find it): one read of the run summary
(:class:`RunSpans`, the bounds of every read), market time, the table a reader wants,
the overlays and indicators the figures draw, volume in bins, the news lead-lag
table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

MARKET_TZ = "America/New_York"
# Before any event of the table: the lower bound of a read without one.
EPOCH = datetime(1900, 1, 1, tzinfo=UTC)
# Forward returns the lead-lag table reports, in minutes after the story's minute.
HORIZONS = (0, 1, 5)


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


def to_market_time(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
    """A copy with ``column`` in New York time (what traders read on a chart)."""
    out = frame.copy()
    out[column] = pd.to_datetime(out[column], utc=True).dt.tz_convert(MARKET_TZ)
    return out


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
