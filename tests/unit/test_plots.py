from datetime import UTC, datetime, timedelta

import pandas as pd

from pipeline_lib.analysis import plots
from pipeline_lib.analysis.queries import to_market_time, with_indicators


def ticks(n=120):
    start = datetime(2024, 7, 1, 13, 30, tzinfo=UTC)
    closes = [100 + 0.1 * ((i * 7) % 13 - 6) for i in range(n)]
    return pd.DataFrame(
        {
            "ts": [start + timedelta(seconds=30 * i) for i in range(n)],
            "open": [c - 0.05 for c in closes],
            "high": [c + 0.2 for c in closes],
            "low": [c - 0.2 for c in closes],
            "close": closes,
            "volume": [1000 + i for i in range(n)],
        }
    )


def is_png(data: bytes | memoryview) -> bool:
    data = bytes(data)  # the Image widget keeps a memoryview
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_close_volume_figure_has_two_axes_in_market_time():
    figure = plots.close_volume_figure(ticks(), "AAPL")
    price, volume = figure.axes
    assert price.get_ylabel() == "price (USD)" and volume.get_ylabel() == "volume (shares)"
    assert volume.get_xlabel() == "time (New York)"
    assert "AAPL" in figure._suptitle.get_text() and "EDT" in figure._suptitle.get_text()
    assert is_png(plots.figure_png(figure))


def test_candlesticks_and_empty_data():
    bars = with_indicators(ticks(30))
    assert {"sma_5", "sma_20", "log_return", "volatility"} <= set(bars.columns)
    assert is_png(plots.figure_png(plots.candlestick_figure(bars, "MSFT")))
    empty = ticks(0)
    assert plots.figure_png(plots.close_volume_figure(empty, "X")).startswith(b"\x89PNG")
    assert plots.figure_png(plots.candlestick_figure(empty, "X")).startswith(b"\x89PNG")


def test_market_time_is_new_york():
    shown = to_market_time(ticks(1))
    assert str(shown["ts"].dt.tz) == "America/New_York"
    assert shown["ts"].iloc[0].hour == 9  # 13:30 UTC in July is the 09:30 open


def test_live_widget_redraws_from_its_fetch_function():
    calls = []

    def fetch(symbol, window):
        calls.append((symbol, window))
        return ticks()

    live = plots.LiveCloseVolume(fetch, ["AAPL", "MSFT"], window_minutes=15, refresh_s=2)
    live.redraw()
    assert calls[-1] == ("AAPL", timedelta(minutes=15))
    assert is_png(live.image.value)
    live.symbol.value = "MSFT"  # changing the picker redraws at once
    assert calls[-1][0] == "MSFT"
    assert "120 ticks of MSFT" in live.status.value


def test_failover_figure_marks_each_event_inside_the_axes():
    acknowledged = [i / 100 for i in range(500)] + [9.5] * 300
    events = [(5.2, "broker 2 killed"), (9.0, "new leader"), (14.0, "broker 2 back in sync")]
    figure = plots.failover_figure(acknowledged, events)
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.texts] == [what for _, what in events]
    assert axis.get_xlim()[1] > 14.0  # the last mark is not cut off
    heights = [patch.get_height() for patch in axis.patches]
    assert max(heights) == 300 and sum(heights) == 800


def run_in_own_loop(coroutine) -> None:
    """asyncio.run on a thread of its own: in a full run, the browser tier's Playwright
    (sync API) keeps an event loop running on the main thread."""
    import asyncio
    import threading

    failures: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if failures:
        raise failures[0]


def test_live_widget_rereads_symbols_and_keeps_one_loop_per_kernel():
    import asyncio

    landed: list[str] = []
    live = plots.LiveCloseVolume(lambda s, w: ticks(0), lambda: list(landed), refresh_s=1)
    live.redraw()
    assert "0 ticks of -" in live.status.value  # nothing landed yet: says so
    landed += ["MSFT", "AAPL"]

    async def scenario():
        live.start()
        await asyncio.sleep(0.05)
        assert live.looping and list(live.symbol.options) == ["MSFT", "AAPL"]
        again = plots.LiveCloseVolume(lambda s, w: ticks(), ["AAPL"], refresh_s=1)
        again.start()  # the cell run again: the first widget's loop stops
        await asyncio.sleep(0.05)
        assert not live.running.value and again.looping
        again.stop()
        await asyncio.sleep(1.1)
        assert not again.looping

    run_in_own_loop(scenario())


def test_empty_close_volume_figure_says_waiting_and_draws_no_axes():
    figure = plots.close_volume_figure(ticks(0), "AAPL")
    assert not any(axis.axison for axis in figure.axes)
    assert any("waiting for data" in text.get_text() for text in figure.texts)


def test_overlays_and_binned_volume_for_the_live_chart():
    from pipeline_lib.analysis.queries import binned_volume, with_tick_overlays

    frame = with_tick_overlays(ticks(120))
    assert frame["sma_20"].iloc[19] == frame["close"].iloc[:20].mean()
    expected = (frame["close"] * frame["volume"]).sum() / frame["volume"].sum()
    assert abs(frame["vwap"].iloc[-1] - expected) < 1e-9
    short, per = binned_volume(frame, max_bars=200)
    assert per == "bar" and len(short) == 120
    binned, per = binned_volume(frame, max_bars=30)  # 60 minutes of 30 s bars
    assert per == "2 min" and len(binned) <= 30
    assert binned["volume"].sum() == frame["volume"].sum()  # nothing lost in binning
    figure = plots.close_volume_figure(ticks(600), "AAPL")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["close", "SMA 20", "VWAP"]
    assert figure.axes[1].get_ylabel().startswith("volume per")
    assert "event time, New York" in figure._suptitle.get_text()


def test_tables_read_as_a_person_expects():
    from pipeline_lib.analysis.queries import table, to_market_time

    frame = to_market_time(ticks(2)).assign(
        volume=[1234567, 2], return_pct=[1.5, -0.25], annualised_volatility=[0.281, None]
    )
    html = table(frame).to_html()
    assert "1,234,567" in html and "+1.50 %" in html and "28.1%" in html
    assert "EDT" in html and "nan" not in html.lower() and "–" in html


def stories():
    start = datetime(2024, 7, 1, 13, 30, tzinfo=UTC)
    return pd.DataFrame(
        {
            "ts": [start + timedelta(minutes=m) for m in (5, 20, 40, 500)],  # last: off-chart
            "headline": ["good", "bad", "meh", "later"],
            "sentiment": [0.6, -0.7, 0.0, 0.5],
            "sentiment_label": ["positive", "negative", "neutral", "positive"],
        }
    )


def test_news_markers_sit_on_the_close_line_by_polarity():
    figure = plots.close_volume_figure(ticks(), "AAPL", news=stories())
    price = figure.axes[0]
    labels = [c.get_label() for c in price.collections]
    assert labels == ["positive news", "negative news", "neutral news"]  # the 4th is outside
    legend = [t.get_text() for t in price.get_legend().get_texts()]
    assert "negative news" in legend
    assert is_png(plots.figure_png(figure))


def test_news_figure_shows_close_over_scores_and_says_when_there_is_no_news():
    figure = plots.news_figure(ticks(), stories(), "AAPL")
    price, scores = figure.axes
    assert scores.get_ylim() == (-1.05, 1.05) and "sentiment" in scores.get_ylabel()
    assert len(price.collections) == 3 and len(scores.collections) >= 2
    quiet = plots.news_figure(ticks(), stories().iloc[0:0], "AAPL")
    assert "no news in this window" in [t.get_text() for t in quiet.axes[1].texts]
    assert is_png(plots.figure_png(plots.news_figure(ticks(0), stories(), "X")))


def test_live_widget_asks_for_news_since_the_first_tick_shown():
    asked = []

    def news(symbol, since):
        asked.append((symbol, since))
        return stories()

    live = plots.LiveCloseVolume(lambda s, w: ticks(), ["AAPL"], news=news)
    live.redraw()
    assert asked == [("AAPL", pd.Timestamp(ticks()["ts"].iloc[0]))]
    assert "120 ticks and 4 stories of AAPL" in live.status.value
