"""Figures: Close over Volume, candlesticks, news over prices, and the live widget.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state), so
they render the same in JupyterLab, under papermill and in scripts. Times are shown
in New York market time.

The live widget (a :class:`~pipeline_lib.analysis.live.LiveControl`) replaces an
Image widget's PNG at each refresh.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import matplotlib.dates as mdates
import matplotlib.ticker as mticker
import pandas as pd
from matplotlib.figure import Figure

from pipeline_lib.analysis.live import LiveControl
from pipeline_lib.analysis.queries import (
    MARKET_TZ,
    binned_volume,
    to_market_time,
    with_tick_overlays,
)

UP, DOWN, PRICE, VOLUME = "#2e7d32", "#c62828", "#1f4e79", "#7f8c8d"
SMA, VWAP = "#e69f00", "#8e44ad"  # apart from the close line, also for colour-blind eyes
# News markers by label: colour and shape both say it (▲ good, ▼ bad, ● neutral).
POLARITY = {"positive": (UP, "^"), "negative": (DOWN, "v"), "neutral": (VOLUME, "o")}


def _news_markers(axis: Any, prices: pd.DataFrame, news: pd.DataFrame | None) -> int:
    """Mark each story on the close line (at the last close before it), by polarity;
    how many were drawn. ``prices`` and ``news`` in market time."""
    if news is None or news.empty or prices.empty:
        return 0
    stories = to_market_time(news).sort_values("ts")
    first, last = prices["ts"].iloc[0], prices["ts"].iloc[-1]
    stories = stories[(stories["ts"] >= first) & (stories["ts"] <= last)]
    if stories.empty:
        return 0
    placed = pd.merge_asof(
        stories, prices[["ts", "close"]].sort_values("ts"), on="ts", direction="backward"
    )
    for label, (color, marker) in POLARITY.items():
        chosen = placed[placed["sentiment_label"] == label]
        if not chosen.empty:
            axis.scatter(
                chosen["ts"],
                chosen["close"],
                s=70,
                marker=marker,
                color=color,
                edgecolor="white",
                linewidth=0.8,
                zorder=5,
                label=f"{label} news",
            )
    return len(placed)


def _time_axis(axis: Any) -> None:
    locator = mdates.AutoDateLocator(tz=MARKET_TZ)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=MARKET_TZ))
    axis.set_xlabel("time (New York)")


def _waiting(figure: Figure, symbol: str) -> None:
    """The empty state: no axes, one line saying what the figure waits for."""
    for axis in figure.axes:
        axis.set_axis_off()
    figure.text(
        0.5,
        0.5,
        f"waiting for data: no ticks of {symbol} landed yet",
        ha="center",
        va="center",
        fontsize="large",
        color=VOLUME,
    )


def close_volume_figure(
    ticks: pd.DataFrame,
    symbol: str,
    title: str | None = None,
    news: pd.DataFrame | None = None,
) -> Figure:
    """Close price (top) over traded volume (bottom), sharing a market-time axis;
    with ``news`` (:func:`pipeline_lib.analysis.queries.latest_news`), a marker per story."""
    figure = Figure(figsize=(10, 6), layout="constrained")
    price_axis, volume_axis = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    if ticks.empty:
        _waiting(figure, symbol)
        figure.suptitle(title or f"{symbol}: close and volume")
        return figure
    frame = with_tick_overlays(to_market_time(ticks))
    price_axis.plot(frame["ts"], frame["close"], color=PRICE, linewidth=1.2, label="close")
    for column, style, color in (("sma_20", "--", SMA), ("vwap", "-.", VWAP)):
        label = "VWAP" if column == "vwap" else f"SMA {column.split('_')[1]}"
        price_axis.plot(frame["ts"], frame[column], style, color=color, linewidth=1.4, label=label)
    _news_markers(price_axis, frame, news)
    price_axis.set_ylabel("price (USD)")
    price_axis.grid(alpha=0.3)
    # Above the plot, in one row: a legend never covers the line.
    price_axis.legend(
        loc="lower left", bbox_to_anchor=(0, 1.0), ncol=6, frameon=False, fontsize="small"
    )
    volume, per = binned_volume(frame)
    spacing = volume["ts"].diff().median()
    width = (spacing if pd.notna(spacing) else pd.Timedelta(seconds=1)) * 0.8
    if per == "bar":
        closes, opens = frame["close"], frame["open"]
        colors = [UP if c >= o else DOWN for o, c in zip(opens, closes, strict=True)]
    else:
        colors = [VOLUME] * len(volume)
    volume_axis.bar(volume["ts"], volume["volume"], width=width, color=colors, alpha=0.8)
    volume_axis.set_ylabel("volume (shares)" if per == "bar" else f"volume per {per}")
    volume_axis.yaxis.set_major_formatter(mticker.EngFormatter())
    volume_axis.grid(alpha=0.3)
    _time_axis(volume_axis)
    last = frame.iloc[-1]
    figure.suptitle(
        title
        or f"{symbol}: close {last['close']:.2f} USD at {last['ts']:%Y-%m-%d %H:%M:%S %Z} "
        "(event time, New York)"
    )
    return figure


def news_figure(ticks: pd.DataFrame, news: pd.DataFrame, symbol: str) -> Figure:
    """Close with a marker per story (top) over each story's sentiment score (bottom):
    does the price move the way the news reads, and when?"""
    figure = Figure(figsize=(10, 6), layout="constrained")
    price_axis, score_axis = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    figure.suptitle(f"{symbol}: close and news sentiment (event time, New York)")
    if ticks.empty:
        _waiting(figure, symbol)
        return figure
    frame = to_market_time(ticks)
    price_axis.plot(frame["ts"], frame["close"], color=PRICE, linewidth=1.2, label="close")
    drawn = _news_markers(price_axis, frame, news)
    price_axis.set_ylabel("price (USD)")
    price_axis.grid(alpha=0.3)
    price_axis.legend(
        loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, frameon=False, fontsize="small"
    )
    score_axis.axhline(0, color=VOLUME, linewidth=0.8)
    if drawn:
        stories = to_market_time(news)
        stories = stories[
            (stories["ts"] >= frame["ts"].iloc[0]) & (stories["ts"] <= frame["ts"].iloc[-1])
        ]
        colors = [
            POLARITY.get(label, POLARITY["neutral"])[0] for label in stories["sentiment_label"]
        ]
        score_axis.vlines(stories["ts"], 0, stories["sentiment"], color=colors, linewidth=2)
        score_axis.scatter(stories["ts"], stories["sentiment"], color=colors, s=18, zorder=3)
    else:
        score_axis.text(
            0.5,
            0.5,
            "no news in this window",
            transform=score_axis.transAxes,
            ha="center",
            va="center",
            color=VOLUME,
        )
    score_axis.set_ylim(-1.05, 1.05)
    score_axis.set_ylabel("sentiment\n(−1 … +1)")
    score_axis.grid(alpha=0.3)
    _time_axis(score_axis)
    return figure


def candlestick_figure(bars: pd.DataFrame, symbol: str) -> Figure:
    """Candlesticks of OHLC bars (e.g. :func:`pipeline_lib.analysis.queries.minute_bars`),
    with the VWAP line when the bars have a ``vwap`` column."""
    figure = Figure(figsize=(10, 5), layout="constrained")
    axis = figure.subplots()
    figure.suptitle(f"{symbol}: one-minute candles")
    if bars.empty:
        axis.text(0.5, 0.5, "no bars yet", ha="center", va="center")
        return figure
    frame = to_market_time(bars)
    x = mdates.date2num(frame["ts"].dt.tz_localize(None).dt.to_pydatetime())
    spacing = pd.Series(x).diff().median()
    width = (spacing if pd.notna(spacing) else 1 / 1440) * 0.7
    for xi, row in zip(x, frame.itertuples(index=False), strict=True):
        color = UP if row.close >= row.open else DOWN
        axis.vlines(xi, row.low, row.high, color=color, linewidth=1)
        bottom, height = min(row.open, row.close), abs(row.close - row.open)
        axis.bar(xi, max(height, 0.005), width=width, bottom=bottom, color=color)
    if "vwap" in frame:
        axis.plot(x, frame["vwap"], color=VWAP, marker="o", linewidth=1.5, label="VWAP")
        axis.legend(loc="upper left")
    axis.xaxis_date(tz=None)
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axis.set_xlabel(f"time (New York), {frame['ts'].iloc[0]:%Y-%m-%d}")
    axis.set_ylabel("price (USD)")
    axis.grid(alpha=0.3)
    return figure


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _register_png_formatter() -> None:
    """Let IPython show our Figure objects as PNG (pyplot would do this, we avoid pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


_register_png_formatter()


class LiveCloseVolume(LiveControl):
    """A JupyterLab control that redraws Close over Volume as new rows land; with
    ``news(symbol, since)``, each story is marked on the close line by polarity.

    ``fetch(symbol, window)`` returns the ticks to plot (normally
    :func:`pipeline_lib.analysis.queries.latest_ticks` bound to the settings and the latest
    run). ``symbols`` is a list, or a function asked again at every refresh, so a
    widget started before the producer shows the symbols once they land.

    One refresh loop per kernel (:class:`~pipeline_lib.analysis.live.LiveControl`).
    """

    def __init__(
        self,
        fetch: Callable[[str, timedelta], pd.DataFrame],
        symbols: list[str] | Callable[[], list[str]],
        window_minutes: int = 30,
        refresh_s: float = 5.0,
        news: Callable[[str, pd.Timestamp], pd.DataFrame] | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.fetch = fetch
        self.fetch_news = news
        self._symbols = symbols if callable(symbols) else (lambda: list(symbols))
        wide = {"description_width": "initial"}  # labels in full, never "window (…"
        self.symbol = widgets.Dropdown(
            options=self._symbols() or ["-"], description="symbol", style=wide
        )
        self.window = widgets.IntSlider(
            value=window_minutes, min=1, max=390, step=1, description="window (min)", style=wide
        )
        refresh, running = self._controls(refresh_s)
        self.image = widgets.Image(format="png")
        controls = widgets.HBox([self.symbol, self.window, refresh, running])
        self.widget = widgets.VBox([controls, self.image, self.status])
        self.symbol.observe(lambda _: self.redraw(), names="value")
        self.window.observe(lambda _: self.redraw(), names="value")

    def before_redraw(self) -> None:
        self._update_symbols()

    def _update_symbols(self) -> None:
        symbols = self._symbols()
        if symbols and list(self.symbol.options) != symbols:
            current = self.symbol.value
            self.symbol.options = symbols  # selects the first one
            if current in symbols:
                self.symbol.value = current

    def redraw(self) -> None:
        symbol = self.symbol.value
        ticks = self.fetch(symbol, timedelta(minutes=self.window.value))
        news = None
        if self.fetch_news is not None and not ticks.empty:
            news = self.fetch_news(symbol, pd.Timestamp(ticks["ts"].iloc[0]))
        self.image.value = figure_png(close_volume_figure(ticks, symbol, news=news))
        now = pd.Timestamp.now(tz=MARKET_TZ)
        stories = "" if news is None else f" and {len(news):,} stories"
        self.status.value = (
            f"{len(ticks):,} ticks{stories} of {symbol}, redrawn {now:%H:%M:%S} New York "
            "(wall clock)"
        )


def failover_figure(
    acknowledged_at: list[float], events: list[tuple[float, str]], title: str | None = None
) -> Figure:
    """Acknowledgements per second through a broker failure, with what happened when:
    a dip while Kafka elects new leaders, then the steady rate again."""
    import numpy as np

    figure = Figure(figsize=(10, 4), layout="constrained")
    axis = figure.subplots()
    if acknowledged_at:
        end = int(np.ceil(max(acknowledged_at))) + 1
        counts, edges = np.histogram(acknowledged_at, bins=np.arange(0, end + 1))
        axis.bar(edges[:-1], counts, width=0.9, align="edge", color=PRICE, label="acknowledged")
    right = max([*acknowledged_at, *(when for when, _ in events), 1.0]) + 1.0
    axis.set_xlim(0, right)
    for when, what in events:
        color = DOWN if "killed" in what else UP
        near_end = when > 0.8 * right
        axis.axvline(when, color=color, linestyle="--", linewidth=1.2)
        axis.annotate(
            what,
            (when, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-3 if near_end else 3, -12),
            textcoords="offset points",
            ha="right" if near_end else "left",
            color=color,
            fontsize="small",
        )
    axis.set_xlabel("seconds since the stream started")
    axis.set_ylabel("records acknowledged per second")
    axis.grid(alpha=0.3)
    figure.suptitle(title or "Producer acknowledgements through a broker failure")
    return figure
