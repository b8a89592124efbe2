import itertools
from datetime import UTC, datetime

import pytest

from pipeline_lib.core.config import SAMPLE_CSV
from pipeline_lib.records.schema import InvalidRecord
from pipeline_lib.sources.base import bounded, paced
from pipeline_lib.sources.csv_replay import CsvReplay

YAHOO = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def test_sample_data_replays_in_time_order():
    ticks = list(CsvReplay(SAMPLE_CSV))
    assert len(ticks) == 12_154
    keys = [(t.ts, t.symbol) for t in ticks]
    assert keys == sorted(keys)
    assert {t.symbol for t in ticks} == {"AAPL", "IBM", "MSFT", "GOOG", "FB"}
    # Daily bars stamped at the NYSE close (16:00 New York = 21:00 UTC in winter).
    assert ticks[0].ts == datetime(2000, 3, 1, 21, 0, tzinfo=UTC)
    assert len({t.event_id for t in ticks}) == len(ticks)


def test_yahoo_single_symbol_file_takes_the_symbol_from_its_name(tmp_path):
    path = tmp_path / "ibm.csv"
    path.write_text(YAHOO + "2020-01-03,10,12,9,11,11,500\n2020-01-02,10,11,9,10,10,400\n")
    ticks = list(CsvReplay(path))
    assert [t.symbol for t in ticks] == ["IBM", "IBM"]
    assert [t.ts.day for t in ticks] == [2, 3]  # re-ordered oldest first
    assert ticks[0].volume == 400 and ticks[0].adj_close == 10


def test_split_adjustment_removes_the_split_jump():
    raw = [t for t in CsvReplay(SAMPLE_CSV, symbols=["AAPL"]) if t.ts.year == 2000]
    adjusted = [
        t for t in CsvReplay(SAMPLE_CSV, symbols=["AAPL"], split_adjust=True) if t.ts.year == 2000
    ]
    split = next(i for i, t in enumerate(raw) if t.ts.date().isoformat() == "2000-06-21")
    assert raw[split].close / raw[split - 1].close < 0.6  # 2-for-1 split
    assert 0.9 < adjusted[split].close / adjusted[split - 1].close < 1.1
    assert adjusted[split].volume > raw[split].volume


def test_bad_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(YAHOO + "2020-01-02,10,11,9,10,10,400\n2020-01-03,10,9,12,11,11,500\n")
    with pytest.raises(InvalidRecord, match=r"bad\.csv line 3: low: 12\.0 is above high 9\.0"):
        list(CsvReplay(path))
    replay = CsvReplay(path, on_invalid="skip")
    assert len(list(replay)) == 1
    assert replay.skipped[0][0] == 3


def test_wrong_layout_is_a_clear_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("when,price\n2020-01-01,3\n")
    with pytest.raises(ValueError, match="Yahoo's layout"):
        CsvReplay(path)
    with pytest.raises(FileNotFoundError, match="Sample data lives in"):
        CsvReplay(tmp_path / "missing.csv")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_rate_pacing_releases_n_rows_per_second():
    clock = FakeClock()
    released = []
    for _ in paced(
        itertools.islice(CsvReplay(SAMPLE_CSV), 50), rate=10, sleep=clock.sleep, clock=clock
    ):
        released.append(clock.now)
    assert released[0] == 0.0
    assert released[-1] == pytest.approx(4.9)


def test_speed_pacing_follows_event_time():
    clock = FakeClock()
    ticks = list(itertools.islice(CsvReplay(SAMPLE_CSV, symbols=["IBM"]), 5))
    day = 86_400.0
    released = []
    for _ in paced(ticks, speed=day, sleep=clock.sleep, clock=clock):  # one day per second
        released.append(clock.now)
    expected = [(t.ts - ticks[0].ts).total_seconds() / day for t in ticks]
    assert released == pytest.approx(expected)


def test_real_time_pacing_takes_at_least_the_planned_time():
    import time

    started = time.monotonic()
    assert len(list(paced(itertools.islice(CsvReplay(SAMPLE_CSV), 21), rate=100))) == 21
    assert time.monotonic() - started >= 0.19


def test_bounded_stops_by_count_and_by_duration():
    assert len(list(bounded(CsvReplay(SAMPLE_CSV), max_records=7))) == 7
    assert list(bounded(CsvReplay(SAMPLE_CSV), max_records=0)) == []
    endless = itertools.repeat(1)
    assert len(list(bounded(paced_ones(endless), duration=0.2))) < 1000


def paced_ones(values):
    import time

    for value in values:
        time.sleep(0.001)
        yield value
