import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from pipeline_lib.records.schema import validate
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, SymbolSpec, u_shape

START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def take(config, n):
    return list(itertools.islice(MarketSimulator(config), n))


def test_same_seed_same_stream_other_seed_other_stream():
    a = take(SimulatorConfig(seed=11, start=START), 2000)
    b = take(SimulatorConfig(seed=11, start=START), 2000)
    c = take(SimulatorConfig(seed=12, start=START), 2000)
    assert a == b
    assert [t.close for t in a] != [t.close for t in c]
    assert len({t.event_id for t in a}) == len(a)


def test_ohlc_invariants_and_cent_ticks_over_100k_bars():
    bars = take(SimulatorConfig(seed=3, start=START, interval_s=60), 100_000)
    o = np.array([t.open for t in bars])
    h = np.array([t.high for t in bars])
    lo = np.array([t.low for t in bars])
    c = np.array([t.close for t in bars])
    assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h)
    assert np.all(lo > 0)
    for prices in (o, h, lo, c):
        assert np.allclose(np.round(prices * 100), prices * 100, atol=1e-6)
    assert all(isinstance(t.volume, int) and t.volume >= 0 for t in bars)
    for tick in bars[::10_000]:
        assert validate(tick) == tick


def test_each_bar_opens_at_the_previous_close():
    bars = take(SimulatorConfig(seed=5, start=START, symbols=(SymbolSpec("AAA", 10.0),)), 500)
    assert all(b.open == a.close for a, b in itertools.pairwise(bars))


def test_returns_follow_the_configured_correlation():
    specs = (
        SymbolSpec("AAA", 100.0, sector="tech"),
        SymbolSpec("BBB", 100.0, sector="tech"),
        SymbolSpec("CCC", 100.0, sector="energy"),
    )
    config = SimulatorConfig(
        seed=8,
        start=START,
        symbols=specs,
        interval_s=3600,  # coarse bars: cent rounding does not blur the returns
        jumps=False,
        same_sector_correlation=0.65,
        cross_sector_correlation=0.15,
    )
    bars = take(config, 3 * 20_000)
    closes = np.array([t.close for t in bars]).reshape(-1, 3)
    returns = np.diff(np.log(closes), axis=0)
    realised = np.corrcoef(returns.T)
    assert np.abs(realised - config.correlation_matrix()).max() < 0.1


def test_explicit_matrix_must_be_positive_definite():
    specs = (SymbolSpec("A", 1.0), SymbolSpec("B", 1.0))
    with pytest.raises(ValueError, match="positive definite"):
        MarketSimulator(SimulatorConfig(symbols=specs, correlation=((1.0, 1.5), (1.5, 1.0))))


def test_intraday_volume_is_u_shaped():
    config = SimulatorConfig(
        seed=2, start=START, clock="market", interval_s=60, symbols=(SymbolSpec("AAA", 50.0),)
    )
    bars = take(config, 390 * 40)  # 40 sessions of minute bars
    session_open = {}  # first bar of each day (the open moves to 13:30 UTC with DST)
    for t in bars:
        session_open.setdefault(t.ts.date(), t.ts)
    minutes = np.array([(t.ts - session_open[t.ts.date()]).total_seconds() / 60 for t in bars])
    volume = np.array([t.volume for t in bars], dtype=float)
    first = volume[(minutes >= 0) & (minutes < 30)].mean()
    last = volume[(minutes >= 360) & (minutes < 390)].mean()
    midday = volume[(minutes >= 150) & (minutes < 240)].mean()
    assert first > 1.3 * midday and last > 1.1 * midday
    assert u_shape(np.linspace(0, 1, 100_001)).mean() == pytest.approx(1.0, abs=0.01)


def test_market_clock_stays_inside_nyse_sessions():
    friday_close = datetime(2024, 1, 5, 20, 59, 50, tzinfo=UTC)
    config = SimulatorConfig(
        seed=1, clock="market", start=friday_close, interval_s=5, symbols=(SymbolSpec("A", 10.0),)
    )
    stamps = [t.ts for t in take(config, 4)]
    assert stamps[:2] == [friday_close, datetime(2024, 1, 5, 20, 59, 55, tzinfo=UTC)]
    assert stamps[2] == datetime(2024, 1, 8, 14, 30, tzinfo=UTC)  # Monday's open


def test_always_open_clock_steps_by_interval():
    stamps = [t.ts for t in take(SimulatorConfig(seed=1, start=START, interval_s=2.5), 30)]
    unique = sorted(set(stamps))
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(unique)] == [2.5, 2.5]


def test_unbounded_runs_default_to_event_time_at_wall_clock_pace():
    from pipeline_lib.sources.base import classroom_pace

    assert classroom_pace(None, None, None, None) == (None, 1.0)
    assert classroom_pace(1_000, None, None, None) == (None, None)  # bounded: full speed
    assert classroom_pace(None, 60.0, None, None) == (None, None)
    assert classroom_pace(None, None, 50.0, None) == (50.0, None)  # an explicit pace wins
    assert classroom_pace(None, None, None, 60.0) == (None, 60.0)
